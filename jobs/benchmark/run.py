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
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["run"]

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


def _memory_check(args: argparse.Namespace) -> int:
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


def _cluster(args: argparse.Namespace) -> int:
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


def _child(args: argparse.Namespace) -> int:
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

    args.models = [m for m in args.models.split(",") if m]
    args.peers = [p for p in args.peers.split(",") if p]
    unknown = [p for p in args.peers if p not in PEERS]
    if unknown:
        print(f"error: unknown peer(s) {unknown}; known: {', '.join(PEERS)}", file=sys.stderr)
        return 2
    if 0 < args.marginal_rows <= args.rows:
        print(f"error: --marginal-rows {args.marginal_rows} must be more than --rows "
              f"{args.rows} (the second size of the same peers)", file=sys.stderr)  # fmt: skip
        return 2
    if args.scaling_pairs < 0 or (
        args.scaling_pairs and not args.cluster and len(args.cores.split(",")) < 2
    ):
        print(f"error: --scaling-pairs {args.scaling_pairs} needs two core counts (--cores "
              "1,2) or --cluster, and a count of 0 or more", file=sys.stderr)  # fmt: skip
        return 2
    if args.child and args.cluster:
        return _cluster(args)
    if args.child or args.memory_check:
        args.cores = int(args.cores.split(",")[-1])
        return _memory_check(args) if args.memory_check else _child(args)
    if shutil.which("taskset") is None:
        print("error: taskset not found (util-linux); it pins the benchmark's cores", file=sys.stderr)
        return 2
    if args.cluster:  # two workers, pinned to the cores there are (on one core: both there)
        return _cluster_report(args, argv)
    cores = [int(c) for c in args.cores.split(",")]
    if max(cores) > len(os.sched_getaffinity(0)):
        print(f"error: this machine has {len(os.sched_getaffinity(0))} core(s)", file=sys.stderr)
        return 2
    runs = [_run_child(n, args) for n in cores]
    pairs = [[runs[0], runs[-1]]] if len(cores) > 1 else []
    # with --scaling-pairs, each pair also runs its most cores as one-core sessions at once
    apart = [_run_apart(cores[-1], args)] if args.scaling_pairs else []
    for _ in range(args.scaling_pairs if len(cores) > 1 else 0):
        pairs.append([_run_child(n, args, scaling_only=True) for n in (cores[0], cores[-1])])
        apart.append(_run_apart(cores[-1], args))
    from jobs.benchmark.report import render_markdown

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


def _cluster_report(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--cluster`` in a child process (its Spark session ends with it), then the report."""
    command = [sys.executable, "-m", "jobs.bench", "--child", "--cluster", "--rows",
               str(args.rows), "--repeats", str(args.repeats), "--models", ",".join(args.models),
               "--workdir", args.workdir, "--memory", args.memory, "--gc", args.gc,
               "--scaling-pairs", str(args.scaling_pairs)]  # fmt: skip
    print("$ " + " ".join(command), file=sys.stderr)
    proc = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    result = _result(proc.returncode, proc.stdout, "the cluster")
    from jobs.benchmark.report import render_cluster

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
