"""``formats.compare.compare``: every measurement of the report, in order, as one
:class:`CompareReport`. Bad input (no bundle, data without the model's columns) fails at once
with one line; everything after that is reported per cell, never raised.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from formats.bundle import Bundle
from formats.compare import measure, portability, recommend, requirements, security
from formats.compare.results import CompareOptions, CompareReport, SparkResult
from formats.errors import InputError, UsageError
from formats.manifest import FORMATS
from formats.parity import read_data
from formats.schema import conform, missing_as_fitted

__all__ = ["compare"]


def _check(options: CompareOptions) -> None:
    if options.target not in recommend.TARGETS:
        raise UsageError(f"unknown target {options.target!r}; use {', '.join(recommend.TARGETS)}")
    if options.workload not in recommend.WORKLOADS:
        raise UsageError(f"unknown workload {options.workload!r}; use batch or single-row")
    if not options.batch_sizes or min(options.batch_sizes) < 1:
        raise UsageError("batch sizes must be positive integers")
    unknown = [f for f in options.formats or () if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown format(s) {unknown}; use {', '.join(FORMATS)}")
    if options.repeats < 1 or options.latency_rows < 1 or options.parity_rows < 1:
        raise UsageError("repeats, latency rows and parity rows must be at least 1")


def compare(
    bundle: Bundle | str | Path,
    data: pd.DataFrame | str | Path,
    options: CompareOptions | None = None,
    *,
    spark: list[SparkResult] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompareReport:
    """Measure every format and engine of ``bundle`` on ``data`` (a DataFrame or Parquet)."""
    options = options or CompareOptions()
    _check(options)
    say = progress or (lambda _message: None)
    start = time.perf_counter()
    opened = bundle if isinstance(bundle, Bundle) else Bundle.open(bundle)
    m = opened.manifest
    if isinstance(data, pd.DataFrame):
        frame = data
    else:  # Parquet has one null: read as the form training held, as parity reads a path
        frame = missing_as_fitted(read_data(data), m.inputs, one_null=True)
    if len(frame) == 0:
        raise InputError("the dataset has no rows; pass a Parquet dataset with rows to score")
    conform(frame.head(1), m.inputs)  # the model's columns, or one line (exit 2)
    frame = frame.reset_index(drop=True)
    cache = Path(options.cache_dir).resolve()  # the Node check runs with its own cwd

    engines = measure.measure_engines(opened, frame, options, say)
    rows = frame.head(options.parity_rows)
    expected = _original(opened, rows)
    cells = []
    if expected is not None and options.old_sklearn:
        say(f"pickle in scikit-learn {options.old_sklearn} (a venv, cached in {cache})")
        cells.append(portability.old_sklearn_cell(opened, rows, expected, options.old_sklearn, cache))
    wanted = options.formats or tuple(m.formats) or ()
    if "pmml" in wanted:
        say("PMML on both JVM engines")
        cells.append(portability.pmml_engines_cell(opened, rows))
    if "onnx" in wanted and options.node and expected is not None:
        say("ONNX in Node.js")
        cells.append(portability.node_onnx_cell(opened, rows, expected, cache))
    say("installed sizes and the security canaries")
    pairs = [(e.fmt, e.engine) for e in engines if e.status != "not saved"]
    node_dir = cache / "node" if options.node and "onnx" in wanted else None
    reqs = requirements.requirements(pairs, _named_columns(opened), node_dir)
    checks = security.checks(opened, rows.head(5), [f for f in wanted if f in m.formats])
    rec = recommend.recommend(engines, cells, checks, options.target, options.workload, spark)
    return CompareReport(
        bundle=opened.location, data=str(data) if not isinstance(data, pd.DataFrame) else "DataFrame",
        model=f"{m.name} v{m.version}: {m.model_type}", task=m.task, data_rows=len(frame),
        options=options, engines=engines, portability=cells, requirements=reqs, security=checks,
        recommendation=rec, findings=recommend.findings(engines, cells, spark), host=_host(),
        seconds=time.perf_counter() - start,
        created=datetime.now(UTC).isoformat(timespec="seconds"), spark=spark,
    )  # fmt: skip


def _original(bundle: Bundle, rows: pd.DataFrame) -> pd.DataFrame | None:
    from formats.load import load

    entry = bundle.manifest.formats.get("pickle")
    return load(bundle, "pickle").predict(rows) if entry and entry.saved else None


def _named_columns(bundle: Bundle) -> bool:
    """Whether the pickled model was fitted on named columns (then it is fed a DataFrame)."""
    entry = bundle.manifest.formats.get("pickle")
    if not entry or not entry.saved:
        return True
    from formats.sklearn_formats import load_pickle

    return hasattr(load_pickle(bundle.read(bundle.file_of("pickle"))), "feature_names_in_")


def _host() -> dict[str, object]:
    return {
        "python": platform.python_version(), "machine": platform.machine(),
        "cpus": os.cpu_count(), "platform": platform.platform(terse=True),
    }  # fmt: skip
