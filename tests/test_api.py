"""The public API: formats.onnx's __all__ is real, importing formats and formats.onnx stays light,
convert() on ONNX works."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import formats.errors
import formats.onnx
from formats.errors import InputError, UsageError
from formats.onnx.convert.onnx import feed_from_sample
from formats.signature import Signature
from tests import onnx_models

# Frameworks a plain import must never load: only the converter (or job) that needs one does.
HEAVY = [
    "torch",
    "tensorflow",
    "keras",
    "sklearn",
    "xgboost",
    "lightgbm",
    "catboost",
    "pyspark",
]


def test_all_names_exist() -> None:
    assert set(formats.onnx.__all__) == {
        "convert",
        "verify",
        "inspect",
        "Session",
        "SessionOptions",
        "ConversionResult",
        "Tolerance",
        "VerificationReport",
        "ModelSummary",
        "Signature",
        "TensorSpec",
    }
    for name in formats.onnx.__all__:
        assert getattr(formats.onnx, name) is not None, name
    assert callable(formats.onnx.convert) and callable(formats.onnx.verify)
    assert callable(formats.onnx.inspect)
    assert formats.onnx.Signature is Signature
    assert issubclass(formats.errors.NotFoundError, formats.errors.ModelportError)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        formats.onnx.nope  # noqa: B018


def _loaded_after(statement: str, modules: list[str]) -> list[str]:
    """Which of ``modules`` a fresh interpreter has loaded after running ``statement``."""
    code = (
        f"import sys, json\n{statement}\n"
        f"print(json.dumps([m for m in {modules!r} if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded: list[str] = json.loads(out.stdout)
    return loaded


def test_import_formats_does_not_load_frameworks() -> None:
    assert _loaded_after("import formats", HEAVY) == []


def test_import_formats_onnx_does_not_load_frameworks() -> None:
    # ONNX Runtime too: it is loaded only when a session is wanted. (pandas is not on the list:
    # the formats package's schema, which every scorer checks input with, is built on it.)
    assert _loaded_after("import formats.onnx", [*HEAVY, "onnxruntime"]) == []
    assert _loaded_after("from formats.onnx import convert, verify, inspect", HEAVY) == []


def test_session_is_imported_on_first_use() -> None:
    loaded = _loaded_after("import formats.onnx; formats.onnx.Session", ["onnxruntime"])
    assert loaded == ["onnxruntime"]


def test_convert_a_model_proto_synthesizes_a_sample_and_verifies() -> None:
    result = formats.onnx.convert(onnx_models.doubler())

    assert result.framework == "onnx" and result.native is None
    assert result.sample["x"].shape == (2, 3)  # symbolic batch axis filled with 2
    assert result.source["sample"] == "synthesized"
    assert isinstance(result.report, formats.onnx.VerificationReport)
    assert result.report and not result.report.compared
    assert result.signature.inputs[0] == formats.onnx.TensorSpec("x", "float32", ("batch", 3))


def test_convert_with_a_sample_and_verify_it(tmp_path) -> None:
    out = tmp_path / "m.onnx"
    sample = np.ones((5, 3))  # float64: cast to the input's float32
    result = formats.onnx.convert(onnx_models.doubler(), sample=sample, output=out)

    assert result.sample["x"].dtype == np.float32 and result.sample["x"].shape == (5, 3)
    assert out.exists()
    report = formats.onnx.verify(out, sample={"x": sample})
    assert report and any(c.name == "runs on sample" and c.passed for c in report.checks)
    assert formats.onnx.inspect(out).op_histogram == {"Mul": 1}


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
        formats.onnx.convert(onnx_models.doubler(), opset=18)
