"""The inputs verification runs both models on: the sample, then variations of it.

The sample alone is not enough: tracing exporters freeze the branch the sample took, so a model
that does ``x * 2 if x.sum() > 0 else x - 1`` exports as ``x * 2`` and agrees on the sample. The
inputs are therefore varied (negated, rescaled with noise, reordered, other batch sizes).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from formats.onnx.conversion import Feed
from formats.signature import Signature

__all__ = ["LARGE_BATCH", "Case", "make_cases"]

LARGE_BATCH = 7  # odd and unlikely to be anyone's export batch size
_SEED = 0  # variations are random but reproducible: the same report every run


@dataclass
class Case:
    name: str
    description: str
    feed: Feed
    batch: int | None = None



def make_cases(sample: Mapping[str, np.ndarray], signature: Signature) -> list[Case]:
    """The sample, then variations of it that would expose a branch frozen at trace time."""
    rng = np.random.default_rng(_SEED)
    sample = {name: np.asarray(value) for name, value in sample.items()}
    cases = [Case("sample", "the input example", dict(sample), _batch_of(sample, signature))]
    floats = [n for n, v in sample.items() if v.dtype.kind == "f"]
    if floats:
        cases.append(
            Case(
                "negated",
                "float inputs negated",
                {n: -v if n in floats else v for n, v in sample.items()},
                cases[0].batch,
            )
        )
        cases.append(
            Case(
                "scaled",
                "float inputs times a random scale plus noise",
                {n: _rescale(v, rng) if n in floats else v for n, v in sample.items()},
                cases[0].batch,
            )
        )
    rows = _batch_of(sample, signature)
    if rows:
        sizes = [size for size in (1, LARGE_BATCH) if size != rows]
        if rows > 1:
            cases.append(
                Case(
                    "shuffled",
                    f"the sample's {rows} rows reordered",
                    _rows(sample, rng, rows),
                    rows,
                )
            )
        for size in sizes:
            cases.append(
                Case(
                    f"batch={size}",
                    f"{size} row(s) drawn from the sample",
                    _rows(sample, rng, size),
                    size,
                )
            )
    return cases


def _batch_of(sample: Mapping[str, np.ndarray], signature: Signature) -> int | None:
    """Rows in the sample when every input has a symbolic first axis of the same length."""
    lengths = set()
    for spec in signature.inputs:
        value = sample.get(spec.name)
        if value is None or not spec.has_dynamic_batch or value.ndim == 0:
            return None
        lengths.add(value.shape[0])
    if len(lengths) != 1:
        return None
    rows = lengths.pop()
    return rows if rows > 0 else None


def _rows(sample: Mapping[str, np.ndarray], rng: np.random.Generator, size: int) -> Feed:
    # The same row indices for every input, so that rows of multi-input models stay together;
    # tiling a permutation uses every row before repeating any.
    rows = next(iter(sample.values())).shape[0]
    index = np.resize(rng.permutation(rows), size)
    return {name: np.ascontiguousarray(value[index]) for name, value in sample.items()}


def _rescale(value: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    scale = rng.uniform(0.5, 2.0)
    spread = float(np.std(value)) if value.size else 0.0
    noise = rng.standard_normal(value.shape) * (0.1 * spread if spread > 0 else 0.1)
    return (value * scale + noise).astype(value.dtype)
