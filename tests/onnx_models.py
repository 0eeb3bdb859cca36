"""Tiny ONNX models built with onnx.helper, for tests that need an ONNX file but no framework."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # every ONNX Runtime this project supports reads it


def _model(graph: onnx.GraphProto, opset: int = OPSET, **opsets: int) -> onnx.ModelProto:
    imports = [helper.make_opsetid("", opset)]
    imports += [helper.make_opsetid(domain.replace("_", "."), v) for domain, v in opsets.items()]
    model = helper.make_model(graph, opset_imports=imports, producer_name="modelport-tests")
    model.ir_version = IR_VERSION
    return model


def doubler(opset: int = OPSET, batch: str | int = "batch") -> onnx.ModelProto:
    """y = x * 2 for x of shape [batch, 3]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])
    two = numpy_helper.from_array(np.array(2.0, dtype=np.float32), "two")
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])], "doubler", [x], [y], [two]
    )
    return _model(graph, opset)


def mlp(in_features: int = 4, hidden: int = 8, classes: int = 3) -> onnx.ModelProto:
    """logits = relu(x @ W1 + b1) @ W2 + b2, label = argmax; known weights, metadata set."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(
        rng.standard_normal((in_features, hidden)).astype(np.float32), "w1"
    )
    b1 = numpy_helper.from_array(np.zeros(hidden, dtype=np.float32), "b1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, classes)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(np.zeros(classes, dtype=np.float32), "b2")
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "w2"], ["h3"]),
        helper.make_node("Add", ["h3", "b2"], ["logits"]),
        helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", in_features])],
        [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        [w1, b1, w2, b2],
    )
    model = _model(graph)
    helper.set_model_props(model, {"author": "tests", "task": "classifier"})
    return model


def mlp_parameters(in_features: int = 4, hidden: int = 8, classes: int = 3) -> int:
    return in_features * hidden + hidden + hidden * classes + classes


def sequence_output() -> onnx.ModelProto:
    """Returns a sequence of tensors: valid ONNX, but nothing the V2 protocol can serve."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    seq = helper.make_tensor_sequence_value_info("seq", TensorProto.FLOAT, None)
    graph = helper.make_graph(
        [helper.make_node("SequenceConstruct", ["x", "x"], ["seq"])], "seq", [x], [seq]
    )
    return _model(graph)


def save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save_model(model, str(path))
    return path
