"""``Session``: one ONNX Runtime inference session with our signature and our errors."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnxruntime as ort

from formats.errors import InferenceError, InputError, ModelLoadError, UsageError
from formats.onnx.runtime.providers import resolve_providers
from formats.signature import Signature, TensorSpec, numpy_dtype_from_ort

if TYPE_CHECKING:
    import onnx

__all__ = ["Session", "SessionOptions"]

_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionOptions:
    providers: tuple[str, ...] = ()
    intra_op_threads: int = 0  # 0: ONNX Runtime's default (one per core)
    inter_op_threads: int = 0
    optimization_level: str = "all"
    # One dict per provider, in order (e.g. CUDA's {"device_id": "1"}); empty: ORT's defaults.
    provider_options: tuple[dict[str, Any], ...] = ()

    def to_ort(self) -> ort.SessionOptions:
        for name, value in (
            ("intra_op_threads", self.intra_op_threads),
            ("inter_op_threads", self.inter_op_threads),
        ):
            if value < 0:  # ONNX Runtime takes a negative count without complaint
                raise UsageError(
                    f"thread counts must be 0 (ONNX Runtime's default) or more; got {name}={value}"
                )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.intra_op_threads
        opts.inter_op_num_threads = self.inter_op_threads
        try:
            opts.graph_optimization_level = _LEVELS[self.optimization_level]
        except KeyError:
            raise InputError(
                f"unknown optimization level {self.optimization_level!r}; use one of "
                f"{', '.join(_LEVELS)}"
            ) from None
        return opts


class Session:
    """Loads a model from a path, bytes or ModelProto; ``run`` maps ORT failures to our errors."""

    def __init__(
        self, model: str | Path | bytes | onnx.ModelProto, options: SessionOptions | None = None
    ) -> None:
        self.options = options or SessionOptions()
        source: str | bytes
        # a ModelProto exists only where onnx is imported: a Spark worker scoring bytes never is
        proto = getattr(sys.modules.get("onnx"), "ModelProto", None)
        if proto is not None and isinstance(model, proto):
            source = model.SerializeToString()
        elif isinstance(model, bytes):
            source = model
        else:
            source = str(model)
        # Our own option errors stay what they are, outside the net for ORT's load errors.
        sess_options = self.options.to_ort()
        providers = resolve_providers(self.options.providers)
        try:
            self._session = ort.InferenceSession(
                source,
                sess_options=sess_options,
                providers=providers,
                provider_options=list(self.options.provider_options) or None,
            )
        except Exception as exc:  # ORT raises its own unexported exception types
            raise ModelLoadError(f"ONNX Runtime cannot load the model: {_first_line(exc)}") from exc
        self.signature = Signature(
            tuple(_spec(arg) for arg in self._session.get_inputs()),
            tuple(_spec(arg) for arg in self._session.get_outputs()),
        )
        self.providers = list(self._session.get_providers())

    @property
    def ort_session(self) -> ort.InferenceSession:
        return self._session

    def run(
        self, feed: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        names = list(output_names) if output_names else self.signature.output_names
        try:
            values = self._session.run(names, dict(feed))
        except Exception as exc:
            raise InferenceError(f"ONNX Runtime rejected the input: {_first_line(exc)}") from exc
        return dict(zip(names, values, strict=True))

    def run_checked(
        self, feed: Mapping[str, np.ndarray], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Validate names, dtypes and shapes against the signature first, for a clear message."""
        self.signature.check_feed(feed)
        for name in output_names or ():
            self.signature.output(name)
        return self.run(feed, output_names)


def _spec(arg: ort.NodeArg) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else (d or None) for d in (arg.shape or ()))
    try:
        dtype = numpy_dtype_from_ort(arg.type)
    except InputError:
        dtype = f"<{arg.type}>"
    return TensorSpec(arg.name, dtype, shape)


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
# Some ORT messages start with the C++ source location: "/path/file.cc:123 void f(...) <text>".
_CPP_LOCATION = re.compile(r"^\S+\.(?:cc|cpp|h):\d+ [^(]*\([^)]*\)\s*")


def _first_line(exc: BaseException) -> str:
    """ORT's message without its status prefix or C++ location, folded onto one line."""
    text = _CPP_LOCATION.sub("", _ORT_PREFIX.sub("", str(exc).strip()))
    return " ".join(text.split()) or type(exc).__name__
