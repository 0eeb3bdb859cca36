"""XGBoost, LightGBM and CatBoost -> ONNX: sklearn API and boosters, files, tensor outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

from formats.errors import InputError, ModelLoadError, UnsupportedModelError
from formats.onnx import convert, verify
from formats.onnx.convert import detect

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def _assert_plain_classifier(result, classes: int) -> None:
    assert result.report, result.report
    assert result.task == "classifier" and result.label_output == "label"
    assert [o.type.WhichOneof("value") for o in result.model.graph.output] == ["tensor_type"] * 2
    assert result.signature.output_names == ["label", "probabilities"]
    assert result.signature.output("label").shape == ("batch",)
    assert result.signature.output("probabilities").shape == ("batch", classes)
    assert result.signature.inputs[0].name == "input"
    assert result.signature.inputs[0].dtype == "float32"


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_iris(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def cancer() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    return X.astype(np.float32), y


@pytest.fixture(scope="module")
def diabetes() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_diabetes(return_X_y=True)
    return X.astype(np.float32), y


# --- XGBoost -----------------------------------------------------------------------------------


def test_xgboost_classifier(iris) -> None:
    X, y = iris
    model = xgboost.XGBClassifier(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    result = convert(model, X[::6])

    assert result.framework == "xgboost"
    _assert_plain_classifier(result, 3)
    got = _run(result.model, {"input": X})
    np.testing.assert_array_equal(got["label"], model.predict(X))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=1e-5)
    assert result.source["xgboost"] == xgboost.__version__
    assert result.source["onnxmltools"]


def test_xgboost_regressor(diabetes) -> None:
    X, y = diabetes
    model = xgboost.XGBRegressor(n_estimators=5, max_depth=3, n_jobs=1).fit(X, y)
    result = convert(model, X[:20])

    assert result.report, result.report
    assert result.task == "regressor"
    assert result.signature.output_names == ["output"]
    assert result.signature.outputs[0].shape == ("batch", 1)
    got = _run(result.model, {"input": X})["output"]
    np.testing.assert_allclose(got[:, 0], model.predict(X), rtol=1e-5, atol=1e-3)


def test_xgboost_native_booster(cancer) -> None:
    X, y = cancer
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 3, "nthread": 1}, xgboost.DMatrix(X, y), 5
    )
    result = convert(booster, X[:30])

    _assert_plain_classifier(result, 2)
    got = _run(result.model, {"input": X})
    p = booster.predict(xgboost.DMatrix(X))
    np.testing.assert_allclose(got["probabilities"][:, 1], p, atol=1e-5)
    np.testing.assert_array_equal(got["label"], (p > 0.5).astype(np.int64))


def test_xgboost_dataframe_with_named_features(iris) -> None:
    """Boosters fitted on DataFrames name their split features; onnxmltools wants f<i>."""
    X, y = iris
    frame = pd.DataFrame(X, columns=["sepal length", "sepal width", "petal length", "petal width"])
    model = xgboost.XGBClassifier(n_estimators=4, max_depth=2, n_jobs=1).fit(frame, y)
    result = convert(model, frame.head(20))

    _assert_plain_classifier(result, 3)
    assert model.get_booster().feature_names is not None  # the user's model is left alone
    got = _run(result.model, {"input": X})
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(frame), atol=1e-5)


@pytest.mark.parametrize("suffix", [".json", ".ubj"])
def test_xgboost_model_files(tmp_path: Path, iris, suffix: str) -> None:
    X, y = iris
    booster = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "nthread": 1}, xgboost.DMatrix(X, y), 4
    )
    path = tmp_path / f"model{suffix}"
    booster.save_model(str(path))
    assert detect(path).name == "xgboost"  # an XGBoost .json is told apart by its content
    result = convert(path, X[:20])

    _assert_plain_classifier(result, 3)
    got = _run(result.model, {"input": X})
    np.testing.assert_allclose(got["probabilities"], booster.predict(xgboost.DMatrix(X)), atol=1e-5)

    # standalone verification of the ONNX file against the model file
    onnx_path = tmp_path / "model.onnx"
    result.save(onnx_path)
    report = verify(onnx_path, path, X[:20])
    assert report and report.compared


def test_other_json_needs_framework(tmp_path: Path, iris) -> None:
    X, _ = iris
    path = tmp_path / "weights.json"
    path.write_text('{"weights": [1, 2, 3]}')
    with pytest.raises(UnsupportedModelError, match="--framework"):
        detect(path)
    with pytest.raises(ModelLoadError, match="xgboost cannot load") as info:
        convert(path, X[:5], framework="xgboost")
    assert "\n" not in str(info.value)


# --- LightGBM ----------------------------------------------------------------------------------


def test_lightgbm_classifier(iris) -> None:
    X, y = iris
    model = lightgbm.LGBMClassifier(n_estimators=5, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    result = convert(model, X[::6])

    assert result.framework == "lightgbm"
    _assert_plain_classifier(result, 3)
    got = _run(result.model, {"input": X})
    np.testing.assert_array_equal(got["label"], model.predict(X))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=1e-5)


def test_lightgbm_booster_text_file(tmp_path: Path, cancer) -> None:
    X, y = cancer
    booster = lightgbm.train(
        {"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
        lightgbm.Dataset(X, y),
        5,
    )
    path = tmp_path / "model.txt"
    booster.save_model(str(path))
    assert detect(path).name == "lightgbm"
    result = convert(path, X[:30])

    _assert_plain_classifier(result, 2)
    got = _run(result.model, {"input": X})
    p = booster.predict(X)
    np.testing.assert_allclose(got["probabilities"][:, 1], p, atol=1e-5)
    np.testing.assert_array_equal(got["label"], (p > 0.5).astype(np.int64))
    # the in-memory booster converts the same way
    assert convert(booster, X[:30]).report


def test_lightgbm_regressor(diabetes) -> None:
    X, y = diabetes
    model = lightgbm.LGBMRegressor(n_estimators=5, num_leaves=7, verbose=-1, n_jobs=1).fit(X, y)
    result = convert(model, X[:20])

    assert result.report, result.report
    assert result.signature.outputs[0].shape == ("batch", 1)  # declared [1] by onnxmltools
    got = _run(result.model, {"input": X})["output"]
    np.testing.assert_allclose(got[:, 0], model.predict(X), rtol=1e-5, atol=1e-3)


# --- CatBoost ----------------------------------------------------------------------------------


@pytest.mark.heavy
def test_catboost_classifier_zipmap_becomes_a_tensor(iris) -> None:
    catboost = pytest.importorskip("catboost")
    X, y = iris
    model = catboost.CatBoostClassifier(
        iterations=10, depth=3, verbose=False, thread_count=1, allow_writing_files=False
    ).fit(X, y)
    result = convert(model, X[::6])

    assert result.framework == "catboost"
    _assert_plain_classifier(result, 3)
    assert "ZipMap" not in {n.op_type for n in result.model.graph.node}
    got = _run(result.model, {"input": X})
    np.testing.assert_array_equal(got["label"], model.predict(X).reshape(-1))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X), atol=1e-5)


@pytest.mark.heavy
def test_catboost_regressor(diabetes) -> None:
    catboost = pytest.importorskip("catboost")
    X, y = diabetes
    model = catboost.CatBoostRegressor(
        iterations=10, depth=3, verbose=False, thread_count=1, allow_writing_files=False
    ).fit(X, y)
    result = convert(model, X[:20])

    assert result.report, result.report
    assert result.task == "regressor"
    assert result.signature.outputs[0].shape == ("batch", 1)  # catboost declares [N]
    got = _run(result.model, {"input": X})["output"]
    np.testing.assert_allclose(got[:, 0], model.predict(X), rtol=1e-5, atol=1e-3)


@pytest.mark.heavy
def test_catboost_cbm_file_with_string_classes(tmp_path: Path, iris) -> None:
    catboost = pytest.importorskip("catboost")
    X, y = iris
    names = np.array(["setosa", "versicolor", "virginica"])[y]
    model = catboost.CatBoostClassifier(
        iterations=8, depth=2, verbose=False, thread_count=1, allow_writing_files=False
    ).fit(X, names)
    path = tmp_path / "model.cbm"
    model.save_model(str(path))
    result = convert(path, X[::5])

    assert result.report, result.report
    assert result.signature.output("label").dtype == "str"
    got = _run(result.model, {"input": X})
    assert list(got["label"]) == list(model.predict(X).reshape(-1))


# --- bad input ---------------------------------------------------------------------------------


def test_missing_sample(iris) -> None:
    X, y = iris
    model = xgboost.XGBClassifier(n_estimators=2, n_jobs=1).fit(X, y)
    with pytest.raises(InputError, match="sample input is required for xgboost") as info:
        convert(model)
    assert "\n" not in str(info.value)


def test_sample_with_the_wrong_number_of_columns(cancer) -> None:
    X, y = cancer
    model = lightgbm.LGBMClassifier(n_estimators=2, verbose=-1, n_jobs=1).fit(X, y)
    with pytest.raises(InputError, match="5 column.*30 feature") as info:
        convert(model, X[:4, :5])
    assert "\n" not in str(info.value)


def test_string_sample_and_corrupt_file(tmp_path: Path, iris) -> None:
    X, y = iris
    model = xgboost.XGBClassifier(n_estimators=2, n_jobs=1).fit(X, y)
    with pytest.raises(InputError, match="numeric features only"):
        convert(model, np.array([["a", "b", "c", "d"]]))
    path = tmp_path / "model.ubj"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ModelLoadError, match="xgboost cannot load"):
        convert(path, X[:4])
