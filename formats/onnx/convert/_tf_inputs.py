"""A TensorFlow or Keras model's declared inputs, and the sample that feeds them.

The converters describe every input as an :class:`InputDecl` (name, numpy dtype, shape with
``None`` for unknown axes). :func:`feed_from_sample` fits the user's sample to those (or makes
one up when there is none) and :func:`resolve_shapes` decides which axes stay symbolic in the
traced signature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from formats.errors import InputError, UsageError
from formats.onnx.convert.base import Feed

__all__ = [
    "InputDecl",
    "describe_inputs",
    "feed_from_sample",
    "named_inputs",
    "np_dtype_name",
    "resolve_shapes",
]

_SYNTH_BATCH = 2
_SYNTH_OTHER = 3  # size for an unknown non-batch axis of a synthesized sample


@dataclass(frozen=True)
class InputDecl:
    """One model input as the framework declares it (``None`` = unknown dimension)."""

    name: str
    dtype: str  # numpy dtype name, or "str" for tf.string
    shape: tuple[int | None, ...]


def np_dtype_name(tf: ModuleType, dtype: Any) -> str:
    dtype = tf.as_dtype(dtype)
    if dtype == tf.string:
        return "str"
    return str(np.dtype(dtype.as_numpy_dtype).name)


def named_inputs(decls: list[InputDecl], names: list[str] | None) -> list[InputDecl]:
    """The declarations under the user's input names, when given."""
    if names is None:
        return decls
    if len(names) != len(decls):
        raise UsageError(
            f"{len(names)} input names given but the model has {len(decls)} inputs "
            f"{[d.name for d in decls]}"
        )
    if len(set(names)) != len(names):
        raise UsageError(f"input names must be unique, got {names}")
    return [InputDecl(n, d.dtype, d.shape) for n, d in zip(names, decls, strict=True)]


def feed_from_sample(sample: Any, inputs: Sequence[InputDecl], notes: list[str]) -> Feed:
    """Turn the user's sample (or nothing) into a feed that fits ``inputs``."""
    names = [d.name for d in inputs]
    if sample is None:
        return _synthesize(inputs, notes)
    if isinstance(sample, Mapping):
        missing = [n for n in names if n not in sample]
        extra = [str(k) for k in sample if k not in names]
        if missing or extra:
            raise InputError(
                f"sample keys {sorted(map(str, sample))} do not match the model's inputs {names}"
            )
        arrays = {n: np.asarray(sample[n]) for n in names}
    elif isinstance(sample, list | tuple) and len(names) > 1:
        if len(sample) != len(names):
            raise InputError(
                f"sample has {len(sample)} arrays but the model has {len(names)} inputs {names}"
            )
        arrays = {n: np.asarray(a) for n, a in zip(names, sample, strict=True)}
    else:
        if len(names) != 1:
            raise InputError(
                f"the model has {len(names)} inputs {names}; pass the sample as a dict keyed "
                "by input name"
            )
        arrays = {names[0]: np.asarray(sample)}
    return {d.name: _fit(arrays[d.name], d, notes) for d in inputs}


def _fit(array: np.ndarray, decl: InputDecl, notes: list[str]) -> np.ndarray:
    if decl.dtype == "str":
        if array.dtype.kind not in "USO":
            raise InputError(f"sample {decl.name!r} must hold strings, got {array.dtype}")
        array = array.astype(object)
    else:
        want = np.dtype(decl.dtype)
        # Lossless-enough casts a user expects (float64 data into a float32 model); anything
        # else (strings into a number input) is a mistake.
        allowed = {"f": "fiub", "i": "iub", "u": "iub", "b": "b"}.get(want.kind, want.kind)
        if array.dtype.kind not in allowed:
            raise InputError(f"sample {decl.name!r} has dtype {array.dtype}, expected {want}")
        if array.dtype != want:
            notes.append(f"sample {decl.name!r} cast from {array.dtype} to {want}")
            array = array.astype(want)
    shape = list(array.shape)
    expected = ["?" if d is None else d for d in decl.shape]
    if len(shape) != len(decl.shape) or any(
        d is not None and d != s for d, s in zip(decl.shape, shape, strict=False)
    ):
        raise InputError(f"sample {decl.name!r} has shape {shape}, the model expects {expected}")
    return array


def _synthesize(inputs: Sequence[InputDecl], notes: list[str]) -> Feed:
    rng = np.random.default_rng(0)
    feed: Feed = {}
    for d in inputs:
        shape = tuple(
            s if s is not None else (_SYNTH_BATCH if i == 0 else _SYNTH_OTHER)
            for i, s in enumerate(d.shape)
        )
        dtype = np.dtype(object if d.dtype == "str" else d.dtype)
        if dtype.kind == "f":
            array = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind in "iu":
            array = rng.integers(0, 2, size=shape).astype(dtype)
        elif dtype.kind == "b":
            array = rng.integers(0, 2, size=shape).astype(bool)
        else:
            raise UsageError(
                f"cannot make up a sample for input {d.name!r} of dtype {d.dtype}; pass --sample"
            )
        feed[d.name] = array
        notes.append(
            f"no sample given: random {dtype} sample of shape {list(shape)} made for "
            f"{d.name!r} from the model's input spec (pass a sample to verify on real data)"
        )
    return feed


def resolve_shapes(
    inputs: Sequence[InputDecl],
    feed: Feed,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
    *,
    force_dynamic_batch: bool,
) -> list[tuple[int | None, ...]]:
    """The shapes to trace with: which axes stay symbolic in the ONNX model."""
    shapes = []
    for d in inputs:
        if dynamic_axes is None:
            shape = tuple(d.shape)
            if force_dynamic_batch and shape:
                shape = (None, *shape[1:])
        else:
            axes = dynamic_axes.get(d.name, {})
            fixed = [i for i in axes if i < len(d.shape) and d.shape[i] is not None]
            if fixed and not force_dynamic_batch:
                raise UsageError(
                    f"axis {fixed[0]} of input {d.name!r} is fixed to {d.shape[fixed[0]]} by the "
                    "model's signature and cannot be made dynamic; re-save it with None there"
                )
            shape = tuple(
                None if i in axes else (s if s is not None else int(feed[d.name].shape[i]))
                for i, s in enumerate(d.shape)
            )
        shapes.append(shape)
    return shapes


def describe_inputs(inputs: Sequence[InputDecl], shapes: Sequence[tuple[int | None, ...]]) -> str:
    """``name: dtype[2, ?]`` for each input, for error messages."""
    return ", ".join(
        f"{d.name}: {d.dtype}[{', '.join('?' if s is None else str(s) for s in shape)}]"
        for d, shape in zip(inputs, shapes, strict=True)
    )
