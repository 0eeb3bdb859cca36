"""The Spark half of the comparison: each engine of :mod:`jobs.comparison.engines` timed on the
same Parquet and the same cores, and its output compared with the original's, row by row.

Timing: one untimed warm-up on a small slice (it starts the Python workers, their JVMs, and
loads the model in each; Python workers are reused, so the timed runs find them warm), then up
to ``repeats`` timed runs of the whole action (read, score, write Parquet), stopping early once
an engine's timed runs pass ``budget_s``: the median is reported. rows/s per core = rows /
median seconds / cores, cores being Spark's defaultParallelism (local[N]: N; on a cluster: the
executors' cores). Agreement is computed in Spark by joining each output with the original's
on the id column. An engine that fails is a result with its error; the others still run.
"""

from __future__ import annotations

import re
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from formats.bundle import Bundle
from formats.compare.results import SparkResult
from formats.errors import ModelportError
from jobs.comparison.engines import ENGINES, Target, original, register_pmml_udf
from jobs.scoring.settings import Settings

__all__ = ["Prepared", "measure", "prepare"]

# enough rows for the JIT to compile the JVM engines' hot paths before the timed runs
WARM_ROWS_PER_CORE = 10_000


@dataclass(frozen=True)
class Prepared:
    data: str  # the Parquet every engine is timed on
    warm: str  # a small slice of it, for the warm-up
    rows: int
    cores: int
    master: str


def prepare(spark: Any, source: str, id_column: str, work: Path, rows: int | None) -> Prepared:
    """The input as every engine reads it: the first ``rows`` rows (all when None) with an id
    column, in 2 files per core. A copy is written only where needed (``rows``, or no id
    column): a small Parquet in one file would be one task, i.e. one core."""
    from jobs.scoring.checks import local_path
    from jobs.scoring.session import master_of

    cores = int(spark.sparkContext.defaultParallelism)
    data, warm = str(work / "input"), str(work / "warm-input")
    local = local_path(source)
    if local is not None:  # pyarrow: a slice in a second, where Spark's first actions take long
        count = _slice_locally(str(local), id_column, Path(data), Path(warm), rows, cores)
        if count is None:
            data = source
            count = int(spark.read.parquet(data).count())
        return Prepared(data, warm, count, cores, master_of(spark))
    from pyspark.sql import functions as F

    df = spark.read.parquet(source)
    if rows is not None or id_column not in df.columns:
        if id_column not in df.columns:  # agreement joins on it
            df = df.withColumn(id_column, F.monotonically_increasing_id())
        if rows is not None:
            df = df.limit(rows)
        df.repartition(2 * cores).write.mode("overwrite").parquet(data)
    else:
        data = source
    count = int(spark.read.parquet(data).count())
    small = spark.read.parquet(data).limit(WARM_ROWS_PER_CORE * cores)
    small.repartition(cores).write.mode("overwrite").parquet(warm)
    return Prepared(data, warm, count, cores, master_of(spark))


def _slice_locally(source: str, id_column: str, data: Path, warm: Path, rows: int | None,
                   cores: int) -> int | None:  # fmt: skip
    """The slices of :func:`prepare` written with pyarrow; None when the source serves as it is
    (no ``rows`` and an id column: only the warm-up slice is written)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.scoring.checks import arrow_dataset

    dataset = arrow_dataset(source)
    as_is = rows is None and id_column in dataset.schema.names
    warm_rows = WARM_ROWS_PER_CORE * cores
    table = dataset.head(warm_rows if as_is else rows) if (as_is or rows) else dataset.to_table()
    # Spark reads a file's schema off its own metadata where a Spark writer left it, and that
    # one lacks the partition columns (year=2007) the table now holds: the slice keeps none
    table = table.replace_schema_metadata(None)
    if id_column not in table.column_names:  # agreement joins on it
        table = table.append_column(id_column, pa.array(np.arange(len(table), dtype=np.int64)))

    def write(t: pa.Table, where: Path, parts: int) -> None:
        shutil.rmtree(where, ignore_errors=True)
        where.mkdir(parents=True)
        step = max(1, -(-len(t) // parts))
        for i, start in enumerate(range(0, max(len(t), 1), step)):
            pq.write_table(t.slice(start, step), where / f"part-{i:05d}.parquet")

    write(table.slice(0, warm_rows), warm, cores)
    if as_is:
        return None
    write(table, data, 2 * cores)
    return len(table)


_RAISED = re.compile(r"^\s*(?:Caused by: )?((?:[\w$]+\.)*[\w$]*(?:Error|Exception)): (.+)$")


def _root(exc: BaseException) -> str | None:
    """The innermost Java exception behind a Spark failure, as "Class: message"; for a Python
    worker's failure (PythonException), the last raised line of its traceback."""
    java = getattr(exc, "_origin", None) or getattr(exc, "java_exception", None)
    if java is None:
        return None
    try:
        while java.getCause() is not None:
            java = java.getCause()
        text = str(java.getMessage() or "")
        name = str(java.getClass().getSimpleName())
    except Exception:  # the JVM is gone: fall back to the Python text
        return None
    raised = [m for m in map(_RAISED.match, text.splitlines()) if m]
    if name == "PythonException" and raised:
        return f"{raised[-1].group(1).rsplit('.', 1)[-1]}: {raised[-1].group(2)}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"{name}: {first}" if first else name


def one_line(exc: BaseException) -> str:
    """An engine's failure as the one line the report shows: one of our errors as the job
    reports it (an invalid row, a model error raised in a worker), else the root cause."""
    from jobs._cli import spark_error

    translated = exc if isinstance(exc, ModelportError) else spark_error(exc)
    ours = translated is not None and not str(translated).startswith("spark: ")
    text = str(translated) if ours else _root(exc)
    if text is None:
        text = str(translated) if translated is not None else f"{type(exc).__name__}: {exc}"
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), type(exc).__name__)
    return first if len(first) <= 300 else first[:297] + "..."


def _timed(run: Callable[[str, str], None], p: Prepared, work: Path, repeats: int,
           budget_s: float) -> list[float]:  # fmt: skip
    run(p.warm, str(work / "warm-out"))
    runs: list[float] = []
    while len(runs) < repeats and sum(runs) <= budget_s:
        start = time.perf_counter()
        run(p.data, str(work / "out"))
        runs.append(time.perf_counter() - start)
    return runs


def _agreement(spark: Any, target: Target, tolerance: Any, expected: str,
               outputs: dict[str, str]) -> dict[str, tuple[float, float | None]]:  # fmt: skip
    """Per output: (share of the original's rows it agrees on, max |difference|), in one Spark
    job: the original left-joined with every output on the id column."""
    from pyspark.sql import functions as F

    key = target.id_column
    numeric = all(isinstance(c, int | float) and not isinstance(c, bool)
                  for c in target.classes or ())  # fmt: skip
    # PMML may write class 1 as "1.0": numeric classes compare as numbers
    kind = "double" if numeric and target.classes else "string"
    numbers = [c for c in target.columns if c != "label"]
    joined = spark.read.parquet(expected).alias("a")
    aggregates = [F.count(F.lit(1)).alias("n")]
    for i, path in enumerate(outputs.values()):
        b = f"b{i}"
        joined = joined.join(spark.read.parquet(path).alias(b),
                             F.col(f"a.`{key}`") == F.col(f"{b}.`{key}`"), "left")  # fmt: skip
        if target.task == "classification":
            same = F.col("a.label").cast(kind) == F.col(f"{b}.label").cast(kind)
        else:
            expect = F.col("a.prediction")
            limit = F.lit(tolerance.atol) + F.lit(tolerance.rtol) * F.abs(expect)
            same = F.abs(expect - F.col(f"{b}.prediction")) <= limit
        diffs = [F.abs(F.col(f"a.`{c}`") - F.col(f"{b}.`{c}`")) for c in numbers]
        worst = F.greatest(*diffs) if len(diffs) > 1 else diffs[0] if diffs else F.lit(None)
        aggregates += [F.sum(F.coalesce(same, F.lit(False)).cast("long")).alias(f"ok{i}"),
                       F.max(worst).alias(f"worst{i}")]  # fmt: skip
    row = joined.agg(*aggregates).first()
    n = int(row["n"] or 0)
    out = {}
    for i, name in enumerate(outputs):
        share = float(row[f"ok{i}"] or 0) / n if n else 0.0
        worst_i = row[f"worst{i}"]
        out[name] = (share, None if worst_i is None else float(worst_i))
    return out


def measure(
    spark: Any,
    target: Target,
    p: Prepared,
    settings: Settings,
    work: Path,
    *,
    engines: Sequence[str] = tuple(ENGINES),
    repeats: int = 3,
    budget_s: float = 12.0,
    jars: Callable[[], tuple[Path, ...]] | None = None,
    say: Callable[[str], None] = lambda _m: None,
) -> list[SparkResult]:
    """Every engine of ``engines`` timed and compared with the original; never raises for an
    engine's failure (its result says what went wrong)."""
    bundle = Bundle.open(target.bundle)
    entries = bundle.manifest.formats
    results: list[SparkResult] = []
    outputs: dict[str, str] = {}
    for name in engines:
        fmt, engine, how, fn = ENGINES[name]
        result = SparkResult(fmt, engine, None, None, how=how, rows=p.rows, cores=p.cores,
                             master=p.master)  # fmt: skip
        results.append(result)
        entry = entries.get(fmt)
        if entry is None or not entry.saved:
            result.error = entry.why_not() if entry else "not saved: not in the bundle"
            continue
        say(f"spark: {fmt}/{engine} ({how}) on {p.rows:,} rows")
        try:
            if name == "jpmml":
                from jobs.comparison.jvm import build

                register_pmml_udf(spark, target, jars() if jars else build().all)

            def run(data: str, out: str, fn: Any = fn) -> None:
                fn(spark, target, data, out, settings)

            result.runs = [round(s, 3) for s in _timed(run, p, work / name, repeats, budget_s)]
        except Exception as exc:  # an engine that fails is a finding, not the end of the run
            result.error = one_line(exc)
            continue
        result.seconds = statistics.median(result.runs)
        result.rows_per_s_per_core = p.rows / result.seconds / p.cores
        outputs[name] = str(work / name / "out")
    if not outputs:
        return results
    say("spark: the original (the pickle's own predict) and the agreement of every output")
    expected = str(work / "original")
    try:
        if "pickle" not in bundle.manifest.saved_formats():
            raise ModelportError("no original to compare with: the bundle has no pickle")
        original(spark, target, p.data, expected, settings)
    except Exception as exc:
        for r in results:
            r.error = r.error or f"agreement not measured: {one_line(exc)}"
        return results
    try:
        agreed = _agreement(spark, target, bundle.manifest.tolerance, expected, outputs)
    except Exception as exc:
        for r in results:
            r.error = r.error or f"agreement not measured: {one_line(exc)}"
        return results
    for name, r in zip(engines, results, strict=True):
        if name in agreed:
            r.agreement, r.max_abs = agreed[name]
    return results
