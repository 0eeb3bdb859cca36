"""One error tree for everything a user can get wrong.

Every error has a one-line message that says what is wrong and how to fix it, and the exit code
the command line uses (2, or 1 for a failed parity gate)::

    ModelportError                       exit 2
    ├── UsageError                       a bad argument, option or conf key
    ├── MissingExtraError                a framework extra is not installed
    ├── MissingDependencyError           Java, Node.js or a GPU that the work needs is not here
    ├── UnsupportedModelError            no converter knows this object or file
    ├── ModelLoadError                   a file or class cannot be loaded (corrupt ONNX, bad import)
    ├── ConversionError                  an exporter failed (unsupported operator or step, ...)
    │   └── FormatUnsupportedError       one format cannot take a step; the others are saved
    ├── InputError                       data does not fit the model (columns, dtypes, empty)
    ├── NotFoundError                    a bundle, format or file that is not there
    ├── IntegrityError                   a bundle file does not match its recorded sha256
    ├── InferenceError                   ONNX Runtime rejected a well-formed input
    └── VerificationFailedError          parity failed; carries the report (exit 1)

Bugs in modelport itself are not user errors and are never wrapped in this tree.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConversionError",
    "FormatUnsupportedError",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "MissingDependencyError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelportError",
    "NotFoundError",
    "UnsupportedModelError",
    "UsageError",
    "VerificationFailedError",
]


class ModelportError(Exception):
    """Base of every error a user can cause; the message is one line that says what to do."""

    exit_code: ClassVar[int] = 2

    def __init__(self, message: str) -> None:
        # One line: the command line and the Spark driver's log must never spill a multi-line dump.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(ModelportError):
    pass


class MissingExtraError(ModelportError):
    def __init__(self, package: str, extra: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{package} is not installed; install it with: pip install 'modelport[{extra}]'"
        )


class UnsupportedModelError(ModelportError):
    pass


class ModelLoadError(ModelportError):
    pass


class ConversionError(ModelportError):
    pass


class FormatUnsupportedError(ConversionError):
    """A format cannot take the model, or one of its steps; the other formats are still saved."""

    def __init__(self, fmt: str, step: str | None, reason: str) -> None:
        self.fmt = fmt
        self.step = step
        self.reason = " ".join(str(reason).split())
        where = f" step {step!r}" if step else " this model"
        super().__init__(f"{fmt} cannot take{where}: {self.reason}")


class InputError(ModelportError):
    pass


class MissingDependencyError(ModelportError):
    pass


class NotFoundError(ModelportError):
    pass


class IntegrityError(ModelportError):
    pass


class InferenceError(ModelportError):
    pass


class VerificationFailedError(ModelportError):
    exit_code = 1

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
