"""The four ways the Spark half of ``make compare`` scores the same Parquet, and the original.

Each engine reads a Parquet directory and (over)writes one of ``row_id`` + the canonical
columns (``label`` + ``proba_<class>``, or ``prediction``); :mod:`jobs.comparison.spark` times
the write. Every engine is used the way it is best used on Spark, not the way a quick guide
writes it:

- ``pickle/sklearn``: an iterator pandas UDF (mapInPandas) over the unpickled pipeline, one
  ``predict_proba`` per Arrow batch, the label its argmax;
- ``pmml/pypmml``: PMML4S through pypmml in a pandas UDF (a py4j JVM per Python worker);
- ``pmml/jpmml``: JPMML-Evaluator in a Java UDF (``jobs/java``) inside the executors' own JVM;
- ``onnx/onnxruntime``: the scoring job's own transform (:func:`jobs.scoring.worker.score`), written as
  the job writes it (by the Python workers where ``output.writer = auto`` can,
  :mod:`jobs.scoring.output.arrow`).

:func:`original` is what they are all compared with: the bundle's pickle scored by
:class:`formats.sklearn_formats.SklearnScorer` (scikit-learn's own ``predict`` and
``predict_proba``, exactly as ``formats parity`` defines the original), run separately and
untimed, so no engine is compared with itself.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from formats.bundle import Bundle
from formats.errors import ModelLoadError, UsageError
from formats.schema import (
    ColumnSpec,
    as_fitted,
    canonical_frame,
    conform,
    missing_as_fitted,
    output_columns,
)
from formats.sklearn_formats import final_estimator
from jobs.scoring.settings import Settings

__all__ = ["ENGINES", "Engine", "Target", "original", "pmml_outputs"]

UDF_NAME = "modelport_pmml"
_WORKER: dict[str, Any] = {}  # per Python worker: the loaded model, by key (worker reuse)
_SHIPPED: set[tuple[int, str]] = set()  # (SparkContext id, file name) already added
_LOCK = threading.Lock()
_FILES: tempfile.TemporaryDirectory[str] | None = None  # what sparkContext.addFile was given


@dataclass(frozen=True)
class Target:
    """What every engine needs to know about the model (small: pickled into the tasks)."""

    bundle: str
    task: str
    classes: tuple[Any, ...] | None
    inputs: tuple[ColumnSpec, ...]
    has_proba: bool
    id_column: str

    @property
    def columns(self) -> list[str]:
        return output_columns(self.task, self.classes, self.has_proba)

    def schema(self) -> str:
        """The output's DDL: labels as strings (every engine's labels compare as text)."""
        types = {c: "string" if c == "label" else "double" for c in self.columns}
        return ", ".join([f"`{self.id_column}` long", *(f"`{c}` {t}" for c, t in types.items())])


Engine = Callable[[Any, Target, str, str, Settings], None]


def _write(df: Any, out: str) -> None:
    df.write.mode("overwrite").parquet(out)


def _inputs(spark: Any, target: Target, data: str) -> Any:
    return spark.read.parquet(data).select(target.id_column, *[c.name for c in target.inputs])


def _as_frame(target: Target, frame: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    out = scored.reset_index(drop=True)
    if "label" in out:
        out["label"] = out["label"].astype(str)
    out.insert(0, target.id_column, frame[target.id_column].to_numpy())
    return out[[target.id_column, *target.columns]]


def _pickle_bytes(spark: Any, target: Target) -> Callable[[], bytes]:
    from jobs.scoring.session import share_bytes

    bundle = Bundle.open(target.bundle)
    return share_bytes(spark, bundle.read(bundle.file_of("pickle")))


def _sklearn_rows(target: Target, frame: pd.DataFrame) -> pd.DataFrame:
    """The model's columns as the pipeline was fitted on them: a null category in the form
    training held (Arrow hands pandas None, which SimpleImputer(missing_values=nan) leaves)."""
    x = missing_as_fitted(conform(frame, list(target.inputs)), list(target.inputs), one_null=True)
    return as_fitted(x, list(target.inputs))  # pandas' categories where it was fitted on them


def _cached(key: str, make: Callable[[], Any]) -> Any:
    """One per Python worker. A module function, so the UDFs' closures reach this module's
    dict on the worker (a global they named directly would be pickled into every task)."""
    with _LOCK:
        if key not in _WORKER:
            _WORKER[key] = make()
        return _WORKER[key]


def _unpickled(load: Callable[[], bytes]) -> Any:
    from formats.sklearn_formats import load_pickle

    data = load()
    return _cached("pickle:" + hashlib.sha256(data).hexdigest(), lambda: load_pickle(data))


def pickle_pandas(spark: Any, target: Target, data: str, out: str, _settings: Settings) -> None:
    """The pickle in an iterator pandas UDF: one predict_proba per batch, label = its argmax
    (where that is the model's predict)."""
    load = _pickle_bytes(spark, target)

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        model = _unpickled(load)
        argmax = label_is_proba_argmax(model)
        for frame in frames:
            x = _sklearn_rows(target, frame)
            if target.task == "classification" and target.has_proba:
                proba = model.predict_proba(x)
                label = (np.asarray(model.classes_)[proba.argmax(axis=1)] if argmax
                         else model.predict(x))  # fmt: skip
                got = canonical_frame(target.task, target.classes, label=label, proba=proba)
            elif target.task == "classification":
                got = canonical_frame(target.task, target.classes, label=model.predict(x))
            else:
                got = canonical_frame(target.task, None, prediction=model.predict(x))
            yield _as_frame(target, frame, got)

    _write(_inputs(spark, target, data).mapInPandas(run, target.schema()), out)


def label_is_proba_argmax(model: Any) -> bool:
    """Whether the classifier's ``predict`` is the argmax of its ``predict_proba``, so one call
    gives both. Not for an SVM: its labels come from the decision function and its probabilities
    from a separate Platt fit, and the two disagree on some rows (on 44.5% of the penguins with
    the default pipeline's unscaled features: seen here)."""
    from sklearn.svm._base import BaseSVC

    final = final_estimator(model)
    return not isinstance(final, BaseSVC)


def original(spark: Any, target: Target, data: str, out: str, _settings: Settings) -> None:
    """The bundle's pickle scored as ``formats parity`` scores the original (untimed)."""
    load = _pickle_bytes(spark, target)

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from formats.sklearn_formats import SklearnScorer

        scorer = SklearnScorer(_unpickled(load), "pickle", target.task,
                               None if target.classes is None else list(target.classes),
                               list(target.inputs), target.has_proba)  # fmt: skip
        for frame in frames:
            yield _as_frame(target, frame, scorer.predict(frame))

    _write(_inputs(spark, target, data).mapInPandas(run, target.schema()), out)


def _ship_pmml(spark: Any, target: Target) -> str:
    """model.pmml added to the session under a name of its content (one file per model: Spark
    refuses a second, different file under a name it already has). The name to SparkFiles.get."""
    from formats.pmml import labels_only_note

    bundle = Bundle.open(target.bundle)
    path = bundle.checked_path("pmml")
    note = labels_only_note(path) if target.task == "classification" and target.has_proba else ""
    if note:  # on the driver: pypmml would make probabilities up, the Java UDF find none
        raise ModelLoadError(note)
    name = f"modelport-{hashlib.sha256(path.read_bytes()).hexdigest()[:24]}.pmml"
    sc = spark.sparkContext
    key = (id(sc), name)
    with _LOCK:
        if key not in _SHIPPED:
            # executors fetch the file when a task first needs it: it must outlive this call
            global _FILES
            _FILES = _FILES or tempfile.TemporaryDirectory(prefix="modelport-files-")
            shutil.copyfile(path, Path(_FILES.name) / name)
            sc.addFile(str(Path(_FILES.name) / name))
            _SHIPPED.add(key)
    return name


def pypmml_pandas(spark: Any, target: Target, data: str, out: str, _settings: Settings) -> None:
    """PMML4S (pypmml) in an iterator pandas UDF: formats' PypmmlScorer, one per worker."""
    name = _ship_pmml(spark, target)

    def run(frames: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from pyspark import SparkFiles

        from formats.pmml import PypmmlScorer

        classes = None if target.classes is None else list(target.classes)
        scorer = _cached("pypmml:" + name, lambda: PypmmlScorer(
            Path(SparkFiles.get(name)), target.task, classes, list(target.inputs),
            target.has_proba))  # fmt: skip
        for frame in frames:
            yield _as_frame(target, frame, scorer.predict(frame))

    _write(_inputs(spark, target, data).mapInPandas(run, target.schema()), out)


def pmml_outputs(
    path: Path, task: str, classes: tuple[Any, ...] | None, has_proba: bool
) -> list[str]:
    """The result fields the Java UDF returns, ``s:`` (text) or ``d:`` (double) + name, in the
    order of :attr:`Target.columns`; chosen as formats.pmml's ``_find_outputs`` chooses them."""
    from formats.pmml import _same_class

    root = ET.parse(path).getroot()
    skip = {"Header", "DataDictionary", "TransformationDictionary", "MiningBuildTask", "Extension"}
    model = next((e for e in root if e.tag.rsplit("}", 1)[-1] not in skip), None)
    if model is None:
        raise ModelLoadError(f"{path.name} holds no model element")

    def children(element: ET.Element, tag: str) -> list[ET.Element]:
        return [e for e in element if e.tag.rsplit("}", 1)[-1] == tag]

    fields = [(f.get("name", ""), f.get("feature", "predictedValue"), f.get("value"))
              for out in children(model, "Output") for f in children(out, "OutputField")]  # fmt: skip
    targets = [m.get("name", "") for schema in children(model, "MiningSchema")
               for m in children(schema, "MiningField")
               if m.get("usageType") in ("target", "predicted")]  # fmt: skip
    predicted = [n for n, feature, _ in fields if feature == "predictedValue"]
    label = predicted[0] if predicted else (targets[0] if targets else "")
    if not label:
        raise ModelLoadError(f"{path.name} names no target field and no predicted value")
    if task != "classification":
        return [f"d:{label}"]
    names = [n for n, _, _ in fields]
    out = [f"s:{label}"]
    for cls in (classes or ()) if has_proba else ():
        match = [n for n, f, v in fields if f == "probability" and _same_class(v, cls)]
        match += [n for n in (f"probability({cls})", f"probability_{cls}") if n in names]
        if not match:
            raise ModelLoadError(f"{path.name} has no probability output for class {cls!r}")
        out.append(f"d:{match[0]}")
    return out


def register_pmml_udf(spark: Any, target: Target, jars: tuple[Path, ...]) -> None:
    """The Java UDF's jars added with ``ADD JAR`` and the UDF registered. ``ADD JAR`` works on a
    session whose JVM already runs (spark-submit, tests, notebooks), where ``spark.jars``
    would come too late: it adds the jar to the driver's class loader and ships it to every
    executor."""
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    from jobs.comparison.jvm import UDF_CLASS

    for jar in jars:
        spark.sql(f"ADD JAR '{jar}'")
    fields = [
        StructField(c, StringType() if c == "label" else DoubleType()) for c in target.columns
    ]
    spark.udf.registerJavaFunction(UDF_NAME, UDF_CLASS, StructType(fields))


def jpmml_java_udf(spark: Any, target: Target, data: str, out: str, _settings: Settings) -> None:
    """JPMML-Evaluator in the executors' JVM: the Java UDF over a struct of the features."""
    from pyspark.sql import functions as F

    name = _ship_pmml(spark, target)
    path = Bundle.open(target.bundle).checked_path("pmml")
    wanted = "\n".join(pmml_outputs(path, target.task, target.classes, target.has_proba))
    features = F.struct(*[F.col(f"`{c.name}`") for c in target.inputs])
    scored = F.call_function(UDF_NAME, F.lit(name), F.lit(wanted), features).alias("s")
    df = _inputs(spark, target, data).select(target.id_column, scored)
    _write(df.select(target.id_column, *[F.col(f"s.`{c}`").alias(c) for c in target.columns]), out)


def onnx_job(spark: Any, target: Target, data: str, out: str, settings: Settings) -> None:
    """The scoring job as ``jobs/score.py`` runs it (:func:`jobs.scoring.run`), without its
    parity gate: the agreement here is measured on every row."""
    from jobs.scoring import run

    if settings.output.id_column != target.id_column:
        raise UsageError(f"output.id_column must be {target.id_column!r} here")
    job = replace(settings.job, bundle=target.bundle, input=data, output=out,
                  parity_gate=False, allow_empty_input=True)  # fmt: skip
    run(spark, replace(settings, job=job, output=replace(settings.output, mode="overwrite")))


# name -> (format, engine on Spark, how, the function); in the order they run and are reported
ENGINES: dict[str, tuple[str, str, str, Engine]] = {
    "pickle": ("pickle", "sklearn", "pandas UDF (mapInPandas), predict_proba per batch", pickle_pandas),
    "pypmml": ("pmml", "pypmml", "pandas UDF (mapInPandas), PMML4S on a JVM per Python worker",
               pypmml_pandas),
    "jpmml": ("pmml", "jpmml", "Java UDF in the executors' JVM (JPMML-Evaluator)", jpmml_java_udf),
    "onnx": ("onnx", "onnxruntime", "the scoring job: mapInArrow, broadcast ONNX", onnx_job),
}  # fmt: skip
