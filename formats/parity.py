"""``formats.parity``: every format and engine of a bundle against the original model.

The original is the fitted object unpickled from the bundle and called directly, by its own
``predict`` and ``predict_proba``, on the rows as given: only the model's columns, in order,
with pandas' categories where it was fitted on them. Not the pickle's scorer, which feeds a
missing value in the form training held (:mod:`formats.missing`) as every format does, and so
would hide a conversion the formats make. Every scorer, the pickle's included, runs on the same
rows; labels must agree on the stated share of rows and every probability or prediction within
``atol + rtol * |original|``. Results are data (:class:`ParityReport`, ``to_dict()``);
:mod:`formats.render` draws them.
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
from formats.schema import ColumnSpec

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

    The original is the fitted object unpickled from the bundle, called by its own ``predict``
    and ``predict_proba`` on the rows as given (the model's columns, in order). A format passes where labels agree on the tolerance's share of rows and
    every probability or prediction is within ``atol + rtol * |original|``
    (:mod:`formats.diff`). An engine that fails to load or score is a result with status
    ``"error"``, not an exception.

    Parameters
    ----------
    bundle
        The bundle, or its location.
    data
        The rows to score: a DataFrame, taken as given, or a Parquet file or directory, whose
        null strings are read in the form the pipeline was fitted on (``ColumnSpec.missing``).
        By default the bundle's input example (rows of the training sample); pass held-out
        rows for a real check.
    formats
        The formats to compare (all by default; the pickle's scorer too, which feeds missing
        values in the form training held).
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
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.read_parquet(_example(bundle)) if data is None else read_data(data)
        # Parquet has one null: read as the form training held, as every format feeds it
        frame = _nulls_as_fitted(frame, manifest.inputs)
    if rows is not None:
        frame = frame.head(rows)
    if len(frame) == 0:
        raise InputError("the parity data has no rows; pass a dataset with rows to compare")
    note = _forms_note(frame, manifest.inputs)
    expected = _original(bundle, frame, note)
    results = []
    for fmt, engines in ENGINES.items():
        if formats is not None and fmt not in formats:
            continue
        entry = manifest.formats.get(fmt)
        for engine in engines:
            if entry is None or not entry.saved:
                reason = entry.why_not() if entry else "not saved"
                results.append(EngineParity(fmt, engine, "not saved", reason))
                continue
            result = _compare(bundle, fmt, engine, frame, expected, tol)
            if result.status == "fail" and not result.reason:
                result.reason = "; ".join(r for r in (_why(bundle, fmt, engine), note) if r)
            results.append(result)
    return ParityReport(bundle.location, len(frame), tol, results)


def _original(bundle: Bundle, frame: pd.DataFrame, note: str) -> pd.DataFrame:
    """The unpickled fitted object's own scores of the rows as given."""
    from formats._text import one_line
    from formats.sklearn_formats import load_pickle, model_scores, rows_as_given

    m = bundle.manifest
    model = load_pickle(bundle.read(bundle.file_of("pickle")))
    x = rows_as_given(frame, m.inputs)
    try:
        return model_scores(model, x, m.task, m.classes, m.has_proba, frame.index)
    except (ValueError, TypeError) as exc:  # the model refuses these rows (NaN, an unseen value)
        why = f" ({note})" if note else ""
        raise InputError(
            f"the original model cannot score these rows as given: {one_line(exc)}{why}"
        ) from None


def _nulls_as_fitted(frame: pd.DataFrame, inputs: list[ColumnSpec]) -> pd.DataFrame:
    """Parquet's null strings (None once read) in the form the pipeline was fitted on."""
    from formats.schema import missing_as_fitted

    return missing_as_fitted(frame, inputs, one_null=True)


def _forms_note(frame: pd.DataFrame, inputs: list[ColumnSpec]) -> str:
    """Where the rows hold a missing category in the form training did not: every format feeds
    it in training's form while the original takes it as given, so they may differ there."""
    from formats.missing import held_forms

    found = [
        f"{s.name!r} (held as {' and '.join(sorted(held))}, fitted on {s.missing})"
        for s in inputs
        if s.kind == "string" and s.missing != "both" and s.name in frame
        and (held := held_forms(frame[s.name])) - {s.missing}
    ]  # fmt: skip
    if not found:
        return ""
    return (f"missing categories in a form the pipeline was not fitted on: {', '.join(found)}; "
            "every format feeds the fitted form, the original takes the rows as given")  # fmt: skip


def _why(bundle: Bundle, fmt: str, engine: str) -> str:
    """Why a format that ran disagrees, where that is known (PMML4S: formats.pmml_engines)."""
    if fmt != "pmml" or engine != "pypmml":
        return ""
    from formats.pmml_engines import pypmml_cause

    return pypmml_cause(bundle)


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
