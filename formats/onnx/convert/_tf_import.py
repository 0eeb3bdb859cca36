"""TensorFlow imported quietly, and its errors read down to the line that explains them.

Shared by the TensorFlow and Keras converters (and their tests, through ``tensorflow.py``).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from types import ModuleType

from formats._lazy import require
from formats._text import ANSI, clip

__all__ = ["first_line", "import_tf"]

# Lines TensorFlow's C++ code writes to file descriptor 2 while it is imported, before any log
# level applies (absl is not initialized yet): facts about the machine, not about the model.
_IMPORT_NOISE = (
    "absl::InitializeLog",
    "cudart_stub.cc",
    "cpu_feature_guard.cc",
    "To enable the following instructions",
    "cuda_platform.cc",
    "Unable to register cu",
    "TF-TRT Warning",
)


def import_tf(extra: str) -> ModuleType:
    """Import TensorFlow quietly (its C++ INFO/WARNING/ERROR lines are noise for a converter)."""
    # 3, not 2: on CPU-only machines TF logs a harmless "failed call to cuInit" at ERROR level.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    with _filtered_stderr(_IMPORT_NOISE):
        return require("tensorflow", extra)


@contextlib.contextmanager
def _filtered_stderr(noise: Sequence[str]) -> Iterator[None]:
    """Capture file descriptor 2 (C++ writes there directly); pass on every line but ``noise``."""
    try:
        stderr_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # a replaced sys.stderr (notebooks): leave it
        yield
        return
    sys.stderr.flush()
    saved = os.dup(stderr_fd)
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), stderr_fd)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            buffer.seek(0)
            kept = [
                line
                for line in buffer.read().decode(errors="replace").splitlines(keepends=True)
                if not any(pattern in line for pattern in noise)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


_RAISED = re.compile(r"^[A-Za-z_.]*(?:Error|Exception): (.*)$")


def first_line(exc: BaseException) -> str:
    """The informative line of a framework error, for a one-line message."""
    lines = [ln.strip() for ln in ANSI.sub("", str(exc)).splitlines() if ln.strip()]
    if lines and lines[0] == "in user code:":
        # A tf.function wraps the real error in a traceback: start at its last "XError: " line.
        for i in range(len(lines) - 1, 0, -1):
            match = _RAISED.match(lines[i])
            if match:
                lines = [match.group(1), *lines[i + 1 :]]
                break
    # Keras puts a generic line first and the cause after it.
    lines = [ln for ln in lines if not ln.startswith("Exception encountered when calling")] or lines
    return clip(lines[0] if lines else type(exc).__name__)
