"""A missing category is fed back in the form the pipeline was fitted on (formats.missing).

pandas holds a null string as None from Parquet/Arrow and as NaN from CSV, and scikit-learn
scores them apart: ``SimpleImputer(missing_values=nan)`` imputes NaN and leaves None, which
``OneHotEncoder`` and ``OrdinalEncoder`` then learn as a category. Each pipeline here is fitted
on a frame whose string column holds None, or NaN, for about 3 % of the rows; every format,
loaded with ``formats.load``, must score held-out rows (their missing values held as None or as
NaN) as the in-memory fitted object scores them in the form it was fitted on. The expectation
is the fitted object itself, never a scorer.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

import formats
from formats.errors import ModelLoadError

FORMATS = ["pickle", "skops", "pmml", "onnx"]
ATOL = 1e-5


def frame(rows: int, form: str, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """(features, class, number): ``color`` misses about 3 % of its values, held in ``form``;
    a missing color says much about the target, so a model that loses it scores otherwise."""
    rng = np.random.default_rng(seed)
    color = rng.choice(["red", "green", "blue"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    size = rng.normal(size=rows)
    holes = rng.random(rows) < 0.03
    color[holes] = None if form == "None" else np.nan
    signal = 1.5 * size + (color == "red") - (color == "blue") + 3.0 * holes
    label = (signal + rng.logistic(size=rows) > 0.5).astype(np.int64)
    number = signal + rng.normal(scale=0.1, size=rows)
    return pd.DataFrame({"color": color, "size": size}), label, number


def held_as(x: pd.DataFrame, form: str) -> pd.DataFrame:
    """``x`` with every missing color held as ``form``."""
    out = x.copy()
    out["color"] = out["color"].astype(object).where(out["color"].notna(), None)
    if form == "NaN":
        out["color"] = out["color"].map(lambda v: np.nan if v is None else v).astype(object)
    return out


def _pipeline(encoder: Any, final: Any) -> Pipeline:
    strings = make_pipeline(SimpleImputer(strategy="most_frequent"), encoder)
    pre = ColumnTransformer([("cat", strings, ["color"]), ("num", "passthrough", ["size"])])
    return Pipeline([("pre", pre), ("model", final)])


def _onehot() -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore", sparse_output=False)


def _ordinal() -> OrdinalEncoder:
    return OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1)


def _xgboost() -> Pipeline:
    xgboost = pytest.importorskip("xgboost")
    return _pipeline(_onehot(), xgboost.XGBClassifier(n_estimators=20, max_depth=3, n_jobs=1))


PIPELINES: dict[str, Callable[[], Pipeline]] = {
    "logistic/onehot": lambda: _pipeline(_onehot(), LogisticRegression(max_iter=1000)),
    "hgb-classifier/ordinal": lambda: _pipeline(
        _ordinal(), HistGradientBoostingClassifier(max_iter=30, random_state=0)
    ),
    "hgb-regressor/onehot": lambda: _pipeline(
        _onehot(), HistGradientBoostingRegressor(max_iter=30, random_state=0)
    ),
    "xgboost/onehot": _xgboost,
}
REGRESSORS = {"hgb-regressor/onehot"}


def assert_scores_like(got: pd.DataFrame, model: Any, x: pd.DataFrame, what: str) -> None:
    """``got`` is the fitted ``model``'s own answer on ``x``: labels equal, numbers within 1e-5."""
    if "prediction" in got:
        np.testing.assert_allclose(got["prediction"], model.predict(x), rtol=ATOL, atol=ATOL,
                                   err_msg=what)  # fmt: skip
        return
    np.testing.assert_array_equal(got["label"].to_numpy(), model.predict(x), err_msg=what)
    proba = model.predict_proba(x)
    for j, cls in enumerate(model.classes_):
        np.testing.assert_allclose(
            got[f"proba_{cls}"], proba[:, j], rtol=0, atol=ATOL, err_msg=what
        )


@pytest.mark.parametrize("form", ["None", "NaN"])
@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_every_format_scores_a_missing_category_as_the_fitted_pipeline(
    tmp_path: Path, name: str, form: str
) -> None:
    x, label, number = frame(2000, form)
    y = number if name in REGRESSORS else label
    train, test = slice(0, 1500), slice(1500, None)
    model = PIPELINES[name]().fit(x.iloc[train], y[train])
    x_test = x.iloc[test]
    assert x_test["color"].isna().sum() >= 5
    bundle = formats.save(model, tmp_path / "b", sample=x.iloc[train])
    assert bundle.manifest.saved_formats() == FORMATS, bundle.manifest.formats
    assert {s.name: s.missing for s in bundle.manifest.inputs}["color"] == form
    for given in ("None", "NaN"):
        rows = held_as(x_test, given)
        for fmt in FORMATS:
            got = formats.load(bundle, fmt).predict(rows)
            assert_scores_like(
                got, model, x_test, f"{name}, fitted on {form}, {fmt}, {given} given"
            )
    report = formats.parity(bundle, x_test)
    assert report.passed, report.to_dict()
    assert ("pickle", "sklearn") in {(r.fmt, r.engine) for r in report.results}


def test_none_and_nan_score_apart_in_these_pipelines() -> None:
    """What the test above stands on: the fitted object scores None and NaN differently."""
    x, label, _ = frame(2000, "None")
    model = PIPELINES["logistic/onehot"]().fit(x, label)
    gap = model.predict_proba(held_as(x, "None")) - model.predict_proba(held_as(x, "NaN"))
    assert np.abs(gap).max() > 0.05


def test_parity_compares_with_the_original_on_the_rows_as_given(tmp_path: Path) -> None:
    """A pipeline fitted on None, compared on rows holding NaN: the formats feed None (the form
    it was fitted on), the original imputes the NaN. parity calls the original itself, so it
    fails every format, the pickle's scorer included, and says which column and why."""
    x, label, _ = frame(2000, "None")
    model = PIPELINES["logistic/onehot"]().fit(x, label)
    bundle = formats.save(model, tmp_path / "b", sample=x, formats=("pickle", "skops", "onnx"))
    report = formats.parity(bundle, held_as(x, "NaN"))
    assert not report.passed
    ran = [r for r in report.results if r.status != "not saved"]
    assert {r.fmt for r in ran} == {"pickle", "skops", "onnx"}
    for r in ran:
        assert r.status == "fail", (r.fmt, r.engine)
        assert "'color' (held as NaN, fitted on None)" in r.reason
    assert formats.parity(bundle, held_as(x, "None")).passed


def test_a_column_that_held_both_is_fed_as_given(tmp_path: Path) -> None:
    """Training held None and NaN, which the pipeline scores apart: the manifest says "both",
    the scikit-learn scorers feed the rows as given, and ONNX and PMML (one missing value)
    score a missing color as the original scores NaN."""
    x, label, _ = frame(2000, "None")
    x.loc[x.index[x["color"].isna()][::2], "color"] = np.nan
    assert {type(v) for v in x["color"][x["color"].isna()]} == {type(None), float}
    model = PIPELINES["logistic/onehot"]().fit(x, label)
    bundle = formats.save(model, tmp_path / "b", sample=x)
    assert {s.name: s.missing for s in bundle.manifest.inputs}["color"] == "both"
    for fmt in ("pickle", "skops"):
        assert_scores_like(formats.load(bundle, fmt).predict(x), model, x, fmt)
    as_nan = held_as(x, "NaN")
    for fmt in ("onnx", "pmml"):
        assert_scores_like(formats.load(bundle, fmt).predict(x), model, as_nan, fmt)


def test_both_forms_that_score_alike_are_fed_as_nan(tmp_path: Path) -> None:
    """Both forms in training, but the model never reads the column: either form scores the
    same, so nothing is fed as given."""
    x, label, _ = frame(500, "None")
    x.loc[x.index[x["color"].isna()][::2], "color"] = np.nan
    pre = ColumnTransformer([("num", "passthrough", ["size"])])
    model = make_pipeline(pre, LogisticRegression()).fit(x, label)
    bundle = formats.save(model, tmp_path / "b", sample=x, formats=("pickle",))
    assert {s.name: s.missing for s in bundle.manifest.inputs}["color"] == "NaN"


def test_a_manifest_without_the_form_feeds_nan_as_before(tmp_path: Path) -> None:
    """Bundles saved before ``missing`` was recorded load as they scored then (None fed as
    NaN); a form that is not one of the three is a damaged manifest, one line."""
    x, label, _ = frame(2000, "NaN")
    model = PIPELINES["logistic/onehot"]().fit(x, label)
    path = tmp_path / "b"
    formats.save(model, path, sample=x, formats=("pickle",))
    manifest = json.loads((path / "manifest.json").read_text())
    for column in manifest["inputs"]:
        assert column.pop("missing") == "NaN"
    (path / "manifest.json").write_text(json.dumps(manifest))
    got = formats.load(path, "pickle").predict(held_as(x, "None"))
    assert_scores_like(got, model, held_as(x, "NaN"), "old manifest")
    manifest["inputs"][0]["missing"] = "null"
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="missing is 'null'"):
        formats.load(path, "pickle")
