"""``make bench``: the scoring job against the peers a user would otherwise pick, in one run.

    python -m jobs.bench [--rows 1000000] [--cores 1,2] [--models rf,logreg] [--repeats 3]

What it measures and how is :mod:`jobs.benchmark.run`'s; this parses and makes its one call.
Results go to ``out/bench/results.json`` and ``out/bench/results.md``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jobs._cli import Parser, guarded

__all__ = ["main"]


def _parser() -> Parser:
    from jobs.benchmark.peers import PEERS

    parser = Parser(prog="python -m jobs.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cores", default="1,2", help="core counts, each a pinned local[N] run")
    parser.add_argument("--models", default="rf,logreg")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", default="2g", help="spark.driver.memory (local mode)")
    parser.add_argument("--workdir", default="out/bench/work")
    parser.add_argument("--out", default="out/bench")
    parser.add_argument(
        "--marginal-rows", type=int, default=0,
        help="also run the key peers on this many rows (more than --rows): on 1 core their "
        "cost per row and per run apart, on more the job's scaling on this larger input",
    )  # fmt: skip
    parser.add_argument(
        "--tree-forms", action="store_true",
        help="on 1 core, also time ORT's tree ensembles against their matmul form as trees grow",
    )  # fmt: skip
    parser.add_argument(
        "--scaling-pairs", type=int, default=0,
        help="N more sessions of each core count, alternating, with the scaling peers alone: "
        "the scaling is then the median over the pairs of sessions (a ratio of two sessions "
        "carries the noise of both)",
    )  # fmt: skip
    parser.add_argument(
        "--gc", default="conf", choices=("conf", "G1", "Parallel", "Serial"),
        help="the JVMs' collector: as conf/spark/*.conf leave it (conf: the JVM's own pick, "
        "SerialGC on one core and G1 on more), or this one, for an A/B",
    )  # fmt: skip
    parser.add_argument(
        "--end-to-end", action="store_true",
        help="whole cold spark-submit runs of the job and the hand-written peers, interleaved",
    )  # fmt: skip
    parser.add_argument("--sizes", default="10000,1000000,4000000",
                        help="--end-to-end: rows of each input")  # fmt: skip
    parser.add_argument("--e2e-peers", default="job,tuned,guide,pickle",
                        help="--end-to-end: of job, tuned, guide, pickle")  # fmt: skip
    parser.add_argument("--code", action="append", default=[], metavar="NAME=DIR",
                        help="--end-to-end: the peer job@NAME runs the job of checkout DIR")  # fmt: skip
    parser.add_argument("--masters", default="2,1p",
                        help="--end-to-end: local[N] per run, 'p' pinned with taskset")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scaling-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--apart", type=int, default=-1, help=argparse.SUPPRESS)
    parser.add_argument(
        "--cluster", action="store_true",
        help="the job's scaling on a standalone cluster: 1, then 2 one-core workers",
    )  # fmt: skip
    parser.add_argument(
        "--memory-check", action="store_true",
        help="score --rows rows (use 10000000) with 1g of driver/executor memory on local[2]",
    )  # fmt: skip
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(lambda args: _main(args, argv), argv)


def _main(args: list[str], argv: Sequence[str] | None) -> int:
    from jobs.benchmark.run import run

    return run(_parser().parse_args(args), argv)


if __name__ == "__main__":
    sys.exit(main())
