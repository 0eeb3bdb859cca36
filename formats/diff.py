"""Whether two models' outputs agree: the one rule every comparison in modelport applies.

``formats.parity``, the null probe at save (``formats.nulls``), ONNX verification
(``formats.onnx.verify``), the portability cells of ``formats compare``, the export's precision
and tree-form checks, and the Spark job's gate all call this module, so "the same scores" means
one thing everywhere:

- **Labels** agree row by row when equal (as text when either side holds text, so ``b"a"``,
  ``"a"`` and a pandas object column compare alike); the share of equal rows must be at least
  ``Tolerance.labels``.
- **Numbers** agree when ``|got - want| <= atol + rtol * |want|``. Two NaNs, or two equal
  infinities, agree; any other non-finite value on one side disagrees, however wide the
  tolerance.

:func:`number_diff` and :func:`labels_equal` compare arrays of any shape (verification's
tensors); :func:`compare_frames` compares two canonical output frames (``label`` +
``proba_<class>``, or ``prediction``) column by column; :func:`first_difference` says in a few
words where two frames differ, or returns ``""``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "FrameDiff",
    "NumberDiff",
    "OutputDiff",
    "Tolerance",
    "compare_frames",
    "first_difference",
    "labels_equal",
    "number_diff",
]

LABEL = "label"


@dataclass(frozen=True)
class Tolerance:
    """What a comparison accepts: a number passes when ``|got - want| <= atol + rtol * |want|``,
    labels when at least the share ``labels`` of rows are equal.

    The defaults are a bundle's (``manifest.json``'s ``tolerance``); the ONNX converters set
    their own ``atol`` and ``rtol``. ``atol`` and ``rtol`` come first so that ``Tolerance(atol,
    rtol)`` reads as it always has for the converters.
    """

    atol: float = 1e-5
    rtol: float = 0.0
    labels: float = 1.0

    def to_dict(self) -> dict[str, float]:
        """The manifest's form, ``labels`` first as it has always been written."""
        return {"labels": self.labels, "atol": self.atol, "rtol": self.rtol}


@dataclass
class NumberDiff:
    """Numbers compared element by element (``over``: the elements out of tolerance)."""

    over: np.ndarray
    max_abs: float
    max_rel: float
    min_passing_atol: float  # the smallest atol that passes with this rtol

    @property
    def passed(self) -> bool:
        return not bool(self.over.any())


@dataclass
class OutputDiff:
    """One numeric output column of a frame comparison."""

    column: str
    max_abs: float
    max_rel: float
    rows_over: int
    passed: bool


@dataclass
class FrameDiff:
    """Two output frames compared: ``want`` (the reference) and ``got``, row by row."""

    rows: int
    tolerance: Tolerance
    label_agreement: float | None = None  # None when there is no label column
    labels_differ: int = 0
    outputs: list[OutputDiff] = field(default_factory=list)  # every column but the label
    missing: list[str] = field(default_factory=list)  # ``want``'s columns that ``got`` lacks
    disagree: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))  # per row

    @property
    def labels_passed(self) -> bool:
        return self.label_agreement is None or self.label_agreement >= self.tolerance.labels

    @property
    def passed(self) -> bool:
        return self.labels_passed and not self.missing and all(o.passed for o in self.outputs)

    @property
    def max_abs(self) -> float:
        """The largest absolute difference of any numeric output (0.0 when there is none)."""
        return max((o.max_abs for o in self.outputs), default=0.0)


def labels_equal(want: Any, got: Any) -> np.ndarray:
    """Element-wise equality of two label arrays of the same size, flattened; as text
    (``bytes`` decoded) when either side holds strings or objects."""
    a, b = np.asarray(want), np.asarray(got)
    if a.dtype.kind in "USO" or b.dtype.kind in "USO":
        return np.asarray(
            [_text(x) == _text(y) for x, y in zip(a.ravel(), b.ravel(), strict=True)], dtype=bool
        )
    return np.asarray(a.reshape(-1) == b.reshape(-1), dtype=bool)


def number_diff(want: Any, got: Any, tolerance: Tolerance) -> NumberDiff:
    """Two numeric arrays of the same shape compared element by element in float64."""
    e = np.asarray(want).astype(np.float64)
    a = np.asarray(got).astype(np.float64).reshape(e.shape)
    if e.size == 0:
        return NumberDiff(np.zeros(e.shape, dtype=bool), 0.0, 0.0, 0.0)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        finite = np.isfinite(e) & np.isfinite(a)
        special_ok = (np.isnan(e) & np.isnan(a)) | (np.isinf(e) & (e == a))
        special_bad = ~finite & ~special_ok
        diff = np.where(finite, np.abs(a - e), 0.0)
        magnitude = np.where(finite, np.abs(e), 0.0)
        over = (diff > tolerance.atol + tolerance.rtol * magnitude) | special_bad
        rel = np.where(diff == 0, 0.0, diff / magnitude)  # a difference from 0 is infinitely far
        needed = float(np.max(diff - tolerance.rtol * magnitude))
    if special_bad.any():
        return NumberDiff(over, np.inf, np.inf, np.inf)
    return NumberDiff(over, float(diff.max()), float(rel.max()), max(needed, 0.0))


def compare_frames(want: pd.DataFrame, got: pd.DataFrame, tolerance: Tolerance) -> FrameDiff:
    """Every column of ``want`` against the same column of ``got`` (its extra columns are not
    compared): the ``label`` column by equality, the others as numbers. A column ``got`` lacks
    disagrees on every row."""
    rows = len(want)
    result = FrameDiff(rows, tolerance, disagree=np.zeros(rows, dtype=bool))
    for column in want.columns:
        if column not in got:
            result.missing.append(column)
            result.disagree[:] = True
            if column == LABEL:
                result.label_agreement, result.labels_differ = 0.0, rows
            else:
                result.outputs.append(OutputDiff(column, np.inf, np.inf, rows, False))
            continue
        if column == LABEL:
            same = labels_equal(want[column].to_numpy(), got[column].to_numpy())
            result.label_agreement = float(same.mean()) if rows else 1.0
            result.labels_differ = int((~same).sum())
            result.disagree |= ~same
            continue
        diff = number_diff(want[column].to_numpy(), got[column].to_numpy(), tolerance)
        result.disagree |= diff.over
        result.outputs.append(
            OutputDiff(column, diff.max_abs, diff.max_rel, int(diff.over.sum()), diff.passed)
        )
    return result


def first_difference(
    want: pd.DataFrame,
    got: pd.DataFrame,
    tolerance: Tolerance,
) -> str:
    """Where ``got`` first differs from ``want`` beyond ``tolerance``, in ``want``'s column
    order, as ``"<column> differs on <n> of <rows> rows"``; ``""`` when every column agrees."""
    diff = compare_frames(want, got, tolerance)
    outputs = {o.column: o for o in diff.outputs}
    for column in want.columns:
        if column == LABEL:
            failed, n = not diff.labels_passed, diff.labels_differ
        else:
            failed, n = not outputs[column].passed, outputs[column].rows_over
        if failed or column in diff.missing:
            return f"{column} differs on {n} of {diff.rows} rows"
    return ""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
