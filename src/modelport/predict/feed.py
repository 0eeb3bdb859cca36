"""From a chunk of a file (arrays or table columns) to a feed keyed by the model's inputs.

Tables map onto the signature by name first: a column per input (a list per cell for a
multi-value input), or ``name_0 .. name_k`` columns; a single-input model without such columns
takes all numeric columns, in file order. The plan is made once, from the first chunk.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InputError
from modelport.predict._text import listing, one_line
from modelport.predict.readers import UNNAMED, Chunk
from modelport.signature import Signature, TensorSpec, numpy_dtype

__all__ = ["FeedMapper"]


@dataclass
class FeedMapper:
    """How each model input is taken from a chunk, decided once from the first chunk."""

    signature: Signature
    plan_: list[tuple[TensorSpec, list[str]]]  # input -> keys or columns that make it
    tabular: bool
    notes: list[str] = field(default_factory=list)

    @classmethod
    def plan(cls, signature: Signature, chunk: Chunk) -> FeedMapper:
        if isinstance(chunk, dict):
            return cls._plan_arrays(signature, chunk)
        return cls._plan_table(signature, [str(c) for c in chunk.columns], chunk)

    @classmethod
    def _plan_arrays(cls, signature: Signature, chunk: dict[str, np.ndarray]) -> FeedMapper:
        keys = list(chunk)
        inputs = signature.inputs
        if len(inputs) == 1 and len(keys) == 1:
            return cls(signature, [(inputs[0], keys)], tabular=False)
        if keys == [UNNAMED]:
            raise InputError(
                f"the model has {len(inputs)} inputs {signature.input_names}; give an .npz with "
                "one array per input, or a table with a column per input"
            )
        missing = [s.name for s in inputs if s.name not in chunk]
        if missing:
            raise InputError(
                f"the input file has no array for input(s) {listing(missing)}; "
                f"its arrays are {listing(keys)}"
            )
        extra = [k for k in keys if k not in signature.input_names]
        notes = [f"ignored arrays not used by the model: {listing(extra)}"] if extra else []
        return cls(signature, [(s, [s.name]) for s in inputs], tabular=False, notes=notes)

    @classmethod
    def _plan_table(cls, signature: Signature, columns: list[str], frame: Any) -> FeedMapper:
        plan: list[tuple[TensorSpec, list[str]]] = []
        unresolved: list[TensorSpec] = []
        for spec in signature.inputs:
            cols = _columns_for(spec, columns)
            if cols:
                plan.append((spec, cols))
            else:
                unresolved.append(spec)
        if not unresolved:
            used = {c for _, cols in plan for c in cols}
            extra = [c for c in columns if c not in used]
            notes = [f"ignored columns not used by the model: {listing(extra)}"] if extra else []
            return cls(signature, plan, tabular=True, notes=notes)
        if len(signature.inputs) == 1:
            return cls(signature, [(unresolved[0], _stacked_columns(unresolved[0], frame))], True)
        used = {c for _, cols in plan for c in cols}
        extra = [c for c in columns if c not in used]
        raise InputError(
            f"the input file has no column for input(s) {listing([s.name for s in unresolved])}"
            f" (a column per input, or {unresolved[0].name}_0, {unresolved[0].name}_1, ... for "
            f"a multi-value input); columns not matching any input: {listing(extra)}"
        )

    def feed(self, chunk: Chunk) -> dict[str, np.ndarray]:
        feed = {}
        for spec, keys in self.plan_:
            if self.tabular:
                if len(keys) == 1 and keys[0] == spec.name:
                    values = _column_values(chunk[keys[0]], spec)
                else:
                    values = _coerce(chunk[keys].to_numpy(), spec, ", ".join(keys[:3]))
            else:
                values = _coerce(chunk[keys[0]], spec, keys[0] or "the array")
            feed[spec.name] = _fit_shape(values, spec)
        return feed


_SUFFIX_INDEX = re.compile(r"^(.*)_(\d+)$")


def _columns_for(spec: TensorSpec, columns: list[str]) -> list[str]:
    """``[name]`` when a column has the input's name, or its ``name_0..name_k`` columns."""
    if spec.name in columns:
        return [spec.name]
    indexed: dict[int, str] = {}
    for column in columns:
        match = _SUFFIX_INDEX.match(column)
        if match and match.group(1) == spec.name:
            indexed[int(match.group(2))] = column
    if not indexed:
        return []
    width = _row_width(spec)
    expected = range(width if width is not None else max(indexed) + 1)
    missing = [f"{spec.name}_{i}" for i in expected if i not in indexed]
    extra = [indexed[i] for i in indexed if i not in expected]
    if missing or extra:
        raise InputError(
            f"input {spec.name!r} takes {len(expected)} values per row; columns missing: "
            f"{listing(missing)}; extra columns: {listing(extra)}"
        )
    return [indexed[i] for i in expected]


def _stacked_columns(spec: TensorSpec, frame: Any) -> list[str]:
    """All numeric columns, in file order, stacked into the model's one input."""
    columns = [str(c) for c in frame.columns]
    numeric = [str(c) for c, dt in zip(frame.columns, frame.dtypes, strict=True) if _numeric(dt)]
    other = [c for c in columns if c not in numeric]
    width = _row_width(spec)
    if spec.dtype == "str":
        numeric, other = columns, []
    if width is None and len(spec.shape) <= 1:
        width = 1
    if width is not None and len(numeric) != width:
        skipped = f"; non-numeric columns (not used): {listing(other)}" if other else ""
        raise InputError(
            f"input {spec.name!r} of shape {spec.wire_shape} takes {width} value(s) per row but "
            f"the file has {len(numeric)} numeric column(s) {listing(numeric)}{skipped}; "
            f"name the columns after the input ({spec.name}"
            + (f" or {spec.name}_0 .. {spec.name}_{width - 1}" if width > 1 else "")
            + ") or drop the extra ones"
        )
    if not numeric:
        raise InputError(f"the input file has no numeric columns for input {spec.name!r}")
    return numeric


def _numeric(dtype: Any) -> bool:
    return getattr(dtype, "kind", "O") in "biuf"


def _row_width(spec: TensorSpec) -> int | None:
    """Values per row of an input when every non-batch dimension is fixed, else None."""
    dims = spec.shape[1:]
    if not all(isinstance(d, int) for d in dims):
        return None
    return math.prod(dims)  # type: ignore[arg-type]


def _column_values(column: Any, spec: TensorSpec) -> np.ndarray:
    values = column.to_numpy()
    if values.dtype.kind == "O" and len(values) and isinstance(values[0], list | np.ndarray):
        try:  # a list per cell (jsonl, parquet list columns) is a multi-value input
            values = np.stack([np.asarray(v) for v in values])
        except ValueError as exc:
            raise InputError(f"column {spec.name!r} has lists of different lengths") from exc
    return _coerce(values, spec, str(column.name))


def _coerce(values: np.ndarray, spec: TensorSpec, where: str) -> np.ndarray:
    """Cast to the input's dtype where that loses nothing a user would expect to keep."""
    values = np.asarray(values)
    target = numpy_dtype(spec.dtype) if not spec.dtype.startswith("<") else None
    if target is None or values.dtype == target:
        return values
    if spec.dtype == "str":
        return values.astype(str).astype(object)
    try:
        lossy = values.dtype.kind == "f" and target.kind in "iub"
        if lossy and not (np.all(np.isfinite(values)) and np.all(values == np.round(values))):
            raise InputError(
                f"{where!r} has non-integer values but input {spec.name!r} is {spec.dtype}"
            )
        return values.astype(target)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"cannot use {where!r} as {spec.dtype} for input {spec.name!r}: {one_line(exc)}"
        ) from exc


def _fit_shape(values: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Reshape rows to the input's rank when the sizes agree (a flat table row -> an image)."""
    if values.ndim == len(spec.shape) or not spec.shape:
        return values
    dims = spec.shape[1:]
    rows = values.shape[0]
    if all(isinstance(d, int) for d in dims):
        if math.prod(values.shape[1:]) == math.prod(dims):  # type: ignore[arg-type]
            return values.reshape((rows, *dims))  # type: ignore[arg-type]
    elif values.ndim == 1 and len(spec.shape) == 2:
        return values.reshape(rows, 1)
    return values  # check_feed names the input and the shape it expected
