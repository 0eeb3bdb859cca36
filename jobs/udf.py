"""A bundle's ONNX model as a Spark UDF for your own Spark code, and the score job's whole
transform as a function (:func:`score_frame`: ``DataFrame -> DataFrame``, the faster of the two).

    from jobs.udf import input_columns, onnx_udf

    score = onnx_udf(spark, "bundles/penguins")
    df = df.withColumn("scores", score(*input_columns("bundles/penguins")))
    df.select("row_id", "scores.label", "scores.proba_Adelie")

The UDF is an iterator pandas UDF returning a struct of the model's canonical columns (``label``
and ``proba_<class>``, or ``prediction``; one field per output for tensor models). It takes the
model's input columns in the manifest's order (:func:`input_columns`). The model is read and
checked (sha256) on the driver, broadcast once (on Spark Connect, which has no broadcast:
added once per session with ``spark.addArtifacts``), and each Python worker keeps one ONNX Runtime
session for it, shared with the score job's (same cache, same feed and decoding code).

The UDF is marked non-deterministic on purpose: Spark may otherwise inline it once per field
when the struct is expanded (``scores.*``), running the model more than once.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnxruntime as ort

from formats.onnx.runtime import providers as _providers
from jobs.scoring.model import load_model
from jobs.scoring.session import master_of, share_bytes
from jobs.scoring.settings import ExecutionSettings
from jobs.scoring.worker import pandas_scoring_udf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["input_columns", "onnx_udf", "score_frame"]


def onnx_udf(
    spark: SparkSession,
    bundle: str | Path,
    *,
    provider: str = "cpu",
    allow_cpu_fallback: bool = False,
    intra_op_threads: int = 0,
    gpu_device_id: int = 0,
) -> Any:
    """An iterator pandas UDF scoring ``bundle``'s ``model.onnx``, for ``withColumn`` and
    ``select`` in your own Spark code.

    Parameters
    ----------
    spark : the session the UDF runs in (the model travels once: broadcast, or added as an
        artifact on Spark Connect).
    bundle : a bundle directory (``formats.save``'s).
    provider : "cpu" or "cuda"; with "cuda" each task's Spark GPU address is CUDA's device_id.
    allow_cpu_fallback : score on CPU where CUDA cannot run instead of failing.
    intra_op_threads : ONNX Runtime's threads per session; 0 follows spark.task.cpus.
    gpu_device_id : the CUDA device where Spark assigned the task no GPU.

    Returns
    -------
    A pandas UDF of the model's input columns (:func:`input_columns`, in that order) returning
    a struct of its canonical columns (``label`` and ``proba_<class>``, or ``prediction``).

    Raises
    ------
    UsageError, IntegrityError, ModelLoadError
        A provider other than cpu or cuda, CUDA where the driver can tell it is absent, a
        missing or damaged bundle (one line each).

    Examples
    --------
    >>> score = onnx_udf(spark, bundle)
    >>> scored = df.withColumn("s", score(*input_columns(bundle)))
    >>> scored.select("row_id", "s.label").count() == df.count()
    True
    """
    from formats.errors import UsageError

    if provider not in ("cpu", "cuda"):
        raise UsageError(f"provider must be 'cpu' or 'cuda', got {provider!r}")
    model = load_model(bundle)
    _providers.check_driver(
        provider, ort.get_available_providers(), master_of(spark), allow_cpu_fallback
    )
    runtime = ExecutionSettings(provider, allow_cpu_fallback, intra_op_threads, gpu_device_id)
    udf = pandas_scoring_udf(model.spec, share_bytes(spark, model.strings_model), runtime)
    return udf.asNondeterministic()


def score_frame(
    df: DataFrame, bundle: str | Path, settings: Mapping[str, object] | None = None
) -> DataFrame:
    """``df`` scored as the score job scores it, for your own pipeline.

    Faster than :func:`onnx_udf` where you can hand over the whole DataFrame: only the model's
    columns cross to Python, numbers are cast and category columns turned into int32 codes in
    the JVM, and one mapInArrow feeds ONNX Runtime without pandas. The rows per ONNX Runtime
    call are the session's spark.sql.execution.arrow.maxRecordsPerBatch. Not included: the
    job's parity gate, run summary and write (:func:`jobs.scoring.run` adds them).

    Parameters
    ----------
    df : the rows to score; its model columns are found as Spark finds names.
    bundle : a bundle directory (``formats.save``'s).
    settings : the job's conf keys over conf/local.toml's, typed as in that file
        (``{"validation.on_invalid": "null", "output.passthrough": ["island"]}``).

    Returns
    -------
    DataFrame
        The id column (``output.id_column``, "row_id", when ``df`` has it) and
        ``output.passthrough``, then the model's output columns.

    Raises
    ------
    InputError, UsageError, IntegrityError
        A missing or damaged bundle, a missing column, a wrong type, a setting of the wrong
        type: one line, here, before any task runs.

    Examples
    --------
    >>> scored = score_frame(df, bundle, {"output.passthrough": ["island"]})
    >>> scored.columns[:3]
    ['row_id', 'island', 'label']
    """
    from jobs.scoring.settings import load_settings
    from jobs.scoring.transform import score

    return score(df, load_model(bundle), load_settings(None, values=settings))


def input_columns(bundle: str | Path) -> list[str]:
    """The columns :func:`onnx_udf`'s UDF takes, in order: the manifest's inputs (a tensor
    model's ONNX inputs).

    Examples
    --------
    >>> input_columns(bundle)[:2]
    ['island', 'bill_length_mm']
    """
    return load_model(bundle).spec.input_names
