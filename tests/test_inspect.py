"""inspect(): what a summary of a small ONNX model says, and how bad files fail."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from formats.errors import ModelLoadError, NotFoundError, UsageError
from formats.onnx.inspect import inspect
from tests import onnx_models


def test_summary_of_a_small_mlp(tmp_path) -> None:
    path = onnx_models.save(onnx_models.mlp(), tmp_path / "mlp.onnx")
    summary = inspect(path)

    assert summary.op_histogram == {"MatMul": 2, "Add": 2, "Relu": 1, "ArgMax": 1}
    assert summary.node_count == 6
    assert summary.parameter_count == onnx_models.mlp_parameters() == 4 * 8 + 8 + 8 * 3 + 3
    assert summary.parameter_bytes == 4 * summary.parameter_count  # float32 weights
    assert summary.inputs == [{"name": "x", "dtype": "float32", "shape": ["batch", 4]}]
    assert summary.outputs == [
        {"name": "logits", "dtype": "float32", "shape": ["batch", 3]},
        {"name": "label", "dtype": "int64", "shape": ["batch"]},
    ]
    assert summary.opsets == {"ai.onnx": 17}
    assert summary.ir_version == onnx_models.IR_VERSION
    assert summary.producer_name == "modelport-tests"
    assert summary.metadata == {"author": "tests", "task": "classifier"}
    assert summary.file_bytes == path.stat().st_size
    assert not summary.external_data
    # to_dict is JSON all the way down
    assert json.loads(json.dumps(summary.to_dict()))["parameter_count"] == 67


def test_render_mentions_the_essentials() -> None:
    from rich.console import Console

    console = Console(width=120, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(inspect(onnx_models.mlp()).render())
    text = console.export_text()
    assert "MatMul" in text and "logits" in text and "67 parameter(s)" in text


def test_counts_nodes_inside_subgraphs_and_non_tensor_outputs() -> None:
    cond = helper.make_tensor_value_info("cond", TensorProto.BOOL, [])
    out = helper.make_tensor_value_info("out", TensorProto.FLOAT, [1])

    def branch(value: float) -> onnx.GraphProto:
        const = helper.make_node(
            "Constant", [], ["out"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [value])
        )
        return helper.make_graph([const], f"b{value}", [], [out])

    node = helper.make_node("If", ["cond"], ["out"], then_branch=branch(1), else_branch=branch(0))
    model = helper.make_model(helper.make_graph([node], "if", [cond], [out]))
    assert inspect(model).op_histogram == {"Constant": 2, "If": 1}

    seq = inspect(onnx_models.sequence_output())
    assert seq.outputs == [{"name": "seq", "dtype": "<sequence_type>", "shape": []}]


def test_bad_files_fail_with_one_line(tmp_path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        inspect(tmp_path / "missing.onnx")

    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07\x12\xff\xff\xff garbage")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model.*re-export") as info:
        inspect(corrupt)
    assert "\n" not in str(info.value)

    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="not a valid ONNX model"):
        inspect(empty)

    weights = tmp_path / "weights.npy"
    np.save(weights, np.ones(3))
    with pytest.raises(UsageError, match="python -m formats convert"):
        inspect(weights)
