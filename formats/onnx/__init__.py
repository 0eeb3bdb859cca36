"""The ONNX half: trained model -> ONNX -> verified parity, and ONNX Runtime sessions.

The public API::

    from formats import onnx as fonnx

    result = fonnx.convert(model, sample=x)       # ConversionResult; result.report is truthy
    report = fonnx.verify("model.onnx", original="model.pt", sample="x.npy")
    summary = fonnx.inspect("model.onnx")
    session = fonnx.Session("model.onnx")         # ONNX Runtime, our signature and errors

Importing ``formats.onnx`` loads onnx and numpy, never a training framework: those are imported
only when a converter for them runs; ONNX Runtime is imported on first use of ``Session``.

Inside this package ``import onnx`` is the onnx library (imports are absolute), not this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from formats.diff import Tolerance
from formats.onnx.conversion import ConversionResult
from formats.onnx.verify.report import VerificationReport
from formats.signature import Signature, TensorSpec

# The functions share their names with the subpackages that define them. Importing a submodule
# binds it as an attribute of this package, so the functions are bound last: then
# ``formats.onnx.convert`` is the function, while ``from formats.onnx.convert import ...`` still
# reads the subpackage from sys.modules.
from formats.onnx.convert import convert  # isort: skip
from formats.onnx.verify import verify  # isort: skip
from formats.onnx.inspect import ModelSummary, inspect  # isort: skip

if TYPE_CHECKING:
    from formats.onnx.runtime import Session, SessionOptions

__all__ = [
    "ConversionResult",
    "ModelSummary",
    "Session",
    "SessionOptions",
    "Signature",
    "TensorSpec",
    "Tolerance",
    "VerificationReport",
    "convert",
    "inspect",
    "verify",
]

# ONNX Runtime is only loaded when a session is wanted.
_LAZY = {
    "Session": "formats.onnx.runtime",
    "SessionOptions": "formats.onnx.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'formats.onnx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
