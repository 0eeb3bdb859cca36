"""ONNX Runtime sessions configured one way everywhere (conversion, verification, scoring)."""

from formats.onnx.runtime.providers import available_providers, resolve_providers
from formats.onnx.runtime.session import Session, SessionOptions

__all__ = ["Session", "SessionOptions", "available_providers", "resolve_providers"]
