"""What the scikit-learn and gradient-boosted tree converters share: rows of features in, named
prediction tensors out.

:func:`layout_from_sample` turns the user's sample (array, DataFrame or dict of columns) into
the ONNX input types and feed: a plain array becomes one input ``input`` ``[batch, n_features]``;
a DataFrame that wants it becomes one named ``[batch, 1]`` input per column. :class:`RoleRunner`
runs the original model on such a feed and names its results like the ONNX outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from formats._lazy import CORE, require
from formats._text import one_line
from formats.errors import ConversionError, InputError
from formats.onnx.convert.base import Feed
from formats.signature import Signature

__all__ = [
    "InputLayout",
    "Predictors",
    "RoleRunner",
    "check_names",
    "layout_from_sample",
    "not_fitted",
    "output_widths",
    "package_versions",
]

# What each output role (label, probabilities, scores, output) is computed by, from the input
# the original model takes.
Predictors = dict[str, Callable[[Any], np.ndarray]]


@dataclass
class InputLayout:
    """How ONNX inputs map back to what the original model takes.

    ``kind`` is "array" (one 2-D input) or "columns" (one ``[batch, 1]`` input per column).
    ``columns``/``dtypes`` are the sample DataFrame's, so that the original gets a DataFrame with
    the column names and dtypes it was fitted on; None for a plain array sample.
    """

    kind: str
    names: list[str]
    onnx_dtypes: list[str]
    columns: list[Any] | None = None
    dtypes: list[Any] | None = None

    def to_native(self, feed: Mapping[str, np.ndarray]) -> Any:
        if self.columns is None:
            return np.asarray(feed[self.names[0]])
        pd = require("pandas", CORE)
        if self.kind == "array":
            # One float input holds every column: the values stay as the ONNX model sees them
            # (an int column varied by verification is no longer integral).
            return pd.DataFrame(np.asarray(feed[self.names[0]]), columns=self.columns)
        frame = pd.DataFrame(
            {
                col: np.asarray(feed[name]).reshape(-1)
                for col, name in zip(self.columns, self.names, strict=True)
            }
        )
        for col, dtype in zip(self.columns, self.dtypes or [], strict=False):
            if frame[col].dtype == dtype:
                continue
            if isinstance(dtype, pd.CategoricalDtype):  # categories came through as strings
                by_text = {str(c): c for c in dtype.categories}
                frame[col] = frame[col].map(lambda v, m=by_text: m.get(v, v)).astype(dtype)
            else:
                frame[col] = frame[col].astype(dtype)
        return frame


def check_names(what: str, given: Sequence[str], current: Sequence[str]) -> None:
    """User-given input or output names must match the model's in number."""
    if len(given) != len(current):
        raise InputError(
            f"{len(given)} {what} name(s) given but the model has {len(current)} {what}(s) "
            f"{list(current)}"
        )


def not_fitted(obj: Any) -> ConversionError:
    return ConversionError(f"{type(obj).__name__} is not fitted; call fit() before converting")


def layout_from_sample(
    sample: Any,
    keep_float64: bool,
    *,
    per_column: Callable[[Any, Any], bool],
    estimator: Any,
    hint: str,
    names: Sequence[str] | None = None,
) -> tuple[InputLayout, Feed, list[str]]:
    """Turn the user's sample into an input layout, the ONNX feed, and notes worth reporting.

    ``per_column(estimator, frame)`` says whether a DataFrame becomes one input per column.
    """
    if sample is None:
        raise InputError(hint)
    notes: list[str] = []
    if isinstance(sample, Mapping):
        only = next(iter(sample.values())) if len(sample) == 1 else None
        # {"input": rows} (e.g. an .npz feed) is an array; anything else is one column per key
        sample = only if only is not None and np.ndim(only) == 2 else _frame_from_dict(sample)
    if _is_frame(sample):
        if sample.shape[0] == 0 or sample.shape[1] == 0:
            raise InputError("the sample DataFrame is empty; pass a few rows of the features")
        fitted = getattr(estimator, "feature_names_in_", None)
        if fitted is not None and set(map(str, fitted)) == set(map(str, sample.columns)):
            # The ONNX model takes columns in the order the estimator was fitted on.
            by_name = {str(c): c for c in sample.columns}
            sample = sample[[by_name[str(c)] for c in fitted]]
        if per_column(estimator, sample):
            layout, feed = _column_layout(sample, keep_float64, notes)
        else:
            layout, feed = _array_layout(sample.to_numpy(), keep_float64, notes, "input")
            if fitted is not None:  # fitted on a DataFrame: the original gets one back
                layout.columns, layout.dtypes = list(sample.columns), list(sample.dtypes)
    else:
        layout, feed = _array_layout(np.asarray(sample), keep_float64, notes, "input")
    if names:
        check_names("input", names, layout.names)
        feed = {new: feed[old] for old, new in zip(layout.names, names, strict=True)}
        layout.names = list(names)
    return layout, feed, notes


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "dtypes")


def _frame_from_dict(sample: Mapping[str, Any]) -> Any:
    pd = require("pandas", CORE)
    columns = {}
    for key, value in sample.items():
        array = np.asarray(value)
        if array.ndim == 2 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 1:
            raise InputError(
                f"sample entry {key!r} has shape {list(array.shape)}; a dict sample holds one "
                "column per key (shape [rows] or [rows, 1]); pass a 2-D array or a DataFrame"
            )
        columns[key] = array
    try:
        return pd.DataFrame(columns)
    except ValueError as exc:
        raise InputError(f"the sample's columns do not fit together: {one_line(exc)}") from exc


def _float_type(dtype: np.dtype[Any], keep_float64: bool, notes: list[str]) -> str:
    if dtype == np.float64:
        if keep_float64:
            return "float64"
        note = "float64 inputs are cast to float32 (the ONNX model computes in float32)"
        if note not in notes:
            notes.append(note)
    return "float32"


def _array_layout(
    array: np.ndarray, keep_float64: bool, notes: list[str], name: str
) -> tuple[InputLayout, Feed]:
    if array.ndim != 2 or array.shape[0] == 0:
        raise InputError(
            f"the sample has shape {list(array.shape)}; pass a 2-D array [rows, features] with "
            "at least one row (reshape a single row with x.reshape(1, -1))"
        )
    kind = array.dtype.kind
    if kind in "USO":
        if kind == "O" and not all(isinstance(v, str) for v in array.ravel()):
            raise InputError(
                "the sample array mixes types; pass a DataFrame so each column keeps its dtype"
            )
        dtype = "str"
        values = array.astype(str).astype(object)
    elif kind in "fiub":
        dtype = _float_type(array.dtype, keep_float64, notes) if kind == "f" else "float32"
        if kind != "f":
            notes.append(f"{array.dtype.name} sample values are fed as float32")
        values = array.astype(dtype)
    else:
        raise InputError(f"sample dtype {array.dtype} is not supported; pass numbers or strings")
    return InputLayout("array", [name], [dtype]), {name: values}


def _column_layout(frame: Any, keep_float64: bool, notes: list[str]) -> tuple[InputLayout, Feed]:
    pd = require("pandas", CORE)
    api = pd.api.types
    names, dtypes, feed = [], [], {}
    for col in frame.columns:
        series = frame[col]
        name = str(col)
        if api.is_bool_dtype(series.dtype) or api.is_integer_dtype(series.dtype):
            dtype, values = "int64", series.to_numpy().astype(np.int64)
        elif api.is_float_dtype(series.dtype):
            raw = series.to_numpy()
            dtype = _float_type(raw.dtype, keep_float64, notes)
            values = raw.astype(dtype)
        elif isinstance(series.dtype, pd.CategoricalDtype) or api.is_string_dtype(series.dtype):
            if series.isna().any():
                raise InputError(
                    f"column {col!r} has missing values; string inputs cannot carry NaN: fill "
                    "them (e.g. with '') in the sample and at inference time"
                )
            dtype, values = "str", series.astype(str).to_numpy().astype(object)
        else:
            raise InputError(
                f"column {col!r} has dtype {series.dtype}, which ONNX inputs cannot carry; "
                "convert it to numbers or strings first"
            )
        names.append(name)
        dtypes.append(dtype)
        feed[name] = values.reshape(-1, 1)
    layout = InputLayout("columns", names, dtypes, list(frame.columns), list(frame.dtypes))
    return layout, feed


class RoleRunner:
    """Runs the original model on an ONNX feed and names its results like the ONNX outputs.

    ``roles`` maps what an output holds (label, probabilities, scores, output) to its ONNX name;
    ``predictors`` computes each role from what the original takes. Results get the ONNX shapes:
    labels ``[batch]``, scores and probabilities ``[batch, classes]``, outputs ``[batch, k]``.
    ``widths`` (ONNX output name -> last dimension, when known) settles binary scores: a 1-D
    decision function matches a one-column output; skl2onnx's two-column binary scores follow
    no single sign convention across estimators, so those are left uncompared.
    """

    def __init__(
        self,
        layout: InputLayout,
        roles: Mapping[str, str],
        predictors: Mapping[str, Callable[[Any], np.ndarray]],
        widths: Mapping[str, int | None] | None = None,
    ) -> None:
        self.layout = layout
        self.roles = dict(roles)
        self.predictors = dict(predictors)
        self.widths = dict(widths or {})

    def __call__(self, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        x = self.layout.to_native(feed)
        rows = len(x)
        result: dict[str, np.ndarray] = {}
        for role, name in self.roles.items():
            if role not in self.predictors:
                continue
            value = np.asarray(self.predictors[role](x))
            if role in ("label", "other:label"):
                value = value.reshape(-1)
                value = value.astype(object) if value.dtype.kind in "USO" else value
            elif role == "scores" and value.ndim == 1 and self.widths.get(name, 1) != 1:
                continue
            else:
                value = value.reshape(rows, -1)
            result[name] = value
        return result


def output_widths(signature: Signature) -> dict[str, int | None]:
    """The last dimension of every 2-D output, for :class:`RoleRunner`."""
    return {
        spec.name: spec.shape[-1] if isinstance(spec.shape[-1], int) else None
        for spec in signature.outputs
        if len(spec.shape) == 2
    }


def package_versions(packages: Iterable[str]) -> dict[str, str]:
    """Installed versions of the packages that made a model (for ``result.source``)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        with contextlib.suppress(PackageNotFoundError):
            found[package] = version(package)
    return found
