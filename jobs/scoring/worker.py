"""Scoring on the executors: the per-worker session cache, and the two ways in.

- :class:`ArrowTask` is what the job's ``mapInArrow`` runs (jobs.scoring.transform): the worker
  gets numpy straight from Arrow buffers already in the tensors' dtypes (cast in the JVM), and
  pass-through columns go back as the same Arrow arrays, untouched by pandas.
- :func:`pandas_scoring_udf` (``jobs.udf.onnx_udf``) is an iterator pandas UDF returning a
  struct, for ``withColumn``/``select`` in users' own code.

Both call :func:`cached_scorer` and :func:`predict`, i.e. OnnxScorer's own ``feed`` and
``canonical``: the job, the public UDF and ``formats.load`` cannot drift apart. The cache keeps
one ONNX Runtime session per Python worker process and model sha256 (``spark.python.worker.reuse``
keeps the process, and so the session, alive across tasks): never one per batch or partition.
ONNX Runtime runs as many threads as the task has CPUs: its default pool would spin on every
core of the machine.

Invalid rows (:mod:`jobs.scoring.rules`) are found in the JVM before a batch reaches a worker:
with ``validation.on_invalid = "null"`` the batch carries each row's reason and the worker
scores only the rows without one (:func:`_score_valid`); ``fail`` and ``quarantine`` never send
one.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from formats.errors import InputError
from formats.onnx.runtime import providers as _providers
from jobs.scoring import tensor as _tensor
from jobs.scoring.model import ModelSpec, output_struct
from jobs.scoring.settings import ExecutionSettings
from jobs.scoring.tensor import OutputField

if TYPE_CHECKING:
    import pyarrow as pa

    from formats.onnx.scorer import OnnxScorer

__all__ = ["PROVIDER", "REASON", "WORKER", "ArrowTask", "cached_scorer",
           "pandas_scoring_udf", "predict"]  # fmt: skip

PROVIDER = "_mp_provider"  # internal columns: which provider ran, which worker/session
WORKER = "_mp_worker"
REASON = "_mp_reason"  # why the row is invalid (jobs.scoring.rules), null when it is valid


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


def cached_scorer(spec: ModelSpec, load: Callable[[], bytes], runtime: ExecutionSettings) -> OnnxScorer:
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
    one Python str per distinct value instead of one per row (categorical columns have few).
    A null is fed as "", which is what
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
class ArrowTask:
    """The function mapInArrow runs: batches of (inputs..., pass-through...) -> scored."""

    spec: ModelSpec
    load: Callable[[], bytes]
    runtime: ExecutionSettings
    schema: pa.Schema  # pass-through, outputs, [error,] PROVIDER, WORKER
    n_pass: int
    # on_invalid = "null": the batch's last column is jobs.scoring.rules's reason (null: valid);
    # the model scores the valid rows only and the others get null outputs and the reason.
    with_error: bool = False
    spark_schema: Any = None  # ``schema`` as Spark's StructType (mapInArrow's return type)

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


def pandas_scoring_udf(spec: ModelSpec, load: Callable[[], bytes], runtime: ExecutionSettings) -> Any:
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
