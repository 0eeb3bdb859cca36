"""Lazy imports of optional frameworks: a missing one becomes an install hint, not an ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from formats.errors import MissingDependencyError, MissingExtraError, ModelportError

__all__ = ["CORE", "extra_for_module", "missing_package", "require"]

# The "extra" of a package that the modelport distribution installs itself (scikit-learn, pandas,
# ...): a missing one is a broken install, and the hint is to reinstall modelport.
CORE = "core"

# Top-level package -> the modelport extra that installs it, for objects that arrive pickled.
_EXTRA_OF = {
    "sklearn": CORE,
    "skl2onnx": CORE,
    "onnxmltools": CORE,
    "joblib": CORE,
    "pandas": CORE,
    "pyarrow": CORE,
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "catboost": "catboost",
    "torch": "torch",
    "lightning": "lightning",
    "pytorch_lightning": "lightning",
    "keras": "keras",
    "tensorflow": "tensorflow",
}


def extra_for_module(module: str | None) -> str | None:
    """The extra that provides ``module`` (any dotted name; ``CORE`` for a dependency of the
    distribution itself), or None when none does."""
    return _EXTRA_OF.get((module or "").split(".")[0])


def missing_package(package: str, extra: str) -> ModelportError:
    """The error for a missing ``package``: the extra to install, or reinstall for ``CORE``."""
    if extra == CORE:
        return MissingDependencyError(
            f"{package} is not installed, though modelport depends on it; "
            "reinstall it with: pip install --force-reinstall modelport"
        )
    return MissingExtraError(package, extra)


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise the install hint for ``extra`` (see ``missing_package``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        # Only a missing top-level package is the user's install problem; anything else is a bug
        # or a broken install that they should see as it is.
        if exc.name is not None and exc.name.split(".")[0] != top and exc.name != module:
            raise
        raise missing_package(top, extra) from exc
