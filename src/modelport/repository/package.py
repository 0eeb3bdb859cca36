"""Turning what a user registers into the files of a version package.

Whatever the source (an ``.onnx`` file, a framework object or file, a ``ConversionResult`` or
an ``onnx.ModelProto``), registration needs the same few things: the ONNX model, its signature,
an input example, the source facts and the verification report. :func:`prepare` gathers them;
:func:`write_model` and :func:`write_example` put them in a staging directory.
"""

from __future__ import annotations

import importlib.metadata
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from modelport._text import one_line
from modelport.errors import (
    InputError,
    IntegrityError,
    ModelLoadError,
    VerificationFailedError,
)
from modelport.signature import Signature

__all__ = [
    "EXAMPLE_FILE",
    "EXAMPLE_ROWS",
    "MODEL_FILE",
    "Prepared",
    "prepare",
    "read_example",
    "runtime_requirements",
    "write_example",
    "write_model",
]

MODEL_FILE = "model.onnx"
EXAMPLE_FILE = "input_example.npz"
# The input example shows the shape of a request and warms up sessions; a few rows do that, and
# a 60 000-row training sample copied into every version would not.
EXAMPLE_ROWS = 16
_EXTERNAL_DATA_OVER = 1_900_000_000  # protobuf cannot hold 2 GiB: weights go beside the model


@dataclass
class Prepared:
    model: onnx.ModelProto
    signature: Signature
    framework: str
    sample: dict[str, np.ndarray] | None
    source: dict[str, Any] = field(default_factory=dict)
    verification: dict[str, Any] | None = None
    passed: bool | None = None  # None: never verified
    summary: str = ""
    report: Any = None


def prepare(
    source: Any,
    *,
    name: str,
    sample: Any,
    framework: str | None,
    force: bool,
    verification: Mapping[str, Any] | None,
    source_info: Mapping[str, Any] | None,
    convert_kwargs: dict[str, Any],
) -> Prepared:
    """Normalize ``source`` and refuse it when its verification failed (unless ``force``)."""
    from modelport.convert.base import ConversionResult

    if isinstance(source, onnx.ModelProto):
        prepared = _from_proto(source, sample, framework, verification)
    elif isinstance(source, ConversionResult):
        prepared = _from_result(source)
    else:
        from modelport.convert import convert

        # A path or a framework object: convert and verify it (an .onnx file goes through the
        # pass-through converter, which checks it and runs it on ONNX Runtime).
        result = convert(source, sample, framework=framework, **convert_kwargs)
        prepared = _from_result(result)
    if source_info:
        prepared.source.update(source_info)
    prepared.source.setdefault("modelport", _version("modelport"))
    if prepared.passed is False and not force:
        raise VerificationFailedError(
            f"not registering {name!r}: {prepared.summary or 'verification failed'}; fix the "
            "conversion, or register with --force (force=True) to keep it anyway",
            report=prepared.report,
        )
    return prepared


def _from_result(result: Any) -> Prepared:
    report = result.report
    verification, passed, summary = _report_facts(report)
    return Prepared(
        model=result.model,
        signature=result.signature,
        framework=result.framework,
        sample=dict(result.sample) if result.sample else None,
        source=dict(result.source),
        verification=verification,
        passed=passed,
        summary=summary,
        report=report,
    )


def _from_proto(
    model: onnx.ModelProto,
    sample: Any,
    framework: str | None,
    verification: Mapping[str, Any] | None,
) -> Prepared:
    if model.ByteSize() < _EXTERNAL_DATA_OVER:
        try:
            onnx.checker.check_model(model)
        except Exception as exc:  # onnx raises ValidationError and friends
            raise ModelLoadError(
                f"the ONNX model is not valid: {one_line(exc)}; re-export it"
            ) from exc
    signature = Signature.from_onnx(model)
    feed = None
    if isinstance(sample, str | Path):
        from modelport.datafiles import read_sample

        sample = read_sample(sample)
    if sample is not None:
        from modelport.convert.onnx import feed_from_sample

        feed = feed_from_sample(sample, signature)
    verification_dict, passed, summary = _report_facts(verification)
    return Prepared(
        model=model,
        signature=signature,
        framework=framework or "onnx",
        sample=feed,
        source={"onnx": onnx.__version__},
        verification=verification_dict,
        passed=passed,
        summary=summary,
        report=verification,
    )


def _report_facts(report: Any) -> tuple[dict[str, Any] | None, bool | None, str]:
    """(dict to store, passed, one-line summary) of a VerificationReport, a dict or None."""
    if report is None:
        return None, None, ""
    to_dict = getattr(report, "to_dict", None)
    data = dict(to_dict()) if callable(to_dict) else dict(report)
    passed = bool(report) if callable(to_dict) else data.get("passed")
    summary = getattr(report, "summary", None)
    text = summary() if callable(summary) else ""
    if passed is not None:
        data["passed"] = bool(passed)
    return data, None if passed is None else bool(passed), str(text)


def runtime_requirements(model: onnx.ModelProto, verification: Mapping[str, Any] | None) -> dict[
    str, Any
]:
    """What a runtime must offer: opsets, IR version, and the ONNX Runtime it was verified on."""
    opset = {(entry.domain or "ai.onnx"): int(entry.version) for entry in model.opset_import}
    runtime: dict[str, Any] = {
        "opset": opset,
        "ir_version": int(model.ir_version),
        "onnxruntime": _version("onnxruntime"),
    }
    if verification and verification.get("providers"):
        runtime["providers"] = list(verification["providers"])
    return runtime


def write_model(model: onnx.ModelProto, directory: Path) -> None:
    path = directory / MODEL_FILE
    if model.ByteSize() > _EXTERNAL_DATA_OVER:
        onnx.save_model(
            model, str(path), save_as_external_data=True, location=MODEL_FILE + ".data"
        )
    else:
        path.write_bytes(model.SerializeToString())


def write_example(feed: Mapping[str, np.ndarray], signature: Signature, directory: Path) -> str:
    """Save the first rows of ``feed`` as .npz without any pickled object; returns the name."""
    arrays = {name: _storable(name, np.asarray(value)) for name, value in feed.items()}
    if arrays and all(
        spec.has_dynamic_batch for spec in signature.inputs if spec.name in arrays
    ) and all(a.ndim > 0 for a in arrays.values()):
        arrays = {name: array[:EXAMPLE_ROWS] for name, array in arrays.items()}
    with open(directory / EXAMPLE_FILE, "wb") as fh:
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return EXAMPLE_FILE


def read_example(path: Path, signature: Signature) -> dict[str, np.ndarray]:
    """Load an input example; pickles are refused, string inputs come back as object arrays."""
    strings = {spec.name for spec in signature.inputs if spec.dtype == "str"}
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {
                key: npz[key].astype(object) if key in strings else npz[key] for key in npz.files
            }
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        # numpy raises ValueError for pickled object arrays: they are refused, never loaded.
        raise IntegrityError(
            f"input example {str(path)!r} cannot be loaded safely ({one_line(exc, limit=200)}); "
            "re-register the model"
        ) from exc


def _storable(name: str, array: np.ndarray) -> np.ndarray:
    # Object arrays would be pickled by np.savez; store strings as fixed-width unicode instead.
    if array.dtype.kind != "O":
        return array
    values = array.ravel().tolist()
    if all(isinstance(v, str) for v in values):
        return array.astype(str)
    if all(isinstance(v, bytes) for v in values):
        return array.astype(bytes)
    raise InputError(
        f"input example {name!r} holds Python objects that are not strings; give plain arrays"
    )


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None
