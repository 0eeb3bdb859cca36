"""The accuracy gate: does an optimized model still agree with the float model it came from?

One budget, ``max_accuracy_drop`` (a fraction: 0.005 is half a point), read by model kind:

* classifiers with labels: float accuracy minus candidate accuracy must be <= the budget;
* classifiers without labels: the fraction of rows whose predicted class changed must be <= it;
* anything else: per float output, the mean absolute error relative to the mean absolute
  reference value must be <= ``rtol`` (default 1%); integer and string outputs must match on all
  but ``max_accuracy_drop`` of their elements.

A model is a classifier when it has a label output (named ``label``, or the converter's label
output, or a rank-1 / ``[N, 1]`` int64 output), when its manifest says so, or when labels are
given; a classifier without a label output predicts the argmax of its first ``[N, C]`` float
output. ``atol``, when given, additionally bounds every float output's max absolute error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelport.errors import InputError
from modelport.signature import Signature

__all__ = ["DEFAULT_RTOL", "GateResult", "OutputStats", "Predictions", "compare", "predictions"]

DEFAULT_RTOL = 0.01


@dataclass(frozen=True)
class Predictions:
    """Where class predictions come from: an output read as is, or the argmax of scores."""

    output: str
    how: str  # "label" | "argmax"

    def read(self, outputs: Mapping[str, np.ndarray]) -> np.ndarray:
        array = np.asarray(outputs[self.output])
        if self.how == "argmax":
            return np.asarray(np.argmax(array.reshape(len(array), -1), axis=1))
        return array.reshape(len(array), -1)[:, 0] if array.ndim > 1 else array


def predictions(
    signature: Signature,
    *,
    task: str | None = None,
    label_output: str | None = None,
    labels_given: bool = False,
) -> Predictions | None:
    """How this model predicts classes, or None for a model that is not a classifier."""
    names = signature.output_names
    if label_output in names:
        return Predictions(str(label_output), "label")
    for spec in signature.outputs:
        if spec.name.lower() in ("label", "labels", "output_label", "predicted_label"):
            return Predictions(spec.name, "label")
    for spec in signature.outputs:
        if spec.dtype == "int64" and (len(spec.shape) == 1 or spec.shape[1:] == (1,)):
            return Predictions(spec.name, "label")
    if task in ("classifier", "classification") or labels_given:
        for spec in signature.outputs:
            if spec.dtype.startswith("float") and len(spec.shape) == 2:
                return Predictions(spec.name, "argmax")
    return None


@dataclass(frozen=True)
class OutputStats:
    name: str
    max_abs_err: float
    mean_abs_err: float
    rel_err: float  # mean absolute error / mean absolute reference value
    mismatch: float  # fraction of elements that differ at all
    gated_by: str | None  # "atol" | "rtol" | "exact" | None (reported, not gated)
    limit: float | None
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {k: _json_float(v) for k, v in self.__dict__.items()}


@dataclass
class GateResult:
    """The comparison of one candidate with the float model; truthy when it passed."""

    passed: bool
    criterion: str  # "accuracy" | "agreement" | "error"
    rows: int
    max_accuracy_drop: float
    metrics: dict[str, float] = field(default_factory=dict)
    outputs: list[OutputStats] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    prediction: str | None = None  # the output judged as class labels, if any

    def __bool__(self) -> bool:
        return self.passed

    @property
    def headline(self) -> str:
        """The one number the gate judged, for tables: e.g. 'acc 97.2% (-0.3)'."""
        m = self.metrics
        if self.criterion == "accuracy":
            return f"acc {m['accuracy_candidate']:.2%} ({0.0 - m['accuracy_drop'] * 100:+.2f} pt)"
        if self.criterion == "agreement":
            return f"agree {m['agreement']:.2%}"
        worst = max(self.outputs, key=lambda o: o.rel_err, default=None)
        return f"rel err {worst.rel_err:.2e}" if worst else "-"

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "criterion": self.criterion,
            "rows": self.rows,
            "max_accuracy_drop": self.max_accuracy_drop,
            "metrics": {k: _json_float(v) for k, v in self.metrics.items()},
            "outputs": [o.to_dict() for o in self.outputs],
            "failures": list(self.failures),
            "prediction": self.prediction,
        }


def compare(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    signature: Signature,
    *,
    predict: Predictions | None = None,
    labels: np.ndarray | None = None,
    max_accuracy_drop: float = 0.005,
    atol: float | None = None,
    rtol: float | None = None,
) -> GateResult:
    """Judge ``candidate`` against ``reference`` (outputs on the same rows); collects every
    failure rather than stopping at the first."""
    rtol = DEFAULT_RTOL if rtol is None else rtol
    rows = len(next(iter(reference.values())))
    failures: list[str] = []
    stats: list[OutputStats] = []
    broken: set[str] = set()
    for spec in signature.outputs:
        ref, got = np.asarray(reference[spec.name]), np.asarray(candidate[spec.name])
        if ref.shape != got.shape or ref.dtype != got.dtype:
            broken.add(spec.name)
            failures.append(
                f"output {spec.name!r}: {got.dtype}{list(got.shape)} where the float model "
                f"gives {ref.dtype}{list(ref.shape)}"
            )
            continue
        is_prediction = (
            predict is not None and predict.how == "label" and spec.name == predict.output
        )
        stat = _output_stats(
            spec.name, ref, got, predict, is_prediction, max_accuracy_drop, atol, rtol
        )
        stats.append(stat)
        if not stat.passed:
            failures.append(f"output {spec.name!r}: {_judged(stat)} > {stat.gated_by} {stat.limit}")

    metrics: dict[str, float] = {}
    criterion = "error"
    if predict is not None and predict.output not in broken:
        pred_ref, pred_got = predict.read(reference), predict.read(candidate)
        metrics["agreement"] = float(np.mean(pred_ref == pred_got))
        if labels is not None:
            criterion = "accuracy"
            truth = _align_labels(labels, pred_ref)
            metrics["accuracy_float"] = float(np.mean(pred_ref == truth))
            metrics["accuracy_candidate"] = float(np.mean(pred_got == truth))
            metrics["accuracy_drop"] = metrics["accuracy_float"] - metrics["accuracy_candidate"]
            if not metrics["accuracy_drop"] <= max_accuracy_drop + 1e-12:
                failures.append(
                    f"accuracy dropped {metrics['accuracy_drop'] * 100:.2f} points "
                    f"({metrics['accuracy_float']:.2%} -> {metrics['accuracy_candidate']:.2%}), "
                    f"budget {max_accuracy_drop * 100:.2f}"
                )
        else:
            criterion = "agreement"
            changed = 1.0 - metrics["agreement"]
            if not changed <= max_accuracy_drop + 1e-12:
                failures.append(
                    f"{changed:.2%} of predicted classes changed, budget {max_accuracy_drop:.2%}"
                )
    return GateResult(
        passed=not failures,
        criterion=criterion,
        rows=rows,
        max_accuracy_drop=max_accuracy_drop,
        metrics=metrics,
        outputs=stats,
        failures=failures,
        prediction=None if predict is None else predict.output,
    )


def _output_stats(
    name: str,
    ref: np.ndarray,
    got: np.ndarray,
    predict: Predictions | None,
    is_prediction: bool,
    max_accuracy_drop: float,
    atol: float | None,
    rtol: float,
) -> OutputStats:
    mismatch = float(np.mean(ref != got)) if ref.size else 0.0
    if ref.dtype.kind in "fc":
        diff = np.abs(got.astype(np.float64) - ref.astype(np.float64))
        max_abs = float(np.max(diff)) if diff.size else 0.0
        mean_abs = float(np.mean(diff)) if diff.size else 0.0
        scale = float(np.mean(np.abs(ref))) if ref.size else 0.0
        rel = mean_abs / scale if scale > 0 else (0.0 if mean_abs == 0 else math.inf)
        if atol is not None:
            gated_by, limit, passed = "atol", atol, max_abs <= atol
        elif predict is None:
            gated_by, limit, passed = "rtol", rtol, rel <= rtol
        else:  # a classifier's scores: the predictions are what the gate judges
            gated_by, limit, passed = None, None, True
        return OutputStats(name, max_abs, mean_abs, rel, mismatch, gated_by, limit, bool(passed))
    if is_prediction:  # judged as agreement or accuracy
        return OutputStats(name, 0.0, 0.0, 0.0, mismatch, None, None, True)
    passed = mismatch <= max_accuracy_drop + 1e-12
    return OutputStats(name, 0.0, 0.0, 0.0, mismatch, "exact", max_accuracy_drop, passed)


def _judged(stat: OutputStats) -> str:
    if stat.gated_by == "atol":
        return f"max abs error {stat.max_abs_err:.3g}"
    if stat.gated_by == "rtol":
        return f"relative error {stat.rel_err:.3g}"
    return f"mismatch {stat.mismatch:.3g}"


def _align_labels(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Labels in the predictions' type: 3.0 read from a CSV compares equal to class 3."""
    if predicted.dtype.kind in "iu":
        if labels.dtype.kind in "iub":
            return labels
        if labels.dtype.kind == "f" and np.all(np.mod(labels, 1) == 0):
            return labels.astype(predicted.dtype)
        raise InputError(
            f"labels are {labels.dtype} but the model predicts integer classes; "
            "give class indices as labels"
        )
    if predicted.dtype.kind in "OUS":
        return labels.astype(str).astype(object)
    return labels


def _json_float(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
