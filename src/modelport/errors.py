"""One error tree for everything a user can get wrong.

Every error carries the exit code the CLI uses and the HTTP status the server answers with, so
that both transports render it the same way without knowing each other::

    ModelportError                       exit 2, HTTP 400
    ├── UsageError                       a bad argument or option
    ├── MissingExtraError                a framework extra is not installed (HTTP 501)
    ├── UnsupportedModelError            no converter knows this object or file
    ├── ModelLoadError                   a file or class cannot be loaded (corrupt ONNX, bad import)
    ├── ConversionError                  the exporter failed (unsupported operator, ...)
    ├── InputError                       a sample or request does not fit the signature
    ├── NotFoundError                    unknown model, version, alias or file (HTTP 404)
    ├── ConflictError                    duplicate alias, alias still pointing at a version (409)
    ├── IntegrityError                   a stored file does not match its checksum (HTTP 500)
    ├── RepositoryError                  not a repository, read-only, corrupt archive
    ├── PayloadTooLargeError             request body over the limit (HTTP 413)
    ├── UnsupportedEncodingError         a request body's Content-Encoding we cannot read (415)
    ├── UnauthorizedError                missing or wrong bearer token (HTTP 401)
    ├── UnavailableError                 not ready, queue full, shutting down (HTTP 503)
    ├── InferenceError                   ONNX Runtime rejected a well-formed request (HTTP 400)
    └── VerificationFailedError          parity failed; carries the report (exit 1, HTTP 422)

Bugs in modelport itself are not user errors and are never wrapped in this tree.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "ConflictError",
    "ConversionError",
    "InferenceError",
    "InputError",
    "IntegrityError",
    "MissingExtraError",
    "ModelLoadError",
    "ModelportError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RepositoryError",
    "UnauthorizedError",
    "UnavailableError",
    "UnsupportedEncodingError",
    "UnsupportedModelError",
    "UsageError",
    "VerificationFailedError",
]


class ModelportError(Exception):
    """Base of every error a user can cause; the message is one line that says what to do."""

    exit_code: ClassVar[int] = 2
    http_status: ClassVar[int] = 400

    def __init__(self, message: str) -> None:
        # One line: the CLI and HTTP renderings must never spill a multi-line dump.
        super().__init__(" ".join(str(message).split()))

    @property
    def message(self) -> str:
        return str(self)


class UsageError(ModelportError):
    pass


class MissingExtraError(ModelportError):
    http_status = 501

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


class InputError(ModelportError):
    pass


class NotFoundError(ModelportError):
    http_status = 404


class ConflictError(ModelportError):
    http_status = 409


class IntegrityError(ModelportError):
    http_status = 500


class RepositoryError(ModelportError):
    pass


class PayloadTooLargeError(ModelportError):
    http_status = 413


class UnsupportedEncodingError(ModelportError):
    http_status = 415


class UnauthorizedError(ModelportError):
    http_status = 401


class UnavailableError(ModelportError):
    http_status = 503


class InferenceError(ModelportError):
    pass


class VerificationFailedError(ModelportError):
    exit_code = 1
    http_status = 422

    def __init__(self, message: str, report: Any = None) -> None:
        self.report = report
        super().__init__(message)
