"""Shared pieces of the serving tests: tiny ONNX models built in code, a repository holding them
and a real uvicorn server on 127.0.0.1 in a background thread. (No tests in this module.)"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from modelport.repository import Repository

DTYPES = [
    ("bool", TensorProto.BOOL),
    ("uint8", TensorProto.UINT8),
    ("uint16", TensorProto.UINT16),
    ("uint32", TensorProto.UINT32),
    ("uint64", TensorProto.UINT64),
    ("int8", TensorProto.INT8),
    ("int16", TensorProto.INT16),
    ("int32", TensorProto.INT32),
    ("int64", TensorProto.INT64),
    ("float16", TensorProto.FLOAT16),
    ("float32", TensorProto.FLOAT),
    ("float64", TensorProto.DOUBLE),
    ("str", TensorProto.STRING),
]
V2_NAMES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64", "float16": "FP16",
    "float32": "FP32", "float64": "FP64", "str": "BYTES",
}


def _model(nodes: list[Any], inputs: list[Any], outputs: list[Any],
           initializers: list[Any] | None = None) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=initializers or [])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def identity_model() -> onnx.ModelProto:
    """One Identity per datatype: inputs ``x_<dtype>`` [N, 2] -> outputs ``y_<dtype>``."""
    inputs = [helper.make_tensor_value_info(f"x_{n}", t, ["N", 2]) for n, t in DTYPES]
    outputs = [helper.make_tensor_value_info(f"y_{n}", t, ["N", 2]) for n, t in DTYPES]
    nodes = [helper.make_node("Identity", [f"x_{n}"], [f"y_{n}"]) for n, _ in DTYPES]
    return _model(nodes, inputs, outputs)


def mlp_model(seed: int = 0) -> onnx.ModelProto:
    """x [N, 4] float32 -> scores [N, 3] float32 (x @ W + b) and label [N] int64 (argmax)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(4, 3)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(3,)).astype(np.float32), "B")
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "B"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])],
        [w, b],
    )


def mlp_reference(x: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(4, 3)).astype(np.float32)
    b = rng.normal(size=(3,)).astype(np.float32)
    return x.astype(np.float32) @ w + b


def slow_model(size: int = 512) -> onnx.ModelProto:
    """y = 2x for x [N, 1] float32, after a size^3 MatMul that depends on x (not foldable)."""
    w = numpy_helper.from_array(np.full((size, size), 1e-3, dtype=np.float32), "W")
    zero = numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")
    two = numpy_helper.from_array(np.full((), 2.0, dtype=np.float32), "two")
    nodes = [
        helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
        helper.make_node("Add", ["W", "s"], ["z"]),
        helper.make_node("MatMul", ["z", "z"], ["m"]),
        helper.make_node("ReduceMean", ["m"], ["r"], keepdims=0),
        helper.make_node("Mul", ["r", "zero"], ["nothing"]),
        helper.make_node("Mul", ["x", "two"], ["x2"]),
        helper.make_node("Add", ["x2", "nothing"], ["y"]),
    ]
    return _model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1])],
        [w, zero, two],
    )


def two_input_model() -> onnx.ModelProto:
    """a [N, 2] float32, b [N, 2] float32 -> sum [N, 2], prod [N, 2]."""
    return _model(
        [helper.make_node("Add", ["a", "b"], ["sum"]), helper.make_node("Mul", ["a", "b"], ["prod"])],
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("b", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("prod", TensorProto.FLOAT, ["N", 2])],
    )


def register(repo: Repository, model: onnx.ModelProto, name: str,
             example: dict[str, np.ndarray] | None = None) -> int:
    return int(repo.register(model, name, sample=example).version)


def sample(dtype: str, rows: int = 3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if dtype == "str":
        words = np.array(["", "a", "héllo", "ünïcode ✓", "x" * 40, "0"], dtype=object)
        return words[rng.integers(0, len(words), size=(rows, 2))]
    if dtype == "bool":
        return rng.integers(0, 2, size=(rows, 2)).astype(bool)
    if dtype.startswith(("int", "uint")):
        info = np.iinfo(dtype)
        low, high = max(info.min, -1000), min(info.max, 1000)
        return rng.integers(low, high, size=(rows, 2)).astype(dtype)
    return rng.normal(size=(rows, 2)).astype(dtype)


class Server:
    """A real uvicorn server on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: Any) -> None:
        from modelport.serve import bind_socket, make_server

        self.app = app
        self.sock = bind_socket("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(app, log_level="warning")
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> Server:
        self.thread.start()
        service = self.app.state.service
        deadline = time.monotonic() + 30
        while not (self.server.started and service.ready()):
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("server did not become ready")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        with contextlib.suppress(OSError):
            self.sock.close()


@contextlib.contextmanager
def serving(repo: Repository, refs: list[str] | None = None, **config: Any) -> Iterator[Server]:
    """Serve ``repo`` with ``ServeConfig`` fields (``defaults=ModelConfig(...)``...)."""
    from modelport.serve import InferenceService, ServeConfig, create_app

    service = InferenceService(repo, refs, ServeConfig(**config))
    with Server(create_app(service)) as server:
        yield server
