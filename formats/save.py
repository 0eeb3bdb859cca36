"""``formats.save``: one fitted pipeline written as a bundle in every format it fits.

The bundle is written into a temporary directory beside its destination and renamed into place
at the end, so a bundle is whole or absent: a crash, a full disk or a failing exporter never
leaves half of one. A format that cannot take the model (a FunctionTransformer has no PMML or
ONNX form) does not stop the others: the manifest records which step failed and why.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats.bundle import Bundle, sha256_file
from formats.errors import FormatUnsupportedError, InputError, UsageError
from formats.manifest import FORMATS, FormatEntry, Manifest, Tolerance
from formats.missing import with_missing_forms
from formats.nulls import with_null_tolerance
from formats.schema import ColumnSpec, input_specs
from formats.sklearn_formats import final_estimator
from formats.unknowns import with_unknown_tolerance

__all__ = ["save"]

_PACKAGES = (
    "scikit-learn", "skops", "sklearn2pmml", "skl2onnx", "onnxmltools", "onnx", "onnxruntime",
    "xgboost", "lightgbm", "numpy", "pandas",
)  # fmt: skip
EXAMPLE_ROWS = 100


def save(
    model: Any,
    out_dir: str | Path,
    *,
    sample: pd.DataFrame,
    formats: Sequence[str] = tuple(FORMATS),
    name: str | None = None,
    version: str = "1",
    tags: dict[str, str] | None = None,
    description: str = "",
    onnx_precision: str = "auto",
    onnx_trees: str = "auto",
    tolerance: Tolerance | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a fitted model as a bundle: one directory holding it in every format it fits.

    The bundle is written beside ``out_dir`` and renamed into place, so it is whole or absent.
    A format that cannot take the model does not stop the others: the manifest records which
    step failed and why, and the bundle holds the rest.

    Parameters
    ----------
    model
        A fitted scikit-learn estimator or pipeline (XGBoost and LightGBM models included).
    out_dir
        The bundle directory to create.
    sample
        Rows with the columns the model was fitted on, as a DataFrame: the input schema (with
        the form, None or NaN, a missing category takes), the ONNX export's and the PMML
        engines' checks and the bundle's input example are read off it.
    formats
        The formats to write, of ``"pickle"``, ``"skops"``, ``"pmml"`` and ``"onnx"`` (all by
        default; PMML needs Java).
    name, version, tags, description
        Recorded in the manifest; ``name`` defaults to ``out_dir``'s name.
    onnx_precision
        ``"auto"`` (float32, or float64 where that agrees better with the original on
        ``sample``), ``"float32"`` or ``"float64"``.
    onnx_trees
        ``"auto"`` (a tree ensemble of small trees as matrix products, where that agrees with
        the original as well), ``"matmul"`` or ``"ensemble"``.
    tolerance
        What :func:`formats.parity` accepts for this bundle. By default labels must be equal and
        numbers within ``atol=1e-5`` (and ``rtol=1e-5`` for a regressor).
    overwrite
        Replace an existing ``out_dir``.

    Returns
    -------
    Bundle
        The bundle, opened; ``bundle.manifest`` says what was saved, and why not.

    Raises
    ------
    InputError
        The model is not fitted, or ``sample`` does not have its columns.
    UsageError
        An unknown format, or ``out_dir`` exists and ``overwrite`` is False.
    ConversionError
        An unknown ``onnx_precision`` or ``onnx_trees``.
    MissingDependencyError
        PMML is asked for and Java is missing (checked before anything is written).

    Examples
    --------
    >>> import tempfile
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> import formats
    >>> X = pd.DataFrame({"bill_length_mm": [39.1, 46.5, 49.0, 38.6, 50.2, 37.8],
    ...                   "flipper_length_mm": [181.0, 210.0, 220.0, 190.0, 225.0, 186.0]})
    >>> y = ["Adelie", "Gentoo", "Gentoo", "Adelie", "Gentoo", "Adelie"]
    >>> model = LogisticRegression().fit(X, y)
    >>> path = tempfile.mkdtemp() + "/penguins"
    >>> bundle = formats.save(model, path, sample=X, formats=["pickle", "onnx"])
    >>> bundle.manifest.saved_formats()
    ['pickle', 'onnx']
    """
    destination = Path(out_dir)
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(f"unknown format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if destination.exists() and not overwrite:
        raise UsageError(f"{str(destination)!r} exists; pass overwrite=True (--overwrite)")
    _check_fitted(model)
    specs = input_specs(sample)
    _check_columns(model, specs)
    specs = with_unknown_tolerance(model, specs)  # the Spark job's unseen-category rule
    task, classes = _task(model)
    tol = tolerance or default_tolerance(task)
    has_proba = task == "classification" and hasattr(model, "predict_proba")
    # before the writers: the ONNX export reads each column's missing form
    specs = with_missing_forms(model, sample, specs, tol)
    if "pmml" in formats:
        from formats.java import java_version

        java_version()  # before any work: the one environmental failure we can see coming

    tmp = _temp_dir(destination)
    try:
        entries = {
            fmt: _write_format(fmt, model, sample, specs, task, tmp, (onnx_precision, onnx_trees))
            for fmt in formats
        }
        pmml = entries.get("pmml")
        if pmml is not None and pmml.saved:
            from formats.pmml_engines import engine_agreement

            # which engine scores the document as the original does: load's default engine
            pmml.details["engines"] = engine_agreement(
                tmp / FORMATS["pmml"], model, sample, specs, (task, classes, has_proba), tol
            )
        onnx = entries.get("onnx")
        onnx_file = onnx.file if onnx is not None and onnx.status == "saved" else None
        onnx_bytes = (tmp / onnx_file).read_bytes() if onnx_file else None
        specs = with_null_tolerance(model, sample, specs, task, classes, has_proba, onnx_bytes, tol)
        example = sample.head(EXAMPLE_ROWS)
        example.to_parquet(tmp / "input_example.parquet", index=False)
        manifest = Manifest(
            name=name or destination.name,
            version=str(version),
            task=task,
            classes=classes,
            inputs=specs,
            model_type=_model_type(model),
            formats=entries,
            versions=_versions(entries),
            tolerance=tol,
            has_proba=has_proba,
            description=description,
            tags=dict(tags or {}),
            created=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        manifest.files = {
            f.name: {"sha256": sha256_file(f), "bytes": f.stat().st_size}
            for f in sorted(tmp.iterdir())
        }
        (tmp / "manifest.json").write_text(manifest.to_json())
        _fsync_dir(tmp)
        _replace(tmp, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Bundle.open(destination)


def default_tolerance(task: str) -> Tolerance:
    """Labels exact, probabilities within 1e-5; predictions also within 1e-5 relative, since a
    float32 model keeps about 7 significant digits of a value like 3,600 g."""
    return Tolerance(rtol=1e-5) if task == "regression" else Tolerance()


def _write_format(
    fmt: str,
    model: Any,
    sample: pd.DataFrame,
    specs: list[ColumnSpec],
    task: str,
    tmp: Path,
    onnx: tuple[str, str],
) -> FormatEntry:
    file = FORMATS[fmt]
    path = tmp / file
    try:
        details = _WRITERS[fmt](model, sample, specs, task, path, onnx)
    except FormatUnsupportedError as exc:
        path.unlink(missing_ok=True)
        return FormatEntry("failed", step=exc.step, reason=exc.reason)
    return FormatEntry("saved", file=file, details=details)


def _pickle(model: Any, _s: pd.DataFrame, _c: Any, _t: str, path: Path, _o: Any) -> dict[str, Any]:
    from formats.sklearn_formats import write_pickle

    return write_pickle(model, path)


def _skops(model: Any, _s: pd.DataFrame, _c: Any, _t: str, path: Path, _o: Any) -> dict[str, Any]:
    from formats.sklearn_formats import write_skops

    return write_skops(model, path)


def _pmml(
    model: Any, sample: pd.DataFrame, specs: list[ColumnSpec], _t: str, path: Path, _o: Any
) -> dict[str, Any]:
    from formats.missing import pmml_copy
    from formats.pmml import write_pmml

    return write_pmml(pmml_copy(model, specs), sample, path)


def _onnx(
    model: Any,
    sample: pd.DataFrame,
    specs: list[ColumnSpec],
    task: str,
    path: Path,
    onnx: tuple[str, str],
) -> dict[str, Any]:
    from formats.onnx.export import export_onnx

    precision, trees = onnx
    export = export_onnx(model, sample, specs, task, precision, trees)
    path.write_bytes(export.data)
    return export.details


_WRITERS: dict[str, Callable[..., dict[str, Any]]] = {
    "pickle": _pickle,
    "skops": _skops,
    "pmml": _pmml,
    "onnx": _onnx,
}


def _check_fitted(model: Any) -> None:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(model)
    except NotFittedError:
        raise InputError(
            f"{type(model).__name__} is not fitted; call fit() on the training data before saving"
        ) from None
    except TypeError as exc:  # not an estimator at all
        raise InputError(
            f"{type(model).__name__} is not a scikit-learn compatible estimator ({exc}); save a "
            "fitted scikit-learn, XGBoost or LightGBM model or pipeline"
        ) from None


def _check_columns(model: Any, specs: list[ColumnSpec]) -> None:
    fitted = getattr(model, "feature_names_in_", None)
    have = [s.name for s in specs]
    if fitted is None:
        n = getattr(model, "n_features_in_", None)
        if n is not None and int(n) != len(have):
            raise InputError(
                f"the sample has {len(have)} column(s) but the model was fitted on {n}; pass the "
                "DataFrame the model was fitted on"
            )
        return
    fitted = [str(c) for c in fitted]
    missing = [c for c in fitted if c not in have]
    extra = [c for c in have if c not in fitted]
    if missing or extra:
        parts = ([f"lacks {missing}"] if missing else []) + ([f"adds {extra}"] if extra else [])
        raise InputError(
            f"the sample's columns do not match the model: it {' and '.join(parts)}; the model "
            f"was fitted on {fitted}"
        )


def _task(model: Any) -> tuple[str, list[Any] | None]:
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(model):
        return "classification", [_plain(c) for c in np.asarray(model.classes_).tolist()]
    if is_regressor(model):
        return "regression", None
    raise InputError(
        f"{type(model).__name__} is neither a classifier nor a regressor; bundles hold models "
        "that predict (end the pipeline with an estimator)"
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _model_type(model: Any) -> str:
    final = final_estimator(model)
    return type(model).__name__ if final is model else f"{type(model).__name__}({type(final).__name__})"


def _versions(entries: dict[str, FormatEntry]) -> dict[str, str]:
    from formats.onnx.convert._tabular import package_versions

    found = {"python": platform.python_version(), **package_versions(_PACKAGES)}
    java = entries.get("pmml")
    if java is not None and java.details.get("java"):
        found["java"] = str(java.details["java"])
    return found


def _temp_dir(destination: Path) -> Path:
    parent = destination.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write a bundle in {str(parent)!r}: {exc.strerror}") from None


def _fsync_dir(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def _replace(tmp: Path, destination: Path) -> None:
    """Rename the finished bundle into place; an old one is moved aside first, then removed."""
    os.chmod(tmp, 0o755)
    old = None
    if destination.exists():
        old = destination.with_name(f".{destination.name}.old-{os.getpid()}")
        os.replace(destination, old)
    os.replace(tmp, destination)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
