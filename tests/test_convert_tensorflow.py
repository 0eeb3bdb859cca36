"""TensorFlow SavedModel directories and tf.functions -> ONNX, with numerical parity."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from formats.errors import ConversionError, ModelLoadError, UsageError
from formats.onnx.convert.base import ConversionResult, ConvertOptions
from formats.onnx.convert.tensorflow import TensorFlowConverter, import_tf

pytestmark = pytest.mark.heavy

CONVERTER = TensorFlowConverter()


@pytest.fixture(scope="module")
def tf() -> Any:
    return import_tf("tensorflow")


@pytest.fixture(scope="module")
def module(tf: Any) -> Any:
    class Scorer(tf.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            init = np.random.default_rng(0).standard_normal((4, 3)).astype("float32")
            self.w = tf.Variable(init)
            self.b = tf.Variable(np.linspace(-1, 1, 3).astype("float32"))

        @tf.function(
            input_signature=[
                tf.TensorSpec((None, 4), tf.float32, name="x"),
                tf.TensorSpec((None,), tf.float32, name="scale"),
            ]
        )
        def __call__(self, x: Any, scale: Any) -> dict[str, Any]:
            hidden = tf.nn.relu(tf.matmul(x, self.w) + self.b)
            return {"y": hidden * scale[:, None], "total": tf.reduce_sum(x, axis=1)}

    return Scorer()


@pytest.fixture(scope="module")
def saved_model(tf: Any, module: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tf") / "scorer"
    tf.saved_model.save(module, str(path))
    return path


@pytest.fixture(scope="module")
def result(saved_model: Path) -> ConversionResult:
    return CONVERTER.convert(saved_model, ConvertOptions())


def run_onnx(result: ConversionResult, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(result.model.SerializeToString())
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feed), strict=True))


def feed(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "scale": rng.uniform(0.5, 2, batch).astype("float32"),
        "x": rng.standard_normal((batch, 4)).astype("float32"),
    }


def test_saved_model_directory_is_detected(saved_model: Path) -> None:
    assert CONVERTER.handles_path(saved_model)
    assert CONVERTER.handles_path(saved_model / "saved_model.pb")
    assert not CONVERTER.handles_path(saved_model.parent)


@pytest.mark.parametrize("batch", [1, 5])
def test_saved_model_round_trip(
    tf: Any, module: Any, saved_model: Path, result: ConversionResult, batch: int
) -> None:
    inputs = feed(batch)
    got = run_onnx(result, inputs)
    # The reference is the SavedModel's own serving signature, loaded independently.
    signature = tf.saved_model.load(str(saved_model)).signatures["serving_default"]
    expected = signature(**{k: tf.constant(v) for k, v in inputs.items()})
    for name in ("y", "total"):
        np.testing.assert_allclose(got[name], expected[name].numpy(), atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got["y"], module(inputs["x"], inputs["scale"])["y"], atol=1e-5)
    native = result.native(inputs)
    np.testing.assert_allclose(native["total"], expected["total"].numpy())


def test_saved_model_signature_and_source(result: ConversionResult) -> None:
    sig = result.signature
    assert [(s.name, s.shape) for s in sig.inputs] == [("scale", ("batch",)), ("x", ("batch", 4))]
    assert [(s.name, s.shape) for s in sig.outputs] == [("total", ("batch",)), ("y", ("batch", 3))]
    assert set(result.sample) == {"scale", "x"} and result.sample["x"].shape == (2, 4)
    assert result.source["exporter"] == "tf2onnx" and "tensorflow" in result.source
    assert result.framework == "tensorflow"


def test_tf_function_object_with_renamed_inputs_and_outputs(module: Any) -> None:
    options = ConvertOptions(input_names=["features", "weight"], output_names=["total", "y"])
    converted = CONVERTER.convert(module, options)
    assert converted.signature.input_names == ["features", "weight"]
    inputs = feed(3, seed=2)
    got = run_onnx(converted, {"features": inputs["x"], "weight": inputs["scale"]})
    expected = module(inputs["x"], inputs["scale"])
    np.testing.assert_allclose(got["y"], expected["y"].numpy(), atol=1e-5)
    np.testing.assert_allclose(got["total"], expected["total"].numpy(), atol=1e-5)


def test_native_runner_for_standalone_verification(saved_model: Path) -> None:
    options = ConvertOptions(input_names=["scale", "x"], output_names=["total", "y"])
    runner, sample = CONVERTER.native_runner(saved_model, options)
    assert set(sample) == {"scale", "x"}
    inputs = feed(4, seed=3)
    outputs = runner(inputs)
    np.testing.assert_allclose(outputs["total"], inputs["x"].sum(axis=1), rtol=1e-5)


def test_unsupported_op_is_a_conversion_error(tf: Any) -> None:
    function = tf.function(tf.math.lgamma, input_signature=[tf.TensorSpec((None, 3), tf.float32)])
    with pytest.raises(ConversionError, match="Lgamma"):
        CONVERTER.convert(function, ConvertOptions())


def test_corrupt_saved_model_is_a_load_error(tmp_path: Path) -> None:
    (tmp_path / "saved_model.pb").write_bytes(b"garbage")
    with pytest.raises(ModelLoadError) as info:
        CONVERTER.convert(tmp_path, ConvertOptions())
    assert "\n" not in str(info.value)


def test_saved_model_without_signatures_says_how_to_save(tf: Any, tmp_path: Path) -> None:
    holder = tf.Module()
    holder.v = tf.Variable(1.0)
    tf.saved_model.save(holder, str(tmp_path / "plain"))
    with pytest.raises(UsageError, match="no signatures"):
        CONVERTER.convert(tmp_path / "plain", ConvertOptions())


def test_public_api_detects_converts_and_verifies(
    module: Any, saved_model: Path, tmp_path: Path
) -> None:
    import formats.onnx
    from formats.onnx.convert import detect

    assert detect(saved_model).name == "tensorflow" and detect(module).name == "tensorflow"
    out = tmp_path / "scorer.onnx"
    result = formats.onnx.convert(saved_model, output=out)
    assert result.framework == "tensorflow" and out.is_file()
    assert result.report, result.report
    assert formats.onnx.verify(out, original=saved_model)
