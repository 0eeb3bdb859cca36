"""scikit-learn -> ONNX: estimators, pipelines, DataFrames, float64, ZipMap, pickles, bad input."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_diabetes, load_digits, load_iris, make_classification
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from formats.errors import ConversionError, InputError, ModelLoadError
from formats.onnx import convert, verify
from formats.onnx.convert import detect
from formats.onnx.convert.sklearn import non_tensor_outputs, strip_zipmap
from formats.signature import Signature


def _run(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def _assert_tensor_outputs(model: onnx.ModelProto) -> None:
    kinds = {o.name: o.type.WhichOneof("value") for o in model.graph.output}
    assert set(kinds.values()) == {"tensor_type"}, kinds


def _assert_classifier_parity(result, estimator, native_input, atol: float = 1e-5) -> None:
    """ONNX Runtime on the result's sample against the estimator itself (not the runner)."""
    got = _run(result.model, result.sample)
    np.testing.assert_array_equal(got["label"], estimator.predict(native_input))
    np.testing.assert_allclose(
        got["probabilities"], estimator.predict_proba(native_input), atol=atol
    )


@pytest.fixture(scope="module")
def iris() -> tuple[np.ndarray, np.ndarray]:
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def iris_lr(iris) -> LogisticRegression:
    X, y = iris
    return LogisticRegression(max_iter=500).fit(X, y)


@pytest.fixture(scope="module")
def mixed_frame() -> tuple[pd.DataFrame, Pipeline]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 120),
            "visits": rng.integers(0, 6, 120),
            "city": rng.choice(["paris", "lima", "oslo"], 120),
        }
    )
    target = ((frame.age > 40) ^ (frame.city == "lima")).astype(int)
    columns = ColumnTransformer(
        [
            ("num", StandardScaler(), ["age", "visits"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
        ]
    )
    model = Pipeline([("columns", columns), ("clf", LogisticRegression())]).fit(frame, target)
    return frame, model


def test_logistic_regression_on_iris(iris, iris_lr) -> None:
    X, _ = iris
    model = iris_lr
    result = convert(model, X[:25])

    assert result.report, result.report
    assert result.framework == "sklearn"
    assert result.task == "classifier" and result.label_output == "label"
    assert result.signature.input_names == ["input"]
    assert result.signature.inputs[0].dtype == "float32"
    assert result.signature.inputs[0].shape == ("batch", 4)
    assert result.signature.output_names == ["label", "probabilities"]
    assert result.signature.output("probabilities").shape == ("batch", 3)
    _assert_tensor_outputs(result.model)
    _assert_classifier_parity(result, model, X[:25].astype(np.float32))
    assert result.source["scikit-learn"] and result.source["skl2onnx"]


def test_random_forest_on_digits_is_exact_in_float32() -> None:
    X, y = load_digits(return_X_y=True)
    model = RandomForestClassifier(n_estimators=4, max_depth=6, random_state=0).fit(X, y)
    sample = X[:40].astype(np.float32)
    result = convert(model, sample)

    assert result.report, result.report
    # sklearn's trees compare in float32 too: identical labels, probabilities to rounding
    _assert_classifier_parity(result, model, sample, atol=1e-6)
    assert not any("float64" in note for note in result.notes)  # nothing was cast


def test_scaler_and_logistic_regression_pipeline(iris) -> None:
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    result = convert(model, X[::5])

    assert result.report, result.report
    ops = {node.op_type for node in result.model.graph.node}
    assert "Scaler" in ops  # the preprocessing is inside the ONNX model: it takes raw features
    assert "ZipMap" not in ops
    _assert_classifier_parity(result, model, X[::5].astype(np.float32))


def test_column_transformer_dataframe_becomes_named_inputs(mixed_frame) -> None:
    frame, model = mixed_frame
    result = convert(model, frame.head(30))

    assert result.report, result.report
    specs = {s.name: (s.dtype, s.shape) for s in result.signature.inputs}
    assert specs == {
        "age": ("float32", ("batch", 1)),
        "visits": ("int64", ("batch", 1)),
        "city": ("str", ("batch", 1)),
    }
    assert result.source["inputs"] == "columns"
    feed = {
        "age": frame[["age"]].to_numpy(np.float32),
        "visits": frame[["visits"]].to_numpy(np.int64),
        "city": frame[["city"]].to_numpy(object),
    }
    got = _run(result.model, feed)
    np.testing.assert_array_equal(got["label"], model.predict(frame))
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(frame), atol=1e-4)
    # the runner rebuilds the DataFrame from the per-column inputs
    native = result.native(result.sample)
    np.testing.assert_array_equal(native["label"], model.predict(frame.head(30)))


def test_regressor_on_diabetes() -> None:
    X, y = load_diabetes(return_X_y=True)
    model = LinearRegression().fit(X, y)
    result = convert(model, X[:30])

    assert result.report, result.report
    assert result.task == "regressor" and result.label_output is None
    assert result.signature.output_names == ["output"]
    assert result.signature.outputs[0].shape == ("batch", 1)
    got = _run(result.model, result.sample)["output"]
    np.testing.assert_allclose(got[:, 0], model.predict(X[:30].astype(np.float32)), rtol=1e-4)


def test_float64_sample_is_cast_and_reported(iris, iris_lr) -> None:
    X, _ = iris
    model = iris_lr
    assert X.dtype == np.float64
    result = convert(model, X[:10])

    assert result.source["float64"] == "cast"
    assert "float64 inputs are cast to float32" in " ".join(result.notes)
    assert result.sample["input"].dtype == np.float32
    assert result.signature.inputs[0].dtype == "float32"


def test_keep_float64_keeps_double_inputs(iris, iris_lr) -> None:
    X, _ = iris
    model = iris_lr
    result = convert(model, X[:10], keep_float64=True)

    assert result.report, result.report
    assert result.source["float64"] == "kept"
    assert result.signature.inputs[0].dtype == "float64"
    assert result.tolerance.atol <= 1e-6
    got = _run(result.model, {"input": X[:10]})
    np.testing.assert_allclose(got["probabilities"], model.predict_proba(X[:10]), atol=1e-10)


def test_keep_float64_where_skl2onnx_cannot_is_a_conversion_error() -> None:
    X, y = load_diabetes(return_X_y=True)
    model = RandomForestRegressor(n_estimators=2, max_depth=3, random_state=0).fit(X, y)
    with pytest.raises(ConversionError, match="without keep_float64") as info:
        convert(model, X[:5], keep_float64=True)
    assert "\n" not in str(info.value)
    # and the default float32 conversion of the same model works
    assert convert(model, X[:5]).report


def test_default_skl2onnx_zipmap_is_replaced_by_a_tensor(iris, iris_lr) -> None:
    """skl2onnx's default classifier output is a ZipMap (sequence of maps); ours never is."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    X, _ = iris
    model = iris_lr
    raw = convert_sklearn(model, initial_types=[("input", FloatTensorType([None, 4]))])
    assert non_tensor_outputs(raw) == ["output_probability"]  # the trap, as skl2onnx ships it

    assert strip_zipmap(raw) == ["output_probability"]
    _assert_tensor_outputs(raw)
    assert non_tensor_outputs(raw) == []
    onnx.checker.check_model(raw, full_check=True)
    got = _run(raw, {"input": X.astype(np.float32)})
    np.testing.assert_allclose(got["output_probability"], model.predict_proba(X), atol=1e-5)
    assert Signature.from_onnx(raw).output("output_probability").shape == ("batch", 3)

    # convert() itself: the same classifier comes out as label and probability tensors
    result = convert(model, X[:10])
    _assert_tensor_outputs(result.model)
    assert "ZipMap" not in {n.op_type for n in result.model.graph.node}


def test_xgboost_classifier_inside_a_pipeline() -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = make_classification(300, 6, n_informative=4, n_classes=3, random_state=0)
    clf = xgboost.XGBClassifier(n_estimators=6, max_depth=3, n_jobs=1)
    model = make_pipeline(StandardScaler(), clf).fit(X[:200], y[:200])
    # held-out rows: training rows sit exactly on split thresholds, where float32 scaling in
    # ONNX and float64 scaling in sklearn may round to opposite sides
    sample = X[200:260]
    result = convert(model, sample)

    assert result.framework == "sklearn"
    assert result.source["xgboost"] and result.source["onnxmltools"]
    _assert_tensor_outputs(result.model)
    _assert_classifier_parity(result, model, sample.astype(np.float32), atol=1e-4)


def test_pickled_pipeline_file(tmp_path: Path, iris) -> None:
    X, y = iris
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    path = tmp_path / "model.pkl"
    joblib.dump(model, path)
    result = convert(path, X[:10])

    assert result.framework == "sklearn"
    assert result.report, result.report
    _assert_classifier_parity(result, model, X[:10].astype(np.float32))


def test_pickled_xgboost_model_goes_to_its_own_converter(tmp_path: Path, iris) -> None:
    xgboost = pytest.importorskip("xgboost")
    X, y = iris
    path = tmp_path / "model.joblib"
    joblib.dump(xgboost.XGBClassifier(n_estimators=3, n_jobs=1).fit(X, y), path)
    result = convert(path, X[:10])

    assert result.framework == "xgboost"
    assert result.report, result.report


def test_verify_an_onnx_file_against_its_estimator(tmp_path: Path, mixed_frame) -> None:
    frame, model = mixed_frame
    onnx_path = tmp_path / "model.onnx"
    convert(model, frame.head(20), output=onnx_path)
    assert onnx_path.exists()

    report = verify(onnx_path, model, frame.head(20))
    assert report, report
    assert report.compared
    labels = [o for o in report.outputs if o.output == "label"]
    assert labels and all(o.passed and o.mismatch_fraction == 0.0 for o in labels)


def test_tree_library_objects_are_not_claimed_by_sklearn() -> None:
    xgboost = pytest.importorskip("xgboost")
    assert detect(xgboost.XGBRegressor()).name == "xgboost"
    assert detect(LogisticRegression()).name == "sklearn"
    assert detect(Path("model.joblib")).name == "sklearn"


# --- bad input ---------------------------------------------------------------------------------


def test_missing_sample_is_an_input_error(iris_lr) -> None:
    with pytest.raises(InputError, match="sample input is required") as info:
        convert(iris_lr)
    assert "\n" not in str(info.value)


def test_sample_with_the_wrong_number_of_columns(iris, iris_lr) -> None:
    X, _ = iris
    model = iris_lr
    with pytest.raises(InputError, match="3 column.*4 feature") as info:
        convert(model, X[:5, :3])
    assert "\n" not in str(info.value)


def test_dataframe_missing_a_column(mixed_frame) -> None:
    frame, model = mixed_frame
    with pytest.raises(InputError, match="lacks column.*city"):
        convert(model, frame[["age", "visits"]].head(5))


def test_unfitted_estimator_and_corrupt_pickle(tmp_path: Path, iris) -> None:
    X, _ = iris
    with pytest.raises(ConversionError, match="not fitted"):
        convert(LogisticRegression(), X[:5])
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(ModelLoadError, match="cannot unpickle") as info:
        convert(path, X[:5])
    assert "\n" not in str(info.value)
