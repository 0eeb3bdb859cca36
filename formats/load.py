"""``formats.load``: a scorer for one format of a bundle, on one engine.

Every scorer has ``fmt``, ``engine`` and ``predict(DataFrame) -> DataFrame`` with the canonical
columns (``label`` + ``proba_<class>``, or ``prediction``), so callers never branch on format.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from formats.bundle import Bundle
from formats.errors import UsageError

__all__ = ["ENGINES", "Scorer", "load"]

# format -> its engines, the first being the default (PMML's is the one that agreed with the
# original at save time: formats.pmml_engines.faithful_engine)
ENGINES: dict[str, tuple[str, ...]] = {
    "pickle": ("sklearn",),
    "skops": ("sklearn",),
    "pmml": ("pypmml", "jpmml"),
    "onnx": ("onnxruntime",),
}


class Scorer(Protocol):
    fmt: str
    engine: str

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame: ...


def load(
    bundle: Bundle | str | Path, fmt: str = "onnx", engine: str | None = None, **options: Any
) -> Scorer:
    """A scorer of one format of a bundle, on one engine.

    Every scorer's ``predict(DataFrame) -> DataFrame`` checks its input against the bundle's
    schema and returns the same columns: ``label`` and ``proba_<class>`` for a classifier,
    ``prediction`` for a regressor.

    Parameters
    ----------
    bundle
        The bundle, or its location: a local path or a URI pyarrow reads (``s3://``, ...).
    fmt
        ``"onnx"`` (the default), ``"pickle"``, ``"skops"`` or ``"pmml"``.
    engine
        The engine for ``fmt``: ``"onnxruntime"``; ``"sklearn"`` for pickle and skops;
        ``"jpmml"`` or ``"pypmml"`` for PMML, by default the one that agreed with the original
        when the bundle was saved (JPMML-Evaluator where both did, and in older bundles).
    **options
        ONNX only: ``providers`` (ONNX Runtime's execution providers) and
        ``intra_op_threads``.

    Returns
    -------
    Scorer
        An object with ``fmt``, ``engine`` and ``predict``.

    Raises
    ------
    UsageError
        An unknown format or engine, or options for a format other than ONNX.
    NotFoundError
        No bundle at ``bundle``, or the bundle has no ``fmt`` model (the manifest says why).
    IntegrityError
        The model file's sha256 is not the manifest's: the file was changed or truncated.
    ModelLoadError
        The model file cannot be loaded.
    MissingDependencyError
        The engine's package, or Java for PMML, is missing.

    Examples
    --------
    With ``path``, ``X`` and ``model`` from :func:`formats.save`'s example:

    >>> scorer = formats.load(path, "onnx")
    >>> scores = scorer.predict(X)
    >>> list(scores.columns)
    ['label', 'proba_Adelie', 'proba_Gentoo']
    >>> scores["label"].tolist() == list(model.predict(X))
    True
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    if fmt not in ENGINES:
        raise UsageError(f"unknown format {fmt!r}; use one of {', '.join(ENGINES)}")
    if engine is None and fmt == "pmml" and "pmml" in bundle.manifest.formats:
        from formats.pmml_engines import faithful_engine

        engine = faithful_engine(bundle.manifest.formats["pmml"].details)
    engine = engine or ENGINES[fmt][0]
    if engine not in ENGINES[fmt]:
        raise UsageError(
            f"unknown engine {engine!r} for {fmt}; use one of {', '.join(ENGINES[fmt])}"
        )
    if options and fmt != "onnx":
        raise UsageError(f"the {fmt} format takes no options (got {sorted(options)})")
    m = bundle.manifest
    name = bundle.file_of(fmt)
    if fmt == "onnx":
        from formats.onnx.scorer import OnnxScorer

        return OnnxScorer(bundle.read(name), m.task, m.classes, m.inputs, **options)
    if fmt == "pmml":
        from formats.pmml import JpmmlScorer, PypmmlScorer

        cls = PypmmlScorer if engine == "pypmml" else JpmmlScorer
        return cls(bundle.checked_path("pmml"), m.task, m.classes, m.inputs, m.has_proba)
    from formats.sklearn_formats import SklearnScorer, load_pickle, load_skops

    if fmt == "pickle":
        model = load_pickle(bundle.read(name))
    else:
        trusted = list(m.formats["skops"].details.get("trusted_types", []))
        model = load_skops(bundle.read(name), trusted)
    return SklearnScorer(model, fmt, m.task, m.classes, m.inputs, m.has_proba)
