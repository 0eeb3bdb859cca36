"""Exceptions from third-party code, shortened for one-line error messages.

Every boundary that maps a framework's exception to ours quotes the original message; these
helpers keep that quote on one line and short enough to read (a protobuf or exporter message can
run to pages).
"""

from __future__ import annotations

import re

__all__ = ["ANSI", "clip", "one_line"]

# Colour codes some frameworks (torch.export, Keras) put in their messages.
ANSI = re.compile(r"\x1b\[[0-9;]*m")
LIMIT = 300


def clip(text: str, limit: int = LIMIT) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with "..."."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(exc: BaseException, limit: int = LIMIT) -> str:
    """The exception's message on one line (its type name when it has none)."""
    text = " ".join(str(exc).split())
    return clip(text, limit) if text else type(exc).__name__
