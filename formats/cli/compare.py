"""``python -m formats compare BUNDLE --data PARQUET``: which format to ship, measured.

Parses options, calls :func:`formats.compare.compare`, writes report.md/html/json and prints a
summary table. Progress goes to stderr, so ``--json -`` leaves stdout to the JSON alone.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.table import Table

    from formats.compare.results import CompareReport

__all__ = ["COMMANDS"]


def _ints(value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(v.replace("_", "")) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a list of integers like 1,100,10000",
                                 param_hint="--batch-sizes") from None  # fmt: skip
    if not sizes or min(sizes) < 1:
        raise click.BadParameter("batch sizes must be positive", param_hint="--batch-sizes")
    return sizes


def _summary(report: CompareReport) -> Table:
    from rich.table import Table

    from formats.cli._render import escape as _esc

    biggest = max(report.options.batch_sizes)
    table = Table(title=_esc(report.recommendation.headline), title_justify="left", show_edge=False)
    for column in ("format/engine", "gzip", "cold load s", f"rows/s @{biggest:,}", "p50 ms",
                   "peak RSS MB", "parity"):  # fmt: skip
        table.add_column(column)
    for e in report.engines:
        if e.status != "measured":
            table.add_row(e.key, f"[yellow]{_esc(e.reason)}[/yellow]", "", "", "", "", "")
            continue
        rss = (e.rss_python_mb or 0) + (e.rss_jvm_mb or 0)
        table.add_row(
            e.key, f"{e.gzip_bytes or 0:,}", f"{e.load_seconds or 0:.2f}",
            f"{e.rows_per_s(biggest) or 0:,.0f}", f"{e.latency_p50_ms or 0:.3g}", f"{rss:.0f}",
            _esc(e.parity),
        )  # fmt: skip
    return table


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="Parquet file or directory of rows with the model's columns.")
@click.option("--out", "out_dir", default="out/compare", show_default=True,
              type=click.Path(path_type=Path, file_okay=False),
              help="Where report.md, report.html and report.json go.")
@click.option("--target", type=click.Choice(["any", "python", "jvm"]), default="any",
              show_default=True, help="Where the model will be scored.")
@click.option("--workload", type=click.Choice(["batch", "single-row"]), default="batch",
              show_default=True, help="What the recommendation optimises.")
@click.option("--batch-sizes", default="1,100,10000,100000", show_default=True,
              help="Batch sizes of the warm throughput.")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True,
              help="Fresh processes per engine for the cold load (median).")
@click.option("--latency-rows", type=click.IntRange(1), default=200, show_default=True,
              help="Single-row calls for p50/p99 latency.")
@click.option("--parity-rows", type=click.IntRange(1), default=10_000, show_default=True,
              help="Rows of the parity and portability checks.")
@click.option("--min-seconds", type=click.FloatRange(0), default=0.5, show_default=True,
              help="Timed calls per batch size last at least this long.")
@click.option("--threads", type=click.IntRange(0), default=1, show_default=True,
              help="ONNX Runtime intra-op threads (0: one per core).")
@click.option("--formats", "fmts", help="Only these formats (comma-separated).")
@click.option("--old-sklearn", default="1.6.1", show_default=True,
              help="scikit-learn version of the venv the pickle is loaded in.")
@click.option("--no-old-sklearn", is_flag=True, help="Skip the older-scikit-learn check.")
@click.option("--no-node", is_flag=True, help="Skip the Node.js (onnxruntime-node) check.")
@click.option("--cache", "cache_dir", default=".cache/compare", show_default=True,
              help="Where the older-scikit-learn venv and onnxruntime-node are kept.")
@click.option("--json", "json_path", help="Also write the report JSON here ('-': stdout).")
def compare(
    bundle: Path, data: Path, out_dir: Path, target: str, workload: str, batch_sizes: str,
    repeats: int, latency_rows: int, parity_rows: int, min_seconds: float, threads: int,
    fmts: str | None, old_sklearn: str, no_old_sklearn: bool, no_node: bool, cache_dir: str,
    json_path: str | None,
) -> None:  # fmt: skip
    """Measure every format and engine of BUNDLE on the rows of --data and recommend one.

    Writes report.md, report.html (with plots) and report.json to --out. The bundle's pickle is
    the original every format is compared with, so it is loaded: trusted bundles only.
    """
    from formats.compare import CompareOptions, write_reports
    from formats.compare import compare as run_compare
    from formats.compare.report import to_json
    from formats.render import console

    options = CompareOptions(
        batch_sizes=_ints(batch_sizes), repeats=repeats, latency_rows=latency_rows,
        parity_rows=parity_rows, min_seconds=min_seconds, threads=threads, target=target,
        workload=workload, node=not no_node, cache_dir=cache_dir,
        formats=tuple(f.strip() for f in fmts.split(",") if f.strip()) if fmts else None,
        old_sklearn=None if no_old_sklearn else old_sklearn,
    )  # fmt: skip

    started = time.perf_counter()

    def progress(message: str) -> None:
        click.echo(f"compare [{time.perf_counter() - started:4.0f} s] {message}", err=True)

    report = run_compare(bundle, data, options, progress=progress)
    written = write_reports(report, out_dir)
    if json_path == "-":
        click.echo(to_json(report), nl=False)
        return
    if json_path:
        Path(json_path).write_text(to_json(report))
    out = console()
    out.print(_summary(report))
    for reason in report.recommendation.reasons:
        out.print(f"  - {reason}", markup=False)
    out.print(f"wrote {', '.join(str(p) for p in written.values())} in {report.seconds:.0f} s",
              markup=False)  # fmt: skip


COMMANDS = [compare]
