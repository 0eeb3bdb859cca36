"""Execution providers: what ONNX Runtime was built with and what can run here."""

from __future__ import annotations

from collections.abc import Sequence

import onnxruntime as ort

from formats.errors import UsageError

__all__ = ["all_providers", "available_providers", "provider_full_name", "resolve_providers"]

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
