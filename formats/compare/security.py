"""Security: does loading a file of each format run code the file names?

Each check uses a harmless canary, whose only effect is to create a marker file in a temporary
directory, and looks for the marker afterwards:

* pickle: a pickle of about 100 bytes whose ``__reduce__`` names :func:`_touch`; ``load_pickle`` (what
  ``formats.load`` runs) creates the marker: loading runs code.
* skops: a file holding :class:`SetstateCanary`, a type on no trusted list; ``load_skops`` and
  ``skops.io.load(trusted=None)`` refuse it and no marker appears. Trusting the type would run
  its ``__setstate__``; the check shows that too, since the trusted list is all that protects.
* PMML and ONNX are data (an XML document of the PMML schema; a protobuf graph of operators from
  a fixed set) that name no callable. The check embeds the canary pickle's bytes in a copy of the
  bundle's model (a PMML Extension, an ONNX metadata entry), loads and scores it, and finds no
  marker.
"""

from __future__ import annotations

import base64
import pickle
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from formats.bundle import Bundle
from formats.compare.results import SecurityCheck
from formats.errors import ModelportError

__all__ = ["Canary", "SetstateCanary", "canary_pickle", "checks"]


def _touch(marker: str) -> str:
    Path(marker).write_text("loading this file ran code\n")
    return marker


class Canary:
    """Pickles as a call of :func:`_touch`: unpickling it creates ``marker``."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return _touch, (self.marker,)


class SetstateCanary:
    """Stored by skops as an object of its own type; restoring its state creates the marker."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __setstate__(self, state: dict[str, Any]) -> None:
        _touch(state["marker"])
        self.__dict__.update(state)


def canary_pickle(marker: Path) -> bytes:
    return pickle.dumps(Canary(str(marker)), protocol=5)


def pickle_check(tmp: Path) -> SecurityCheck:
    from formats.sklearn_formats import load_pickle

    marker = tmp / "pickle.marker"
    data = canary_pickle(marker)
    load_pickle(data)
    ran = marker.exists()
    return SecurityCheck(
        "pickle", ran, "loading runs code: trusted files only",
        f"load_pickle of a {len(data)}-byte canary pickle "
        f"{'created' if ran else 'did not create'} its marker file",
    )  # fmt: skip


def skops_check(tmp: Path) -> SecurityCheck:
    import io

    import skops.io as sio

    from formats.sklearn_formats import load_skops

    marker = tmp / "skops.marker"
    data = sio.dumps(SetstateCanary(str(marker)))
    refused = []
    try:
        load_skops(data, trusted=[])
    except ModelportError as exc:
        refused.append(f"formats' loader ({type(exc).__name__})")
    try:
        sio.load(io.BytesIO(data), trusted=None)
    except Exception as exc:  # skops raises UntrustedTypesFoundException
        refused.append(f"skops.io.load(trusted=None) ({type(exc).__name__})")
    untouched = not marker.exists()
    sio.load(io.BytesIO(data), trusted=sio.get_untrusted_types(data=data))
    when_trusted = marker.exists()
    evidence = (
        f"a skops file holding an untrusted type was refused by {' and '.join(refused) or 'nobody'}"
        f"; marker {'absent' if untouched else 'CREATED'}. Trusting that type "
        f"{'ran' if when_trusted else 'did not run'} its __setstate__: the trusted list "
        "(the manifest's) is what keeps code out"
    )
    safe = untouched and len(refused) == 2
    verdict = "refuses untrusted types" if safe else "loaded an untrusted type"
    return SecurityCheck("skops", not safe, verdict, evidence)


def _scored(scorer: Any, rows: pd.DataFrame) -> None:
    try:
        scorer.predict(rows)
    finally:
        close = getattr(scorer, "close", None)
        if close is not None:
            close()


def pmml_check(bundle: Bundle, rows: pd.DataFrame, tmp: Path) -> SecurityCheck:
    from formats.pmml import PypmmlScorer

    marker = tmp / "pmml.marker"
    blob = base64.b64encode(canary_pickle(marker)).decode()
    text = bundle.checked_path("pmml").read_text()
    extension = f'<Extension name="modelport-canary" value="{blob}"/>\n</PMML>'
    path = tmp / "canary.pmml"
    path.write_text(text[: text.rindex("</PMML>")] + extension)
    m = bundle.manifest
    verdict, why = "loads as data", "PMML is an XML document of the PMML schema: it names no code"
    try:
        _scored(PypmmlScorer(path, m.task, m.classes, m.inputs, m.has_proba), rows)
    except ModelportError as exc:
        return SecurityCheck("pmml", False, verdict, f"{why}; not measured here: {exc}", False)
    ran = marker.exists()
    return SecurityCheck(
        "pmml", ran, verdict if not ran else "loading ran code",
        f"{why}; a copy carrying the canary pickle in an Extension loaded and scored in pypmml "
        f"with {'the marker CREATED' if ran else 'no marker created'}",
    )  # fmt: skip


def onnx_check(bundle: Bundle, rows: pd.DataFrame, tmp: Path) -> SecurityCheck:
    import onnx

    from formats.onnx.scorer import OnnxScorer

    marker = tmp / "onnx.marker"
    model = onnx.load_from_string(bundle.read(bundle.file_of("onnx")))
    entry = model.metadata_props.add()
    entry.key, entry.value = "modelport-canary", base64.b64encode(canary_pickle(marker)).decode()
    m = bundle.manifest
    _scored(OnnxScorer(model.SerializeToString(), m.task, m.classes, m.inputs), rows)
    ran = marker.exists()
    return SecurityCheck(
        "onnx", ran, "loads as data" if not ran else "loading ran code",
        "ONNX is a protobuf graph of operators from a fixed set: it names no code; a copy "
        "carrying the canary pickle in its metadata loaded and scored in onnxruntime with "
        f"{'the marker CREATED' if ran else 'no marker created'}",
    )  # fmt: skip


def checks(bundle: Bundle, rows: pd.DataFrame, formats: list[str]) -> list[SecurityCheck]:
    """One check per format in ``formats`` (the PMML and ONNX ones need the bundle's file)."""
    out = []
    with tempfile.TemporaryDirectory(prefix="modelport-canary-") as name:
        tmp = Path(name)
        saved = set(bundle.manifest.saved_formats())
        for fmt in formats:
            if fmt == "pickle":
                out.append(pickle_check(tmp))
            elif fmt == "skops":
                out.append(skops_check(tmp))
            elif fmt == "pmml" and fmt in saved:
                out.append(pmml_check(bundle, rows, tmp))
            elif fmt == "onnx" and fmt in saved:
                out.append(onnx_check(bundle, rows, tmp))
    return out
