"""The faithful PMML engine by default (formats.pmml_engines).

Two models on scikit-learn's bundled diabetes data where PMML4S (pypmml) differs from the
original on held-out rows and JPMML-Evaluator does not: a DecisionTreeRegressor, and a
RandomForestClassifier after SimpleImputer(median) + StandardScaler + OneHotEncoder. Saving
records both engines' agreement; ``formats.load(bundle, "pmml")`` runs JPMML and scores what the
fitted object scores; parity says where PMML4S differs and why. The expectation is always the
in-memory fitted object.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes
from sklearn.ensemble import RandomForestClassifier
from sklearn.impute import SimpleImputer
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

import formats
from formats.pmml_engines import faithful_engine

Fitted = tuple[Any, pd.DataFrame, pd.DataFrame]


def tree() -> Fitted:
    x, y = load_diabetes(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0)
    return DecisionTreeRegressor(random_state=0).fit(x_train, y_train), x_train, x_test


def forest() -> Fitted:
    """The diabetes features with 5 % of numbers missing and two string columns, the target
    above its median as the class."""
    data = load_diabetes(as_frame=True).frame
    y = (data["target"] > data["target"].median()).astype(np.int64)
    x = data.drop(columns=["target", "sex"])
    numeric = list(x.columns)
    rng = np.random.default_rng(0)
    x["band"] = pd.qcut(x["age"], 3, labels=["young", "middle", "old"]).astype(object)
    x["tier"] = rng.choice(["a", "b", "c"], len(x)).astype(object)
    x[numeric] = x[numeric].where(rng.random((len(x), len(numeric))) >= 0.05)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.3, random_state=0)
    pre = ColumnTransformer([
        ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), numeric),
        ("cat", OneHotEncoder(handle_unknown="ignore"), ["band", "tier"]),
    ])  # fmt: skip
    model = Pipeline([("pre", pre), ("model", RandomForestClassifier(50, max_depth=10,
                                                                    random_state=0))])  # fmt: skip
    return model.fit(x_train, y_train), x_train, x_test


MODELS: dict[str, Callable[[], Fitted]] = {"tree": tree, "forest": forest}


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, pd.DataFrame, Path]]:
    """name -> (the fitted model, its held-out rows, its bundle of pickle and PMML)."""
    out = {}
    for name, make in MODELS.items():
        model, x_train, x_test = make()
        path = tmp_path_factory.mktemp("pmml") / name
        formats.save(model, path, sample=x_train, formats=("pickle", "pmml"))
        out[name] = (model, x_test, path)
    return out


def assert_original(got: pd.DataFrame, model: Any, x: pd.DataFrame) -> None:
    """The fitted object's own answer: labels equal, numbers within 1e-9."""
    if "prediction" in got:
        np.testing.assert_allclose(got["prediction"], model.predict(x), rtol=0, atol=1e-9)
        return
    np.testing.assert_array_equal(got["label"].to_numpy(), model.predict(x))
    np.testing.assert_allclose(got[["proba_0", "proba_1"]], model.predict_proba(x), atol=1e-9)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_load_runs_the_engine_that_agreed_and_scores_the_original(saved: Any, name: str) -> None:
    model, x_test, path = saved[name]
    bundle = formats.Bundle.open(path)
    engines = bundle.manifest.formats["pmml"].details["engines"]
    assert set(engines) == {"jpmml", "pypmml"}
    assert engines["jpmml"]["agrees"] is True and engines["jpmml"]["rows_differ"] == 0
    sample_rows = len(MODELS[name]()[1])  # the training rows the bundle was saved with
    assert engines["jpmml"]["rows"] == engines["pypmml"]["rows"] == sample_rows
    assert isinstance(engines["pypmml"]["agrees"], bool)
    scorer = formats.load(bundle, "pmml")
    assert scorer.engine == "jpmml"
    assert_original(scorer.predict(x_test), model, x_test)
    # PMML4S, still there by name, differs from the fitted object on these held-out rows
    pypmml = formats.load(bundle, "pmml", engine="pypmml").predict(x_test)
    column = "prediction" if "prediction" in pypmml else "proba_1"
    want = model.predict(x_test) if column == "prediction" else model.predict_proba(x_test)[:, 1]
    assert np.abs(pypmml[column].to_numpy() - want).max() > 1e-3


@pytest.mark.parametrize("name", sorted(MODELS))
def test_parity_says_where_and_why_pmml4s_differs(saved: Any, name: str) -> None:
    from formats.render import parity_table

    _, x_test, path = saved[name]
    report = formats.parity(path, x_test)
    by = {(r.fmt, r.engine): r for r in report.results}
    assert by["pmml", "jpmml"].status == "pass" and by["pickle", "sklearn"].status == "pass"
    pypmml = by["pmml", "pypmml"]
    assert pypmml.status == "fail" and pypmml.rows_disagree > 0
    first = pypmml.first_disagreements[0]  # where: the row, the original's and PMML4S's scores
    assert {"row", "pmml.prediction", "original.prediction"} <= set(first) or (
        {"row", "pmml.proba_1", "original.proba_1"} <= set(first)
    )
    assert "PMML4S compares the document's float fields in double" in pypmml.reason
    assert "float32 rounding of a threshold" in str(parity_table(report).caption)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_cause_is_float32_thresholds_compared_in_double(saved: Any, name: str) -> None:
    """The evidence behind the reason. sklearn2pmml writes each split's threshold as the float32
    at or below scikit-learn's, on fields it declares float (the inputs, the scaler's outputs).
    The fitted trees walked with each value in double against the document's threshold read as
    a double give PMML4S's answer on every held-out row; walked in float32, as scikit-learn and
    JPMML do, the original's. Averaging the trees is the same in both: the aggregation is not
    where they part."""
    model, x_test, path = saved[name]
    document = Path(path, "model.pmml").read_text()
    assert re.search(r'<(DataField|DerivedField) [^>]*dataType="float"', document)
    written = {np.float32(float(v)): float(v)
               for v in re.findall(r'<SimplePredicate [^>]*"lessOrEqual" value="([^"]+)"', document)}  # fmt: skip

    def in_document(threshold: float) -> float:
        below = np.float32(threshold)
        if float(below) > threshold:
            below = np.nextafter(below, np.float32(-np.inf))
        return written.get(below, float(below))  # a one-hot split is a category test there

    def walk(tree: Any, row: np.ndarray, double: bool) -> np.ndarray:
        t, node = tree.tree_, 0
        while t.children_left[node] != -1:
            value, threshold = row[t.feature[node]], t.threshold[node]
            left = value <= in_document(threshold) if double else np.float32(value) <= threshold
            node = t.children_left[node] if left else t.children_right[node]
        leaf = np.asarray(t.value[node][0], dtype=np.float64)
        return leaf if name == "tree" else leaf / leaf.sum()

    if name == "tree":
        rows, trees, column = x_test.to_numpy(), [model], "prediction"
    else:
        rows, trees, column = model[0].transform(x_test), model[-1].estimators_, "proba_1"
    pypmml = formats.load(path, "pmml", engine="pypmml").predict(x_test)[column].to_numpy()
    original = formats.load(path, "pmml", engine="jpmml").predict(x_test)[column].to_numpy()
    for double, want in ((True, pypmml), (False, original)):
        walked = np.array([np.mean([walk(t, r, double) for t in trees], axis=0)[-1] for r in rows])
        np.testing.assert_allclose(walked, want, rtol=0, atol=1e-12, err_msg=f"double={double}")
    assert np.abs(pypmml - original).max() > 1e-3


def test_the_comparison_report_says_why_the_engines_differ(saved: Any) -> None:
    from formats.compare.portability import pmml_engines_cell

    _, x_test, path = saved["forest"]
    cell = pmml_engines_cell(formats.Bundle.open(path), x_test)
    assert cell.status == "differs"
    assert "float32 rounding of a threshold" in cell.summary
    assert "formats.load uses jpmml" in cell.summary


def test_the_recorded_agreement_picks_the_default(saved: Any, tmp_path: Path) -> None:
    """JPMML where it agreed (or where nothing was recorded), PMML4S where only it did; an
    explicit engine is always taken."""
    assert faithful_engine({}) == "jpmml"
    both = {"engines": {"jpmml": {"agrees": True}, "pypmml": {"agrees": True}}}
    assert faithful_engine(both) == "jpmml"
    only = {"engines": {"jpmml": {"agrees": False}, "pypmml": {"agrees": True}}}
    assert faithful_engine(only) == "pypmml"
    assert faithful_engine({"engines": {"jpmml": {"agrees": False}}}) == "jpmml"
    path = tmp_path / "b"
    shutil.copytree(saved["tree"][2], path)
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["formats"]["pmml"]["details"]["engines"]["jpmml"]["agrees"] = False
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert formats.load(path, "pmml").engine == "pypmml"
    assert formats.load(path, "pmml", engine="jpmml").engine == "jpmml"
    del manifest["formats"]["pmml"]["details"]["engines"]  # a bundle saved before
    (path / "manifest.json").write_text(json.dumps(manifest))
    assert formats.load(path, "pmml").engine == "jpmml"
