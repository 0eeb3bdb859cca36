"""The simple JSON bodies, V1 / TF-Serving style, plus the ``{"data": ...}`` of a seed score.py.

``POST /v1/models/{ref}:predict`` takes one of:

* ``{"instances": [...]}``: row-wise. One-input models: a list of rows; several inputs: a list
  of objects ``{input: row}``. Answered with ``{"predictions": [...]}``: one output gives a list
  of rows, several give a list of objects ``{output: row}``.
* ``{"inputs": ...}``: column-wise. One-input models: the tensor; several: ``{input: tensor}``.
  Answered with ``{"predictions": ...}``: the output tensor, or ``{output: tensor}``.
* ``{"data": ...}``: as ``inputs``, answered with ``{"result": ...}``.

JSON numbers become the dtype the signature asks for. A single row without its batch axis is
accepted for ``inputs`` and ``data`` when the model has a dynamic batch axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelport.errors import InputError
from modelport.serve.codec import array_from_json, json_value
from modelport.signature import Signature, TensorSpec

__all__ = ["decode_v1_request", "encode_v1_response"]

_OPTS = orjson.OPT_SERIALIZE_NUMPY


def decode_v1_request(doc: Any, signature: Signature) -> tuple[dict[str, np.ndarray], str]:
    """The feed and the request's style ("instances", "inputs" or "data")."""
    if not isinstance(doc, dict):
        raise InputError('the body must be a JSON object with "instances", "inputs" or "data"')
    styles = [key for key in ("instances", "inputs", "data") if key in doc]
    if len(styles) != 1:
        raise InputError('give exactly one of "instances", "inputs" or "data"')
    style = styles[0]
    value = doc[style]
    specs = signature.inputs
    feed: dict[str, np.ndarray] = {}
    if style == "instances":
        if not isinstance(value, list) or not value:
            raise InputError('"instances" must be a non-empty list of rows')
        if all(isinstance(row, dict) for row in value):
            for spec in specs:
                try:
                    column = [row[spec.name] for row in value]
                except KeyError:
                    raise InputError(f"an instance lacks input {spec.name!r}; each needs "
                                     f"{signature.input_names}") from None
                feed[spec.name] = array_from_json(column, spec, None)
            _no_extra({k for row in value for k in row}, signature)
        elif len(specs) == 1:
            feed[specs[0].name] = array_from_json(value, specs[0], None)
        else:
            raise InputError(
                f"the model has inputs {signature.input_names}: give each instance as an object "
                "{input: row}"
            )
    else:
        if isinstance(value, dict):
            _no_extra(set(value), signature)
            for spec in specs:
                if spec.name not in value:
                    raise InputError(f"missing input {spec.name!r}; the model expects "
                                     f"{signature.input_names}")
                feed[spec.name] = _column(value[spec.name], spec)
        elif len(specs) == 1:
            feed[specs[0].name] = _column(value, specs[0])
        else:
            raise InputError(f'the model has inputs {signature.input_names}: give "{style}" as an '
                             "object {input: tensor}")
    signature.check_feed(feed)
    return feed, style


def _column(value: Any, spec: TensorSpec) -> np.ndarray:
    array = array_from_json(value, spec, None)
    if spec.has_dynamic_batch and array.ndim == len(spec.shape) - 1:
        array = array[np.newaxis]  # one row sent without its batch axis
    return array


def _no_extra(names: set[str], signature: Signature) -> None:
    extra = sorted(names - set(signature.input_names))
    if extra:
        raise InputError(f"unknown input(s) {extra}; the model's inputs are "
                         f"{signature.input_names}")


def encode_v1_response(outputs: dict[str, np.ndarray], style: str) -> bytes:
    key = "result" if style == "data" else "predictions"
    if style == "instances" and len(outputs) > 1 and all(a.ndim for a in outputs.values()):
        # numpy rows keep float32 values short (orjson writes them as float32, not as doubles)
        columns = {name: _rows(array) for name, array in outputs.items()}
        rows = min(len(c) for c in columns.values())
        value: Any = [{name: column[i] for name, column in columns.items()} for i in range(rows)]
    elif len(outputs) == 1:
        value = json_value(next(iter(outputs.values())), flat=False)
    else:
        value = {name: json_value(array, flat=False) for name, array in outputs.items()}
    return orjson.dumps({key: value}, option=_OPTS)


def _rows(array: np.ndarray) -> Any:
    """Something indexable by row that orjson writes: numpy rows where it can (float32 stays
    short), Python values for strings and for integer scalars (numpy's longlong is not taken)."""
    if array.dtype == object or (array.ndim == 1 and array.dtype.kind in "biu"):
        return array.tolist()
    return array
