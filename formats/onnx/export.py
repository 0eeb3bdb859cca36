"""A fitted pipeline to the bundle's ``model.onnx``: plain tensors in, plain tensors out.

The model gets one ``[batch, 1]`` input per column (float for numbers, int64 for integer columns,
string for categories) and the outputs ``label`` + ``probabilities`` (classifiers; never ZipMap)
or ``variable`` (regressors), through the converters of :mod:`formats.onnx.convert`.

Two things differ from scikit-learn and are settled here, once:

- **Missing strings.** An ONNX string tensor cannot hold a null, so scorers feed a missing
  category as ``""``. The pipeline converted is a copy (:func:`formats.missing.onnx_copy`)
  whose string imputers and encoders read ``""`` where the original reads the form training
  held (``ColumnSpec.missing``: None or NaN): the ONNX model then treats a missing category
  exactly as the original treats it in that form.
- **Precision.** skl2onnx computes in float32. A threshold between two float64 values can fall
  on the other side in float32 and flip a tree's split. ``precision="auto"`` converts in float32,
  compares the labels with the original on the sample, and converts again in float64 (double
  tree ensembles) when any label differs; the manifest says which ran and why.

And one thing is made faster: a float32 tree ensemble of small trees is written as matrix
products (:mod:`formats.onnx.trees_matmul`, ``trees="auto"``), kept only when it agrees with the
original on the sample as well as the tree ensemble does; the manifest says which form it is.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from formats.diff import Tolerance, compare_frames
from formats.errors import ConversionError, FormatUnsupportedError
from formats.missing import estimators, onnx_copy
from formats.schema import ColumnSpec, conform, missing_as_fitted
from formats.sklearn_formats import final_estimator

__all__ = ["OnnxExport", "export_onnx", "onnx_feed_frame"]

PRECISIONS = ("auto", "float32", "float64")
TREE_FORMS = ("auto", "matmul", "ensemble")


@dataclass
class OnnxExport:
    data: bytes
    precision: str
    details: dict[str, Any]


def export_onnx(
    model: Any,
    sample: pd.DataFrame,
    specs: list[ColumnSpec],
    task: str,
    precision: str = "auto",
    trees: str = "auto",
) -> OnnxExport:
    """Convert ``model`` with the sample's columns; raise FormatUnsupportedError if it cannot."""
    if precision not in PRECISIONS:
        raise ConversionError(
            f"unknown ONNX precision {precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    if trees not in TREE_FORMS:
        raise ConversionError(
            f"unknown ONNX tree form {trees!r}; use one of {', '.join(TREE_FORMS)}"
        )
    _refuse_categorical_splits(model)
    prepared = onnx_copy(model, specs)
    feed_frame = onnx_feed_frame(conform(sample, specs), specs)
    exact = precision == "auto" and _splits_in_float64(model)
    first = "float64" if precision == "float64" or exact else "float32"
    try:
        result = _convert(prepared, feed_frame, first)
    except FormatUnsupportedError:
        if not exact:
            raise
        first, exact = "float32", False  # no float64 form: the float32 one, checked below
        result = _convert(prepared, feed_frame, first)
    details: dict[str, Any] = {"precision": first}
    if exact:
        details["why"] = ("HistGradientBoosting compares in float64: a value within a float32 "
                          "rounding of a threshold would take the other branch in float32")  # fmt: skip
    elif precision == "auto":
        score, ok = _agreement(result, model, sample, specs, task)
        details[f"float32_{_MEASURE[task]}"] = score
        if not ok:
            why = f"float32 {_MEASURE[task].replace('_', ' ')} {score:.3g} (a split flipped or rounding)"
            if task == "classification" and score == 1.0:
                why = "float32 probabilities off by more than 1e-05 (a split flipped)"
            try:
                wide = _convert(prepared, feed_frame, "float64")
            except FormatUnsupportedError as exc:
                details["why"] = f"{why}; float64 failed: {exc.reason}"
            else:
                wide_score, wide_ok = _agreement(wide, model, sample, specs, task)
                better = (wide_score > score or (wide_score == score and wide_ok)
                          if task == "classification" else wide_score < score)  # fmt: skip
                if _is_double(wide) and better:
                    result = wide
                    details[f"float64_{_MEASURE[task]}"] = wide_score
                    details["why"] = f"{why}; float64 gives {wide_score:.3g}"
                else:
                    details["why"] = f"{why}; this model has no float64 ONNX form that does better"
    details["precision"] = "float64" if _is_double(result) else "float32"
    result, form = _tree_form(result, model, sample, specs, task, trees)
    if form is not None:
        details["trees"] = form
    details["opset"] = {op.domain or "ai.onnx": op.version for op in result.model.opset_import}
    details["notes"] = list(result.notes)
    return OnnxExport(result.model.SerializeToString(), details["precision"], details)


def _tree_form(
    result: Any, model: Any, sample: pd.DataFrame, specs: list[ColumnSpec], task: str, form: str
) -> tuple[Any, dict[str, Any] | None]:
    """``result`` with its tree ensembles in matmul form where ``form`` asks and that is the
    same model on the sample; None when it has no tree ensemble."""
    from formats.onnx.trees_matmul import MAX_MEAN_SPLITS, plan, rewrite

    plans = plan(result.model)
    if not plans:
        return result, None
    summary: dict[str, Any] = {
        "form": "ensemble",
        "trees": sum(p.trees for p in plans),
        "mean_splits": round(sum(p.splits for p in plans) / max(sum(p.trees for p in plans), 1), 1),
    }
    model_out, done = rewrite(result.model, form)
    if not done:
        why = [p.reason for p in plans if p.reason]
        summary["why"] = (
            "asked for (trees='ensemble')" if form == "ensemble"
            else f"cannot be rewritten: {why[0]}" if why
            else f"trees too large for the matmul form (mean splits > {MAX_MEAN_SPLITS})"
        )  # fmt: skip
        return result, summary
    rewritten = dataclasses.replace(result, model=model_out)
    before, _ = _agreement(result, model, sample, specs, task)
    after, _ = _agreement(rewritten, model, sample, specs, task)
    worse = after < before if task == "classification" else after > max(before, REGRESSION_RTOL)
    if worse:
        summary["why"] = f"the matmul form scored the sample worse ({after:.3g} vs {before:.3g})"
        return result, summary
    summary["form"] = "matmul"
    summary["rewritten"] = sum(p.trees for p in done)
    return rewritten, summary


def _is_double(result: Any) -> bool:
    """Whether the converted model takes double inputs (what ran, not what was asked)."""
    return any(
        i.type.tensor_type.elem_type == 11  # TensorProto.DOUBLE
        for i in result.model.graph.input
    )


def onnx_feed_frame(frame: pd.DataFrame, specs: list[ColumnSpec]) -> pd.DataFrame:
    """A conformed frame as the ONNX model takes it: missing strings are ``""``."""
    out = frame.copy()
    for spec in specs:
        if spec.kind == "string":
            out[spec.name] = out[spec.name].where(out[spec.name].notna(), "").astype(str)
    return out


def _convert(model: Any, frame: pd.DataFrame, precision: str) -> Any:
    from formats.onnx.convert import convert

    try:
        return convert(model, sample=frame, keep_float64=precision == "float64", verify=False)
    except ConversionError as exc:
        raise FormatUnsupportedError("onnx", _failing_step(model, exc), str(exc)) from exc


_MEASURE = {"classification": "label_agreement", "regression": "max_rel_error"}
# float32 keeps about 7 significant digits; beyond a relative error of 1e-6, float64 is tried
REGRESSION_RTOL = 1e-6


def _agreement(
    result: Any, model: Any, sample: pd.DataFrame, specs: list[ColumnSpec], task: str
) -> tuple[float, bool]:
    """(share of equal labels, or max relative error of predictions; whether that is exact
    enough) of the converted model against the original on the sample, by parity's rule
    (:func:`formats.diff.compare_frames`)."""
    from formats.onnx.scorer import OnnxScorer

    classes = list(model.classes_) if hasattr(model, "classes_") else None
    scorer = OnnxScorer(result.model.SerializeToString(), task, classes, specs)
    x = missing_as_fitted(conform(sample, specs), specs)  # the original as the scorers feed it
    ref = np.asarray(model.predict(x))
    if task == "classification":
        labels = compare_frames(pd.DataFrame({"label": ref}),
                                pd.DataFrame({"label": scorer.raw_labels(sample)}), Tolerance())  # fmt: skip
        agreement = float(labels.label_agreement or 0.0)
        return agreement, labels.passed and _probabilities_agree(scorer, model, sample, x)
    diff = compare_frames(pd.DataFrame({"prediction": ref}), scorer.predict(sample),
                          Tolerance(atol=0.0, rtol=REGRESSION_RTOL))  # fmt: skip
    return diff.outputs[0].max_rel, diff.passed


def _refuse_categorical_splits(model: Any) -> None:
    """skl2onnx 1.20 writes HistGradientBoosting's categorical splits (``categorical_features``)
    as numeric thresholds: the model it makes scores other values than the original. Not
    saved, and said so, rather than saved wrong."""
    for path, obj in estimators(model):
        categorical = getattr(obj, "is_categorical_", None)  # None: no categorical feature
        if type(obj).__name__.startswith("HistGradientBoosting") and categorical is not None and (
            np.any(categorical)
        ):
            raise FormatUnsupportedError(
                "onnx", path or type(obj).__name__,
                "skl2onnx converts HistGradientBoosting's categorical splits as numeric ones; "
                "one-hot encode those columns (categorical_features=None) to export to ONNX",
            )  # fmt: skip


def _splits_in_float64(model: Any) -> bool:
    """HistGradientBoosting bins and splits in float64 (a threshold can sit on a data value,
    and a value a rounding error away goes the other way in float32), and it has an exact
    float64 form (convert/_double_trees.py)."""
    final = final_estimator(model)
    return type(final).__name__ in ("HistGradientBoostingClassifier", "HistGradientBoostingRegressor")


def _probabilities_agree(scorer: Any, model: Any, sample: pd.DataFrame, x: pd.DataFrame) -> bool:
    """Whether the converted classifier's probabilities (``scorer``'s) are the original's on
    ``x`` (the conformed sample) within the default tolerance: a flipped split can move a
    probability far while every label stays the same."""
    if not hasattr(model, "predict_proba"):
        return True
    want = np.asarray(model.predict_proba(x), np.float64)
    got = scorer.predict(sample).filter(like="proba_")
    if got.shape != want.shape:
        return False
    return compare_frames(pd.DataFrame(want, columns=got.columns), got, Tolerance()).passed


def _failing_step(model: Any, exc: BaseException) -> str | None:
    """The step whose conversion failed: the operator skl2onnx was converting when it raised
    (its ``raw_operator``, read off the traceback), else the step whose class the converter's
    own message names, else None. Not by the whole message: ours starts "cannot convert
    Pipeline", which named the first Pipeline inside, not the step that failed."""
    steps = [(path, obj) for path, obj in estimators(model) if path]
    raw = None
    cause: BaseException | None = exc.__cause__ or exc
    tb = cause.__traceback__ if cause is not None else None
    while tb is not None:  # the innermost converter's operator is the one that failed
        operator = getattr(tb.tb_frame.f_locals.get("operator"), "raw_operator", None)
        raw = raw if operator is None else operator  # not `or`: a Pipeline has a len()
        tb = tb.tb_next
    if raw is not None:
        same = [path for path, obj in steps if obj is raw]
        alike = [path for path, obj in steps if type(obj) is type(raw)]
        if same or len(alike) == 1:  # a copy was converted: the only step of that class
            return (same or alike)[0]
    message = str(cause).split(": ", 1)[-1] if cause is exc else str(cause)
    for path, obj in steps:
        if type(obj).__name__ in message:
            return path
    return None
