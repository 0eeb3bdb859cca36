"""Serving: the Open Inference Protocol (V2) over HTTP, a simple JSON route, dynamic batching.

``create_app(InferenceService(repository, refs, config))`` is the ASGI app; ``modelport serve``
runs it under uvicorn. ``remote_predict`` is the client side. Names are imported lazily so that
``import modelport.serve`` costs nothing until one is used (the web stack is the ``serve`` extra).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelport.serve.app import create_app
    from modelport.serve.batching import DynamicBatcher
    from modelport.serve.client import remote_predict
    from modelport.serve.config import ModelConfig, ServeConfig, load_config
    from modelport.serve.server import bind_socket, make_server, run_server
    from modelport.serve.service import InferenceService

__all__ = [
    "DynamicBatcher",
    "InferenceService",
    "ModelConfig",
    "ServeConfig",
    "bind_socket",
    "create_app",
    "load_config",
    "make_server",
    "remote_predict",
    "run_server",
]

_WHERE = {
    "create_app": "app",
    "DynamicBatcher": "batching",
    "remote_predict": "client",
    "ModelConfig": "config",
    "ServeConfig": "config",
    "load_config": "config",
    "bind_socket": "server",
    "make_server": "server",
    "run_server": "server",
    "InferenceService": "service",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'modelport.serve' has no attribute {name!r}")
    if module in ("app", "batching", "service", "server"):
        from modelport.serve.server import require_serve_extra

        require_serve_extra()
    return getattr(importlib.import_module(f"modelport.serve.{module}"), name)
