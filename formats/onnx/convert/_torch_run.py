"""A torch module's sample and its eager run: what export and verification both start from.

:func:`prepare_sample` turns an array, tensor, tuple or dict into positional arrays with their
ONNX input names; :func:`make_runner` is the original module as a function of such a feed.
The Lightning converter uses both through ``torch.py``.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from formats._lazy import require
from formats._text import ANSI, clip
from formats.errors import InputError
from formats.onnx.convert.base import Feed, NativeRunner

__all__ = [
    "TorchSample",
    "call_module",
    "describe_error",
    "eval_mode",
    "make_runner",
    "prepare_sample",
    "torch_module",
]


def torch_module() -> Any:
    return require("torch", "torch")


def describe_error(exc: BaseException) -> str:
    """The informative line of a torch error, such as an exporter's multi-page report."""
    lines = [line.strip() for line in ANSI.sub("", str(exc)).strip().splitlines() if line.strip()]
    # The torch.export-based exporter puts the real cause under "## Exception summary".
    for i, line in enumerate(lines):
        if line.startswith("## Exception summary") and i + 1 < len(lines):
            cause = lines[i + 1]
            match = re.match(r"<class '(?:[\w.]+\.)?(\w+)'>:\s*(.*)", cause)
            text = f"{match.group(1)}: {match.group(2)}" if match else cause
            break
    else:
        text = lines[0] if lines else type(exc).__name__
    return clip(" ".join(text.split()))


@dataclass
class TorchSample:
    names: list[str]  # ONNX input names, in the order of forward's positional arguments
    arrays: list[np.ndarray]

    @property
    def feed(self) -> Feed:
        return dict(zip(self.names, self.arrays, strict=True))


def _to_numpy(value: Any, what: str) -> np.ndarray:
    torch = torch_module()
    if isinstance(value, torch.Tensor):
        return np.asarray(value.detach().cpu().numpy())
    if hasattr(value, "to_numpy"):  # a DataFrame or Series read from a CSV or Parquet file
        value = value.to_numpy()
    try:
        array = np.asarray(value)
    except Exception as exc:
        raise InputError(f"{what} cannot be made into an array: {describe_error(exc)}") from exc
    if array.dtype.kind not in "biuf":
        raise InputError(f"{what} has dtype {array.dtype}; torch models take numeric tensors")
    return array


def _forward_parameters(module: Any) -> list[str]:
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):  # TorchScript methods have no Python signature
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def prepare_sample(
    module: Any, sample: Any, input_names: Sequence[str] | None, *, missing_hint: str
) -> TorchSample:
    """Turn an array, tensor, tuple or dict into positional arrays with their ONNX input names."""
    if sample is None:
        raise InputError(missing_hint)
    if isinstance(sample, Mapping):
        keys = [str(k) for k in sample]
        params = _forward_parameters(module)
        if params and set(keys) <= set(params):
            keys = [p for p in params if p in keys]  # forward's order, so positions line up
        if input_names and set(input_names) != set(keys):
            raise InputError(
                f"input names {list(input_names)} do not match the sample's keys {keys}"
            )
        arrays = [_to_numpy(sample[k], f"sample {k!r}") for k in keys]
        return _fit_dtypes(module, TorchSample(keys, arrays))
    if isinstance(sample, tuple | list) and not isinstance(sample, np.ndarray):
        arrays = [_to_numpy(v, f"sample #{i}") for i, v in enumerate(sample)]
    else:
        arrays = [_to_numpy(sample, "the sample")]
    if input_names:
        if len(input_names) != len(arrays):
            raise InputError(
                f"{len(input_names)} input name(s) {list(input_names)} given for "
                f"{len(arrays)} sample input(s)"
            )
        names = list(input_names)
    else:
        names = ["input"] if len(arrays) == 1 else [f"input_{i}" for i in range(len(arrays))]
    return _fit_dtypes(module, TorchSample(names, arrays))


def _fit_dtypes(module: Any, sample: TorchSample) -> TorchSample:
    """float64 samples (numpy's default) become the module's float dtype instead of failing."""
    torch = torch_module()
    dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
    if dtype == torch.float32:
        sample.arrays = [
            a.astype(np.float32) if a.dtype == np.float64 else a for a in sample.arrays
        ]
    return sample


@contextlib.contextmanager
def eval_mode(module: Any) -> Iterator[None]:
    """Run in eval mode without leaving the user's module changed afterwards."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


def _flatten(output: Any, key: str | None = None) -> list[tuple[str | None, Any]]:
    """Tensors of a (nested) output in the order the exporters emit them, with dict keys."""
    if isinstance(output, Mapping):
        return [item for k, v in output.items() for item in _flatten(v, str(k))]
    if isinstance(output, tuple | list):
        return [item for v in output for item in _flatten(v)]
    if output is None:
        return []
    return [(key, output)]


def call_module(module: Any, arrays: Sequence[np.ndarray]) -> list[tuple[str | None, np.ndarray]]:
    """The module's flat outputs on ``arrays`` (in eval mode, without gradients), dict keys kept."""
    torch = torch_module()
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in arrays]
    with eval_mode(module), torch.no_grad():
        output = module(*tensors)
    return [(k, _to_numpy(v, "an output")) for k, v in _flatten(output)]


def make_runner(
    module: Any, input_names: Sequence[str], output_names: Sequence[str]
) -> NativeRunner:
    """The original module as a function of a feed keyed by ONNX names, any batch size."""
    inputs, outputs = list(input_names), list(output_names)

    def run(feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = call_module(module, [np.asarray(feed[name]) for name in inputs])
        return {name: array for name, (_, array) in zip(outputs, values, strict=False)}

    return run
