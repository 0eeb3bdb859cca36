"""Which input columns take a null: the manifest's ``ColumnSpec.nullable``, which the Spark
job's invalid-row rules read (a null where the model cannot take one is an invalid row).

A column that held nulls in training takes them. One that held none may still: an imputer in
the pipeline fills it, a gradient-boosting model routes a NaN, scikit-learn's trees send it down
a branch. Only the fitted model knows, so :func:`with_null_tolerance` asks it at save time: the
training sample's first rows with the column set to null, scored by the original and by the
saved ONNX model, which the job runs. The column takes nulls where the original scores them
(no error, no NaN out) and the ONNX model gives the same scores within the bundle's
tolerance. Otherwise a null there stays an invalid row: the original's own error ("Input X
contains NaN") or a model.onnx that scores it otherwise would make it one anyway.

Integer columns are not asked: the ONNX input is an integer, which has no null (the job's rule
for those does not read ``nullable``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from formats.diff import Tolerance, compare_frames
from formats.schema import ColumnSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["PROBE_CELLS", "PROBE_ROWS", "with_null_tolerance"]

PROBE_ROWS = 200  # a null down every branch a tree ensemble's sample rows reach
PROBE_CELLS = 20_000  # rows x asked columns, at most: fewer rows per column for a wide model


def with_null_tolerance(
    model: Any,
    sample: pd.DataFrame,
    specs: Sequence[ColumnSpec],
    task: str,
    classes: list[Any] | None,
    has_proba: bool,
    onnx: bytes | None,
    tolerance: Tolerance,
) -> list[ColumnSpec]:
    """``specs`` with ``nullable`` set where training had no null but both the original
    ``model`` and the ``onnx`` model (when saved) score one the same."""
    from formats.sklearn_formats import SklearnScorer

    asked = [s for s in specs if not s.nullable and (s.kind == "string" or s.dtype != "int64")]
    if not asked:
        return list(specs)
    inputs = list(specs)
    original = SklearnScorer(model, "original", task, classes, inputs, has_proba)
    onnx_scorer = _onnx_scorer(onnx, task, classes, inputs)
    rows = sample.head(max(20, min(PROBE_ROWS, PROBE_CELLS // len(asked)))).reset_index(drop=True)
    blocks = [_nulled(rows, s) for s in asked]
    # One call per model for every column's block (a wide model: hundreds of columns), each
    # column alone where a call fails, since one column's refusal fails the whole batch
    want = _scores(original, blocks)
    got = _scores(onnx_scorer, blocks) if onnx_scorer is not None else want
    takes = {
        s.name for s, w, g in zip(asked, want, got, strict=True)
        if w is not None and g is not None and _finite(w) and _same(w, g, tolerance)
    }  # fmt: skip
    return [dataclasses.replace(s, nullable=True) if s.name in takes else s for s in specs]


def _nulled(rows: pd.DataFrame, spec: ColumnSpec) -> pd.DataFrame:
    nulled = rows.copy()
    nulled[spec.name] = None if spec.kind == "string" else np.nan
    return nulled


def _scores(scorer: Any, blocks: list[pd.DataFrame]) -> list[pd.DataFrame | None]:
    """Each block's scores, None where the scorer refuses it (that is the answer: a null
    there is what the model cannot take)."""
    import pandas as pd

    try:
        scored = scorer.predict(pd.concat(blocks, ignore_index=True))
    except Exception:  # noqa: BLE001 - some column's null is refused: ask each alone
        return [_one(scorer, block) for block in blocks]
    size = len(blocks[0])
    return [scored.iloc[i * size:(i + 1) * size].reset_index(drop=True)
            for i in range(len(blocks))]  # fmt: skip


def _one(scorer: Any, block: pd.DataFrame) -> pd.DataFrame | None:
    try:
        scored: pd.DataFrame = scorer.predict(block)
    except Exception:  # noqa: BLE001 - see _scores
        return None
    return scored


def _onnx_scorer(onnx: bytes | None, task: str, classes: Any, inputs: list[ColumnSpec]) -> Any:
    if onnx is None:
        return None
    from formats.onnx.scorer import OnnxScorer

    return OnnxScorer(onnx, task, classes, inputs, intra_op_threads=1)


def _finite(frame: pd.DataFrame) -> bool:
    numeric = frame.select_dtypes("number")
    return bool(np.isfinite(numeric.to_numpy(dtype=np.float64)).all())


def _same(want: pd.DataFrame, got: pd.DataFrame, tol: Tolerance) -> bool:
    """The same columns, agreeing by parity's rule (:func:`formats.diff.compare_frames`)."""
    return list(want.columns) == list(got.columns) and compare_frames(want, got, tol).passed
