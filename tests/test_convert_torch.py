"""PyTorch converter: objects, TorchScript files, state dicts and pickled modules, round trip.

Every round trip runs the exported model in real ONNX Runtime and compares it numerically with
the original module; exports take a second or two each, so results are shared where possible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from formats.errors import ConversionError, InputError, ModelLoadError, UsageError
from formats.onnx.convert import ConversionResult, convert, detect, get
from formats.onnx.convert.base import ConvertOptions
from tests.torch_models import (
    MLP,
    BranchOnSum,
    SmallCNN,
    TwoInTwoOut,
    UnexportableOp,
    WithArguments,
)

torch.set_num_threads(1)
ATOL, RTOL = 1e-4, 1e-3


def run_onnx(model: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [out.name for out in session.get_outputs()]
    return dict(zip(names, session.run(names, feed), strict=True))


def assert_parity(result: ConversionResult, feed: dict[str, np.ndarray]) -> None:
    assert result.native is not None
    expected = result.native(feed)
    actual = run_onnx(result.model, feed)
    assert sorted(expected) == sorted(actual)
    for name, value in expected.items():
        np.testing.assert_allclose(actual[name], value, atol=ATOL, rtol=RTOL, err_msg=name)


def torch_forward(module: torch.nn.Module, array: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(array)).numpy()


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture(scope="module")
def cnn() -> SmallCNN:
    torch.manual_seed(0)
    return SmallCNN()


@pytest.fixture(scope="module")
def cnn_result(cnn: SmallCNN) -> ConversionResult:
    # float64, as numpy makes it: the converter casts it to the module's float32
    sample = np.random.default_rng(0).standard_normal((3, 1, 8, 8))
    return convert(cnn, sample, verify=False)


def test_object_round_trip_uses_dynamo_exporter(cnn_result: ConversionResult) -> None:
    result = cnn_result
    assert result.framework == "torch"
    assert result.source["exporter"] == "dynamo"
    assert "fallback_reason" not in result.source
    assert result.source["torch"] == torch.__version__.split("+")[0]
    assert isinstance(result.source["opset"], int)
    assert (result.tolerance.atol, result.tolerance.rtol) == (1e-4, 1e-3)
    assert result.signature.inputs[0].name == "input"
    assert result.signature.inputs[0].shape == ("batch", 1, 8, 8)
    assert result.signature.outputs[0].shape == ("batch", 10)
    assert list(result.sample) == ["input"]
    assert result.sample["input"].dtype == np.float32
    onnx.checker.check_model(result.model, full_check=True)
    # self-contained: every weight lives inside the proto
    assert all(
        init.data_location == onnx.TensorProto.DEFAULT for init in result.model.graph.initializer
    )
    assert_parity(result, result.sample)


def test_dynamic_batch_matches_torch(cnn: SmallCNN, cnn_result: ConversionResult) -> None:
    rng = np.random.default_rng(1)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 1, 8, 8)).astype(np.float32)
        actual = run_onnx(cnn_result.model, {"input": x})["output"]
        assert actual.shape == (batch, 10)
        np.testing.assert_allclose(actual, torch_forward(cnn, x), atol=ATOL, rtol=RTOL)
        assert_parity(cnn_result, {"input": x})


def test_conversion_passes_verification(cnn_result: ConversionResult) -> None:
    from formats.onnx.verify import verify_conversion

    report = verify_conversion(cnn_result)
    assert report, report


def test_training_mode_is_left_alone_and_native_runs_in_eval() -> None:
    torch.manual_seed(1)
    mlp = MLP().train()
    x = np.random.default_rng(2).standard_normal((4, 16)).astype(np.float32)
    result = convert(mlp, x, exporter="torchscript", verify=False)
    assert mlp.training and mlp.net[2].training  # the user's module is as they left it
    assert result.native is not None
    first, second = result.native({"input": x}), result.native({"input": x})
    np.testing.assert_array_equal(first["output"], second["output"])  # dropout is off
    assert_parity(result, {"input": x})


def test_dict_sample_orders_by_forward_and_names_outputs() -> None:
    torch.manual_seed(2)
    rng = np.random.default_rng(3)
    sample = {"b": rng.random((2, 3), np.float32), "a": rng.random((2, 3), np.float32)}
    result = convert(TwoInTwoOut(), sample, output_names=["proj", "dot"], verify=False)
    assert result.signature.input_names == ["a", "b"]
    assert result.signature.output_names == ["proj", "dot"]
    assert [s.shape[0] for s in (*result.signature.inputs, *result.signature.outputs)] == [
        "batch"
    ] * 4
    bigger = {"a": rng.random((6, 3), np.float32), "b": rng.random((6, 3), np.float32)}
    assert_parity(result, bigger)


def test_tuple_sample_gets_numbered_names() -> None:
    rng = np.random.default_rng(4)
    sample = (rng.random((2, 3), np.float32), rng.random((2, 3), np.float32))
    result = convert(TwoInTwoOut(), sample, exporter="torchscript", verify=False)
    assert result.signature.input_names == ["input_0", "input_1"]
    assert result.signature.output_names == ["output_0", "output_1"]
    assert_parity(result, {"input_0": sample[0][:1], "input_1": sample[1][:1]})


def test_dynamic_axes_override() -> None:
    x = np.ones((2, 16), np.float32)
    renamed = convert(
        MLP(),
        x,
        exporter="torchscript",
        dynamic_axes={"input": {0: "n"}, "output": {0: "n"}},
        verify=False,
    )
    assert renamed.signature.inputs[0].shape == ("n", 16)
    assert renamed.signature.outputs[0].shape == ("n", 4)
    # An empty mapping pins every axis (only reachable through ConvertOptions).
    static = get("torch").convert(
        MLP(), ConvertOptions(sample=x, dynamic_axes={}, exporter="torchscript")
    )
    assert static.signature.inputs[0].shape == (2, 16)


def test_torchscript_file(cnn: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "cnn.pt"
    torch.jit.trace(cnn.eval(), torch.zeros(2, 1, 8, 8)).save(str(path))
    assert detect(path).name == "torch"
    x = np.random.default_rng(5).standard_normal((2, 1, 8, 8)).astype(np.float32)
    result = convert(path, x, verify=False)
    assert result.source["exporter"] == "torchscript"
    assert "TorchScript" in result.source["fallback_reason"]
    assert result.signature.inputs[0].shape[0] == "batch"
    x4 = np.random.default_rng(6).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(
        run_onnx(result.model, {"input": x4})["output"],
        torch_forward(cnn, x4),
        atol=ATOL,
        rtol=RTOL,
    )


def test_state_dict_with_class(cnn: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(cnn.state_dict(), path)
    x = np.random.default_rng(7).standard_normal((3, 1, 8, 8)).astype(np.float32)
    result = convert(path, x, model_class="tests.torch_models:SmallCNN", verify=False)
    assert result.source["exporter"] == "dynamo"
    # the weights came from the file: ONNX matches the original object, not a fresh init
    np.testing.assert_allclose(
        run_onnx(result.model, {"input": x})["output"], torch_forward(cnn, x), atol=ATOL, rtol=RTOL
    )


def test_pickled_module_with_class(cnn: SmallCNN, tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(cnn, path)
    x = np.random.default_rng(8).standard_normal((2, 1, 8, 8)).astype(np.float32)
    result = convert(
        path, x, model_class="tests.torch_models:SmallCNN", exporter="torchscript", verify=False
    )
    np.testing.assert_allclose(
        run_onnx(result.model, {"input": x})["output"], torch_forward(cnn, x), atol=ATOL, rtol=RTOL
    )
    assert_parity(result, {"input": x[:1]})


def test_standalone_verification_loads_the_original(
    cnn: SmallCNN, cnn_result: ConversionResult, tmp_path: Path
) -> None:
    from formats.onnx.verify import verify

    onnx_path = cnn_result.save(tmp_path / "cnn.onnx")
    weights = tmp_path / "weights.pth"
    torch.save(cnn.state_dict(), weights)
    x = np.random.default_rng(9).standard_normal((2, 1, 8, 8)).astype(np.float32)
    report = verify(onnx_path, weights, x, model_class="tests.torch_models:SmallCNN")
    assert report, report

    runner, feed = get("torch").native_runner(
        weights,
        ConvertOptions(
            sample=x,
            input_names=["input"],
            output_names=["output"],
            model_class="tests.torch_models:SmallCNN",
        ),
    )
    assert list(feed) == ["input"]
    np.testing.assert_allclose(runner(feed)["output"], torch_forward(cnn, x), atol=1e-6)


def test_data_dependent_branch_frozen_by_torchscript() -> None:
    x = np.abs(np.random.default_rng(10).standard_normal((3, 4))).astype(np.float32) + 0.1
    result = convert(BranchOnSum(), x, exporter="torchscript")
    assert result.source["exporter"] == "torchscript"
    assert result.source["fallback_reason"] == "the torchscript exporter was requested"
    assert_parity(result, {"input": x})  # the traced side agrees...
    assert result.native is not None
    negated = {"input": -x}
    onnx_out = run_onnx(result.model, negated)["output"]
    torch_out = result.native(negated)["output"]
    assert not np.allclose(onnx_out, torch_out, atol=ATOL, rtol=RTOL)  # ...the other does not
    np.testing.assert_allclose(onnx_out, -x * 2)  # the branch taken at trace time, frozen
    assert not result.report  # and verification catches it


def test_data_dependent_branch_falls_back_with_reason() -> None:
    x = np.ones((2, 3), np.float32)
    result = convert(BranchOnSum(), x, verify=False)
    assert result.source["exporter"] == "torchscript"
    assert "data-dependent" in result.source["fallback_reason"]
    assert "\n" not in result.source["fallback_reason"]
    assert any("TorchScript" in note for note in result.notes)


def test_forced_dynamo_reports_why_it_failed() -> None:
    with pytest.raises(ConversionError) as exc:
        convert(BranchOnSum(), np.ones((2, 3), np.float32), exporter="dynamo", verify=False)
    message = one_line(exc)
    assert "data-dependent" in message and "torch.where" in message


def test_unsupported_operator_in_both_exporters() -> None:
    with pytest.raises(ConversionError) as exc:
        convert(UnexportableOp(), np.ones((2, 3), np.float32), verify=False)
    message = one_line(exc)
    assert "wiggle" in message
    assert "dynamo exporter" in message and "TorchScript exporter" in message
    assert "opset" in message  # the fix hint


def test_exporter_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPORT_TORCH_EXPORTER", "torchscript")
    result = convert(MLP(), np.ones((2, 16), np.float32), verify=False)
    assert result.source["exporter"] == "torchscript"


def test_unknown_exporter() -> None:
    with pytest.raises(UsageError, match="unknown torch exporter 'jit'"):
        convert(MLP(), np.ones((2, 16), np.float32), exporter="jit", verify=False)


def test_missing_sample() -> None:
    with pytest.raises(InputError) as exc:
        convert(MLP(), verify=False)
    assert one_line(exc) == (
        "a sample input is required for torch models: pass sample=... or --sample FILE"
    )


def test_wrong_sample_shape() -> None:
    with pytest.raises(InputError) as exc:
        convert(SmallCNN(), np.ones((2, 3, 8, 8), np.float32), verify=False)
    message = one_line(exc)
    assert "does not fit the model" in message and "[2, 3, 8, 8]" in message


def test_class_not_importable(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(MLP().state_dict(), path)
    with pytest.raises(ModelLoadError) as exc:
        convert(path, np.ones((1, 16)), model_class="nowhere_pkg.models:Net", verify=False)
    assert one_line(exc).startswith("cannot import class 'nowhere_pkg.models:Net': ")
    with pytest.raises(ModelLoadError, match="cannot import class 'tests.torch_models:Nope'"):
        convert(path, np.ones((1, 16)), model_class="tests.torch_models:Nope", verify=False)


def test_state_dict_needs_a_class(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(MLP().state_dict(), path)
    with pytest.raises(UsageError) as exc:
        convert(path, np.ones((1, 16)), verify=False)
    assert "model_class=" in one_line(exc)


def test_state_dict_that_does_not_fit(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    torch.save(MLP().state_dict(), path)
    with pytest.raises(ModelLoadError) as exc:
        convert(path, np.ones((1, 16)), model_class="tests.torch_models:SmallCNN", verify=False)
    assert "does not fit 'tests.torch_models:SmallCNN'" in one_line(exc)
    with pytest.raises(ModelLoadError, match="without arguments"):
        convert(
            path, np.ones((1, 16)), model_class="tests.torch_models:WithArguments", verify=False
        )
    assert WithArguments(16)  # the class itself is fine; it just needs its argument


def test_detection() -> None:
    assert detect(MLP()).name == "torch"
    assert detect(Path("model.pth")).name == "torch"
