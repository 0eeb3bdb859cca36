"""A Spark standalone cluster on this machine, and the score job submitted to it.

    python -m jobs.cluster up [--dir .cluster] [--workers 2] [--cores 1] [--memory 1g]
    python -m jobs.cluster status | url | down [--dir .cluster]
    python -m jobs.cluster package [--dist dist] [--env-dir build/cluster-env]
    python -m jobs.cluster submit [--dir .cluster] [--dist dist] -- --bundle B --input IN ...

The cluster itself is :mod:`jobs.localcluster`; this parses a verb and makes its one call.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from jobs._cli import Parser, guarded

__all__ = ["main"]


def _parser() -> Parser:
    p = Parser(prog="python -m jobs.cluster", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="verb", required=True)
    for verb in ("up", "down", "status", "url", "submit"):
        s = sub.add_parser(verb)
        s.add_argument("--dir", default=".cluster", help="pid files, logs, work dirs")
        if verb == "up":
            s.add_argument("--workers", type=int, default=2)
            s.add_argument("--cores", type=int, default=1, help="cores per worker")
            s.add_argument("--memory", default="1g", help="memory per worker")
            s.add_argument("--port", type=int, default=7077)
            s.add_argument("--ui-port", type=int, default=8080)
            s.add_argument("--timeout", type=float, default=90.0)
        if verb == "submit":
            s.add_argument("--dist", default="dist", help="where make package wrote")
            s.add_argument("--spark-conf", action="append", default=[], metavar="KEY=VALUE")
            s.add_argument("job_args", nargs=argparse.REMAINDER, help="-- then jobs/score.py flags")
    pk = sub.add_parser("package")
    pk.add_argument("--dist", default="dist")
    pk.add_argument("--env-dir", default="build/cluster-env", help="the slim venv")
    return p


def _run(argv: list[str]) -> int:
    from jobs.localcluster import package as _package
    from jobs.localcluster.cluster import (
        ROOT,
        down,
        running,
        spark_env,
        status_lines,
        submit_command,
        up,
    )  # fmt: skip

    args = _parser().parse_args(argv)
    if args.verb == "up":
        up(args.dir, args.workers, args.cores, args.memory, args.port, args.ui_port, args.timeout)
    elif args.verb == "down":
        down(args.dir)
    elif args.verb == "status":
        print("\n".join(status_lines(args.dir)))
    elif args.verb == "url":
        print(running(args.dir).url)
    elif args.verb == "package":
        _package.package(Path(args.dist), Path(args.env_dir))
    else:
        job_args = args.job_args[1:] if args.job_args[:1] == ["--"] else args.job_args
        cmd = submit_command(running(args.dir), job_args, args.dist, args.spark_conf)
        print(" ".join(cmd), flush=True)
        return subprocess.run(cmd, cwd=ROOT, env=spark_env()).returncode
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_run, argv)


if __name__ == "__main__":
    sys.exit(main())
