"""Tensor specs, model signatures and the one dtype table (numpy <-> ONNX).

A dimension is an ``int`` (fixed) or a ``str`` (symbolic, e.g. ``"batch"``); unknown unnamed
dimensions are written ``None`` in Python and ``-1`` on the wire.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from formats.errors import InputError

if TYPE_CHECKING:
    import onnx

__all__ = [
    "Dim",
    "Signature",
    "TensorSpec",
    "numpy_dtype_from_onnx",
    "numpy_dtype_from_ort",
    "onnx_elem_type",
]

Dim = int | str | None

# dtype name (numpy's, "str" for string tensors) -> ONNX TensorProto elem type
_TABLE: dict[str, int] = {
    "bool": 9,
    "uint8": 2,
    "uint16": 4,
    "uint32": 12,
    "uint64": 13,
    "int8": 3,
    "int16": 5,
    "int32": 6,
    "int64": 7,
    "float16": 10,
    "float32": 1,
    "float64": 11,
    "str": 8,
}
_BY_ONNX = {onnx_type: name for name, onnx_type in _TABLE.items()}
_ORT_NAMES = {
    "tensor(bool)": "bool",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(float16)": "float16",
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(string)": "str",
}


def dtype_name(dtype: Any) -> str:
    """Our canonical name of a numpy dtype: numpy's name, or ``"str"`` for any string/object."""
    dt = np.dtype(dtype)
    if dt.kind in ("U", "S", "O", "T"):
        return "str"
    if dt.name not in _TABLE:
        raise InputError(f"dtype {dt.name} is not supported; use one of {', '.join(_TABLE)}")
    return str(dt.name)


def numpy_dtype(name: str) -> np.dtype[Any]:
    return np.dtype(object) if name == "str" else np.dtype(name)


def onnx_elem_type(name: str) -> int:
    return _TABLE[name]


def numpy_dtype_from_onnx(elem_type: int) -> str:
    try:
        return _BY_ONNX[elem_type]
    except KeyError:
        raise InputError(f"ONNX element type {elem_type} is not supported") from None


def numpy_dtype_from_ort(type_str: str) -> str:
    try:
        return _ORT_NAMES[type_str]
    except KeyError:
        raise InputError(
            f"ONNX Runtime type {type_str} is not a plain tensor; only tensors are supported"
        ) from None


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # a key of the dtype table: "float32", "int64", "str", ...
    shape: tuple[Dim, ...]

    @property
    def wire_shape(self) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in self.shape]

    @property
    def has_dynamic_batch(self) -> bool:
        return bool(self.shape) and not isinstance(self.shape[0], int)

    def check(self, array: np.ndarray) -> None:
        """Raise InputError naming this input when ``array`` does not fit the spec."""
        if not isinstance(array, np.ndarray):
            raise InputError(
                f"input {self.name!r} is a {type(array).__name__}, not a numpy array; "
                "pass np.asarray(value, dtype=...)"
            )
        if dtype_name(array.dtype) != self.dtype:
            raise InputError(
                f"input {self.name!r} has dtype {dtype_name(array.dtype)}, expected {self.dtype}"
            )
        if len(array.shape) != len(self.shape):
            raise InputError(
                f"input {self.name!r} has shape {list(array.shape)}, expected rank "
                f"{len(self.shape)} {self.wire_shape}"
            )
        for got, want in zip(array.shape, self.shape, strict=True):
            if isinstance(want, int) and got != want:
                raise InputError(
                    f"input {self.name!r} has shape {list(array.shape)}, expected {self.wire_shape}"
                )

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), str(data["dtype"]), tuple(data["shape"]))


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.outputs]

    def input(self, name: str) -> TensorSpec:
        for spec in self.inputs:
            if spec.name == name:
                return spec
        raise InputError(f"unknown input {name!r}; the model's inputs are {self.input_names}")

    def output(self, name: str) -> TensorSpec:
        for spec in self.outputs:
            if spec.name == name:
                return spec
        raise InputError(f"unknown output {name!r}; the model's outputs are {self.output_names}")

    def check_feed(self, feed: Mapping[str, np.ndarray]) -> None:
        """Validate a whole feed: every input present, nothing extra, dtypes and shapes fit."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise InputError(f"missing input(s) {missing}; the model expects {self.input_names}")
        extra = [n for n in feed if n not in self.input_names]
        if extra:
            raise InputError(f"unknown input(s) {extra}; the model's inputs are {self.input_names}")
        for spec in self.inputs:
            spec.check(feed[spec.name])

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [s.to_dict() for s in self.inputs],
            "outputs": [s.to_dict() for s in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Signature:
        return cls(
            tuple(TensorSpec.from_dict(s) for s in data["inputs"]),
            tuple(TensorSpec.from_dict(s) for s in data["outputs"]),
        )

    @classmethod
    def from_onnx(cls, model: onnx.ModelProto) -> Signature:
        """Read the graph's declared inputs (minus initializers) and outputs."""
        initializers = {init.name for init in model.graph.initializer}
        inputs = tuple(
            _spec_from_value_info(vi) for vi in model.graph.input if vi.name not in initializers
        )
        outputs = tuple(_spec_from_value_info(vi) for vi in model.graph.output)
        return cls(inputs, outputs)


def _spec_from_value_info(value_info: Any) -> TensorSpec:
    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        # Sequences and maps (ZipMap) are not servable; the converters must not produce them.
        return TensorSpec(value_info.name, f"<{kind}>", ())
    tensor_type = value_info.type.tensor_type
    dims: list[Dim] = []
    if tensor_type.HasField("shape"):
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(str(dim.dim_param))
            else:
                dims.append(None)
    return TensorSpec(value_info.name, numpy_dtype_from_onnx(tensor_type.elem_type), tuple(dims))
