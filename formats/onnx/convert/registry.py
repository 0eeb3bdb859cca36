"""Converters by framework name, and detection of the framework from an object or a path."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, TypeVar

from formats.errors import UnsupportedModelError
from formats.onnx.convert.base import Converter

__all__ = ["detect", "get", "known", "register"]

_REGISTRY: dict[str, Converter] = {}
# Modules that register converters when imported; none of them imports its framework at import.
_BUILTIN_MODULES = (
    "formats.onnx.convert.onnx",
    "formats.onnx.convert.lightning",  # before torch: a LightningModule is also an nn.Module
    "formats.onnx.convert.torch",
    "formats.onnx.convert.keras",
    "formats.onnx.convert.tensorflow",
    "formats.onnx.convert.sklearn",
    "formats.onnx.convert.trees",
)
_loaded = False

C = TypeVar("C", bound=type[Converter])


def register(cls: C) -> C:
    """Class decorator: ``@register`` on a Converter subclass makes it known by its ``name``."""
    _REGISTRY[cls.name] = cls()
    return cls


def _load_builtins() -> None:
    global _loaded
    if not _loaded:
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)
        _loaded = True


def known() -> list[str]:
    _load_builtins()
    return list(_REGISTRY)


def get(name: str) -> Converter:
    _load_builtins()
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise UnsupportedModelError(
            f"unknown framework {name!r}; known frameworks: {', '.join(_REGISTRY)}"
        ) from None


def detect(model: Any) -> Converter:
    """Pick the converter for an object (by its class's module) or a path (by its form)."""
    _load_builtins()
    if isinstance(model, Path):
        for converter in _REGISTRY.values():
            if converter.handles_path(model):
                return converter
        raise UnsupportedModelError(
            f"cannot tell which framework {str(model)!r} comes from; name it with "
            f"--framework ({', '.join(_REGISTRY)})"
        )
    for converter in _REGISTRY.values():
        if converter.handles_object(model):
            return converter
    raise UnsupportedModelError(
        f"no converter for objects of type {type(model).__module__}.{type(model).__qualname__}; "
        f"known frameworks: {', '.join(_REGISTRY)}"
    )
