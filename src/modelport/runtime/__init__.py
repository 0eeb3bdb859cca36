"""ONNX Runtime sessions configured one way everywhere (verify, serve, predict, bench)."""

from modelport.runtime.providers import available_providers, resolve_providers
from modelport.runtime.session import Session, SessionOptions

__all__ = ["Session", "SessionOptions", "available_providers", "resolve_providers"]
