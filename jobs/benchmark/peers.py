"""The peers of ``make bench``: what a user would otherwise write to score Parquet on Spark.

Each peer reads the same Parquet, scores it (or, for the floors, only moves it through Python)
and writes a Parquet of ``row_id`` + scores; the runner times the whole action and counts the
rows written. They are written the way the usual guides show them, not tuned by us: that is the
point of the comparison. The job itself runs through its own transform (``jobs.scoring.worker.score``).
"""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PEERS", "Context"]


@dataclass
class Context:
    spark: Any
    data: str  # Parquet directory
    bundle: str
    out: str  # Parquet directory to (over)write
    columns: list[str]  # the model's input columns
    classes: list[Any]
    onnx: bytes
    pickle: bytes
    pmml: str  # PMML text ("" when the bundle has none)


def _write(df: Any, ctx: Context) -> None:
    df.write.mode("overwrite").parquet(ctx.out)


def _inputs(ctx: Context) -> Any:
    return ctx.spark.read.parquet(ctx.data).select("row_id", *ctx.columns)


def _proba_schema(ctx: Context) -> str:
    return "row_id long, label string, " + ", ".join(f"proba_{c} double" for c in ctx.classes)


def job(ctx: Context, overrides: tuple[str, ...] = ()) -> None:
    """modelport's job as ``spark-submit jobs/score.py`` runs it (:func:`jobs.scoring.run`:
    the plan, the writer ``auto`` chooses, the commit, the run summary), without the parity
    gate and the empty-input check, fixed costs of a run that the ``end-to-end`` figures
    include."""
    from jobs.scoring import load_settings, run

    sets = (f"job.bundle={ctx.bundle}", f"job.input={ctx.data}", f"job.output={ctx.out}",
            "output.mode=overwrite", "job.parity_gate=false", "job.allow_empty_input=true",
            *overrides)  # fmt: skip
    got = run(ctx.spark, load_settings(None, sets, {}))
    if got.rows_in != got.rows_scored:  # no row may be lost between the two observations
        raise RuntimeError(f"the job read {got.rows_in} rows and scored {got.rows_scored}")


def job_spark_writer(ctx: Context) -> None:
    """The job with ``output.writer = spark``: the scores written by Spark's row-based
    Parquet writer in the JVM rather than by pyarrow in the workers (jobs.scoring.output.arrow).
    Against ``job``: what the workers' writer buys."""
    job(ctx, ("output.writer=spark",))


def job_strings(ctx: Context) -> None:
    """The job with ``execution.string_codes = false``: category columns sent and fed as
    strings, model.onnx as saved. Against ``job``: what the codes buy the whole job."""
    job(ctx, ("execution.string_codes=false",))


def floor_arrow(ctx: Context) -> None:
    """No model: the model's columns through mapInArrow, row_id back (Python transfer alone)."""
    import pyarrow as pa

    def noop(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield pa.record_batch([batch.column(0)], names=["row_id"])

    _write(_inputs(ctx).mapInArrow(noop, "row_id long"), ctx)


def _made_up_scores(ctx: Context) -> tuple[str, list[str], Callable[[int], list[Any]]]:
    """The job's output schema, its column names and, per batch size, made-up values for its
    score columns (a classifier's label and one probability per class, or a regressor's
    prediction)."""
    import pyarrow as pa

    classes = [str(c) for c in ctx.classes]
    made: dict[int, list[pa.Array]] = {}

    def scores(rows: int) -> list[pa.Array]:
        if rows not in made:  # varied values, so Parquet's encodings work as on real scores
            rng = np.random.default_rng(rows)
            if not classes:
                made[rows] = [pa.array(rng.normal(size=rows))]
            else:
                proba = rng.dirichlet(np.ones(len(classes)), rows)
                label = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
                made[rows] = [pa.array(label)] + [pa.array(p) for p in proba.T]
        return made[rows]

    schema = _proba_schema(ctx) if classes else "row_id long, prediction double"
    return schema, [f.split()[0] for f in schema.split(", ")], scores


def floor_output(ctx: Context) -> None:
    """No model: the floor, returning and writing the job's output columns (the same values
    every batch): Spark's cost of moving and writing the scores, without the scoring."""
    import pyarrow as pa

    schema, names, scores = _made_up_scores(ctx)

    def noop(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            columns = [batch.column(0), *scores(batch.num_rows)]
            yield pa.RecordBatch.from_arrays(columns, names=names)

    _write(_inputs(ctx).mapInArrow(noop, schema), ctx)


def floor_ort(ctx: Context) -> None:
    """floor_output plus ONNX Runtime in the worker, with nothing converted per batch: each task
    turns its first batch into the model's feed once and runs ORT (one thread, as the job on
    one task CPU) on that feed for every batch. The job less its conversions, validation and
    observations: job / floor_ort is what those cost; floor_ort's worker CPU over
    floor_output's is ORT's cost inside a Spark worker, beside ``ort`` (ORT alone in one
    process, no JVM sharing its core and caches). The model is the one the job runs: string
    columns as int32 codes where formats.onnx.string_codes applies (the columns still cross
    as floor_output sends them; the first batch's codes are made in the worker, once)."""
    import pyarrow as pa

    from jobs.scoring.model import load_model

    loaded = load_model(ctx.bundle)
    codes = loaded.string_codes
    model = loaded.broadcast(codes)
    columns = ctx.columns
    schema, names, scores = _made_up_scores(ctx)

    def first_feed(batch: pa.RecordBatch, inputs: list[Any]) -> dict[str, np.ndarray]:
        feed = {}
        for spec in inputs:
            values = batch.column(columns.index(spec.name) + 1).to_numpy(zero_copy_only=False)
            if spec.type == "tensor(string)":
                values = np.where(pd.isna(values), "", values).astype(object)
            elif spec.type == "tensor(int32)" and not isinstance(codes, str):
                values = codes.codes(spec.name, [v if isinstance(v, str) else None for v in values])
            else:
                values = values.astype(np.int64 if spec.type == "tensor(int64)" else np.float32)
            feed[spec.name] = values.reshape(-1, 1)
        return feed

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        feeds: dict[int, dict[str, np.ndarray]] = {}  # by batch size
        first_rows = 0
        for batch in batches:
            rows = batch.num_rows
            if rows == 0:  # nothing to score, and no feed to cycle from
                continue
            if not feeds:
                first_rows, feeds[rows] = rows, first_feed(batch, list(session.get_inputs()))
            elif rows not in feeds:  # the first batch's rows, cycled to this batch's size
                take = np.arange(rows) % first_rows
                feeds[rows] = {k: v[take] for k, v in feeds[first_rows].items()}
            session.run(None, feeds[rows])
            yield pa.RecordBatch.from_arrays([batch.column(0), *scores(rows)], names=names)

    _write(_inputs(ctx).mapInArrow(run, schema), ctx)


def floor_pandas(ctx: Context) -> None:
    """No model: the same through mapInPandas."""

    def noop(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for frame in frames:
            yield frame[["row_id"]]

    _write(_inputs(ctx).mapInPandas(noop, "row_id long"), ctx)


def handwritten_onnx(ctx: Context) -> None:
    """The guides' ONNX UDF: broadcast bytes, a session per partition (ORT's default threads),
    mapInPandas: the end-to-end benchmark's ``guide`` script, run in this session."""
    from jobs.benchmark.scripts.udf import onnx_batches

    run = onnx_batches(ctx.spark.sparkContext.broadcast(ctx.onnx), ctx.columns, ctx.classes, 0)
    _write(_inputs(ctx).mapInPandas(run, _proba_schema(ctx)), ctx)


def predict_batch(ctx: Context) -> None:
    """Spark's predict_batch_udf with ONNX Runtime inside make_predict_fn."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    model = ctx.spark.sparkContext.broadcast(ctx.onnx)
    columns, classes = ctx.columns, ctx.classes

    def make_predict_fn() -> Callable[..., dict[str, np.ndarray]]:
        import onnxruntime as ort

        session = ort.InferenceSession(model.value, providers=["CPUExecutionProvider"])
        types = [i.type for i in session.get_inputs()]
        names = [i.name for i in session.get_inputs()]
        order = [columns.index(n) for n in names]

        def predict(*arrays: np.ndarray) -> dict[str, np.ndarray]:
            feed = {}
            for name, kind, i in zip(names, types, order, strict=True):
                values = arrays[i]
                if kind == "tensor(string)":
                    values = np.where(pd.isna(values), "", values).astype(str)
                elif kind == "tensor(int64)":
                    values = values.astype(np.int64)
                else:
                    values = values.astype(np.float32)
                feed[name] = values.reshape(-1, 1)
            label, proba = session.run(None, feed)
            out = {"label": label.astype(str)}
            out |= {f"proba_{c}": proba[:, j].astype(np.float64) for j, c in enumerate(classes)}
            return out

        # predict_batch_udf counts predict_fn's parameters to decide one input per column
        params = [inspect.Parameter(f"x{i}", inspect.Parameter.POSITIONAL_ONLY) for i in order]
        predict.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        return predict

    fields = [StructField("label", StringType())]
    fields += [StructField(f"proba_{c}", DoubleType()) for c in classes]
    udf = predict_batch_udf(make_predict_fn, return_type=StructType(fields), batch_size=10_000)
    df = _inputs(ctx)
    _write(df.select("row_id", udf(*columns).alias("s")).select("row_id", "s.*"), ctx)


def pickle_pandas(ctx: Context) -> None:
    """A hand-written iterator pandas UDF over the pickle (scikit-learn's own predict_proba):
    the end-to-end benchmark's ``pickle`` script, run in this session."""
    from jobs.benchmark.scripts.udf import pickle_batches

    run = pickle_batches(ctx.spark.sparkContext.broadcast(ctx.pickle), ctx.columns, ctx.classes)
    _write(_inputs(ctx).mapInPandas(run, _proba_schema(ctx)), ctx)


def pypmml_pandas(ctx: Context) -> None:
    """pypmml (PMML4S on a JVM in each Python worker) in a pandas UDF."""
    text, columns, classes = ctx.pmml, ctx.columns, ctx.classes

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pypmml import Model

        model = Model.fromString(text)
        for frame in frames:
            got = model.predict(frame[columns])
            out = pd.DataFrame({"row_id": frame["row_id"].to_numpy()})
            for c in classes:
                out[f"proba_{c}"] = got[f"probability({c})"].to_numpy(dtype=np.float64)
            out["label"] = np.asarray(classes)[out.iloc[:, 1:].to_numpy().argmax(axis=1)]
            yield out[["row_id", "label", *[f"proba_{c}" for c in classes]]]

    _write(_inputs(ctx).mapInPandas(run, _proba_schema(ctx)), ctx)


def row_at_a_time(ctx: Context) -> None:
    """A plain Python UDF over the pickle, one row per call (the slowest common way)."""
    from pyspark.sql.functions import udf

    model = ctx.spark.sparkContext.broadcast(ctx.pickle)
    columns = ctx.columns
    cache: dict[str, Any] = {}

    @udf("string")
    def label(*values: Any) -> str:
        fitted = cache.get("m")
        if fitted is None:
            fitted = cache["m"] = pickle.loads(model.value)
        row = pd.DataFrame([values], columns=columns)
        return str(fitted.predict(row)[0])

    df = _inputs(ctx)
    _write(df.select("row_id", label(*columns).alias("label")), ctx)


def _mlflow(ctx: Context, flavor: str) -> None:
    import tempfile

    import mlflow
    from mlflow.pyfunc import spark_udf

    where = tempfile.mkdtemp(prefix=f"mlflow-{flavor}-") + "/model"
    if flavor == "sklearn":
        # MLflow 3 saves with skops by default, which refuses the model's own tree types
        mlflow.sklearn.save_model(
            pickle.loads(ctx.pickle), where, serialization_format="cloudpickle"
        )
    else:
        import onnx

        mlflow.onnx.save_model(onnx.load_from_string(ctx.onnx), where)
    predict = spark_udf(ctx.spark, where, env_manager="local", result_type="string")
    df = _inputs(ctx)
    from pyspark.sql.functions import struct

    # a struct keeps the column names, which the pipeline's ColumnTransformer selects by
    _write(df.select("row_id", predict(struct(*ctx.columns)).alias("label")), ctx)


def mlflow_pickle(ctx: Context) -> None:
    """MLflow's spark_udf over the sklearn flavor (labels only: what spark_udf returns)."""
    _mlflow(ctx, "sklearn")


def mlflow_onnx(ctx: Context) -> None:
    """MLflow's spark_udf over its ONNX flavor."""
    _mlflow(ctx, "onnx")


PEERS: dict[str, Callable[[Context], None]] = {
    "job": job,
    "job_spark_writer": job_spark_writer,
    "job_strings": job_strings,
    "floor_arrow": floor_arrow,
    "floor_output": floor_output,
    "floor_ort": floor_ort,
    "floor_pandas": floor_pandas,
    "handwritten_onnx": handwritten_onnx,
    "predict_batch_udf": predict_batch,
    "pickle_pandas": pickle_pandas,
    "mlflow_pickle": mlflow_pickle,
    "mlflow_onnx": mlflow_onnx,
    "pypmml_pandas": pypmml_pandas,
    "row_at_a_time": row_at_a_time,
}
