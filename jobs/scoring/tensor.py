"""Models with tensor inputs (a CNN on ``[N, 1, 8, 8]`` images) and raw tensor outputs.

A tabular bundle (scikit-learn through ``formats.save``) has one ``[batch, 1]`` input per column
and the canonical outputs. A tensor model has inputs of any fixed per-row shape, each fed from
one array column (flattened row-major) and reshaped here, and gives one column per ONNX output:
a scalar column when an output has one value per row, else an array column (flattened).

:func:`bundle_from_onnx` makes such a bundle from a bare ``model.onnx``: the manifest and the
model, with its sha256, written to a temp directory and renamed into place (whole or absent).
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from formats.bundle import Bundle, sha256_bytes
from formats.errors import InputError, UsageError
from formats.manifest import FormatEntry, Manifest
from formats.schema import ColumnSpec
from formats.signature import Signature, numpy_dtype

__all__ = [
    "TENSOR_TASK",
    "OutputField",
    "TensorInput",
    "bundle_from_onnx",
    "feed",
    "probe_outputs",
    "split_outputs",
    "tensor_inputs",
]

TENSOR_TASK = "tensor"


@dataclass(frozen=True)
class TensorInput:
    name: str
    dtype: str  # the dtype table's name: "float32", "int64", ...
    shape: tuple[int, ...]  # one row's shape, without the batch dimension

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class OutputField:
    name: str  # the output column
    dtype: str  # the dtype table's name, "str" for strings
    width: int = 0  # values per row; 0: a scalar column
    source: str = ""  # the ONNX output it comes from ("": a canonical column)


def tensor_inputs(signature: Signature) -> tuple[TensorInput, ...]:
    """Every model input with its per-row shape, which must be fixed to reshape a flat row."""
    out = []
    for spec in signature.inputs:
        rest = spec.shape[1:]
        if not all(isinstance(d, int) and d > 0 for d in rest):
            raise InputError(
                f"the model's input {spec.name!r} has shape {spec.wire_shape}: only the batch "
                "dimension may be dynamic to feed it from an array column"
            )
        if spec.dtype == "str":
            raise InputError(f"the model's tensor input {spec.name!r} takes strings; unsupported")
        out.append(TensorInput(spec.name, spec.dtype, tuple(int(d or 0) for d in rest)))
    return tuple(out)


def feed(
    columns: Mapping[str, np.ndarray], inputs: Sequence[TensorInput], rows: int
) -> dict[str, np.ndarray]:
    """Flat (or ``[rows, size]``) values per input, reshaped to ``[rows, *shape]``."""
    out = {}
    for spec in inputs:
        values = np.asarray(columns[spec.name])
        if values.size != rows * spec.size:
            raise InputError(
                f"the tensor input {spec.name!r} takes {spec.size} values per row "
                f"{list(spec.shape)}; the batch holds {values.size} for {rows} rows"
            )
        out[spec.name] = values.astype(spec.dtype, copy=False).reshape((rows, *spec.shape))
    return out


def probe_outputs(
    run: Any, inputs: Sequence[TensorInput], output_names: Sequence[str]
) -> tuple[OutputField, ...]:
    """The output columns, learnt by running two rows of zeros (the shapes ONNX declares are
    often symbolic; what the model returns is not)."""
    zeros = {s.name: np.zeros((2, *s.shape), dtype=numpy_dtype(s.dtype)) for s in inputs}
    outputs = run(zeros)
    fields = []
    for name in output_names:
        value = np.asarray(outputs[name])
        if value.ndim == 0 or value.shape[0] != 2:
            raise InputError(
                f"the model's output {name!r} has shape {list(value.shape)} for 2 rows; only "
                "outputs with one batch row per input row can become columns"
            )
        width = math.prod(value.shape[1:])
        kind = "str" if value.dtype.kind in "OUS" else value.dtype.name
        fields.append(OutputField(name, kind, width if value.ndim > 1 else 0, name))
    return tuple(fields)


def split_outputs(
    outputs: Mapping[str, np.ndarray], fields: Sequence[OutputField], rows: int
) -> dict[str, np.ndarray]:
    """One array per output column: ``[rows]`` for scalars, ``[rows, width]`` for the rest."""
    result = {}
    for f in fields:
        value = np.asarray(outputs[f.source])
        result[f.name] = value.reshape(rows) if f.width == 0 else value.reshape(rows, f.width)
    return result


def bundle_from_onnx(
    onnx_path: str | Path,
    out_dir: str | Path,
    *,
    name: str | None = None,
    version: str = "1",
    description: str = "",
    overwrite: bool = False,
) -> Bundle:
    """A bundle holding only ``model.onnx`` and its manifest (task ``"tensor"``)."""
    from formats.onnx.runtime import Session

    destination = Path(out_dir)
    if destination.exists() and not overwrite:
        raise UsageError(f"{str(destination)!r} exists; pass overwrite=True")
    data = Path(onnx_path).read_bytes()
    signature = Session(data).signature  # a model ONNX Runtime cannot load fails here
    inputs = tensor_inputs(signature)
    manifest = Manifest(
        name=name or destination.name,
        version=str(version),
        task=TENSOR_TASK,
        classes=None,
        inputs=[ColumnSpec(s.name, "numeric", s.dtype, nullable=False) for s in inputs],
        model_type="onnx",
        formats={
            "onnx": FormatEntry("saved", "model.onnx", details={"precision": _precision(inputs)})
        },
        files={"model.onnx": {"sha256": sha256_bytes(data), "bytes": len(data)}},
        has_proba=False,
        description=description,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", dir=destination.parent))
    try:
        (tmp / "model.onnx").write_bytes(data)
        (tmp / "manifest.json").write_text(manifest.to_json())
        if destination.exists():
            shutil.rmtree(destination)
        os.replace(tmp, destination)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return Bundle.open(destination)


def _precision(inputs: Sequence[TensorInput]) -> str:
    return "float64" if any(s.dtype == "float64" for s in inputs) else "float32"
