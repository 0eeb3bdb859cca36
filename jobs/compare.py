"""The format comparison report with its Spark half: ``formats compare`` plus every format on Spark.

    spark-submit --properties-file conf/spark/compare.conf jobs/compare.py \\
        --bundle B --input PARQUET --out DIR [--rows N] [--conf conf/local.toml] [--set k=v]
    python -m jobs.compare --bundle B --input PARQUET --out DIR [--rows N] ...

Checks the bundle and the input's columns before Spark starts (one line, exit 2), scores the
same Parquet on the same cores with each format (pickle and pypmml in pandas UDFs, PMML in a
Java UDF inside the executors' JVM, the ONNX scoring job), stops Spark, then runs the
in-process comparison and writes report.md/html/json: :func:`jobs.comparison.run`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jobs._cli import Parser, guarded

__all__ = ["main"]


def _parser() -> Parser:
    from jobs.comparison.engines import ENGINES

    p = Parser(prog="jobs/compare.py", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, help="the bundle directory")
    p.add_argument(
        "--input", required=True, help="Parquet file or directory with the model's columns"
    )
    p.add_argument("--out", default="out/compare", help="where report.md/html/json go")
    p.add_argument("--rows", type=int, help="score the first N rows on Spark (default: all)")
    p.add_argument("--conf", help="job settings (TOML) of the ONNX job and the session")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting (repeatable), as for jobs/score.py")  # fmt: skip
    spark = p.add_argument_group("Spark")
    spark.add_argument("--engines", default=",".join(ENGINES),
                       help=f"Spark engines to run, of {','.join(ENGINES)}")  # fmt: skip
    spark.add_argument(
        "--spark-repeats", type=int, default=3, help="timed runs per engine (median)"
    )
    spark.add_argument(
        "--spark-budget",
        type=float,
        default=12.0,
        help="no further timed run once an engine's runs took this many seconds",
    )
    spark.add_argument("--keep-outputs", action="store_true", help="keep the engines' Parquet")
    local = p.add_argument_group("in-process (as python -m formats compare)")
    local.add_argument("--target", choices=["any", "python", "jvm"], default="any")
    local.add_argument("--workload", choices=["batch", "single-row"], default="batch")
    local.add_argument("--batch-sizes", default="1,100,10000,100000")
    local.add_argument("--repeats", type=int, default=3, help="fresh processes per cold load")
    local.add_argument("--latency-rows", type=int, default=200)
    local.add_argument("--parity-rows", type=int, default=10_000)
    local.add_argument("--min-seconds", type=float, default=0.5)
    local.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    local.add_argument("--formats", help="in-process: only these formats (comma-separated)")
    local.add_argument("--old-sklearn", default="1.6.1")
    local.add_argument("--no-old-sklearn", action="store_true")
    local.add_argument("--no-node", action="store_true")
    local.add_argument("--cache", default=".cache/compare")
    local.add_argument("--json", dest="json_path", help="also write the report JSON here")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_run, argv)


def _run(argv: list[str]) -> int:
    from jobs.comparison import run

    args = _parser().parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
