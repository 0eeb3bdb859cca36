"""The benchmark's measurements, run in a child process pinned to its cores (``python -m
jobs.bench --child``): the rounds of peers on ``local[N]``, the standalone cluster's runs and
the memory check; each prints its JSON on stdout's last line for :mod:`jobs.benchmark.run`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["child", "memory_check", "on_cluster"]


# Peers that take minutes per million rows run once, untimed warm-up skipped, on the first
# rows of the same data (their start-up is noise at that speed).
SLOW = {"row_at_a_time": 20_000, "pypmml_pandas": 200_000}


# With more than one core only these run: the job's scaling and the peers it is measured by.
SCALING = ("job", "floor_arrow", "floor_output", "handwritten_onnx")


# --scaling-pairs' further sessions run these alone: the scaling target's peer and its floor.
PAIRED = ("job", "floor_arrow")


# With --marginal-rows, these also run on that many rows (1 core, the same rounds): the two
# sizes split a peer's CPU into a cost per row and a cost per run (planning, the write's
# commit, the session), which 1M rows alone blend. On more cores, PAIRED do (the scaling's).
MARGINAL = ("job", "floor_arrow", "floor_output", "floor_ort", "handwritten_onnx", "pickle_pandas")


def memory_check(args: argparse.Namespace) -> int:
    """``--memory-check``: the job alone on ``--rows`` rows (10M by default) with driver and
    executor memory at 1g, local[2]; rows checked, peak Python worker RSS measured."""
    from jobs.benchmark.measure import WorkerMemory, spark_session
    from jobs.benchmark.peers import PEERS, Context
    from jobs.datagen import generate

    work = Path(args.workdir)
    data, bundle_dir = work / f"data-{args.rows}", work / "bundle-rf"
    if not data.exists():
        generate(args.rows, data)
    _save_bundle(bundle_dir, "rf")
    spark = spark_session(args.cores, "1g")
    ctx = Context(spark, str(data), str(bundle_dir), str(work / "out-big"), [], [], b"", b"", "")
    start = time.perf_counter()
    with WorkerMemory() as memory:
        PEERS["job"](ctx)
    seconds = time.perf_counter() - start
    written = spark.read.parquet(ctx.out).count()
    spark.stop()
    print(json.dumps({"rows": args.rows, "written": written, "seconds": round(seconds, 1),
                      "driver_memory": "1g", "cores": args.cores,
                      "peak_python_worker_rss_mb": round(memory.peak_kb / 1024, 1)}))  # fmt: skip
    return 0 if written == args.rows else 1


def on_cluster(args: argparse.Namespace) -> int:
    """``--cluster``: the job and the floor on a standalone cluster on 127.0.0.1 with one, then
    two, one-core workers, each worker pinned to a core of its own (its executors and Python
    workers inherit the pinning); wall-clock rows/s, JSON on stdout's last line."""
    from jobs.benchmark.measure import spark_session
    from jobs.benchmark.peers import PEERS
    from jobs.localcluster import cluster

    work = Path(args.workdir)
    data = work / f"data-{args.rows}"
    if not data.exists():
        from jobs.datagen import generate

        generate(args.rows, data)
    cpus = sorted(os.sched_getaffinity(0))
    where = work / "cluster"
    pairs: list[dict[int, Any]] = []
    for _ in range(1 + args.scaling_pairs):  # with --scaling-pairs, more clusters of 1 and 2
        pair: dict[int, Any] = {}
        for workers in (1, 2):
            running = cluster.up(where, workers=workers, cores=1, memory="1500m", port=0, ui_port=0)
            try:
                for i, pid in enumerate(running.workers.values()):
                    subprocess.run(["taskset", "-a", "-pc", str(cpus[i % len(cpus)]), str(pid)],
                                   check=True, stdout=subprocess.DEVNULL)  # fmt: skip
                spark = spark_session(workers, args.memory, master=running.url, gc=args.gc)
                try:
                    pair[workers] = {
                        model: _rounds(PEERS, _plan(spark, work, data, model, args.rows),
                                       args.repeats, f"cluster {workers} worker(s) {model}")
                        for model in args.models
                    }  # fmt: skip
                finally:
                    spark.stop()
            finally:
                cluster.down(where)
        pairs.append(pair)
    results: dict[str, Any] = {"rows": args.rows, "workers": pairs[0]}
    if args.scaling_pairs:
        results["pairs"] = pairs
    print(json.dumps(results))
    return 0


def _plan(spark: Any, work: Path, data: Path, model: str, rows: int) -> dict[str, Any]:
    """The cluster run's peers: the job and the floor it is measured by."""
    ctx = _context(spark, work, data, model)
    return {name: (ctx, rows) for name in ("job", "floor_arrow")}


def _save_bundle(bundle_dir: Path, model: str) -> None:
    """The model's bundle, saved afresh by every run: one left by an earlier checkout would
    measure that checkout's export (e.g. its tree form), not this one's."""
    from formats import save
    from jobs.export import train

    fitted, x_train = train(model)
    save(fitted, bundle_dir, sample=x_train, formats=["pickle", "pmml", "onnx"], overwrite=True)


def _context(
    spark: Any, work: Path, data: Path, model: str, save: bool = True, out: str = "out"
) -> Any:
    from formats.bundle import Bundle
    from jobs.benchmark.peers import Context

    bundle_dir = work / f"bundle-{model}"
    if save:
        _save_bundle(bundle_dir, model)
    bundle = Bundle.open(bundle_dir)
    m = bundle.manifest
    return Context(
        spark, str(data), str(bundle_dir), str(work / out), [c.name for c in m.inputs],
        list(m.classes or []), bundle.read("model.onnx"), bundle.read("model.pkl"),
        bundle.read("model.pmml").decode() if "model.pmml" in m.files else "",
    )  # fmt: skip


def child(args: argparse.Namespace) -> int:
    """One core count: every model, every peer; JSON on stdout's last line."""
    from jobs.benchmark.measure import collectors, measure_in_process, ort_alone, spark_session
    from jobs.benchmark.peers import PEERS, Context
    from jobs.benchmark.report import BIG, ORT
    from jobs.datagen import generate

    work = Path(args.workdir)
    data = work / f"data-{args.rows}"
    slow_data = {rows: work / f"data-{rows}" for rows in SLOW.values() if rows < args.rows}
    # main() refused one below --rows; a scaling pair's session measures scaling alone
    big = 0 if args.scaling_only else args.marginal_rows
    sizes = {args.rows: data, **slow_data}
    if big:
        sizes[big] = work / f"data-{big}"
    for rows, path in sizes.items():
        if not path.exists():
            generate(rows, path)
    spark = spark_session(args.cores, args.memory, gc=args.gc)
    results: dict[str, Any] = {"cores": args.cores, "rows": args.rows, "models": {},
                               "gc": collectors(spark)}  # fmt: skip
    for model in args.models:
        # a session running beside others (--apart) writes its own output and reads the
        # bundles the pair's sessions saved: two saving one bundle at once would race
        apart = args.apart >= 0
        ctx = _context(spark, work, data, model, save=not apart,
                       out=f"out-apart{args.apart}" if apart else "out")  # fmt: skip
        plan = {}
        for name in args.peers:
            if (args.cores > 1 and name not in SCALING) or (
                args.scaling_only and name not in PAIRED
            ):
                continue
            rows = min(SLOW.get(name, args.rows), args.rows)
            where = str(slow_data.get(rows, data))
            plan[name] = (Context(**{**ctx.__dict__, "data": where}), rows)
        runners: dict[str, Callable[[Context], int | None]] = dict(PEERS)
        # on more cores, the scaling's peers on the second size too: a scaling on a larger
        # input, where a run's fixed cost (on one core) weighs less
        for name in (MARGINAL if args.cores == 1 else PAIRED) if big else ():
            if name in plan:
                plan[name + BIG] = (Context(**{**ctx.__dict__, "data": str(sizes[big])}), big)
                runners[name + BIG] = PEERS[name]
        if (args.cores == 1 and not args.scaling_only
                and {"floor_arrow", "floor_output"} & plan.keys()):  # fmt: skip
            # the bound's ORT, in the same rounds as its floor (not once after them: a noisy
            # machine's slow moment then moved the bound alone); runs in this process. Not in
            # the scaling's further sessions: they measure the job and its floor alone
            one_pass, ort_rows = ort_alone(str(data), Path(ctx.bundle))
            plan[ORT] = (ctx, ort_rows)
            runners[ORT] = one_pass
        peers = _rounds(runners, plan, args.repeats, f"{args.cores} core(s) {model}")
        runners.pop(ORT, None)  # its feeds go with it
        local = {} if args.scaling_only else measure_in_process(str(data), Path(ctx.bundle))
        results["models"][model] = {"peers": peers, "in_process": local}
    spark.stop()
    if args.cores == 1 and args.tree_forms and not args.scaling_only:  # no Spark: ORT alone
        from jobs.benchmark.trees import tree_forms

        results["tree_forms"] = tree_forms()
    print(json.dumps(results))
    return 0


def _rounds(
    peers: dict[str, Any], plan: dict[str, tuple[Any, int]], repeats: int, label: str
) -> dict[str, Any]:
    """One untimed warm-up round of every peer, then ``repeats`` timed rounds, the peers
    interleaved so that a machine getting busier or quieter shifts them all alike. The
    slow peers (SLOW) run once, warm-up skipped. A peer returns None (its rows are counted in
    the Parquet it wrote) or the rows it did in this process (``ort``: it writes nothing).
    A peer that fails is a finding (its error is recorded), not a crash of the benchmark."""
    from jobs.benchmark.measure import cpu_split

    times: dict[str, list[float]] = {name: [] for name in plan}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in plan}
    errors: dict[str, str] = {}
    for round_ in range(repeats + 1):
        for name, (ctx, rows) in plan.items():
            slow = name in SLOW
            if name in errors or (slow and (round_ == 0 or len(times[name]) == 1)):
                continue
            try:
                before, start = cpu_split(), time.perf_counter()
                done = peers[name](ctx)  # rows, where it ran in this process and wrote none
                took = time.perf_counter() - start
                after = cpu_split()
                written = done if isinstance(done, int) else ctx.spark.read.parquet(ctx.out).count()
            except Exception as exc:
                errors[name] = _last_line(exc)
                continue
            if written != rows:
                errors[name] = f"wrote {written} rows of {rows}"
            elif round_:
                times[name].append(took)
                parts[name].append({k: after[k] - before[k] for k in after})
    results: dict[str, Any] = {}
    for name, (_ctx, rows) in plan.items():
        if name in errors:
            results[name] = {"error": errors[name]}
        else:
            cpu = [sum(p.values()) for p in parts[name]]
            median, cpu_median = statistics.median(times[name]), statistics.median(cpu)
            # each process's median apart: where a peer's CPU goes (driver, JVM, workers)
            split = {k: round(statistics.median(p[k] for p in parts[name]), 3)
                     for k in parts[name][0]}  # fmt: skip
            results[name] = {"seconds": round(median, 3), "rows": rows,
                             "runs": [round(t, 3) for t in times[name]],
                             "rows_per_s": round(rows / median, 1),
                             "cpu_seconds": round(cpu_median, 3),
                             "cpu_runs": [round(c, 3) for c in cpu],
                             "cpu_split": split,
                             # None: a pass shorter than /proc's 10 ms tick (tests' sizes)
                             "rows_per_cpu_s": round(rows / cpu_median, 1)
                             if cpu_median > 0 else None}  # fmt: skip
        print(f"  {label} {name}: {results[name]}", file=sys.stderr)
    return results


def _last_line(exc: BaseException) -> str:
    """What failed, in one line: a Python worker's traceback ends with the real exception."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    worker = [line for line in lines if not line.startswith(("File ", "^", "~", "at "))]
    text = worker[-1] if worker else type(exc).__name__
    if "SQLSTATE" in text and len(worker) > 1:
        text = worker[-2]
    return f"{type(exc).__name__}: {text}"[:300]
