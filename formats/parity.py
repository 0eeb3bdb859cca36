"""``formats.parity``: every format and engine of a bundle against the original model.

The original is the pickle: the fitted object itself, scored by its own ``predict`` and
``predict_proba``. Each other scorer runs on the same rows; labels must agree on the stated share
of rows and every probability or prediction within ``atol + rtol * |original|``. Results are
data (:class:`ParityReport`, ``to_dict()``); :mod:`formats.render` draws them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats.bundle import Bundle
from formats.diff import OutputDiff, Tolerance, compare_frames
from formats.errors import InputError, ModelportError
from formats.load import ENGINES, Scorer, load

__all__ = ["EngineParity", "OutputDiff", "ParityReport", "parity", "read_data"]

FIRST_ROWS = 5


@dataclass
class EngineParity:
    fmt: str
    engine: str
    status: str  # "pass", "fail", "not saved", "error"
    reason: str = ""
    rows: int = 0
    label_agreement: float | None = None
    rows_disagree: int = 0
    first_disagreements: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[OutputDiff] = field(default_factory=list)
    precision: str | None = None
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class ParityReport:
    bundle: str
    rows: int
    tolerance: Tolerance
    results: list[EngineParity]

    @property
    def passed(self) -> bool:
        """Every format that was saved agrees; formats not saved are reported, not failed."""
        return all(r.passed or r.status == "not saved" for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data


def read_data(path: str | Path) -> pd.DataFrame:
    """A Parquet file or directory of Parquet files as one DataFrame. Hive partition
    directories (``year=2007``) are columns typed as Spark types them, an int for digits: not
    pandas' category, which pq.read_table makes of them and no model takes as a number."""
    import pyarrow.dataset as ds

    try:
        return ds.dataset(str(path), format="parquet", partitioning="hive").to_table().to_pandas()
    except FileNotFoundError:
        raise InputError(f"{str(path)!r} does not exist; pass a Parquet file or directory") from None
    except Exception as exc:  # pyarrow raises ArrowInvalid/OSError for a damaged or other file
        raise InputError(f"{str(path)!r} is not readable Parquet: {exc}") from None


def parity(
    bundle: Bundle | str | Path,
    data: pd.DataFrame | str | Path | None = None,
    *,
    formats: Sequence[str] | None = None,
    tolerance: Tolerance | None = None,
    rows: int | None = None,
) -> ParityReport:
    """Score the same rows with every format and engine of a bundle and with the original.

    The original is the pickle, scored by the fitted object's own ``predict`` and
    ``predict_proba``. A format passes where labels agree on the tolerance's share of rows and
    every probability or prediction is within ``atol + rtol * |original|``
    (:mod:`formats.diff`). An engine that fails to load or score is a result with status
    ``"error"``, not an exception.

    Parameters
    ----------
    bundle
        The bundle, or its location.
    data
        The rows to score: a DataFrame, or a Parquet file or directory. By default the
        bundle's input example (rows of the training sample); pass held-out rows for a real
        check.
    formats
        The formats to compare (all but the pickle by default).
    tolerance
        What passes; by default the bundle's own (``manifest.tolerance``).
    rows
        Compare only the first ``rows`` rows of ``data``.

    Returns
    -------
    ParityReport
        One result per format and engine (``"pass"``, ``"fail"``, ``"not saved"`` or
        ``"error"``, with the label agreement and each output's largest difference);
        ``report.passed`` is True when every saved format passed.

    Raises
    ------
    NotFoundError
        No bundle at ``bundle``.
    InputError
        ``data`` cannot be read, has no rows, or does not have the model's columns.
    IntegrityError
        The bundle's pickle (the original) is not the file the manifest describes.
    ModelLoadError
        The bundle's pickle cannot be loaded.

    Examples
    --------
    With ``path`` and ``X`` from :func:`formats.save`'s example:

    >>> report = formats.parity(path, X, formats=["onnx"])
    >>> report.passed
    True
    >>> [(r.fmt, r.engine, r.status) for r in report.results]
    [('onnx', 'onnxruntime', 'pass')]
    """
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    manifest = bundle.manifest
    tol = tolerance or manifest.tolerance
    if data is None:
        frame = pd.read_parquet(_example(bundle))
    elif isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = read_data(data)
    if rows is not None:
        frame = frame.head(rows)
    if len(frame) == 0:
        raise InputError("the parity data has no rows; pass a dataset with rows to compare")
    original = load(bundle, "pickle")
    expected = original.predict(frame)
    results = []
    for fmt, engines in ENGINES.items():
        if fmt == "pickle" or (formats is not None and fmt not in formats):
            continue
        entry = manifest.formats.get(fmt)
        for engine in engines:
            if entry is None or not entry.saved:
                reason = entry.why_not() if entry else "not saved"
                results.append(EngineParity(fmt, engine, "not saved", reason))
                continue
            results.append(_compare(bundle, fmt, engine, frame, expected, tol))
    return ParityReport(bundle.location, len(frame), tol, results)


def _example(bundle: Bundle) -> Any:
    import io

    return io.BytesIO(bundle.read("input_example.parquet"))


def _compare(
    bundle: Bundle,
    fmt: str,
    engine: str,
    data: pd.DataFrame,
    expected: pd.DataFrame,
    tol: Tolerance,
) -> EngineParity:
    precision = bundle.manifest.formats[fmt].details.get("precision")
    start = time.perf_counter()
    scorer: Scorer | None = None
    try:
        scorer = load(bundle, fmt, engine)
        got = scorer.predict(data)
    except ModelportError as exc:
        return EngineParity(fmt, engine, "error", str(exc), precision=precision)
    finally:
        close = getattr(scorer, "close", None)
        if close is not None:
            close()
    seconds = time.perf_counter() - start
    result = EngineParity(fmt, engine, "pass", rows=len(data), precision=precision)
    result.seconds = seconds
    diff = compare_frames(expected, got, tol)
    result.label_agreement = diff.label_agreement
    result.outputs = diff.outputs
    if not diff.passed:
        result.status = "fail"
    if diff.missing:  # a format without a column (a PMML SVM has labels only) fails on it
        result.reason = getattr(scorer, "note", "") or f"{fmt} gives no {diff.missing[0]}"
    bad = diff.disagree
    result.rows_disagree = int(bad.sum())
    for i in np.flatnonzero(bad)[:FIRST_ROWS]:
        row = {"row": int(i)}
        row |= {f"original.{c}": _plain(expected[c].iloc[i]) for c in expected.columns}
        row |= {f"{fmt}.{c}": _plain(got[c].iloc[i]) for c in got.columns}
        result.first_disagreements.append(row)
    return result


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
