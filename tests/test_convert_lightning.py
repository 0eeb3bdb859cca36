"""Lightning converter: a LightningModule object and a trained ``.ckpt``, round trip in ORT."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from formats.errors import InputError, ModelLoadError, UsageError
from formats.onnx.convert import ConversionResult, convert, detect
from tests.torch_models import LitClassifier

torch.set_num_threads(1)
ATOL, RTOL = 1e-4, 1e-3
CLASS = "tests.torch_models:LitClassifier"


def run_onnx(result: ConversionResult, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        result.model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"input": x})[0]


def forward(module: L.LightningModule, x: np.ndarray) -> np.ndarray:
    module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[LitClassifier, Path]:
    """A few real training steps, then a checkpoint written by the Trainer."""
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("lightning")
    x = torch.randn(32, 6)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0).long()
    module = LitClassifier()
    trainer = L.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(module, DataLoader(TensorDataset(x, y), batch_size=8))
    path = root / "model.ckpt"
    trainer.save_checkpoint(path)
    return module, path


def test_object_uses_example_input_array(trained: tuple[LitClassifier, Path]) -> None:
    module, _ = trained
    result = convert(module)  # no sample: example_input_array
    assert result.framework == "lightning"
    assert result.source["exporter"] == "dynamo"
    assert result.source["lightning"] == L.__version__
    assert "torch" in result.source
    np.testing.assert_array_equal(result.sample["input"], module.example_input_array.numpy())
    # dynamic batch, unlike Lightning's own to_onnx
    assert result.signature.inputs[0].shape == ("batch", 6)
    assert result.signature.outputs[0].shape == ("batch", 3)
    assert result.report, result.report
    rng = np.random.default_rng(0)
    for batch in (1, 7):
        x = rng.standard_normal((batch, 6)).astype(np.float32)
        actual = run_onnx(result, x)
        np.testing.assert_allclose(actual, forward(module, x), atol=ATOL, rtol=RTOL)
        assert result.native is not None
        np.testing.assert_allclose(actual, result.native({"input": x})["output"], atol=ATOL)


def test_checkpoint_with_class(trained: tuple[LitClassifier, Path]) -> None:
    module, path = trained
    assert detect(path).name == "lightning"
    x = np.random.default_rng(1).standard_normal((5, 6)).astype(np.float32)
    result = convert(path, x, model_class=CLASS, exporter="torchscript", verify=False)
    assert result.framework == "lightning"
    # the trained weights came back from the checkpoint: ONNX matches the trained module
    expected = forward(module, x)
    np.testing.assert_allclose(run_onnx(result, x), expected, atol=ATOL, rtol=RTOL)
    assert not np.allclose(expected, forward(LitClassifier(), x), atol=ATOL)
    assert result.signature.inputs[0].shape[0] == "batch"


def test_sample_overrides_example_input_array() -> None:
    x = np.ones((4, 6), np.float32)
    result = convert(LitClassifier(), x, exporter="torchscript", verify=False)
    np.testing.assert_array_equal(result.sample["input"], x)


def test_no_sample_and_no_example_input_array() -> None:
    module = LitClassifier()
    module.example_input_array = None
    with pytest.raises(InputError, match="example_input_array") as exc:
        convert(module, verify=False)
    assert "\n" not in str(exc.value)


def test_checkpoint_needs_its_class(trained: tuple[LitClassifier, Path]) -> None:
    _, path = trained
    with pytest.raises(UsageError, match="model_class="):
        convert(path, verify=False)
    with pytest.raises(ModelLoadError, match="cannot import class 'tests.torch_models:Gone'"):
        convert(path, model_class="tests.torch_models:Gone", verify=False)
    with pytest.raises(ModelLoadError, match="is not a LightningModule"):
        convert(path, model_class="tests.torch_models:MLP", verify=False)


def test_detection_prefers_lightning_over_torch() -> None:
    assert detect(LitClassifier()).name == "lightning"
    assert detect(Path("last.ckpt")).name == "lightning"
