"""Lazy imports of optional frameworks: a missing one becomes an install hint, not an ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.errors import MissingExtraError

__all__ = ["extra_for_module", "require"]

# Top-level package -> the modelport extra that installs it, for objects that arrive pickled.
_EXTRA_OF = {
    "sklearn": "sklearn",
    "skl2onnx": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "torch": "torch",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
    "keras": "keras",
    "tensorflow": "tensorflow",
    "pandas": "io",
}


def extra_for_module(module: str | None) -> str | None:
    """The extra that provides ``module`` (any dotted name), or None when none does."""
    return _EXTRA_OF.get((module or "").split(".")[0])


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise MissingExtraError naming the ``modelport[extra]`` to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        # Only a missing top-level package is the user's install problem; anything else is a bug
        # or a broken install that they should see as it is.
        if exc.name is not None and exc.name.split(".")[0] != top and exc.name != module:
            raise
        raise MissingExtraError(top, extra) from exc
