"""How the fitted pipeline holds a missing category: the manifest's ``ColumnSpec.missing``.

pandas holds a null string as ``None`` when the data come from Parquet or Arrow and as ``NaN``
when they come from CSV, and scikit-learn tells them apart: ``SimpleImputer(missing_values=nan)``
imputes NaN and leaves None alone, and ``OneHotEncoder`` learns None as a category of its own.
So a missing value means what training made of it only when it is fed back in the form training
held. :func:`with_missing_forms` records that form at save time, per string column:

- the fitted encoders' ``categories_`` first (a category None or NaN is what reached them in
  training, after any imputer), then the sample's own values;
- a column with neither takes the form the other string columns show (one frame comes from one
  source), else that of an imputer on it that looks for None, else NaN (scikit-learn's own);
- a column that held both keeps ``"both"`` (rows are fed as given) only where the original
  scores the two differently on the sample; otherwise either form is the same and NaN is fed.

:func:`formats.schema.missing_as_fitted` feeds the form back in the scikit-learn scorers;
ONNX and PMML have one missing value, and export a copy of the pipeline that reads it as the
recorded form (:func:`onnx_copy`, :func:`pmml_copy`).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from formats.diff import Tolerance, compare_frames
from formats.errors import FormatUnsupportedError
from formats.schema import ColumnSpec, as_fitted, conform

__all__ = [
    "NEVER",
    "PMML_NONE",
    "column_steps",
    "estimators",
    "held_forms",
    "onnx_copy",
    "pmml_copy",
    "with_missing_forms",
]

PROBE_ROWS = 100
# A category no data holds: what a copy's step reads instead of the missing form it must ignore.
NEVER = "\u2400modelport:no-such-category"
# What model.pmml's imputer puts in place of a missing category fitted as None (pmml_copy).
PMML_NONE = "\u2400None"


def with_missing_forms(
    model: Any, sample: pd.DataFrame, specs: Sequence[ColumnSpec], tolerance: Tolerance
) -> list[ColumnSpec]:
    """``specs`` with ``missing`` set on every string column (numeric columns hold NaN)."""
    strings = [s for s in specs if s.kind == "string" and s.dtype != "category"]
    if not strings:
        return list(specs)
    steps = column_steps(model, [s.name for s in specs])
    column = {str(c): c for c in sample.columns}
    seen = {
        s.name: _learned(steps.get(s.name, [])) | held_forms(sample[column[s.name]])
        for s in strings
    }
    shown = set().union(*seen.values())
    forms = {}
    for spec in strings:
        found = seen[spec.name] or (shown if len(shown) == 1 else set())
        if len(found) == 1:
            forms[spec.name] = next(iter(found))
        elif found:
            forms[spec.name] = (
                "both" if _scored_apart(model, sample, specs, spec, tolerance) else "NaN"
            )
        else:
            forms[spec.name] = "None" if _imputes_none(steps.get(spec.name, [])) else "NaN"
    return [dataclasses.replace(s, missing=forms[s.name]) if s.name in forms else s for s in specs]


def column_steps(model: Any, names: list[str]) -> dict[str, list[tuple[Any, int]]]:
    """{input column: [(step, the column's position among the step's inputs)]} for the
    imputers and the first encoder that read each column as the data give it."""
    out: dict[str, list[tuple[Any, int]]] = {}
    _walk(model, list(names), out)
    return out


def _walk(step: Any, names: list[str], out: dict[str, list[tuple[Any, int]]]) -> bool:
    """Record the steps reading ``names`` as given; whether ``step`` hands them on unchanged."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    if isinstance(step, Pipeline):
        for _, sub in step.steps:
            if sub is None or sub == "passthrough":
                continue
            if not _walk(sub, names, out):
                return False
        return True
    if isinstance(step, ColumnTransformer):
        from formats.unknowns import selected_columns

        for _, trans, selection in step.transformers_:
            if not isinstance(trans, str):
                _walk(trans, selected_columns(selection, names), out)
        return False
    kind = type(step).__name__
    if kind in ("SimpleImputer", "OneHotEncoder", "OrdinalEncoder"):
        for i, name in enumerate(names):
            out.setdefault(name, []).append((step, i))
    return kind == "SimpleImputer"


def _form(value: Any) -> str | None:
    if value is None:
        return "None"
    if isinstance(value, float) and np.isnan(value):
        return "NaN"
    return None


def _learned(steps: list[tuple[Any, int]]) -> set[str]:
    """The missing forms the fitted encoders learnt as categories of the column."""
    forms = set()
    for step, i in steps:
        categories = getattr(step, "categories_", None)
        if categories is not None and i < len(categories):
            forms |= {f for f in map(_form, categories[i]) if f}
    return forms


def held_forms(series: pd.Series) -> set[str]:
    """The forms ("None", "NaN") in which a column holds its missing values."""
    if series.dtype != object:
        return set()
    return {f for f in map(_form, series[series.isna()]) if f}


def _imputes_none(steps: list[tuple[Any, int]]) -> bool:
    return any(type(s).__name__ == "SimpleImputer" and s.missing_values is None for s, _ in steps)


def _scored_apart(
    model: Any, sample: pd.DataFrame, specs: Sequence[ColumnSpec], spec: ColumnSpec, tol: Tolerance
) -> bool:
    """Whether the original scores the sample's rows differently with the column None and NaN."""
    rows = conform(sample.head(PROBE_ROWS), specs)
    scores = []
    for value in (None, np.nan):
        block = rows.copy()
        block[spec.name] = pd.Series([value] * len(block), index=block.index, dtype=object)
        scores.append(_scores(model, as_fitted(block, specs)))
    if scores[0] is None or scores[1] is None:
        return scores[0] is not scores[1]
    return not compare_frames(scores[0], scores[1], tol).passed


def _scores(model: Any, x: pd.DataFrame) -> pd.DataFrame | None:
    try:
        columns = {"label": np.asarray(model.predict(x))}
        if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
            proba = np.asarray(model.predict_proba(x), dtype=np.float64)
            columns |= {f"p{j}": proba[:, j] for j in range(proba.shape[1])}
    except Exception:  # noqa: BLE001 - a form the model refuses is scored otherwise than one it takes
        return None
    return pd.DataFrame(columns)


def onnx_copy(model: Any, specs: Sequence[ColumnSpec]) -> Any:
    """A copy of ``model`` whose string imputers and encoders read ``""`` (what ONNX is fed for
    a missing category) where the original reads each column's recorded form; ``model`` itself
    where no step reads a missing category. A column that held both reads NaN's way."""
    if not any(_reads_missing(obj) for _, obj in estimators(model)):
        return model
    clone = copy.deepcopy(model)
    form_of = _forms_read(clone, specs)
    for path, obj in estimators(clone):
        forms = form_of.get(id(obj), {})
        if type(obj).__name__ == "SimpleImputer" and _reads_missing(obj):
            looks_for = _form(obj.missing_values)
            if looks_for is not None:  # one missing_values for all its columns
                form = _one_form(set(forms.values()), path)
                obj.missing_values = "" if form == looks_for else NEVER
        elif type(obj).__name__ in ("OneHotEncoder", "OrdinalEncoder"):
            obj.categories_ = [_renamed(c, forms[i], "") for i, c in enumerate(obj.categories_)]
    return clone


def pmml_copy(model: Any, specs: Sequence[ColumnSpec]) -> Any:
    """A copy of ``model`` in which a column fitted on None keeps its meaning in PMML.

    PMML has one missing value, which sklearn2pmml gives NaN's meaning: an imputer looking for
    NaN replaces it, where the original (fitted on None) passes None on to an encoder that
    learnt it as a category. The copy's imputer replaces it with :data:`PMML_NONE`, which the
    encoder knows in None's place. Without an imputer sklearn2pmml maps it to the encoder's
    None or NaN category itself."""
    if not any(s.missing == "None" for s in specs):
        return model
    clone = copy.deepcopy(model)
    fitted_on = {s.name: s.missing for s in specs}
    for name, steps in column_steps(clone, list(fitted_on)).items():
        first = steps[0][0]
        if fitted_on.get(name) != "None" or not (
            type(first).__name__ == "SimpleImputer" and _reads_missing(first)
            and _form(first.missing_values) == "NaN"
        ):  # fmt: skip
            continue
        first.statistics_ = np.array(first.statistics_, dtype=object)
        first.statistics_[steps[0][1]] = PMML_NONE
        for step, i in steps[1:]:
            step.categories_ = [
                _renamed(c, "None", PMML_NONE) if j == i else c
                for j, c in enumerate(step.categories_)
            ]
    return clone


def _forms_read(model: Any, specs: Sequence[ColumnSpec]) -> dict[int, dict[int, str]]:
    """{id(step): {input position: the form it reads there}}; a step the column walk does not
    reach reads the form every string column shares (NaN where they differ)."""
    form_of = {s.name: "NaN" if s.missing == "both" else s.missing for s in specs}
    shared = {form_of[s.name] for s in specs if s.kind == "string"}
    default = next(iter(shared)) if len(shared) == 1 else "NaN"
    found: dict[int, dict[int, str]] = {}
    for name, steps in column_steps(model, list(form_of)).items():
        for step, i in steps:
            found.setdefault(id(step), {})[i] = form_of.get(name, default)
    for _, obj in estimators(model):
        for i in range(len(getattr(obj, "categories_", []))):
            found.setdefault(id(obj), {}).setdefault(i, default)
        if type(obj).__name__ == "SimpleImputer" and not found.get(id(obj)):
            found[id(obj)] = {0: default}
    return found


def _one_form(forms: set[str], path: str) -> str:
    """The one form an imputer's columns share: it has one ``missing_values`` to rewrite."""
    if len(forms) == 1:
        return next(iter(forms))
    raise FormatUnsupportedError(
        "onnx", path, "it imputes columns that hold a missing category as None and columns that "
        "hold it as NaN, and ONNX has one missing string: fit them on one form"
    )  # fmt: skip


def _renamed(categories: np.ndarray, form: str, token: str) -> np.ndarray:
    if categories.dtype != object or not any(_form(v) for v in categories):
        return categories
    out = [v if _form(v) is None else token if _form(v) == form else NEVER for v in categories]
    return np.array(out, dtype=object)


def _reads_missing(obj: Any) -> bool:
    kind = type(obj).__name__
    if kind == "SimpleImputer":
        stats = getattr(obj, "statistics_", None)
        return stats is not None and np.asarray(stats).dtype == object
    if kind in ("OneHotEncoder", "OrdinalEncoder"):
        return any(
            c.dtype == object and any(_form(v) for v in c) for c in getattr(obj, "categories_", [])
        )
    return False


def estimators(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every estimator inside a pipeline, with its path of step names."""
    yield path, obj
    for name, step in getattr(obj, "steps", []):
        yield from estimators(step, f"{path}/{name}" if path else name)
    for name, step, _cols in getattr(obj, "transformers_", []):
        if not isinstance(step, str):
            yield from estimators(step, f"{path}/{name}" if path else name)
