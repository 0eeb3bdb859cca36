"""Execution providers: what ONNX Runtime was built with and what can run here, and which one
a Spark task uses.

Three moments decide a task's provider. The driver refuses CUDA early when it can tell it cannot
run (in local mode the driver's onnxruntime is the executors' one). Each executor chooses from
its own ``onnxruntime.get_available_providers()`` and its task's GPU address. After the session
is built, what ONNX Runtime really took (``session.get_providers()[0]``) is checked, because ORT
quietly falls back to CPU when CUDA's libraries fail to load. Nothing probes a GPU at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnxruntime as ort

from formats.errors import MissingDependencyError, UsageError

__all__ = ["CPU", "CUDA", "Choice", "all_providers", "available_providers", "check_driver",
           "check_ran", "choose", "driver_sees_executors", "provider_full_name",
           "resolve_providers"]  # fmt: skip

_SHORT_NAMES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "rocm": "ROCMExecutionProvider",
}


def all_providers() -> list[str]:
    return list(ort.get_all_providers())


def available_providers() -> list[str]:
    return list(ort.get_available_providers())


def provider_full_name(name: str) -> str:
    """ONNX Runtime's name for a short one ("cuda" -> "CUDAExecutionProvider"); others unchanged."""
    return _SHORT_NAMES.get(name.lower(), name)


def resolve_providers(providers: Sequence[str] | None) -> list[str]:
    """Full provider names from short or full ones; unavailable ones are a usage error."""
    if not providers:
        return ["CPUExecutionProvider"]
    available = available_providers()
    resolved = []
    for name in providers:
        full = provider_full_name(name)
        if full not in available:
            raise UsageError(
                f"execution provider {name!r} is not available here; available: "
                f"{', '.join(available)} (see 'python -m formats providers')"
            )
        resolved.append(full)
    return resolved


CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"

_HINT = (
    "install onnxruntime-gpu (pip install 'modelport[gpu]') on the GPU nodes, or set "
    "execution.allow_cpu_fallback = true"
)


@dataclass(frozen=True)
class Choice:
    """Providers in ONNX Runtime's order of preference, with one options dict each."""

    providers: tuple[str, ...]
    options: tuple[tuple[tuple[str, str], ...], ...]  # hashable: part of the session cache key

    def provider_options(self) -> list[dict[str, str]]:
        return [dict(o) for o in self.options]


def driver_sees_executors(master: str) -> bool:
    """Local masters run the tasks in the driver's machine and environment."""
    return master.startswith("local")


def check_driver(
    requested: str, available: Sequence[str], master: str, allow_cpu_fallback: bool
) -> None:
    """Refuse CUDA before any task runs when the driver can tell it is not there."""
    if requested != "cuda" or allow_cpu_fallback or not driver_sees_executors(master):
        return
    if CUDA not in available:
        raise MissingDependencyError(
            f"execution.provider is cuda but this node's onnxruntime has no CUDA "
            f"(available: {', '.join(available)}); {_HINT}"
        )


def choose(
    requested: str,
    available: Sequence[str],
    gpu_addresses: Sequence[str],
    default_device: int,
    allow_cpu_fallback: bool,
) -> Choice:
    """The providers one executor task asks ONNX Runtime for."""
    if requested == "cpu":
        return Choice((CPU,), ((),))
    if CUDA in available:
        # Spark's address for this task; local mode assigns none, so the configured device.
        device = gpu_addresses[0] if gpu_addresses else str(default_device)
        return Choice((CUDA, CPU), ((("device_id", device),), ()))
    if allow_cpu_fallback:
        return Choice((CPU,), ((),))
    raise MissingDependencyError(
        f"execution.provider is cuda but the executor's onnxruntime has no CUDA "
        f"(available: {', '.join(available)}); {_HINT}"
    )


def check_ran(requested: str, ran: str, allow_cpu_fallback: bool) -> None:
    """ONNX Runtime took CPU although CUDA was asked for and listed (e.g. no libcudnn)."""
    if requested == "cuda" and ran != CUDA and not allow_cpu_fallback:
        raise MissingDependencyError(
            f"execution.provider is cuda but ONNX Runtime could not start CUDA and ran {ran} "
            f"(check the CUDA and cuDNN libraries on the GPU nodes); {_HINT}"
        )
