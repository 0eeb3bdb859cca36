"""The public API: __all__ is real, importing modelport stays light, convert() on ONNX works."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import modelport
from modelport.convert.onnx import feed_from_sample
from modelport.errors import InputError, UsageError
from modelport.signature import Signature
from tests import onnx_models


def test_all_names_exist() -> None:
    assert {
        "convert",
        "verify",
        "inspect",
        "ConversionResult",
        "VerificationReport",
        "Signature",
        "TensorSpec",
        "errors",
        "Repository",
    } <= set(modelport.__all__)
    for name in modelport.__all__:
        assert getattr(modelport, name) is not None, name
    assert callable(modelport.convert) and callable(modelport.verify)
    assert callable(modelport.inspect)
    assert issubclass(modelport.errors.NotFoundError, modelport.errors.ModelportError)


def test_import_does_not_load_frameworks() -> None:
    code = (
        "import sys, json, modelport\n"
        "heavy = ['torch', 'tensorflow', 'keras', 'sklearn', 'xgboost', 'lightgbm', 'catboost',"
        " 'onnxruntime', 'pandas']\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []


def test_convert_a_model_proto_synthesizes_a_sample_and_verifies() -> None:
    result = modelport.convert(onnx_models.doubler())

    assert result.framework == "onnx" and result.native is None
    assert result.sample["x"].shape == (2, 3)  # symbolic batch axis filled with 2
    assert result.source["sample"] == "synthesized"
    assert isinstance(result.report, modelport.VerificationReport)
    assert result.report and not result.report.compared
    assert result.signature.inputs[0] == modelport.TensorSpec("x", "float32", ("batch", 3))


def test_convert_with_a_sample_and_verify_it(tmp_path) -> None:
    out = tmp_path / "m.onnx"
    sample = np.ones((5, 3))  # float64: cast to the input's float32
    result = modelport.convert(onnx_models.doubler(), sample=sample, output=out)

    assert result.sample["x"].dtype == np.float32 and result.sample["x"].shape == (5, 3)
    assert out.exists()
    report = modelport.verify(out, sample={"x": sample})
    assert report and any(c.name == "runs on sample" and c.passed for c in report.checks)
    assert modelport.inspect(out).op_histogram == {"Mul": 1}


def test_sample_fitting_casts_only_what_keeps_its_meaning() -> None:
    signature = Signature.from_dict(
        {
            "inputs": [
                {"name": "ids", "dtype": "int32", "shape": ["batch"]},
                {"name": "words", "dtype": "str", "shape": ["batch"]},
            ],
            "outputs": [],
        }
    )
    feed = feed_from_sample({"ids": np.array([1, 2]), "words": np.array(["a", "b"])}, signature)
    assert feed["ids"].dtype == np.int32 and feed["words"].dtype == object
    with pytest.raises(InputError, match="do not fit int32"):
        feed_from_sample({"ids": np.array([2**40, 1]), "words": np.array(["a", "b"])}, signature)
    with pytest.raises(InputError, match="'words' has dtype float64"):
        feed_from_sample({"ids": np.array([1, 2]), "words": np.array([1.0, 2.0])}, signature)
    with pytest.raises(InputError, match="2 inputs"):
        feed_from_sample(np.array([1, 2]), signature)

    # np.savez(path, x) stores its one array as "arr_0": accepted for a one-input model
    single = Signature.from_onnx(onnx_models.doubler())
    assert feed_from_sample({"arr_0": np.ones((1, 3))}, single)["x"].dtype == np.float32


def test_export_options_on_an_onnx_model_are_refused() -> None:
    with pytest.raises(UsageError, match="--opset cannot change an existing ONNX model"):
        modelport.convert(onnx_models.doubler(), opset=18)
