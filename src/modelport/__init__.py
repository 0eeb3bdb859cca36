"""modelport: trained model -> ONNX -> verified parity -> versioned repository -> served.

The public API::

    import modelport

    result = modelport.convert(model, sample=x)        # ConversionResult; result.report is truthy
    report = modelport.verify("model.onnx", original="model.pt", sample="x.npy")
    summary = modelport.inspect("model.onnx")
    repo = modelport.Repository()                       # imported on first use
    session = modelport.Session("model.onnx")           # ONNX Runtime, our signature and errors

Importing modelport loads onnx and numpy, never a training framework: those are imported only
when a converter for them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelport import errors
from modelport.convert.base import ConversionResult, Tolerance
from modelport.signature import Signature, TensorSpec
from modelport.verify.report import VerificationReport

# The functions share their names with the subpackages that define them; binding them last makes
# ``modelport.convert`` etc. the functions, while ``from modelport.convert import ...`` still
# reads the subpackage from sys.modules.
from modelport.convert import convert  # isort: skip
from modelport.verify import verify  # isort: skip
from modelport.inspect import ModelSummary, inspect  # isort: skip

if TYPE_CHECKING:
    from modelport.repository import ModelVersion, Repository
    from modelport.runtime import Session, SessionOptions

__all__ = [
    "ConversionResult",
    "ModelSummary",
    "ModelVersion",
    "Repository",
    "Session",
    "SessionOptions",
    "Signature",
    "TensorSpec",
    "Tolerance",
    "VerificationReport",
    "__version__",
    "convert",
    "errors",
    "inspect",
    "verify",
]

# The repository pulls in SQLite and packaging code that most users of convert never need.
_LAZY = {
    "Repository": "modelport.repository",
    "ModelVersion": "modelport.repository",
    # ONNX Runtime is only loaded when a session is wanted.
    "Session": "modelport.runtime",
    "SessionOptions": "modelport.runtime",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("modelport")
        except PackageNotFoundError:
            return "0+unknown"
    raise AttributeError(f"module 'modelport' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
