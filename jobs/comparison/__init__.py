"""The format comparison with its Spark half (``jobs/compare.py``): every format scored on
Spark (:mod:`.engines`, timed and compared with the original by :mod:`.spark`), then the
in-process comparison (:func:`formats.compare.compare`) with those results, written as
report.md/html/json.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.errors import InputError, UsageError

if TYPE_CHECKING:
    from formats.compare.results import CompareOptions, SparkResult

__all__ = ["check_columns", "run"]


def run(args: argparse.Namespace) -> int:
    """The comparison ``jobs/compare.py`` parsed: the bundle and the input's columns checked
    before Spark starts, the Spark half, then the in-process half and the reports."""
    from formats.bundle import Bundle
    from jobs.comparison.engines import ENGINES
    from jobs.scoring.settings import load_settings

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = [e for e in engines if e not in ENGINES]
    if unknown or not engines:
        raise UsageError(f"unknown Spark engine(s) {unknown}; use some of {', '.join(ENGINES)}")
    options = _options(args)

    settings = load_settings(args.conf, ["spark.app_name=modelport-compare", *args.set])
    bundle = Bundle.open(args.bundle)  # before Spark starts: a bad bundle fails fast
    check_columns(args.input, bundle)
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"compare [{time.perf_counter() - started:4.0f} s] {message}", file=sys.stderr)

    out = Path(args.out)
    work = out / "spark"
    try:
        spark = _spark_half(args, settings, bundle, engines, work, say)
    finally:
        if not args.keep_outputs:
            shutil.rmtree(work, ignore_errors=True)
    _report(args, options, spark, out, say)
    return 0


def _ints(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v.replace("_", "")) for v in value.split(",") if v.strip())
    except ValueError:
        raise UsageError(
            f"--batch-sizes {value!r} is not a list of integers like 1,100,10000"
        ) from None
    if not sizes or min(sizes) < 1:
        raise UsageError("--batch-sizes must be positive integers")
    return sizes


def _options(args: argparse.Namespace) -> CompareOptions:
    from formats.compare import CompareOptions

    for name in ("spark_repeats", "repeats", "latency_rows", "parity_rows"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.rows is not None and args.rows < 1:
        raise UsageError("--rows must be at least 1")
    return CompareOptions(
        batch_sizes=_ints(args.batch_sizes), repeats=args.repeats, latency_rows=args.latency_rows,
        parity_rows=args.parity_rows, min_seconds=args.min_seconds, threads=args.threads,
        target=args.target, workload=args.workload, node=not args.no_node, cache_dir=args.cache,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()) if args.formats else None,
        old_sklearn=None if args.no_old_sklearn else args.old_sklearn,
    )  # fmt: skip


def check_columns(location: str, bundle: Any) -> None:
    """The input has the model's columns with usable types, read off its first rows."""
    from formats.schema import conform
    from jobs.scoring.checks import arrow_dataset, check_input

    check_input(location)
    try:
        head = arrow_dataset(location).head(5).to_pandas()
    except Exception as exc:  # pyarrow's ArrowInvalid and friends: not a readable dataset
        raise InputError(
            f"cannot read {location!r} as Parquet: {' '.join(str(exc).split())[:200]}"
        ) from None
    conform(head, bundle.manifest.inputs)  # a missing column, a string for a number: one line


def _spark_half(args: argparse.Namespace, settings: Any, bundle: Any, engines: list[str],
                work: Path, say: Callable[[str], None]) -> list[SparkResult]:  # fmt: skip
    from jobs.comparison.engines import Target
    from jobs.comparison.spark import measure, prepare
    from jobs.scoring.preflight import preflight
    from jobs.scoring.session import build_session

    m = bundle.manifest
    target = Target(bundle.location, m.task, tuple(m.classes) if m.classes is not None else None,
                    tuple(m.inputs), m.has_proba, settings.output.id_column)  # fmt: skip
    preflight(settings)  # Java and the master, before a JVM starts
    say("spark: starting the session")
    built = build_session(settings)
    try:
        prepared = prepare(built.spark, args.input, target.id_column, work, args.rows)
        say(f"spark: {prepared.rows:,} rows on {prepared.master or 'spark'}, "
            f"{prepared.cores} cores")  # fmt: skip
        return measure(built.spark, target, prepared, settings, work, engines=engines,
                       repeats=args.spark_repeats, budget_s=args.spark_budget, say=say)  # fmt: skip
    finally:
        if built.created:  # the in-process half measures memory and speed: no JVM beside it
            built.spark.stop()


def _report(args: argparse.Namespace, options: CompareOptions, spark: list[SparkResult],
            out: Path, say: Callable[[str], None]) -> None:  # fmt: skip
    from formats.cli.compare import _summary
    from formats.compare import compare, write_reports
    from formats.compare.report import to_json
    from formats.render import console

    report = compare(args.bundle, args.input, options, spark=spark, progress=say)
    written = write_reports(report, out)
    if args.json_path:
        Path(args.json_path).write_text(to_json(report))
    screen = console()
    screen.print(_summary(report))
    screen.print(_spark_table(spark))
    for reason in report.recommendation.reasons:
        screen.print(f"  - {reason}", markup=False)
    screen.print(f"wrote {', '.join(str(p) for p in written.values())}", markup=False)


def _spark_table(results: list[SparkResult]) -> Any:
    from rich.table import Table

    from formats.cli._render import escape

    table = Table(title="On Spark", title_justify="left", show_edge=False)
    for column in ("format/engine", "rows/s per core", "median s", "agreement", "max |diff|"):
        table.add_column(column)
    for r in results:
        if r.rows_per_s_per_core is None:
            table.add_row(
                f"{r.fmt}/{r.engine}", f"[yellow]{escape(r.error or '')}[/yellow]", "", "", ""
            )
            continue
        agreement = "—" if r.agreement is None else f"{r.agreement:.2%}"
        worst = "—" if r.max_abs is None else f"{r.max_abs:.2g}"
        table.add_row(f"{r.fmt}/{r.engine}", f"{r.rows_per_s_per_core:,.0f}", f"{r.seconds or 0:.2f}",
                      agreement, worst)  # fmt: skip
    return table
