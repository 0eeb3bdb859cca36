"""Open Inference Protocol (V2) tensors on the wire: JSON data and the binary tensor extension.

Decoding is strict, because a mistake found here is a 400 that names the input, while one found
by ONNX Runtime is a vaguer message: datatype, shape, element count and binary sizes are all
checked against the model's signature. Binary tensors become numpy arrays without a copy
(``np.frombuffer`` over the request body) unless they are misaligned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from modelport.errors import InputError
from modelport.serve.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor
from modelport.signature import Signature, TensorSpec, dtype_name, numpy_dtype, v2_datatype

__all__ = [
    "HEADER_LENGTH",
    "V2Request",
    "array_from_json",
    "decode_v2_request",
    "deserialize_bytes_tensor",
    "encode_v2_response",
    "json_value",
    "parse_json",
    "serialize_bytes_tensor",
]

HEADER_LENGTH = "inference-header-content-length"
_OPTS = orjson.OPT_SERIALIZE_NUMPY


@dataclass
class V2Request:
    feed: dict[str, np.ndarray]
    outputs: list[str] | None = None  # requested outputs in order; None: all
    binary_outputs: dict[str, bool] = field(default_factory=dict)  # per requested output
    binary_default: bool = False  # the request's "binary_data_output"
    id: str | None = None

    def wants_binary(self, name: str) -> bool:
        return self.binary_outputs.get(name, self.binary_default)


def parse_json(data: bytes | memoryview | str, what: str = "request body") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


@dataclass(frozen=True)
class _Input:
    """What decoding needs of one input, computed once per signature."""

    spec: TensorSpec
    datatype: str
    dtype: np.dtype[Any]  # as on the wire (little-endian)
    fixed: tuple[tuple[int, int], ...]  # (axis, size) of every fixed dimension
    rank: int
    kind: str  # "str", "bool" or "" (a numeric type)
    native: np.dtype[Any]  # the in-memory dtype (native byte order)
    swap: bool  # the wire's byte order is not the native one


_TABLES: dict[int, tuple[Signature, dict[str, _Input], frozenset[str]]] = {}


def _table(signature: Signature) -> tuple[dict[str, _Input], frozenset[str]]:
    cached = _TABLES.get(id(signature))
    if cached is not None and cached[0] is signature:
        return cached[1], cached[2]
    inputs = {}
    for spec in signature.inputs:
        dtype = numpy_dtype(spec.dtype)
        inputs[spec.name] = _Input(
            spec=spec,
            datatype=spec.datatype,
            dtype=dtype if spec.dtype in ("str", "bool") else dtype.newbyteorder("<"),
            fixed=tuple((i, d) for i, d in enumerate(spec.shape) if isinstance(d, int)),
            rank=len(spec.shape),
            kind=spec.dtype if spec.dtype in ("str", "bool") else "",
            native=dtype.newbyteorder("="),
            swap=spec.dtype not in ("str", "bool") and not dtype.newbyteorder("<").isnative,
        )
    outputs = frozenset(signature.output_names)
    if len(_TABLES) > 1000:  # signatures of unloaded models: do not grow without bound
        _TABLES.clear()
    _TABLES[id(signature)] = (signature, inputs, outputs)
    return inputs, outputs


def decode_v2_request(
    body: bytes, header_length: str | None, signature: Signature
) -> V2Request:
    """Parse an inference request (JSON, or JSON header + binary tensors) into a checked feed."""
    table, output_names = _table(signature)
    binary: memoryview | None = None
    if header_length is not None:
        try:
            json_size = int(header_length)
        except ValueError:
            raise InputError(
                f"Inference-Header-Content-Length {header_length!r} is not a number"
            ) from None
        if not 0 < json_size <= len(body):
            raise InputError(
                f"Inference-Header-Content-Length {json_size} does not fit a body of "
                f"{len(body)} bytes"
            )
        view = memoryview(body)
        binary = view[json_size:]
        doc = parse_json(view[:json_size])
    else:
        doc = parse_json(body)
    if type(doc) is not dict:
        raise InputError("an inference request must be a JSON object with an 'inputs' list")
    inputs = doc.get("inputs")
    if type(inputs) is not list or not inputs:
        raise InputError("an inference request needs a non-empty 'inputs' list")

    feed: dict[str, np.ndarray] = {}
    offset = 0
    for item in inputs:
        name = item.get("name") if type(item) is dict else None
        if type(name) is not str:
            raise InputError("each entry of 'inputs' must be an object with a 'name'")
        info = table.get(name)
        if info is None:
            signature.input(name)  # raises, listing the model's inputs
            raise AssertionError(name)
        if name in feed:
            raise InputError(f"input {name!r} is given twice")
        shape = item.get("shape")
        if type(shape) is not list:
            raise InputError(f"input {name!r} needs a 'shape' list of non-negative integers")
        for d in shape:  # loops, not all()/any() over generators: this runs for every request
            if type(d) is not int or d < 0:
                raise InputError(f"input {name!r} needs a 'shape' list of non-negative integers")
        datatype = item.get("datatype")
        if datatype != info.datatype and (
            type(datatype) is not str or datatype.upper() != info.datatype
        ):
            raise InputError(
                f"input {name!r} has datatype {datatype!r}, expected {info.datatype!r}"
            )
        if len(shape) != info.rank:
            raise InputError(f"input {name!r} has shape {shape}, expected {info.spec.wire_shape}")
        for i, d in info.fixed:
            if shape[i] != d:
                raise InputError(
                    f"input {name!r} has shape {shape}, expected {info.spec.wire_shape}"
                )
        params = item.get("parameters")
        size = None
        if params is not None:
            if type(params) is not dict:
                raise InputError(f"input {name!r}: 'parameters' must be an object")
            size = params.get("binary_data_size")
        if size is not None:
            if binary is None:
                raise InputError(
                    f"input {name!r} declares binary_data_size but the request has no "
                    "Inference-Header-Content-Length header"
                )
            if type(size) is not int or size < 0:
                raise InputError(f"input {name!r}: binary_data_size must be a non-negative integer")
            if offset + size > len(binary):
                raise InputError(
                    f"input {name!r} declares {size} bytes of binary data but only "
                    f"{len(binary) - offset} remain in the body"
                )
            array = _array_from_binary(binary[offset : offset + size], info, shape)
            offset += size
        else:
            if "data" not in item:
                raise InputError(f"input {name!r} has neither 'data' nor binary_data_size")
            array = array_from_json(item["data"], info.spec, shape)
        feed[name] = array
    if binary is not None and offset != len(binary):
        raise InputError(
            f"the body has {len(binary) - offset} bytes of binary data beyond what the inputs "
            "declare in binary_data_size"
        )
    if len(feed) != len(table):
        missing = [n for n in signature.input_names if n not in feed]
        raise InputError(f"missing input(s) {missing}; the model expects {signature.input_names}")

    request = V2Request(feed, None, {}, False, _request_id(doc.get("id")))
    parameters = doc.get("parameters")
    if parameters is not None:
        if type(parameters) is not dict:
            raise InputError("the request's 'parameters' must be an object")
        request.binary_default = bool(parameters.get("binary_data_output", False))
    outputs = doc.get("outputs")
    if outputs is not None:
        if type(outputs) is not list:
            raise InputError("'outputs' must be a list of objects with a 'name'")
        names: list[str] = []
        for out in outputs:
            out_name = out.get("name") if type(out) is dict else None
            if type(out_name) is not str:
                raise InputError("each entry of 'outputs' must be an object with a 'name'")
            if out_name not in output_names:
                signature.output(out_name)  # raises, listing the model's outputs
            out_params = out.get("parameters")
            if out_params is not None:
                if type(out_params) is not dict:
                    raise InputError(f"output {out_name!r}: 'parameters' must be an object")
                if out_params.get("classification"):
                    raise InputError(
                        "the classification extension is not supported; ask for the output "
                        "tensor and take the top classes on the client"
                    )
                if "binary_data" in out_params:
                    request.binary_outputs[out_name] = bool(out_params["binary_data"])
            if out_name not in names:
                names.append(out_name)
        request.outputs = names or None
    return request



def _v2_name(dtype: np.dtype[Any]) -> str:
    name = _V2_BY_DTYPE.get(dtype)
    if name is None:
        name = v2_datatype(dtype_name(dtype))
    return name


_V2_BY_DTYPE: dict[np.dtype[Any], str] = {
    np.dtype(n): v2_datatype(n)
    for n in ("bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
              "float16", "float32", "float64")
}
_V2_BY_DTYPE[np.dtype(object)] = "BYTES"


def _request_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError("the request 'id' must be a string")
    return value


def _array_from_binary(raw: memoryview, info: _Input, shape: list[int]) -> np.ndarray:
    count = math.prod(shape)
    kind = info.kind
    if kind == "str":
        return deserialize_bytes_tensor(raw, count, info.spec.name).reshape(shape)
    dtype = info.dtype
    if len(raw) != count * dtype.itemsize:
        spec = info.spec
        raise InputError(
            f"input {spec.name!r} declares {len(raw)} bytes of binary data but shape "
            f"{shape} of {spec.datatype} needs {count * dtype.itemsize}"
        )
    if kind == "bool":
        return np.frombuffer(raw, dtype=np.uint8).astype(bool).reshape(shape)
    array = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if info.swap or not array.flags.aligned:
        array = array.astype(info.native)  # a copy: kernels want aligned, native data
    return array



def array_from_json(data: Any, spec: TensorSpec, shape: Sequence[int] | None) -> np.ndarray:
    """JSON data (flat or nested) -> an array of the input's dtype, reshaped to ``shape``."""
    name = spec.name
    if spec.dtype == "str":
        array = np.array(data, dtype=object)
        if array.dtype != object or not all(isinstance(x, str) for x in array.reshape(-1)):
            raise InputError(f"input {name!r} (BYTES) needs string data")
    else:
        array = _numeric(data, spec)
    if shape is None:
        return array
    count = math.prod(shape)
    if array.size != count:
        raise InputError(
            f"input {name!r} has {array.size} values but shape {list(shape)} needs {count}"
        )
    return array.reshape(shape)


def _numeric(data: Any, spec: TensorSpec) -> np.ndarray:
    dtype = numpy_dtype(spec.dtype)
    if dtype.kind == "f":
        try:
            return np.asarray(data, dtype=dtype)
        except (ValueError, TypeError, OverflowError):
            raise InputError(_not_numbers(spec)) from None
    problem = _not_numbers(spec)
    # Integers and booleans: infer first so that 1.5 or "x" or 300-for-uint8 are refused rather
    # than silently truncated, wrapped or made truthy.
    try:
        raw = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        raise InputError(problem) from None
    if raw.dtype.kind not in "biuf" or raw.dtype == object:
        raise InputError(problem)
    if dtype.kind == "b":
        if raw.dtype.kind != "b" and not np.isin(raw, (0, 1)).all():
            raise InputError(f"input {spec.name!r} needs BOOL data (true/false)")
        return raw.astype(bool)
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise InputError(f"input {spec.name!r} needs whole numbers for {spec.datatype}")
    if raw.size:
        info = np.iinfo(dtype)
        # Floats are compared with max + 1 (a power of two, exact as a float): info.max itself
        # rounds up to it, which would let 2**63 through as an INT64.
        too_big = raw.max() >= info.max + 1 if raw.dtype.kind == "f" else raw.max() > info.max
        if raw.min() < info.min or too_big:
            raise InputError(
                f"input {spec.name!r} has values outside the {spec.datatype} range "
                f"[{info.min}, {info.max}]"
            )
    return raw.astype(dtype)


def _not_numbers(spec: TensorSpec) -> str:
    return f"input {spec.name!r} needs {spec.datatype} data (numbers in a flat or nested list)"


def json_value(array: np.ndarray, flat: bool = True) -> Any:
    """A value orjson can write: the array itself (fast path) or a list for strings."""
    if array.dtype.kind in "OUS":
        values = [x.decode("utf-8", "replace") if isinstance(x, bytes) else str(x)
                  for x in array.reshape(-1)]
        if flat or array.ndim <= 1:
            return values
        return np.array(values, dtype=object).reshape(array.shape).tolist()
    if flat:
        array = array.reshape(-1)
    if not array.flags.c_contiguous or not array.dtype.isnative:
        array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("="))
    return array


def encode_v2_response(
    model_name: str,
    model_version: str,
    outputs: Mapping[str, np.ndarray],
    request: V2Request,
) -> tuple[bytes, int | None]:
    """The response body and, when some outputs are binary, the JSON header's length."""
    entries: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, array in outputs.items():
        datatype = _v2_name(array.dtype)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if request.wants_binary(name):
            raw = _binary(array, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            entry["data"] = json_value(array)
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request.id is not None:
        doc["id"] = request.id
    doc["outputs"] = entries
    header = orjson.dumps(doc, option=_OPTS)
    if not buffers:
        return header, None
    return b"".join([header, *buffers]), len(header)


def _binary(array: np.ndarray, datatype: str) -> bytes | memoryview:
    if datatype == "BYTES":
        return serialize_bytes_tensor(array)
    if datatype == "BOOL":
        array = array.astype(np.uint8, copy=False)
    elif array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).data.cast("B")
