"""PMML: export with sklearn2pmml, score with PMML4S (pypmml) or JPMML-Evaluator (jpmml_evaluator).

All three run on a JVM, so each needs Java; the scorers keep one JVM per engine alive across calls
and share it between their instances (the last :meth:`close` shuts it down). Both scorers return
the canonical columns of :func:`formats.schema.canonical_frame`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import pickle
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from formats._files import atomic_path
from formats.errors import (
    FormatUnsupportedError,
    InputError,
    ModelLoadError,
    NotFoundError,
)
from formats.java import java_version
from formats.schema import ColumnSpec, canonical_frame, conform

__all__ = ["JpmmlScorer", "PypmmlScorer", "labels_only", "labels_only_note", "write_pmml"]

log = logging.getLogger(__name__)

# "org.jpmml.python.InvalidAttributeException: Attribute 'func' has an unsupported value (...)"
_JAVA_EXCEPTION = re.compile(r"^((?:[\w$]+\.)+[\w$]*(?:Exception|Error)): (.+)$", re.MULTILINE)
_PYTHON_CLASS = re.compile(r"\(Python class ([\w.]+)\)")
_PROBABILITY_FIELD = re.compile(rb"<OutputField\b[^>]*\bfeature=[\"']probability[\"']")
_MODEL_ELEMENT = re.compile(rb"<(\w+Model)\b")


def write_pmml(model: Any, sample: pd.DataFrame, path: Path) -> dict[str, Any]:
    """Export a fitted estimator or pipeline to PMML at ``path``; the details to record."""
    from sklearn.base import BaseEstimator
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    if not isinstance(sample, pd.DataFrame) or sample.shape[1] == 0:
        raise InputError("the sample must be a DataFrame of the training features")
    if not isinstance(model, BaseEstimator):
        raise FormatUnsupportedError(
            "pmml", type(model).__name__, "sklearn2pmml takes scikit-learn estimators only"
        )
    try:
        check_is_fitted(model)
    except NotFittedError:
        raise InputError(f"the {type(model).__name__} is not fitted; fit it first") from None
    columns = [str(c) for c in sample.columns]
    fitted_on = getattr(model, "feature_names_in_", None)
    if fitted_on is not None and list(map(str, fitted_on)) != columns:
        raise InputError(
            f"the sample's columns {columns} are not those the model was fitted on "
            f"{list(map(str, fitted_on))}; pass the training features"
        )
    java = java_version()  # before sklearn2pmml, whose own error is a generic RuntimeError

    import sklearn2pmml

    target = "y"
    while target in columns:  # the PMML target field must not shadow an input
        target = "_" + target
    # sklearn2pmml rewrites the pipeline's steps in place (proxies, tags): work on a copy.
    pipeline = sklearn2pmml.make_pmml_pipeline(
        copy.deepcopy(model), active_fields=columns, target_fields=[target]
    )
    output = io.StringIO()
    with atomic_path(path) as tmp:
        try:
            # It prints the JVM's log and a banner to stdout; the log is where the reason is.
            with contextlib.redirect_stdout(output):
                # The java that java_version checked: $JAVA_HOME's, else the one on PATH.
                home = os.environ.get("JAVA_HOME") or None
                sklearn2pmml.sklearn2pmml(pipeline, str(tmp), java_home=home)
        except RuntimeError:
            log.debug("sklearn2pmml output:\n%s", output.getvalue())
            raise _java_failure(model, output.getvalue()) from None
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            failure = _pickle_failure(model, exc)
            if failure is None:
                raise
            raise failure from exc
    details: dict[str, Any] = {"sklearn2pmml": sklearn2pmml.__version__, "java": java}
    if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
        element = labels_only(path)
        if element is not None:  # sklearn2pmml has no probability form for it (an SVM, a k-NN)
            details["labels_only"] = f"{element} without probabilities"
    return details


def labels_only_note(path: Path) -> str:
    """Why a classifier's PMML at ``path`` gives no probabilities ("" where it gives them)."""
    element = labels_only(path)
    if element is None:
        return ""
    return (f"{path.name} has labels only: its {element} declares no probabilities "
            "(sklearn2pmml writes none for it)")  # fmt: skip


def labels_only(path: Path) -> str | None:
    """The model element of a PMML document that declares no probability output anywhere
    (None where it declares some): sklearn2pmml writes none for an SVM or a k-NN.

    The document, not an engine, says so: PMML4S makes probability fields up for a model that
    declares none (an SVM's vote shares, NaN for a k-NN), where JPMML gives none. Anywhere, not
    only on the top model: a chain of models (gradient boosting) declares its probabilities on
    its last segment. A byte search: a forest's document runs to tens of MB."""
    import mmap

    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as text:
        if _PROBABILITY_FIELD.search(text):
            return None
        model = _MODEL_ELEMENT.search(text)
        return bytes(model.group(1)).decode() if model else "model"


def _steps(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, step) for every step inside ``model``, outer ones first: "preprocess/cat/onehot"."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    children: list[tuple[str, Any]] = []
    if isinstance(model, Pipeline):
        children = list(model.steps)
    elif isinstance(model, ColumnTransformer):
        fitted = getattr(model, "transformers_", model.transformers)
        children = [(name, step) for name, step, _ in fitted]
    elif isinstance(model, FeatureUnion):
        children = list(model.transformer_list)
    for name, step in children:
        if isinstance(step, str) or step is None:  # "drop", "passthrough"
            continue
        path = f"{prefix}/{name}" if prefix else str(name)
        yield path, step
        yield from _steps(step, path)


def _java_failure(model: Any, output: str) -> FormatUnsupportedError:
    """The step and a one-line reason out of the JVM's exception dump."""
    exceptions = _JAVA_EXCEPTION.findall(output)
    # The outer exceptions say "Failed to convert ..."; the first other one says why.
    telling = [m for _, m in exceptions if not m.startswith("Failed to ")] or [
        m for _, m in exceptions
    ]
    reason = telling[0] if telling else (output.strip().splitlines() or ["no output"])[-1]
    solution = re.search(r"^Solution:\s*\n\s*(.+)$", output, re.MULTILINE)
    if solution:
        reason += f" ({solution.group(1).strip()})"
    named = _PYTHON_CLASS.findall(output)
    steps = [("", model), *_steps(model)]
    for qualified in named:
        for path, step in steps:
            cls = type(step)
            if qualified in (f"{cls.__module__}.{cls.__qualname__}", cls.__name__):
                return _unsupported(path or cls.__name__, cls.__name__, reason)
    return _unsupported(named[0].rsplit(".", 1)[-1] if named else None, None, reason)


def _pickle_failure(model: Any, exc: Exception) -> FormatUnsupportedError | None:
    """The innermost step that cannot be pickled (a lambda, a local function), if any."""
    failing = []
    for path, step in [("", model), *_steps(model)]:
        try:
            pickle.dumps(step)
        except Exception:  # whatever pickle raises (PicklingError, TypeError, ...) is the sign
            failing.append((path.count("/") + bool(path), path, step))
    if not failing:
        return None
    _, path, step = max(failing, key=lambda f: f[0])  # the deepest: its parents fail with it
    reason = f"sklearn2pmml cannot pickle it ({' '.join(str(exc).split())})"
    return _unsupported(path or type(step).__name__, type(step).__name__, reason)


def _unsupported(step: str | None, step_type: str | None, reason: str) -> FormatUnsupportedError:
    kind = f"{step_type}: " if step_type else ""
    return FormatUnsupportedError("pmml", step, f"{kind}{reason}")


def _java_message(exc: BaseException) -> str:
    """One short line out of a py4j/JPype/pypmml exception."""
    java = getattr(exc, "java_exception", None)
    if java is not None:
        # JAXB's UnmarshalException has no message of its own; its cause (the SAX error) has.
        while java.getMessage() is None and java.getCause() is not None:
            java = java.getCause()
        text = f"{java.getClass().getSimpleName()}: {java.getMessage()}"
    else:
        text = " ".join(str(a) for a in exc.args) or type(exc).__name__
    text = " ".join(text.split())
    return text if len(text) <= 300 else text[:297] + "..."


def _same_class(value: Any, cls: Any) -> bool:
    if str(value) == str(cls):
        return True
    try:  # PMML may write class 1 as "1.0"
        return float(value) == float(cls)
    except (TypeError, ValueError):
        return False


class _PmmlScorer:
    """What both engines share: the contract checks, the field lookup and the canonical output."""

    fmt = "pmml"
    engine: str

    def __init__(
        self,
        path: Path,
        task: str,
        classes: Sequence[Any] | None,
        inputs: Sequence[ColumnSpec],
        has_proba: bool = True,
    ) -> None:
        self.path = Path(path)
        self.task = task
        self.classes = list(classes) if classes is not None else None
        self.inputs = list(inputs)
        self.has_proba = has_proba
        if not self.path.is_file():
            raise NotFoundError(f"no PMML file at {str(self.path)!r}; save the model first")
        java_version()
        self._load()
        try:
            self._find_outputs()
        except BaseException:
            self.close()  # the shared JVM must not count a scorer that never came up
            raise

    def _find_outputs(self) -> None:
        fields, target = self._fields()
        names = [name for name, _, _ in fields]
        predicted = [name for name, feature, _ in fields if feature == "predictedValue"]
        self._label = predicted[0] if predicted else target
        self._proba: list[str] = []
        self.note = ""  # what this PMML cannot give (formats.parity reports it)
        if self.task == "classification" and self.has_proba:
            self.note = labels_only_note(self.path)
            if self.note:
                return
            for cls in self.classes or []:
                match = [n for n, f, v in fields if f == "probability" and _same_class(v, cls)]
                match += [n for n in (f"probability({cls})", f"probability_{cls}") if n in names]
                if not match:
                    raise ModelLoadError(
                        f"{self.path.name} has no probability output for class {cls!r} (it "
                        f"outputs {names}); re-export the model with write_pmml"
                    )
                self._proba.append(match[0])

    def _load(self) -> None:
        raise NotImplementedError

    def _fields(self) -> tuple[list[tuple[str, str, Any]], str]:
        """((name, result feature, value) of every output field, the target field's name)."""
        raise NotImplementedError

    def _score(self, data: pd.DataFrame) -> pd.DataFrame:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def predict(self, frame: pd.DataFrame) -> pd.DataFrame:
        data = conform(frame, self.inputs)
        if len(data) == 0:
            result = pd.DataFrame({n: [] for n in [self._label, *self._proba]})
        else:
            result = self._score(data.reset_index(drop=True))
        if self._label not in result.columns or result[self._label].isna().any():
            rows = int(result[self._label].isna().sum()) if self._label in result else len(data)
            raise InputError(
                f"the {self.engine} engine could not score {rows} row(s): a missing value the "
                "pipeline does not impute, or a category it was not fitted on? check those rows"
            )
        if self.task != "classification":
            prediction = result[self._label].to_numpy(np.float64)
            return canonical_frame(self.task, None, prediction=prediction, index=frame.index)
        proba = result[self._proba].to_numpy(np.float64) if self._proba else None
        return canonical_frame(
            self.task, self.classes, label=result[self._label], proba=proba, index=frame.index
        )

    def __enter__(self) -> _PmmlScorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PypmmlScorer(_PmmlScorer):
    """PMML4S through pypmml (its own py4j JVM, one per process)."""

    engine = "pypmml"
    _open: ClassVar[int] = 0

    def _load(self) -> None:
        from pypmml import Model

        try:
            self._model: Any = Model.fromFile(str(self.path))
        except Exception as exc:  # pypmml wraps the JVM's error in PMMLError or py4j's errors
            raise ModelLoadError(
                f"pypmml cannot load {self.path.name}: {_java_message(exc)}; re-export it"
            ) from None
        # Without it PMML4S returns the probabilities only, not the predicted label.
        self._model.setSupplementOutput(True)
        PypmmlScorer._open += 1

    def _fields(self) -> tuple[list[tuple[str, str, Any]], str]:
        fields = [(f.name, str(f.feature), f.value) for f in self._model.outputFields]
        return fields, f"predicted_{self._model.targetName}"

    def _score(self, data: pd.DataFrame) -> pd.DataFrame:
        # Our own JSON, not pypmml's DataFrame path: pandas' to_json keeps 10 digits of a float
        # and read_json parses them imprecisely. null is PMML's missing value (NaN and None).
        rows = data.astype(object).where(data.notna(), None).to_numpy().tolist()
        payload = json.dumps({"columns": list(data.columns), "data": rows}, allow_nan=False)
        answer = json.loads(self._model.call("predict", payload))
        return pd.DataFrame(answer["data"], columns=answer["columns"])

    def close(self) -> None:
        if getattr(self, "_model", None) is None:
            return
        self._model = None
        PypmmlScorer._open -= 1
        if PypmmlScorer._open == 0:
            from pypmml import Model

            Model.close()


class JpmmlScorer(_PmmlScorer):
    """JPMML-Evaluator through jpmml_evaluator's py4j backend, on a JVM this module launches.

    py4j rather than JPype: as fast for batches here (evaluateAll pickles whole columns both
    ways), and a separate JVM can be shut down and restarted, which an in-process one cannot.
    """

    engine = "jpmml"
    _backend: ClassVar[Any] = None
    _open: ClassVar[int] = 0

    @classmethod
    def _ensure_backend(cls) -> Any:
        if cls._backend is None:
            from jpmml_evaluator import _classpath
            from jpmml_evaluator.py4j import Py4JBackend
            from py4j.java_gateway import JavaGateway

            # die_on_exit: jpmml_evaluator's own launcher leaves the JVM running if Python dies.
            gateway = JavaGateway.launch_gateway(
                classpath=os.pathsep.join(_classpath([])), die_on_exit=True
            )
            cls._backend = Py4JBackend(gateway)
        return cls._backend

    def _load(self) -> None:
        from jpmml_evaluator import make_evaluator

        backend = self._ensure_backend()
        try:
            self._evaluator: Any = make_evaluator(self.path, backend=backend).verify()
        except Exception as exc:  # py4j's Py4JJavaError or jpmml_evaluator's JavaError
            raise ModelLoadError(
                f"jpmml cannot load {self.path.name}: {_java_message(exc)}; re-export it"
            ) from None
        JpmmlScorer._open += 1

    def _fields(self) -> tuple[list[tuple[str, str, Any]], str]:
        fields = []
        for field in self._evaluator.getOutputFields():
            pmml = field.javaModelField.getField()  # the org.dmg.pmml.OutputField element
            fields.append((field.getName(), str(pmml.getResultFeature().value()), pmml.getValue()))
        return fields, self._evaluator.getTargetFields()[0].getName()

    def _score(self, data: pd.DataFrame) -> pd.DataFrame:
        # nan_as_missing turns NaN into None, which is JPMML's missing value (as None strings are).
        result = self._evaluator.evaluateAll(data, nan_as_missing=True, error_col="errors")
        if "errors" in result.columns and result["errors"].notna().any():
            first = result["errors"].dropna().iloc[0]
            raise InputError(f"jpmml could not score a row: {' '.join(str(first).split())}")
        return pd.DataFrame(result)

    def close(self) -> None:
        if getattr(self, "_evaluator", None) is None:
            return
        self._evaluator = None
        JpmmlScorer._open -= 1
        if JpmmlScorer._open == 0 and JpmmlScorer._backend is not None:
            JpmmlScorer._backend.gateway.shutdown()
            JpmmlScorer._backend = None
