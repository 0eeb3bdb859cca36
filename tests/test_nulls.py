"""Which columns take a null (formats.nulls): the manifest's ``nullable``, which the Spark job's
invalid-row rules read. Expectations come from the original model itself: a column is nullable
where it scores a null and model.onnx scores it the same, never from a rule restated here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression

import formats
from jobs.export import default_pipeline, split

NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g"]


def _nullable(bundle: formats.Bundle) -> dict[str, bool]:
    return {c.name: c.nullable for c in bundle.manifest.inputs}


def _with_null(x: pd.DataFrame, column: str) -> pd.DataFrame:
    nulled = x.head(100).copy()
    nulled[column] = None if x[column].dtype == object else np.nan
    return nulled


def test_an_imputed_column_takes_a_null_it_never_saw(tmp_path: Path) -> None:
    """The default pipeline imputes island, which training never had null: the original and
    model.onnx score a null island alike, so it is no invalid row."""
    x, _, y, _ = split()
    assert not x["island"].isna().any()
    model = default_pipeline("rf").fit(x, y)
    bundle = formats.save(model, tmp_path / "b", sample=x, formats=("pickle", "onnx"))
    got = _nullable(bundle)
    assert got["island"] is True and got["year"] is False  # year: an int64 ONNX input
    rows = _with_null(x, "island")
    want = formats.load(bundle, "pickle").predict(rows)
    onnx = formats.load(bundle, "onnx").predict(rows)
    assert (want["label"] == onnx["label"]).all()
    np.testing.assert_allclose(onnx.drop(columns="label"), want.drop(columns="label"), atol=1e-5)


@pytest.mark.parametrize(
    ("estimator", "nullable"),
    [
        # the original refuses a NaN ("Input X contains NaN")
        (LogisticRegression(max_iter=2000), False),
        # the original routes a NaN down its larger branches; model.onnx does not
        (RandomForestClassifier(30, max_depth=8, random_state=0), False),
        # both route it as the fitted trees learned
        (HistGradientBoostingClassifier(random_state=0), True),
    ],
    ids=["logistic-regression", "random-forest", "hist-gradient-boosting"],
)
def test_a_column_takes_a_null_only_where_both_score_it_alike(
    tmp_path: Path, estimator: Any, nullable: bool
) -> None:
    x, _, y, _ = split()
    x = x[NUMERIC].dropna()
    model = estimator.fit(x, y.loc[x.index])
    bundle = formats.save(model, tmp_path / "b", sample=x, formats=("pickle", "onnx"))
    assert set(_nullable(bundle).values()) == {nullable}
    rows = _with_null(x, "bill_length_mm")
    try:
        want = formats.load(bundle, "pickle").predict(rows)
    except ValueError as exc:  # what the job's invalid-row rule stands for
        assert not nullable and "NaN" in str(exc)
        return
    onnx = formats.load(bundle, "onnx").predict(rows)
    agree = (want["label"] == onnx["label"]).all() and np.allclose(
        onnx.drop(columns="label"), want.drop(columns="label"), atol=1e-5
    )
    assert agree == nullable
