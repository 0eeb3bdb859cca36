"""The model's input and output contract, and the checks every scorer runs against it.

A bundle's inputs are named columns, each ``numeric`` (float64, int64, bool; NaN allowed where the
pipeline imputes) or ``string`` (categories; a missing one, None or NaN, is fed in the form the
pipeline was fitted on: ``ColumnSpec.missing``, :func:`missing_as_fitted`). Every scorer takes
a DataFrame, checks it with :func:`conform` (missing column, wrong type: one line; castable types
are cast; other columns ignored) and returns the canonical columns of :func:`output_columns`,
whatever the format: a classifier gives ``label`` and one ``proba_<class>`` per class, a
regressor ``prediction``. Parity and comparison need no per-format code because of that.
"""

from __future__ import annotations

import decimal
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from formats.errors import InputError

__all__ = [
    "ColumnSpec",
    "MISSING_FORMS",
    "as_fitted",
    "canonical_columns",
    "canonical_frame",
    "conform",
    "input_specs",
    "missing_as_fitted",
    "output_columns",
    "proba_column",
]

# How many distinct values of a string column the manifest records.
MAX_CATEGORIES = 1000
# ColumnSpec.missing: how the fitted pipeline takes a missing value (formats.missing)
MISSING_FORMS = ("NaN", "None", "both")


@dataclass(frozen=True)
class ColumnSpec:
    """One input column: ``kind`` is "numeric" or "string"; ``dtype`` is the training dtype."""

    name: str
    kind: str
    dtype: str
    nullable: bool = True
    categories: list[str] | None = field(default=None, compare=False)
    # Whether the fitted pipeline takes a category it never saw (OneHotEncoder with
    # handle_unknown="ignore"): false only where save() found an encoder that refuses one.
    accepts_unknown: bool = field(default=True, compare=False)
    # How the fitted pipeline takes a missing value here (formats.missing): "NaN" or "None", the
    # form the scikit-learn scorers feed any missing value in; "both": training held both and
    # the pipeline scores them apart, so rows are fed as given (ONNX and PMML score NaN's way).
    missing: str = field(default="NaN", compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ColumnSpec:
        return cls(
            name=str(data["name"]),
            kind=str(data["kind"]),
            dtype=str(data["dtype"]),
            nullable=bool(data.get("nullable", True)),
            categories=data.get("categories"),
            accepts_unknown=bool(data.get("accepts_unknown", True)),  # older bundles: unknown
            missing=_missing_form(data.get("missing", "NaN")),  # older bundles: None fed as NaN
        )


def _missing_form(value: Any) -> str:
    if value not in MISSING_FORMS:
        raise ValueError(f"missing is {value!r}, not one of {', '.join(MISSING_FORMS)}")
    return str(value)


def input_specs(sample: pd.DataFrame) -> list[ColumnSpec]:
    """The input contract read off a training sample's columns and dtypes."""
    if not isinstance(sample, pd.DataFrame):
        raise InputError(
            f"the sample is a {type(sample).__name__}; pass a pandas DataFrame of the training "
            "features (its columns become the model's input schema)"
        )
    if sample.shape[0] == 0 or sample.shape[1] == 0:
        raise InputError("the sample DataFrame is empty; pass the rows the model was fitted on")
    specs = []
    for col in sample.columns:
        series = sample[col]
        name = str(col)
        nullable = bool(series.isna().any())
        if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
            dtype = "float64" if pd.api.types.is_float_dtype(series.dtype) else "int64"
            specs.append(ColumnSpec(name, "numeric", dtype, nullable))
        elif isinstance(series.dtype, pd.CategoricalDtype):
            # "category": a model that reads pandas' categories (LightGBM, XGBoost's
            # enable_categorical) gets them back, in this order (scorers: as_fitted)
            values = [str(v) for v in series.cat.categories]
            categories = values if len(values) <= MAX_CATEGORIES else None
            specs.append(ColumnSpec(name, "string", "category", nullable, categories))
        elif pd.api.types.is_string_dtype(series.dtype):
            values = sorted({str(v) for v in series.dropna().unique()})
            categories = values if len(values) <= MAX_CATEGORIES else None
            specs.append(ColumnSpec(name, "string", "string", nullable, categories))
        else:
            raise InputError(
                f"column {name!r} has dtype {series.dtype}; the formats take numbers and strings "
                "only: convert it (dates to numbers, objects to strings) before fitting"
            )
    return specs


def conform(frame: pd.DataFrame, specs: Sequence[ColumnSpec]) -> pd.DataFrame:
    """The model's columns of ``frame``, in order, with the training dtypes; or a one-line error.

    Numeric columns of another numeric or boolean dtype are cast; a string column where a number
    is expected (or the reverse) is an error, not a silent conversion.
    """
    if not isinstance(frame, pd.DataFrame):
        raise InputError(f"predict takes a pandas DataFrame, got {type(frame).__name__}")
    names = [str(c) for c in frame.columns]
    missing = [s.name for s in specs if s.name not in names]
    if missing:
        raise InputError(
            f"the data lacks column(s) {missing} that the model needs; it has {names}: rename "
            "or add them"
        )
    by_name = {str(c): c for c in frame.columns}
    columns: dict[str, Any] = {}
    for spec in specs:
        series = frame[by_name[spec.name]]
        columns[spec.name] = _cast(series, spec)
    return pd.DataFrame(columns, index=frame.index)


def _decimals(series: pd.Series) -> bool:
    """An object column of ``Decimal`` values (and nulls): what pandas makes of a SQL DECIMAL
    column (Spark's toPandas, a database driver). Numbers, which the model takes as floats."""
    if series.dtype != object:  # first: a numeric column is not copied (one-row calls)
        return False
    values = series.dropna()
    return len(values) > 0 and all(isinstance(v, decimal.Decimal) for v in values)


def _cast(series: pd.Series, spec: ColumnSpec) -> pd.Series:
    dtype = series.dtype
    if spec.kind == "numeric":
        if _decimals(series):
            return series.astype(np.float64)
        if pd.api.types.is_bool_dtype(dtype) or pd.api.types.is_numeric_dtype(dtype):
            target = np.float64 if spec.dtype == "float64" or series.isna().any() else np.int64
            return series.astype(target)
        raise InputError(
            f"column {spec.name!r} is {dtype} but the model takes numbers ({spec.dtype}); cast "
            "it to a numeric type first"
        )
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype):
        # a missing value keeps its form (None or NaN: the pipeline may tell them apart, see
        # formats.missing); pandas' NA becomes None, everything else str
        return series.astype(object).map(_category)
    raise InputError(
        f"column {spec.name!r} is {dtype} but the model takes strings (categories); cast it to "
        "string first"
    )


def _category(value: Any) -> Any:
    if isinstance(value, float) and np.isnan(value):
        return value
    return None if value is None or value is pd.NA or value is pd.NaT else str(value)


def missing_as_fitted(
    frame: pd.DataFrame, specs: Sequence[ColumnSpec], one_null: bool = False
) -> pd.DataFrame:
    """A conformed frame with each string column's missing values in the form the pipeline was
    fitted on (``ColumnSpec.missing``): what the scikit-learn scorers feed. A column that held
    both keeps them as given, unless ``one_null``: data with one null (Spark's) then take
    NaN's, as ONNX and PMML score it."""
    for spec in specs:
        as_given = spec.missing == "both" and not one_null
        if spec.kind != "string" or spec.name not in frame or as_given:
            continue  # an absent column is conform's to report
        column = frame[spec.name]
        if column.isna().any():
            missing = None if spec.missing == "None" else np.nan
            frame[spec.name] = column.astype(object).where(column.notna(), missing)
    return frame


def as_fitted(frame: pd.DataFrame, specs: Sequence[ColumnSpec]) -> pd.DataFrame:
    """A conformed frame with pandas' ``category`` dtype back on the columns that had it in
    training: LightGBM refuses strings where it was fitted on categories. The training
    categories first, in their order (the codes a model may have learnt), then any new value
    (what a user's own category column would hold; LightGBM itself makes it missing)."""
    for spec in specs:
        if spec.dtype == "category":
            column = frame[spec.name]
            known = list(spec.categories or [])
            new = sorted(set(column.dropna()) - set(known))
            frame[spec.name] = pd.Categorical(column, categories=known + new)
    return frame


def proba_column(cls: Any) -> str:
    return f"proba_{cls}"


def output_columns(task: str, classes: Sequence[Any] | None, with_proba: bool = True) -> list[str]:
    """The canonical output column names for a task."""
    if task == "classification":
        return ["label"] + ([proba_column(c) for c in classes or []] if with_proba else [])
    return ["prediction"]


def canonical_frame(
    task: str,
    classes: Sequence[Any] | None,
    *,
    label: Any = None,
    proba: np.ndarray | None = None,
    prediction: Any = None,
    index: Any = None,
) -> pd.DataFrame:
    """Build the canonical output from what an engine returned (labels mapped to ``classes``)."""
    columns = canonical_columns(task, classes, label=label, proba=proba, prediction=prediction)
    return pd.DataFrame(columns, index=index)


def canonical_columns(
    task: str,
    classes: Sequence[Any] | None,
    *,
    label: Any = None,
    proba: np.ndarray | None = None,
    prediction: Any = None,
) -> dict[str, np.ndarray]:
    """:func:`canonical_frame`'s columns as arrays: the Spark job's batches skip pandas."""
    if task == "classification":
        # no label: the caller makes it (OnnxScorer, from the class index the job's model returns)
        out: dict[str, Any] = {} if label is None else {"label": _labels(label, classes)}
        if proba is not None:
            proba = np.asarray(proba, dtype=np.float64)
            if proba.ndim != 2 or proba.shape[1] != len(classes or []):
                raise InputError(
                    f"the engine returned probabilities of shape {list(proba.shape)} for "
                    f"{len(classes or [])} classes"
                )
            for j, cls in enumerate(classes or []):
                out[proba_column(cls)] = proba[:, j]
        return out
    return {"prediction": np.asarray(prediction, dtype=np.float64).reshape(-1)}


def _labels(label: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """Labels in the classes' own type: engines return strings, floats or ints for the same class."""
    values = np.asarray(label).reshape(-1)
    if not classes:
        return values
    sample = classes[0]
    if isinstance(sample, str):
        return values if values.dtype == object else values.astype(str).astype(object)
    if isinstance(sample, bool | np.bool_):
        return values.astype(bool)
    if isinstance(sample, int | np.integer):
        if values.dtype.kind in "USO":  # PMML engines answer "1" for class 1
            values = values.astype(np.float64)
        return values.astype(np.int64)
    return values.astype(np.float64)
