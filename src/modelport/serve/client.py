"""``remote_predict``: run a feed on a running modelport (or any V2) server, binary tensors both
ways, so the outputs are bit-for-bit those of the server's session. Standard library only."""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence

import numpy as np

from modelport.errors import (
    InferenceError,
    InputError,
    ModelportError,
    NotFoundError,
    PayloadTooLargeError,
    UnauthorizedError,
    UnavailableError,
    UsageError,
)
from modelport.signature import dtype_name, numpy_dtype, numpy_dtype_from_v2, v2_datatype

__all__ = ["remote_predict"]

_BY_STATUS: dict[int, type[ModelportError]] = {
    400: InputError,
    401: UnauthorizedError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    503: UnavailableError,
}


def remote_predict(
    url: str,
    ref: str,
    feed: Mapping[str, np.ndarray],
    outputs: Sequence[str] | None = None,
    *,
    token: str | None = None,
    timeout: float = 60.0,
) -> dict[str, np.ndarray]:
    """POST ``feed`` to ``{url}/v2/models/{ref}/infer``; ``ref`` may be ``name``, ``name:3`` or
    ``name@alias``. Server errors come back as the matching ModelportError."""
    from modelport.serve.bytes_tensor import deserialize_bytes_tensor, serialize_bytes_tensor

    inputs = []
    chunks: list[bytes] = []
    for name, value in feed.items():
        array = np.asarray(value)
        dtype = dtype_name(array.dtype)
        if dtype == "str":
            raw = serialize_bytes_tensor(array)
        else:
            raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
        inputs.append({"name": name, "shape": list(array.shape), "datatype": v2_datatype(dtype),
                       "parameters": {"binary_data_size": len(raw)}})
        chunks.append(raw)
    request: dict[str, object] = {"inputs": inputs, "parameters": {"binary_data_output": True}}
    if outputs:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": True}} for n in outputs]
    header = json.dumps(request).encode()
    endpoint = f"{url.rstrip('/')}/v2/models/{urllib.parse.quote(ref, safe='@:')}/infer"
    headers = {"Content-Type": "application/octet-stream",
               "Inference-Header-Content-Length": str(len(header))}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    http_request = urllib.request.Request(
        endpoint, data=b"".join([header, *chunks]), headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            body = response.read()
            json_size = response.headers.get("Inference-Header-Content-Length")
    except urllib.error.HTTPError as exc:
        raise _server_error(exc) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UsageError(f"cannot reach the server at {url}: {reason}; is 'modelport serve' "
                         "running there?") from None
    size = int(json_size) if json_size is not None else len(body)
    doc = json.loads(body[:size])
    result: dict[str, np.ndarray] = {}
    offset = size
    for out in doc["outputs"]:
        dtype = numpy_dtype_from_v2(out["datatype"])
        shape = tuple(out["shape"])
        nbytes = (out.get("parameters") or {}).get("binary_data_size")
        if nbytes is None:  # a server that answered in JSON after all
            data = np.array(out["data"], dtype=numpy_dtype(dtype))
        else:
            raw = body[offset : offset + nbytes]
            offset += nbytes
            if dtype == "str":
                data = deserialize_bytes_tensor(raw, math.prod(shape), out["name"])
            elif dtype == "bool":
                data = np.frombuffer(raw, dtype=np.uint8).astype(bool)
            else:
                data = np.frombuffer(raw, dtype=numpy_dtype(dtype).newbyteorder("<")).copy()
        result[out["name"]] = data.reshape(shape)
    return result


def _server_error(exc: urllib.error.HTTPError) -> ModelportError:
    try:
        message = json.loads(exc.read())["error"]
    except (ValueError, KeyError, TypeError):
        message = f"HTTP {exc.code} {exc.reason}"
    kind = _BY_STATUS.get(exc.code, InferenceError)
    return kind(f"server: {message}")
