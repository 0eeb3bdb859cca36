"""Scoring on the executors: the per-worker session cache, and the two ways in.

- :func:`score` (the job's transform) runs ``mapInArrow``. Measured on the penguins random
  forest, 400k rows, local[2], 10k-row batches, best of 3 (rows/s): mapInArrow 357k, the same
  code under mapInPandas 360k, this module's pandas UDF expanded with ``.*`` 324k; hand-written
  mapInPandas UDFs: 1 ORT thread and a cached session 380k, ORT's default threads 239k, a session
  per partition 259k. ONNX Runtime's own work is ~70% of a batch's Python time (19 of 26 ms), so
  the styles tie within noise once threads follow spark.task.cpus and the session is cached;
  those two, not the style, are what beat a typical hand-written UDF (1.4-1.5x). Arrow is kept
  because the worker then gets numpy straight from Arrow buffers already in the tensors' dtypes
  (cast in the JVM), pass-through columns go back as the same Arrow arrays untouched by pandas
  (any type, no NaN/int round trip), and an earlier, busier run measured it 8% ahead of
  mapInPandas (190k vs 177k).
- :func:`pandas_scoring_udf` (``jobs.udf.onnx_udf``) is an iterator pandas UDF returning a
  struct, for ``withColumn``/``select`` in users' own code.

Both call :func:`cached_scorer` and :func:`predict`, i.e. OnnxScorer's own ``feed`` and
``canonical``: the job, the public UDF and ``formats.load`` cannot drift apart. The cache keeps
one ONNX Runtime session per Python worker process and model sha256 (``spark.python.worker.reuse``
keeps the process, and so the session, alive across tasks): never one per batch or partition.

Invalid rows (:mod:`jobs._validate`) are found in the JVM before a batch reaches a worker: with
``validation.on_invalid = "null"`` the batch carries each row's reason and the worker scores
only the rows without one (:func:`_score_valid`); ``fail`` and ``quarantine`` never send one.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from formats.errors import InputError
from jobs import _providers, _tensor
from jobs._arrow_batches import row_bytes
from jobs._model import (
    MODEL_COLUMNS,
    LoadedModel,
    ModelSpec,
    case_sensitive,
    find_column,
    input_alias,
    literal,
    model_names,
    output_struct,
    passthrough_alias,
    passthrough_columns,
    plan_inputs,
    quoted,
    tabular_value,
)
from jobs._settings import ExecutionSettings, Settings
from jobs._tensor import OutputField
from jobs._validate import (
    ERROR_COLUMN,
    RULE,
    Check,
    checks,
    invalid_count,
    reason_sql,
    sql,
    stop_on_invalid,
    with_rule,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame

    from formats.onnx.scorer import OnnxScorer
    from jobs._arrow_writer import ArrowSink

__all__ = ["Runtime", "ScoreMetrics", "cached_scorer", "pandas_scoring_udf", "predict", "score"]

PROVIDER = "_mp_provider"  # internal columns: which provider ran, which worker/session
WORKER = "_mp_worker"
REASON = "_mp_reason"  # why the row is invalid (jobs._validate), null when it is valid
TIME_ZONE_CONF = "spark.sql.session.timeZone"


@dataclass(frozen=True)
class Runtime:
    """How executors run the model (from [execution]; small, pickled into every task)."""

    provider: str = "cpu"
    allow_cpu_fallback: bool = False
    intra_op_threads: int = 0
    gpu_device_id: int = 0

    @classmethod
    def from_settings(cls, e: ExecutionSettings) -> Runtime:
        return cls(e.provider, e.allow_cpu_fallback, e.intra_op_threads, e.gpu_device_id)


# --- the per-worker cache (module state: one copy per Python worker process) ---------------
_SESSIONS: dict[tuple[Any, ...], OnnxScorer] = {}
# (model sha256, fed codes) -> sessions this process built: the job's coded model and the
# public UDF's model.onnx are two models, each with its own session
_BUILT: Counter[tuple[str, bool]] = Counter()
_LOCK = threading.Lock()


def _task_resources() -> tuple[int, list[str]]:
    """(spark.task.cpus, this task's GPU addresses); (1, []) outside a task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return 1, []
    gpus = ctx.resources().get("gpu")
    return ctx.cpus(), list(gpus.addresses) if gpus is not None else []


def cached_scorer(spec: ModelSpec, load: Callable[[], bytes], runtime: Runtime) -> OnnxScorer:
    """This process's session for the model, built on first use."""
    import onnxruntime as ort

    from formats.onnx.scorer import OnnxScorer

    cpus, gpus = _task_resources()
    threads = runtime.intra_op_threads or cpus
    choice = _providers.choose(
        runtime.provider,
        ort.get_available_providers(),
        gpus,
        runtime.gpu_device_id,
        runtime.allow_cpu_fallback,
    )
    key = (spec.sha256, bool(spec.codes), choice, threads)  # codes: the rewritten model
    with _LOCK:
        scorer = _SESSIONS.get(key)
        if scorer is None:
            scorer = OnnxScorer(
                load(),
                spec.task,
                list(spec.classes) if spec.classes is not None else None,
                list(spec.columns),
                providers=choice.providers,
                intra_op_threads=threads,
                provider_options=choice.provider_options(),
            )
            _providers.check_ran(runtime.provider, scorer.providers[0], runtime.allow_cpu_fallback)
            _SESSIONS[key] = scorer
            _BUILT[spec.sha256, bool(spec.codes)] += 1
    return scorer


def worker_tag(spec: ModelSpec) -> str:
    """``pid:sessions built`` — the run summary (and the tests) count sessions per process."""
    return f"{os.getpid()}:{_BUILT[spec.sha256, bool(spec.codes)]}"


def predict(
    scorer: OnnxScorer,
    spec: ModelSpec,
    columns: Mapping[str, np.ndarray],
    rows: int,
    strings_filled: bool = False,
    labels: pa.Array | None = None,
) -> dict[str, Any]:
    """One batch: input arrays by model input name -> one array per output column.
    ``strings_filled``: string columns hold str only ("" for null: :func:`_column_values`).
    ``labels``: the classes as an Arrow array of the label column's type; where the model
    returns the class index (formats.onnx.label_index), the label is an Arrow array taken
    from it, else every column is numpy."""
    if not spec.tabular:
        outputs = scorer.run(_tensor.feed(columns, spec.tensors, rows))
        return _tensor.split_outputs(outputs, spec.outputs, rows)
    try:
        feed = scorer.feed(columns, strings_filled)
    except (ValueError, TypeError) as exc:  # strings where numbers belong (the public UDF)
        raise InputError(
            f"the model's inputs {spec.input_names} got values it cannot convert ({exc}); pass "
            "the model's columns in this order, numbers for numeric ones"
        ) from None
    values = scorer.canonical_columns(scorer.run(feed), labels)
    return {f.name: values[f.name] for f in spec.outputs}


# --- the job's transform: mapInArrow -------------------------------------------------------
def _arrow_array(values: Any, typ: pa.DataType) -> pa.Array:
    import pyarrow as pa

    if isinstance(values, pa.Array):  # the label, taken from the classes (predict's labels)
        return values

    if pa.types.is_list(typ):
        rows, width = values.shape
        flat = pa.array(values.reshape(-1), type=typ.value_type)
        offsets = pa.array(np.arange(0, rows * width + 1, width, dtype=np.int32))
        return pa.ListArray.from_arrays(offsets, flat, type=typ)
    return pa.array(values, type=typ)


def _column_values(array: pa.Array) -> np.ndarray:
    """A tabular input column as numpy. Numbers: Arrow's buffer as is (the JVM cast it to the
    ONNX dtype). Strings: an object array built from a dictionary encoding, so a batch makes
    one Python str per distinct value instead of one per row (categorical columns have few):
    0.37 ms instead of 1.13 ms per 10k-row column here. A null is fed as "", which is what
    OnnxScorer.feed feeds for a missing string (see formats.onnx.export)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return np.asarray(array.to_numpy(zero_copy_only=False))
    encoded = pc.dictionary_encode(array.fill_null("") if array.null_count else array)
    distinct = np.asarray(encoded.dictionary.to_numpy(zero_copy_only=False), dtype=object)
    return np.asarray(distinct[np.asarray(encoded.indices.to_numpy(zero_copy_only=False))])


def _flat_values(array: pa.Array, name: str) -> np.ndarray:
    import pyarrow.compute as pc

    if array.null_count:
        raise InputError(f"the column feeding the tensor input {name!r} has null rows")
    return np.asarray(pc.list_flatten(array).to_numpy(zero_copy_only=False))


def _tag(value: str, rows: int) -> pa.Array:
    """The value on the first row only: the summary collects a set, so one per batch is enough."""
    import pyarrow as pa

    return pa.concat_arrays([pa.array([value], pa.string()), pa.nulls(rows - 1, pa.string())])


def _score_valid(
    scorer: OnnxScorer,
    spec: ModelSpec,
    cols: Mapping[str, np.ndarray],
    error: pa.Array,
    outputs: Sequence[tuple[OutputField, pa.DataType]],
    labels: pa.Array | None,
) -> list[pa.Array]:
    """The outputs of the rows whose ``error`` is null; null on the others, which the model
    never sees (their values may be ones it cannot take: that is why they are invalid)."""
    import pyarrow as pa

    valid = np.asarray(error.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    rows = len(valid)
    if valid.all():
        values = predict(scorer, spec, cols, rows, strings_filled=True, labels=labels)
        return [_arrow_array(values[f.name], t) for f, t in outputs]
    if not valid.any():
        return [pa.nulls(rows, t) for _, t in outputs]
    where = np.flatnonzero(valid)
    values = predict(
        scorer, spec, {n: v[where] for n, v in cols.items()}, len(where), strings_filled=True
    )
    out = []
    for f, t in outputs:  # tabular outputs are scalars: scatter back, null where invalid
        got = values[f.name]
        full = np.empty(rows, dtype=object if got.dtype == object else got.dtype)
        full[where] = got
        out.append(pa.array(full, type=t, mask=~valid))
    return out


def _class_array(spec: ModelSpec, types: Sequence[pa.DataType]) -> pa.Array | None:
    """The classes as an Arrow array of the label column's type, in order, for a classifier."""
    import pyarrow as pa

    at = [i for i, f in enumerate(spec.outputs) if f.name == "label"]
    if spec.task != "classification" or not spec.classes or not at:
        return None
    return pa.array(list(spec.classes), type=types[at[0]])


@dataclass(frozen=True)
class _ArrowTask:
    """The function mapInArrow runs: batches of (inputs..., pass-through...) -> scored."""

    spec: ModelSpec
    load: Callable[[], bytes]
    runtime: Runtime
    schema: pa.Schema  # pass-through, outputs, [error,] PROVIDER, WORKER
    n_pass: int
    # on_invalid = "null": the batch's last column is jobs._validate's reason (null: valid);
    # the model scores the valid rows only and the others get null outputs and the reason.
    with_error: bool = False

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        spec = self.spec
        n_in = len(spec.input_names)
        out_types = [self.schema.field(self.n_pass + i).type for i in range(len(spec.outputs))]
        scorer: OnnxScorer | None = None
        labels = _class_array(spec, out_types)
        for batch in batches:
            rows = batch.num_rows
            if rows == 0:
                continue
            if scorer is None:
                # once per task, on its first rows: an empty partition builds no session, and
                # the provider choice (task resources, ORT's list) stays out of the batch loop
                scorer = cached_scorer(spec, self.load, self.runtime)
                provider, worker = scorer.providers[0], worker_tag(spec)
            if spec.tabular:
                cols = {n: _column_values(batch.column(i)) for i, n in enumerate(spec.input_names)}
            else:
                cols = {n: _flat_values(batch.column(i), n) for i, n in enumerate(spec.input_names)}
            arrays = [batch.column(n_in + j) for j in range(self.n_pass)]
            outputs = zip(spec.outputs, out_types, strict=True)
            if self.with_error:
                error = batch.column(n_in + self.n_pass)
                arrays += _score_valid(scorer, spec, cols, error, list(outputs), labels)
                arrays.append(error)
            else:
                values = predict(scorer, spec, cols, rows, strings_filled=True, labels=labels)
                arrays += [_arrow_array(values[f.name], t) for f, t in outputs]
            arrays += [_tag(provider, rows), _tag(worker, rows)]
            yield pa.RecordBatch.from_arrays(arrays, schema=self.schema)


class ScoreMetrics:
    """Spark Observations of a scoring run (they work on Spark Connect too, unlike
    accumulators); read :meth:`result` after the action that wrote the output."""

    def __init__(self) -> None:
        from pyspark.sql import Observation

        tag = uuid.uuid4().hex[:8]
        self.input = Observation(f"modelport_in_{tag}")
        self.output = Observation(f"modelport_out_{tag}")
        self.rules: list[str] = []  # the invalid-row rules counted, by their aggregate's index
        self.strings = ""  # how string columns reached the model: codes or strings, and why
        # the most bytes a row sent to the workers takes, or None and a column of variable
        # width: whether the caller may skip Spark's per-row batch size check (jobs._arrow_batches)
        self.row_bytes: tuple[int | None, str] = (None, "")

    def invalid_counts(self, found: Sequence[Check]) -> list[Any]:
        """One count per rule, aggregated with the input's row count (the same scan)."""
        self.rules = [c.key for c in found]
        return [invalid_count(key, f"invalid_{i}") for i, key in enumerate(self.rules)]

    def result(self) -> dict[str, Any]:
        got_in, got_out = self.input.get, self.output.get
        reasons = {key: int(got_in.get(f"invalid_{i}") or 0) for i, key in enumerate(self.rules)}
        reasons = {key: n for key, n in reasons.items() if n}
        sessions: dict[str, int] = {}
        for tag in got_out.get("workers") or []:
            pid, _, count = str(tag).partition(":")
            sessions[pid] = max(sessions.get(pid, 0), int(count))
        return {
            "rows_in": int(got_in.get("rows") or 0),
            "rows_scored": int(got_out.get("rows") or 0),
            "rows_invalid": sum(reasons.values()),
            "invalid_reasons": reasons,
            "providers": sorted(got_out.get("providers") or []),
            "worker_processes": len(sessions),
            "ort_sessions": sum(sessions.values()),
            "string_inputs": self.strings,
        }


def score(
    df: DataFrame,
    model: LoadedModel,
    settings: Settings,
    metrics: ScoreMetrics | None = None,
    sink: ArrowSink | None = None,
) -> DataFrame:
    """``df`` scored: pass-through columns, then the model's output columns.

    Checks the schema (and, where the driver can tell, the execution provider) before any task
    runs; knows nothing about reading or building the session. With a ``sink``
    (jobs._arrow_writer) the workers write those columns themselves and the DataFrame is one
    row per task, for :meth:`ArrowSink.commit`; else nothing here writes.
    """
    import onnxruntime as ort
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StringType, StructField, StructType

    from jobs._session import master_of, share_bytes

    spark, e = df.sparkSession, settings.execution
    exact = case_sensitive(spark)
    df = model_names(df, model.spec, exact)
    spec, onnx_bytes, strings = _string_inputs(df, model, e.string_codes)
    on_invalid = settings.validation.on_invalid
    per_row = on_invalid != "fail"  # string columns for numeric inputs: cast per row
    inputs = plan_inputs(df.schema, spec, settings.tensor, per_row)
    keep = passthrough_columns(df.schema, spec, settings.output, exact)
    row_id = find_column(keep, settings.output.id_column, exact)
    if on_invalid == "null" and find_column(keep, ERROR_COLUMN, exact):
        raise InputError(
            f"pass-through column {ERROR_COLUMN!r} would collide with the {ERROR_COLUMN!r} "
            "column that validation.on_invalid = null adds; rename it in the input"
        )
    _providers.check_driver(
        e.provider, ort.get_available_providers(), master_of(spark), e.allow_cpu_fallback
    )
    found = checks(df.schema, spec, per_row)  # the invalid-row rules, as SQL text
    # The plan is built from SQL text (selectExpr, where, sql): each PySpark Column call is
    # ~13 py4j round trips; with Columns this plan made 456-623, as text 118-160 (penguins;
    # tests/test_score_transform.py::test_the_plan_takes_few_py4j_round_trips fails above 250).
    rule = quoted(RULE)
    if on_invalid == "fail":  # an invalid row fails its task, through the first input
        base, extra = df, []
        if found:
            first = tabular_value(
                df.schema[spec.columns[0].name], spec.onnx_dtypes[0], per_row,
                spec.codes[0] if spec.codes else None,
            )  # fmt: skip
            inputs[0] = f"{stop_on_invalid(found, row_id, first)} AS {input_alias(0)}"
    else:  # the reason and the counts read the row's first broken rule
        base, extra = with_rule(df, found), [rule]
        if on_invalid == "null":
            extra.append(f"{reason_sql(found)} AS {quoted(REASON)}")
    passed = [f"{quoted(c)} AS {passthrough_alias(i)}" for i, c in enumerate(keep)]
    selected = base.selectExpr(*inputs, *passed, *extra)
    if metrics is not None:
        # fail: a run that ends has no invalid row, so counting them by rule would only cost
        # an aggregate per rule and row (10 for the penguins)
        metrics.strings = strings
        counts = metrics.invalid_counts(found if on_invalid != "fail" else [])
        selected = selected.observe(metrics.input, sql("count(1) AS `rows`"), *counts)
    if on_invalid == "quarantine":  # jobs._validate.quarantined() writes the others
        selected = selected.where(f"{rule} IS NULL")
    if on_invalid != "fail":
        selected = selected.drop(RULE)  # the batch: inputs, pass-through[, REASON]
    if metrics is not None:
        width, alias = row_bytes(selected.schema)
        names = {input_alias(i): n for i, n in enumerate(spec.input_names)}
        names |= {passthrough_alias(i): c for i, c in enumerate(keep)}
        names[REASON] = "the invalid-row reason"
        metrics.row_bytes = (width, names.get(alias, alias))
    error = [StructField(ERROR_COLUMN, StringType())] if on_invalid == "null" else []
    schema = StructType(
        [df.schema[c] for c in keep]
        + output_struct(spec)
        + error
        + [StructField(PROVIDER, StringType()), StructField(WORKER, StringType())]
    )
    # Spark sends a timestamp column to Python in the session's time zone, and the scored batch
    # must give it back typed the same (pyspark's to_arrow_schema refuses one without a zone)
    zone = str(spark.conf.get(TIME_ZONE_CONF))
    task = _ArrowTask(
        spec, share_bytes(spark, onnx_bytes), Runtime.from_settings(e),
        to_arrow_schema(schema, timezone=zone), len(keep), with_error=bool(error),
    )  # fmt: skip
    literals = dict(zip(MODEL_COLUMNS, (spec.name, spec.version, spec.sha256), strict=True))
    if not settings.output.model_columns:
        literals = {}
    if sink is not None:
        return _written(selected, task, literals, bool(error), row_id or "", sink, metrics)
    scored = selected.mapInArrow(task, schema)
    if metrics is not None:
        # rows the model scored: in "null" mode the invalid rows pass with null outputs
        scored_rows = f"{quoted(ERROR_COLUMN)} IS NULL" if error else "true"
        scored = scored.observe(
            metrics.output,
            sql(f"count(CASE WHEN {scored_rows} THEN 1 END) AS `rows`"),
            sql(f"collect_set({quoted(PROVIDER)}) AS providers"),
            sql(f"collect_set({quoted(WORKER)}) AS workers"),
        )
    # one projection for the tags' drop and the model's columns: each DataFrame call is one
    # more analysis of the whole plan on the driver
    shown = [quoted(f.name) for f in schema.fields if f.name not in (PROVIDER, WORKER)]
    shown += [f"{literal(v)} AS {n}" for n, v in literals.items()]
    return scored.selectExpr(*shown)


def _written(
    selected: DataFrame,
    task: _ArrowTask,
    literals: dict[str, str],
    error: bool,
    unique: str,
    sink: ArrowSink,
    metrics: ScoreMetrics | None,
) -> DataFrame:
    """The scored columns written by the workers (jobs._arrow_writer): one row per task, and
    the output observation made of those rows (the same keys as the rows' own)."""
    import pyarrow as pa

    from jobs._arrow_writer import result_schema

    # the scored batch's columns (task.schema, already in Arrow) but the tags, then the literals
    written = [f for f in task.schema if f.name not in (PROVIDER, WORKER)]
    written += [pa.field(n, pa.string(), nullable=False) for n in literals]
    run = sink.task(task, pa.schema(written), literals,
                    ERROR_COLUMN if error else None, (PROVIDER, WORKER), unique)  # fmt: skip
    results = selected.mapInArrow(run, result_schema())
    if metrics is not None:
        results = results.observe(
            metrics.output,
            sql("coalesce(sum(scored), 0) AS `rows`"),
            sql("array_distinct(flatten(collect_list(providers))) AS providers"),
            sql("array_distinct(flatten(collect_list(workers))) AS workers"),
        )
    return results


def _string_inputs(df: DataFrame, model: LoadedModel, wanted: bool) -> tuple[ModelSpec, bytes, str]:
    """The spec and the model the tasks get, and how string columns travel (for the summary):
    as int32 codes made in the JVM when the model allows it (formats.onnx.string_codes)."""
    codes = model.codes_for(df.schema, wanted)
    if isinstance(codes, str):
        return model.spec, model.broadcast(codes), codes and f"strings ({codes})"
    names = [c.name for c in model.spec.columns if c.name in codes.vocabularies]
    return model.coded_spec(codes), model.broadcast(codes), f"int32 codes ({', '.join(names)})"


# --- the public UDF: an iterator pandas UDF returning a struct ------------------------------
def _series_columns(spec: ModelSpec, series: Sequence[pd.Series]) -> dict[str, np.ndarray]:
    if spec.tabular:
        return {n: s.to_numpy() for n, s in zip(spec.input_names, series, strict=True)}
    out = {}
    for name, s in zip(spec.input_names, series, strict=True):
        if s.isna().any():
            raise InputError(f"the column feeding the tensor input {name!r} has null rows")
        flat = [np.asarray(v).reshape(-1) for v in s]
        out[name] = np.concatenate(flat) if flat else np.empty(0)
    return out


def _frame(spec: ModelSpec, values: Mapping[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {f.name: list(values[f.name]) if f.width else values[f.name] for f in spec.outputs}
    )


def pandas_scoring_udf(spec: ModelSpec, load: Callable[[], bytes], runtime: Runtime) -> Any:
    """An iterator pandas UDF of the model's inputs (in ``spec.input_names`` order) returning
    a struct of its output columns."""
    from pyspark.sql.pandas.functions import pandas_udf
    from pyspark.sql.types import StructType

    def run(series: Sequence[pd.Series]) -> pd.DataFrame:
        scorer = cached_scorer(spec, load, runtime)
        return _frame(spec, predict(scorer, spec, _series_columns(spec, series), len(series[0])))

    # Spark reads the iterator's element type off the hints: one Series, or a tuple of them.
    def one(batches: Iterator[pd.Series]) -> Iterator[pd.DataFrame]:
        for s in batches:
            yield run((s,))

    def many(batches: Iterator[tuple[pd.Series, ...]]) -> Iterator[pd.DataFrame]:
        for series in batches:
            yield run(series)

    fn = one if len(spec.input_names) == 1 else many
    return pandas_udf(fn, StructType(output_struct(spec)))  # type: ignore[call-overload]
