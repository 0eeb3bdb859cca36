"""``make bench``: the scoring job against the peers a user would otherwise pick, in one run.

    python -m jobs.bench [--rows 1000000] [--cores 1,2] [--models rf,logreg] [--repeats 3]

Every peer reads the same Parquet (the penguins scaled by jobs.datagen) and writes a Parquet of
scores, every output row counted. For each core count the measurements run in a fresh child
process pinned with ``taskset`` to that many cores (Spark ``local[N]``; the JVM and the Python
workers inherit the pinning), so per-core figures are per core. Each figure is the median of
``--repeats`` timed runs after one untimed warm-up of the workers. Results go to
``out/bench/results.json`` and ``out/bench/results.md``; nothing here asserts a time.

On one core the rounds also time ``ort``, a peer without Spark: ONNX Runtime's ``run`` alone
on every 10k-row batch of the same data, in the driver's process, one thread, feeds prepared
beforehand, the model as the job runs it (string columns as int32 codes,
formats.onnx.string_codes, and a forest's label as its class index, formats.onnx.label_index).
After the rounds the child measures, in one process on one core: ``ort`` once more on 30
batches (``in_process``; the bound uses it only where the rounds had no ``ort``),
``ort_strings`` (model.onnx as saved, fed strings, as the hand-written peers run it),
``sklearn`` (the pickle's own predict_proba on the same batches as pandas frames), ``ceiling``
(pyarrow batches → ORT → Parquet writer, no Spark) and a profile of one batch (conversion, ORT,
output, write). ``bound = 1 / (1/floor_arrow + 1/ort)`` is what a job that adds nothing to Spark's
transfer and ORT's compute would reach; ``bound_output`` uses ``floor_output`` (the no-op that
also returns and writes the job's output columns) instead, i.e. it counts writing the scores.
``floor_ort`` is floor_output with ORT run in the worker on a batch converted once: what the job
would cost if its conversions, validation and observations were free, and (against
floor_output) what ORT costs inside a Spark worker rather than alone in a process.

Per-core figures are rows per CPU-second of the whole process tree (the JVM and the Python
workers, from /proc; the report also splits it by process: driver, JVM, Python workers),
beside wall-clock rows/s: ONNX Runtime's default thread pool pins a thread outside the taskset
mask, so wall time alone would let such a peer use a core it was not given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from formats.errors import UsageError

__all__ = ["run"]


def _child_command(cores: int, args: argparse.Namespace, cpus: str, *flags: str) -> list[str]:
    return [
        "taskset", "-c", cpus, sys.executable, "-m", "jobs.bench", "--child",
        "--cores", str(cores), "--rows", str(args.rows), "--repeats", str(args.repeats),
        "--models", ",".join(args.models), "--peers", ",".join(args.peers),
        "--workdir", args.workdir, "--memory", args.memory, "--gc", args.gc,
        "--marginal-rows", str(args.marginal_rows),
        *(["--tree-forms"] if args.tree_forms else []), *flags,
    ]  # fmt: skip


def _result(returncode: int | None, out: str, what: str) -> Any:
    """A child's JSON (its stdout's last line); a failed child stops the benchmark."""
    if returncode != 0:
        raise SystemExit(f"error: the benchmark child for {what} failed")
    return json.loads(out.strip().splitlines()[-1])


def _run_child(cores: int, args: argparse.Namespace, scaling_only: bool = False) -> dict[str, Any]:
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:cores])
    command = _child_command(cores, args, cpus, *(["--scaling-only"] if scaling_only else []))
    print("$ " + " ".join(command), file=sys.stderr)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    result: dict[str, Any] = _result(proc.returncode, proc.stdout, f"{cores} core(s)")
    return result


def _run_apart(cores: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """``cores`` one-core sessions at once, each pinned to a core of its own, with the scaling
    peers alone: what this machine gives ``cores`` independent copies of the job at that
    moment, the most its ``local[cores]`` session could reach (a shared VM's cores are not
    always its own: a neighbour's load, a host's memory bandwidth)."""
    cpus = sorted(os.sched_getaffinity(0))[:cores]
    commands = [_child_command(1, args, str(cpu), "--scaling-only", "--apart", str(i))
                for i, cpu in enumerate(cpus)]  # fmt: skip
    for command in commands:
        print("$ " + " ".join(command) + " &", file=sys.stderr)
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, text=True) for c in commands]
    outs = [proc.communicate()[0] for proc in procs]
    return [_result(p.returncode, o, f"core {c} apart")
            for p, o, c in zip(procs, outs, cpus, strict=True)]  # fmt: skip


def run(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """The benchmark ``python -m jobs.bench`` parsed (``argv``: its arguments, for the report)."""
    from jobs.benchmark.peers import PEERS

    if args.end_to_end:
        return _end_to_end(args, argv)
    args.models = [m for m in args.models.split(",") if m]
    args.peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        raise UsageError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    if 0 < args.marginal_rows <= args.rows:
        raise UsageError(f"--marginal-rows {args.marginal_rows} must be more than --rows "
              f"{args.rows} (the second size of the same peers)")  # fmt: skip
    if args.scaling_pairs < 0 or (
        args.scaling_pairs and not args.cluster and len(args.cores.split(",")) < 2
    ):
        raise UsageError(f"--scaling-pairs {args.scaling_pairs} needs two core counts (--cores "
              "1,2) or --cluster, and a count of 0 or more")  # fmt: skip
    from jobs.benchmark.child import child, memory_check, on_cluster

    if args.child and args.cluster:
        return on_cluster(args)
    if args.child or args.memory_check:
        args.cores = int(args.cores.split(",")[-1])
        return memory_check(args) if args.memory_check else child(args)
    if shutil.which("taskset") is None:
        raise UsageError("taskset not found (util-linux); it pins the benchmark's cores")
    if args.cluster:  # two workers, pinned to the cores there are (on one core: both there)
        return _cluster_report(args, argv)
    cores = [int(c) for c in args.cores.split(",")]
    if max(cores) > len(os.sched_getaffinity(0)):
        raise UsageError(f"this machine has {len(os.sched_getaffinity(0))} core(s)")
    runs = [_run_child(n, args) for n in cores]
    pairs = [[runs[0], runs[-1]]] if len(cores) > 1 else []
    # with --scaling-pairs, each pair also runs its most cores as one-core sessions at once
    apart = [_run_apart(cores[-1], args)] if args.scaling_pairs else []
    for _ in range(args.scaling_pairs if len(cores) > 1 else 0):
        pairs.append([_run_child(n, args, scaling_only=True) for n in (cores[0], cores[-1])])
        apart.append(_run_apart(cores[-1], args))
    from jobs.benchmark.render import render_markdown

    extra = {"scaling_pairs": pairs, "scaling_apart": apart} if args.scaling_pairs else {}
    return _report(args, argv, "results", "runs", runs, render_markdown, extra)


def _report(
    args: argparse.Namespace, argv: Sequence[str] | None, name: str, key: str, result: Any,
    render: Any, extra: dict[str, Any] | None = None,
) -> int:
    """``<out>/<name>.json`` and ``.md`` (written whole or not at all), the Markdown printed."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m jobs.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    report = {"command": command, "machine": _machine(), key: result, **(extra or {})}
    _atomic(out / f"{name}.json", json.dumps(report, indent=2) + "\n")
    text: str = render(report)
    _atomic(out / f"{name}.md", text)
    print(text)
    return 0


def _end_to_end(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--end-to-end``: whole cold processes (:mod:`jobs.benchmark.endtoend`), then the report."""
    from jobs.benchmark.endtoend import PEERS, end_to_end, render

    try:
        sizes = [int(s.replace("_", "")) for s in args.sizes.split(",") if s.strip()]
        modes = [(int(m.rstrip("p")), m.endswith("p")) for m in args.masters.split(",") if m]
    except ValueError:
        raise UsageError("--sizes takes rows like 10000,1000000; --masters cores like 2,1p") from None
    code = {}
    for item in args.code:
        name, _, where = item.partition("=")
        if not name or not Path(where, "jobs", "score.py").is_file():
            raise UsageError(f"--code {item!r}: give NAME=DIR, DIR a checkout with jobs/score.py")
        code[name] = Path(where).resolve()
    peers = [p for p in args.e2e_peers.split(",") if p]
    unknown = [p for p in peers if p not in PEERS and p.partition("@")[2] not in code]
    if not peers or unknown:
        raise UsageError(f"--e2e-peers takes some of {', '.join(PEERS)} and job@NAME for each "
                         f"--code NAME=DIR; not {unknown}")  # fmt: skip
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    results = end_to_end(sizes, modes, args.repeats, work, peers,
                         say=lambda m: print(m, file=sys.stderr), code=code)  # fmt: skip
    return _report(args, argv, "end-to-end", "end_to_end", results,
                   lambda report: render(report["end_to_end"], report["command"]))


def _cluster_report(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--cluster`` in a child process (its Spark session ends with it), then the report."""
    command = [sys.executable, "-m", "jobs.bench", "--child", "--cluster", "--rows",
               str(args.rows), "--repeats", str(args.repeats), "--models", ",".join(args.models),
               "--workdir", args.workdir, "--memory", args.memory, "--gc", args.gc,
               "--scaling-pairs", str(args.scaling_pairs)]  # fmt: skip
    print("$ " + " ".join(command), file=sys.stderr)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    result = _result(proc.returncode, proc.stdout, "the cluster")
    from jobs.benchmark.render import render_cluster

    return _report(args, argv, "cluster", "cluster", result, render_cluster)


def _machine() -> dict[str, Any]:
    import platform

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d")}  # fmt: skip


def _atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
