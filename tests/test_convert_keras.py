"""Keras 3 -> ONNX: objects and files, parity checked numerically against the Keras model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from formats.errors import ConversionError, InputError, ModelLoadError, UsageError
from formats.onnx.convert.base import ConversionResult, ConvertOptions
from formats.onnx.convert.keras import KerasConverter
from formats.onnx.convert.tensorflow import import_tf

pytestmark = [
    pytest.mark.heavy,
    # Keras' own saving code calls np.array on its variables the numpy-1 way.
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
]

CONVERTER = KerasConverter()


@pytest.fixture(scope="module")
def keras() -> Any:
    import_tf("keras")  # quiet TensorFlow before Keras imports it
    import keras

    keras.utils.set_random_seed(0)
    return keras


@pytest.fixture(scope="module")
def cnn(keras: Any) -> Any:
    model = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.BatchNormalization(),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
            keras.layers.Softmax(),
        ]
    )
    # Non-trivial BatchNorm statistics, so that inference mode (training=False) is what matches.
    bn = model.layers[1]
    bn.moving_mean.assign(np.linspace(-0.5, 0.5, 4).astype("float32"))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype("float32"))
    return model


@pytest.fixture(scope="module")
def cnn_result(cnn: Any) -> ConversionResult:
    return CONVERTER.convert(cnn, ConvertOptions())


@pytest.fixture(scope="module")
def keras_file(cnn: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keras") / "cnn.keras"
    cnn.save(path)
    return path


def run_onnx(result: ConversionResult, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(result.model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def images(batch: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 8, 8, 3)).astype("float32")


@pytest.mark.parametrize("batch", [1, 4])
def test_sequential_cnn_parity_at_several_batch_sizes(
    cnn: Any, cnn_result: ConversionResult, batch: int
) -> None:
    x = images(batch)
    expected = np.asarray(cnn(x, training=False))
    got = run_onnx(cnn_result, {"input_layer": x})["softmax"]
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
    np.testing.assert_allclose(cnn_result.native({"input_layer": x})["softmax"], expected)


def test_sequential_cnn_signature_sample_and_source(cnn_result: ConversionResult) -> None:
    sig = cnn_result.signature
    assert [(s.name, s.dtype, s.shape) for s in sig.inputs] == [
        ("input_layer", "float32", ("batch", 8, 8, 3))
    ]
    assert [(s.name, s.shape) for s in sig.outputs] == [("softmax", ("batch", 5))]
    # No sample given: one is made from the declared input spec, and the notes say so.
    assert cnn_result.sample["input_layer"].shape == (2, 8, 8, 3)
    assert any("no sample given" in note for note in cnn_result.notes)
    assert cnn_result.source["sample"] == "synthesized"
    assert cnn_result.source["exporter"] == "tf2onnx"
    assert cnn_result.source["opset"] == 15
    assert {"keras", "tensorflow", "tf2onnx"} <= set(cnn_result.source)
    assert cnn_result.framework == "keras"


def test_keras_file_converts_from_a_fresh_load_without_predict(
    cnn: Any, keras_file: Path, keras: Any
) -> None:
    x = images(3, seed=2)
    expected = np.asarray(cnn(x, training=False))
    result = CONVERTER.convert(keras_file, ConvertOptions(sample=x))
    np.testing.assert_allclose(run_onnx(result, {"input_layer": x})["softmax"], expected, atol=1e-5)
    # The same for a loaded object nobody has called yet.
    loaded = keras.models.load_model(keras_file, compile=False)
    result = CONVERTER.convert(loaded, ConvertOptions(sample=x))
    np.testing.assert_allclose(run_onnx(result, {"input_layer": x})["softmax"], expected, atol=1e-5)
    assert result.source["sample"] == "given"


def test_h5_file(cnn: Any, tmp_path: Path) -> None:
    path = tmp_path / "cnn.h5"
    cnn.save(path)
    x = images(2, seed=3)
    result = CONVERTER.convert(path, ConvertOptions(sample=x.astype("float64")))
    got = run_onnx(result, {"input_layer": x})["softmax"]
    np.testing.assert_allclose(got, np.asarray(cnn(x, training=False)), atol=1e-5)
    assert result.sample["input_layer"].dtype == np.float32  # float64 sample cast, and noted
    assert any("cast from float64 to float32" in note for note in result.notes)


def test_functional_model_with_two_inputs_and_two_outputs(keras: Any) -> None:
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    hidden = keras.layers.Dense(6, activation="tanh")(keras.layers.Concatenate()([a, b]))
    model = keras.Model(
        {"a": a, "b": b},
        [keras.layers.Dense(3, name="logits")(hidden), keras.layers.Dense(1, name="score")(hidden)],
    )
    rng = np.random.default_rng(4)
    sample = {"a": rng.standard_normal((5, 4)), "b": rng.standard_normal((5, 2))}
    result = CONVERTER.convert(model, ConvertOptions(sample=sample))
    assert result.signature.input_names == ["a", "b"]
    assert result.signature.output_names == ["logits", "score"]
    feed = {k: v.astype("float32") for k, v in sample.items()}
    logits, score = model(feed, training=False)
    got = run_onnx(result, feed)
    np.testing.assert_allclose(got["logits"], np.asarray(logits), atol=1e-5)
    np.testing.assert_allclose(got["score"], np.asarray(score), atol=1e-5)


def test_subclassed_model_from_its_sample(keras: Any) -> None:
    class Doubler(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x: Any) -> Any:
            return {"y": self.dense(x) * 2.0}

    model = Doubler()
    x = np.random.default_rng(5).standard_normal((4, 5)).astype("float32")
    result = CONVERTER.convert(model, ConvertOptions(sample=x))
    assert result.signature.output_names == ["y"]
    assert result.signature.inputs[0].shape == ("batch", 5)
    np.testing.assert_allclose(
        run_onnx(result, {"input_0": x[:1]})["y"], np.asarray(model(x[:1])["y"]), atol=1e-5
    )


def test_model_that_fails_to_trace_is_a_one_line_conversion_error(keras: Any) -> None:
    class Broken(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x: Any) -> Any:
            return self.dense(x) + keras.ops.ones((7,))  # 3 vs 7: fails for any input

    with pytest.raises(ConversionError, match="Dimensions must be equal") as info:
        CONVERTER.convert(Broken(), ConvertOptions(sample=np.ones((2, 4), "float32")))
    assert "\n" not in str(info.value) and "input_0: float32[?, 4]" in str(info.value)


def test_dynamic_axes_and_names_follow_the_options(cnn: Any) -> None:
    x = images(3)
    options = ConvertOptions(
        sample=x,
        input_names=["image"],
        output_names=["probs"],
        dynamic_axes={"image": {}},  # no dynamic axis: the sample's batch of 3 is baked in
    )
    result = CONVERTER.convert(cnn, options)
    assert result.signature.inputs[0].shape == (3, 8, 8, 3)
    np.testing.assert_allclose(
        run_onnx(result, {"image": x})["probs"], np.asarray(cnn(x, training=False)), atol=1e-5
    )
    named = CONVERTER.convert(cnn, ConvertOptions(dynamic_axes={"input_layer": {0: "N"}}))
    assert named.signature.inputs[0].shape == ("N", 8, 8, 3)
    assert named.signature.outputs[0].shape == ("N", 5)


def test_native_runner_for_standalone_verification(
    cnn: Any, cnn_result: ConversionResult, keras_file: Path
) -> None:
    options = ConvertOptions(input_names=["input_layer"], output_names=["softmax"])
    runner, feed = CONVERTER.native_runner(keras_file, options)
    assert feed["input_layer"].shape == (2, 8, 8, 3)
    x = images(6, seed=7)
    np.testing.assert_allclose(
        runner({"input_layer": x})["softmax"],
        run_onnx(cnn_result, {"input_layer": x})["softmax"],
        atol=1e-5,
    )


def test_corrupt_keras_file_is_a_one_line_load_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.keras"
    path.write_bytes(b"this is not a zip archive")
    with pytest.raises(ModelLoadError, match="not a valid .keras archive") as info:
        CONVERTER.convert(path, ConvertOptions())
    assert "\n" not in str(info.value) and "broken.keras" in str(info.value)


def test_truncated_keras_file_is_a_load_error(keras_file: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.keras"
    path.write_bytes(keras_file.read_bytes()[:200])
    with pytest.raises(ModelLoadError):
        CONVERTER.convert(path, ConvertOptions())


def test_weights_only_file_says_what_to_save(cnn: Any, tmp_path: Path) -> None:
    path = tmp_path / "cnn.weights.h5"
    cnn.save_weights(path)
    with pytest.raises(ModelLoadError, match="holds only weights"):
        CONVERTER.convert(path, ConvertOptions())


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (ConvertOptions(sample=np.zeros((2, 8, 8))), InputError, "shape"),
        (ConvertOptions(sample={"x": np.zeros((2, 8, 8, 3))}), InputError, "input_layer"),
        (ConvertOptions(sample=np.array([["a"]])), InputError, "dtype"),
        (ConvertOptions(opset=99), UsageError, "opset"),
        (ConvertOptions(input_names=["a", "b"]), UsageError, "1 inputs"),
    ],
)
def test_bad_options_are_one_line_errors(
    cnn: Any, options: ConvertOptions, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match) as info:
        CONVERTER.convert(cnn, options)
    assert "\n" not in str(info.value)


def test_detection_by_object_and_suffix(cnn: Any) -> None:
    assert CONVERTER.handles_object(cnn)
    assert CONVERTER.handles_path(Path("m.keras")) and CONVERTER.handles_path(Path("m.H5"))
    assert not CONVERTER.handles_object(np.zeros(3))


def test_public_api_detects_converts_and_verifies(
    cnn: Any, keras_file: Path, tmp_path: Path
) -> None:
    import formats.onnx
    from formats.onnx.convert import detect

    assert detect(cnn).name == "keras" and detect(keras_file).name == "keras"
    out = tmp_path / "cnn.onnx"
    result = formats.onnx.convert(keras_file, output=out)
    assert result.framework == "keras" and out.is_file()
    assert result.report, result.report  # parity over the sample, its variations, batches 1 and 7
    assert formats.onnx.verify(out, original=keras_file)  # standalone, through native_runner
