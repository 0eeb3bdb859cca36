"""Lazy imports of optional frameworks: a missing one becomes an install hint, not an ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from modelport.errors import MissingExtraError

__all__ = ["require"]


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
