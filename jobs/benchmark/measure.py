"""The benchmark's Spark session and its in-process measurements (no Spark): ORT alone, the
no-Spark ceiling and a profile of one batch."""

from __future__ import annotations

import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["WorkerMemory", "collectors", "cpu_split", "measure_in_process", "spark_session", "tree_cpu_seconds"]

BATCH = 10_000  # rows per Arrow batch: spark.sql.execution.arrow.maxRecordsPerBatch below


GC_FLAG = re.compile(r"\s*-XX:\+Use\w+GC")


def with_gc(java_options: str, gc: str) -> str:
    """``java_options`` with its collector replaced by ``-XX:+Use<gc>GC`` (two collector flags
    would stop the JVM); ``gc`` "conf" keeps them as they are."""
    if gc == "conf":
        return java_options
    return f"{GC_FLAG.sub('', java_options).strip()} -XX:+Use{gc}GC".strip()


def spark_session(cores: int, memory: str, master: str = "", gc: str = "conf") -> Any:
    """local[cores] with the job's own properties (conf/spark/local.conf), UI and progress off;
    with ``master`` (a standalone cluster's URL), ``cores`` one-core executors there. ``gc``
    (G1, Parallel, Serial): the driver's and executors' collector, for an A/B; "conf" leaves
    it to the properties files, which name none (the JVM picks SerialGC on one core, G1 on
    more)."""
    from jobs.scoring.session import build_session, read_properties
    from jobs.scoring.settings import load_settings

    local = "conf/spark/local.conf"
    props = Path(local).read_text()
    if gc != "conf":  # later lines win: these replace the file's JVM options
        driver = "spark.driver.extraJavaOptions"
        props += f"\n{driver} {with_gc(read_properties(local).get(driver, ''), gc)}\n"
        if master:
            props += f"spark.executor.extraJavaOptions {with_gc('', gc)}\n"
    props += f"\nspark.master {master or f'local[{cores}]'}\nspark.driver.memory {memory}\n"
    if master:  # the workers run this venv's python: the same machine
        props += f"spark.executor.cores 1\nspark.cores.max {cores}\nspark.executor.memory 1g\n"
        props += f"spark.pyspark.python {sys.executable}\n"
        # and this checkout's code: the venv's editable install may point at another one (a
        # bench run from a git worktree), which a Python worker would import from its cwd
        props += f"spark.executorEnv.PYTHONPATH {Path(__file__).resolve().parents[2]}\n"
    props += "spark.ui.enabled false\nspark.ui.showConsoleProgress false\n"
    props += f"spark.sql.shuffle.partitions {cores}\n"
    fd, path = tempfile.mkstemp(prefix="bench-", suffix=".conf")
    with os.fdopen(fd, "w") as fh:
        fh.write(props)
    try:
        settings = load_settings(
            "conf/local.toml",
            [f"spark.properties={path}", f"execution.max_records_per_batch={BATCH}"],
        )
        return build_session(settings).spark
    finally:  # the JVM has its properties once the session is up
        os.unlink(path)


def collectors(spark: Any) -> list[str]:
    """The driver JVM's garbage collectors as it names them (G1: "G1 Young Generation", ...;
    Parallel: "PS Scavenge", "PS MarkSweep"; Serial: "Copy", "MarkSweepCompact")."""
    beans = spark.sparkContext._jvm.java.lang.management.ManagementFactory
    return [str(b.getName()) for b in beans.getGarbageCollectorMXBeans()]


def tree_cpu_seconds(root: int | None = None) -> float:
    """CPU seconds (user + system) used so far by ``root`` (this process) and every process
    under it: the JVM and Spark's Python workers. Children already reaped count through their
    parent's cutime/cstime, live ones through their own line, so nothing counts twice.

    Why CPU time and not only wall time: ONNX Runtime's default thread pool pins its threads to
    cores by itself, outside the taskset mask (measured here: a process pinned to core 0 got a
    pool thread on core 1), so a peer with ORT's default threads is not held to the cores it was
    given; and a shared machine's other load stretches wall time but not CPU time."""
    return sum(cpu_split(root).values())


def cpu_split(root: int | None = None) -> dict[str, float]:
    """:func:`tree_cpu_seconds` by process: ``driver`` (this Python process), ``jvm`` (the
    JVMs' own threads: scan, casts, validation, Arrow transfer, Parquet writer) and ``workers``
    (Spark's Python workers: everything else below, with what the JVMs reaped, which can only
    be Python workers). Why apart: the gap between the job and its bound is in one or the
    other, and only the split says which."""
    from jobs.localcluster import procs as _procs

    root = root or os.getpid()
    split = {"driver": _procs.cpu_seconds(root), "jvm": 0.0, "workers": 0.0}
    for pid in _procs.descendants(root):
        argv = _procs.cmdline(pid)
        if argv and Path(argv[0]).name == "java":
            own = _procs.cpu_seconds(pid, reaped=False)
            split["jvm"] += own
            split["workers"] += _procs.cpu_seconds(pid) - own
        else:
            split["workers"] += _procs.cpu_seconds(pid)
    return split


class WorkerMemory:
    """Peak resident memory of Spark's Python workers (``pyspark.daemon`` and its forks), read
    from /proc while a job runs: VmHWM is each process's own high-water mark."""

    def __init__(self, interval: float = 0.2) -> None:
        import threading

        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)

    def __enter__(self) -> WorkerMemory:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _poll(self, interval: float) -> None:
        while not self._stop.is_set():
            for proc in Path("/proc").iterdir():
                if not proc.name.isdigit():
                    continue
                try:
                    if b"pyspark.daemon" not in (proc / "cmdline").read_bytes():
                        continue
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kb = max(self.peak_kb, int(line.split()[1]))
                except OSError:  # the process ended between listing and reading
                    continue
            self._stop.wait(interval)


def _batches(data: str, limit: int | None = None) -> list[Any]:
    import pyarrow.dataset as ds

    batches = []
    for batch in ds.dataset(data, format="parquet").to_batches(batch_size=BATCH):
        batches.append(batch)
        if limit is not None and len(batches) >= limit:
            break
    return batches


def measure_in_process(data: str, bundle_dir: Path) -> dict[str, Any]:
    """ORT rows/s on prepared feeds, the pyarrow → ORT → Parquet ceiling, one batch's profile;
    all on one thread (ORT intra_op_num_threads=1). ``ort`` runs the model as the job runs it
    (string columns as int32 codes where formats.onnx.string_codes applies, the label as a
    class index where formats.onnx.label_index does), ``ort_strings`` the bundle's model.onnx
    as saved, fed strings, as the hand-written peers run it (given where the two differ)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from formats import load
    from jobs.scoring.model import load_model

    model = load_model(bundle_dir)  # the job's view of it: the codes, the profile's spec
    scorer: Any = load(bundle_dir, "onnx", intra_op_threads=1)
    names = [c.name for c in scorer.inputs]
    sample = _batches(data, limit=30)
    feeds = _feeds(scorer, sample)
    rows = sum(b.num_rows for b in sample)
    strings_rate = _rate(scorer.run, feeds, rows)
    job_model = _job_model(model)
    ort_rate = _rate(*_as_the_job_runs(scorer, job_model, feeds), rows)
    ensemble_rate = _ensemble_rate(bundle_dir, feeds, rows)
    sklearn_rate = _sklearn_rate(bundle_dir, names, sample)

    out = tempfile.mkdtemp(prefix="bench-ceiling-")
    start = time.perf_counter()
    total = 0
    writer = None
    for batch in _batches(data):
        columns = {n: batch.column(n).to_numpy(zero_copy_only=False) for n in names}
        frame = scorer.canonical(scorer.run(scorer.feed(columns)))
        frame.insert(0, "row_id", batch.column("row_id").to_numpy())
        table = pa.Table.from_pandas(frame, preserve_index=False)
        writer = writer or pq.ParquetWriter(f"{out}/part-0.parquet", table.schema)
        writer.write_table(table)
        total += batch.num_rows
    if writer is not None:
        writer.close()
    ceiling = total / (time.perf_counter() - start)
    return {
        "ort_rows_per_s": round(ort_rate, 1),
        **({"ort_strings_rows_per_s": round(strings_rate, 1)} if job_model is not None else {}),
        **({"ort_ensemble_rows_per_s": round(ensemble_rate, 1)} if ensemble_rate else {}),
        "sklearn_rows_per_s": round(sklearn_rate, 1),
        "ceiling_rows_per_s": round(ceiling, 1),
        "profile_ms_per_10k": _profile(model, sample),
    }


def _feeds(scorer: Any, batches: list[Any]) -> list[dict[str, Any]]:
    """model.onnx's feeds of ``batches``, as the hand-written peers build them."""
    names = [c.name for c in scorer.inputs]
    return [scorer.feed({n: b.column(n).to_numpy(zero_copy_only=False) for n in names})
            for b in batches]  # fmt: skip


def _as_the_job_runs(
    scorer: Any, job_model: tuple[Any, Any] | None, feeds: list[dict[str, Any]]
) -> tuple[Callable[[dict[str, Any]], Any], list[dict[str, Any]]]:
    """(run, its feeds): the model the job broadcasts, its string columns as int32 codes, or
    model.onnx as saved where that is what the job runs (``job_model`` None)."""
    if job_model is None:
        return scorer.run, feeds
    codes, session = job_model
    vocabularies = {} if isinstance(codes, str) else codes.vocabularies
    coded = [{n: codes.codes(n, f[n].ravel()).reshape(-1, 1) if n in vocabularies else f[n]
              for n in f} for f in feeds]  # fmt: skip
    return (lambda f: session.run(None, f)), coded


def ort_alone(data: str, bundle_dir: Path) -> tuple[Callable[[object], int], int]:
    """(a pass, its rows): ONNX Runtime over every 10k-row batch of ``data``, feeds prepared
    here, the model as the job runs it, one thread, in this process. The bench's rounds time
    it beside the Spark peers (interleaved, as they are), so the bound's ``ort`` and ``floor``
    come from the same moments of a noisy machine. The pass takes a peer's argument (the bench's
context, unused) and returns its rows."""
    from formats import load
    from jobs.scoring.model import load_model

    scorer: Any = load(bundle_dir, "onnx", intra_op_threads=1)
    batches = _batches(data)
    rows = int(sum(b.num_rows for b in batches))
    run, feeds = _as_the_job_runs(scorer, _job_model(load_model(bundle_dir)),
                                  _feeds(scorer, batches))  # fmt: skip
    del batches  # the feeds alone stay in memory for the rounds

    def one_pass(_ctx: object) -> int:
        for feed in feeds:
            run(feed)
        return rows

    return one_pass, rows


def _rate(run: Any, feeds: list[Any], rows: int) -> float:
    """Rows/s of ``run`` over ``feeds``, the median of 3 passes."""
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        for feed in feeds:
            run(feed)
        runs.append(time.perf_counter() - start)
    return rows / statistics.median(runs)


def _job_model(model: Any) -> tuple[Any, Any] | None:
    """(StringCodes or why strings, a 1-thread session of the model the job runs) where that
    model is not model.onnx as saved (string columns as codes, the label as a class index:
    formats.onnx.string_codes, label_index), else None."""
    import onnxruntime as ort

    codes = model.string_codes
    data = model.broadcast(codes)
    if data is model.onnx:
        return None
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return codes, ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _ensemble_rate(bundle_dir: Path, feeds: list[Any], rows: int) -> float | None:
    """ORT rows/s on the same feeds with the model's trees as ai.onnx.ml tree ensembles, when
    the bundle holds them as matrix products (formats.onnx.trees_matmul): what that form buys.
    The ensemble form is converted again from the bundle's pickle."""
    import io
    import pickle

    import pandas as pd

    from formats.bundle import Bundle
    from formats.onnx.export import export_onnx
    from formats.onnx.scorer import OnnxScorer

    bundle = Bundle.open(bundle_dir)
    m = bundle.manifest
    if m.formats["onnx"].details.get("trees", {}).get("form") != "matmul":
        return None
    model = pickle.loads(bundle.read("model.pkl"))
    example = pd.read_parquet(io.BytesIO(bundle.read("input_example.parquet")))
    data = export_onnx(model, example, m.inputs, m.task, "float32", "ensemble").data
    scorer = OnnxScorer(data, m.task, m.classes, m.inputs, intra_op_threads=1)
    return _rate(scorer.run, feeds, rows)


def _sklearn_rate(bundle_dir: Path, names: list[str], sample: list[Any]) -> float:
    """The pickle's own ``predict_proba`` (or ``predict``) rows/s on the same batches as
    pandas frames made beforehand, as ORT's feeds are: what scikit-learn's compute costs, the
    other half of the pickle UDF's time beside Spark's transfer."""
    import pickle

    from formats.bundle import Bundle

    model = pickle.loads(Bundle.open(bundle_dir).read("model.pkl"))  # the bundle's own file
    run = getattr(model, "predict_proba", None) or model.predict
    frames = [b.select(names).to_pandas() for b in sample]
    return _rate(run, frames, sum(len(f) for f in frames))


def _profile(model: Any, sample: list[Any]) -> dict[str, float]:
    """Where one 10k-row batch's time goes in the job's Python worker, median over the sample
    batches (ms): the steps of ``jobs.scoring.worker.ArrowTask`` on a batch as the JVM sends it (the
    model's columns already in the ONNX dtypes), between pyspark's Arrow IPC read of the input
    and write of the output; then the output's Parquet encoding (pyarrow here: Spark's writer
    runs in the JVM)."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql.pandas.types import to_arrow_schema, to_arrow_type
    from pyspark.sql.types import StructType

    from jobs.scoring import worker as _udf
    from jobs.scoring.model import output_struct, spark_type
    from jobs.scoring.settings import ExecutionSettings

    spec, data, codes = model.spec, model.strings_model, model.string_codes
    if not isinstance(codes, str):  # the job's default: string columns sent as int32 codes
        spec, data = model.coded_spec(codes), codes.model
    out_schema = to_arrow_schema(StructType(output_struct(spec)))  # as the job's ArrowTask
    scorer = _udf.cached_scorer(spec, lambda: data, ExecutionSettings(intra_op_threads=1))
    # the Arrow types the JVM's cast to spark_type(dtype) sends (strings as they are)
    types = [to_arrow_type(spark_type(d)) for d in spec.onnx_dtypes]
    labels = _udf._class_array(spec, [out_schema.field(f.name).type for f in spec.outputs])

    def column(batch: Any, i: int) -> Any:  # the JVM's cast, or its CASE to codes
        name = spec.columns[i].name
        if spec.codes and spec.codes[i] is not None and not isinstance(codes, str):
            return pa.array(codes.codes(name, batch.column(name).to_pylist()), pa.int32())
        return batch.column(name).cast(types[i])

    def as_sent(batch: Any) -> bytes:  # what the JVM writes to the worker's socket
        arrays = [column(batch, i) for i in range(len(spec.columns))]
        sent = pa.RecordBatch.from_arrays([*arrays, batch.column("row_id")],
                                          names=[*spec.input_names, "row_id"])  # fmt: skip
        return _ipc(sent)

    names = ["ipc_read", "arrow_to_numpy", "feed", "ort", "to_canonical", "to_arrow",
             "ipc_write", "parquet_write"]  # fmt: skip
    steps: dict[str, list[float]] = {k: [] for k in names}
    for raw in [as_sent(b) for b in sample]:
        t = [time.perf_counter()]
        batch = pa.ipc.open_stream(raw).read_next_batch()
        t.append(time.perf_counter())
        cols = {n: _udf._column_values(batch.column(i)) for i, n in enumerate(spec.input_names)}
        t.append(time.perf_counter())
        feed = scorer.feed(cols, strings_filled=True)
        t.append(time.perf_counter())
        outputs = scorer.run(feed)
        t.append(time.perf_counter())
        values = scorer.canonical_columns(outputs, labels)
        t.append(time.perf_counter())
        arrays = [batch.column("row_id")] + [
            _udf._arrow_array(values[f.name], out_schema.field(f.name).type) for f in spec.outputs
        ]
        out = pa.RecordBatch.from_arrays(arrays, names=["row_id", *out_schema.names])
        t.append(time.perf_counter())
        _ipc(out)
        t.append(time.perf_counter())
        pq.write_table(pa.Table.from_batches([out]), io.BytesIO())
        t.append(time.perf_counter())
        for key, a, b in zip(names, t[:-1], t[1:], strict=True):
            steps[key].append((b - a) * 1000 * 10_000 / batch.num_rows)
    return {k: round(statistics.median(v), 3) for k, v in steps.items()}


def _ipc(batch: Any) -> bytes:
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    return bytes(sink.getvalue())


if __name__ == "__main__":  # python -m jobs.benchmark.measure DATA BUNDLE
    print(measure_in_process(sys.argv[1], Path(sys.argv[2])))
