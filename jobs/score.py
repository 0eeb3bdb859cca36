"""Score Parquet with a bundle's ONNX model on Spark: the project's main job.

    spark-submit --properties-file conf/spark/local.conf jobs/score.py \\
        --conf conf/local.toml --bundle B --input IN --output OUT [--set key=value ...]
    python -m jobs.score --conf conf/local.toml --bundle B --input IN --output OUT

One call, :func:`jobs.scoring.run_job`; its run summary printed. Every failure a user can cause
is one ``error: ...`` line on stderr: exit 2, or 1 for a failed parity gate.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs._cli import Parser, guarded

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="jobs/score.py", description="Score Parquet with a bundle's ONNX model.")
    p.add_argument("--conf", help="job settings (TOML); default conf/local.toml")
    p.add_argument("--bundle", help="the bundle directory (job.bundle)")
    p.add_argument("--input", help="input Parquet file or directory (job.input)")
    p.add_argument("--output", help="output Parquet directory (job.output)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set output.mode=overwrite (repeatable)",
    )  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None, started: float | None = None) -> int:
    """The job; ``started`` is when the user's clock started (the process's start when run as
    a program), else the call."""
    return guarded(lambda args: _main(args, started), argv)


def _main(argv: list[str], started: float | None) -> int:
    from rich.console import Console

    from jobs.scoring import run_job
    from jobs.scoring.output.summary import location, render
    from jobs.scoring.settings import load_settings

    args = _parser().parse_args(argv)
    flags = {"job.bundle": args.bundle, "job.input": args.input, "job.output": args.output}
    summary = run_job(load_settings(args.conf, args.set, flags), started)
    console = Console()
    console.print(render(summary))
    console.print(f"summary: {location(summary.output)}")
    return 0


if __name__ == "__main__":
    from jobs.scoring.clock import process_started

    sys.exit(main(started=process_started()))
