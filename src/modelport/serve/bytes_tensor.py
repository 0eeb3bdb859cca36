"""The BYTES tensor layout of the binary tensor data extension (standard library and numpy only,
so that the client needs nothing of the server's stack)."""

from __future__ import annotations

import struct

import numpy as np

from modelport.errors import InputError

__all__ = ["deserialize_bytes_tensor", "serialize_bytes_tensor"]

_LENGTH = struct.Struct("<I")


def serialize_bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES layout: each element as a 4-byte little-endian length and its (UTF-8) bytes."""
    parts: list[bytes] = []
    for item in array.reshape(-1):
        raw = item if isinstance(item, bytes) else str(item).encode("utf-8")
        parts.append(_LENGTH.pack(len(raw)))
        parts.append(raw)
    return b"".join(parts)


def deserialize_bytes_tensor(raw: memoryview | bytes, count: int, name: str) -> np.ndarray:
    """Parse ``count`` length-prefixed elements into an object array of ``str``."""
    view = memoryview(raw)
    end = len(view)
    # Elements are collected first and the array sized last: ``count`` comes from the client's
    # shape, and np.empty of a huge one would fail (a 500) before the data is even looked at.
    items: list[str] = []
    pos = 0
    for i in range(count):
        if pos + 4 > end:
            raise InputError(f"input {name!r}: binary BYTES data ends before element {i}")
        (length,) = _LENGTH.unpack_from(view, pos)
        pos += 4
        if pos + length > end:
            raise InputError(f"input {name!r}: binary BYTES element {i} runs past the data")
        try:
            items.append(str(view[pos : pos + length], "utf-8"))
        except UnicodeDecodeError:
            raise InputError(
                f"input {name!r}: BYTES element {i} is not UTF-8 text (ONNX string tensors hold "
                "text)"
            ) from None
        pos += length
    if pos != end:
        raise InputError(
            f"input {name!r}: {end - pos} bytes of binary BYTES data left over after {count} "
            "elements"
        )
    out = np.empty(count, dtype=object)
    out[:] = items
    return out
