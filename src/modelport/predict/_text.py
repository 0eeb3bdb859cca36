"""Short, one-line renderings for error messages."""

from __future__ import annotations

from collections.abc import Sequence

from modelport._text import one_line  # re-exported: predict quotes errors through this module

__all__ = ["listing", "one_line"]

MAX_LISTED = 12


def listing(items: Sequence[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(repr(i) for i in items[:MAX_LISTED])
    more = f", ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return f"[{shown}{more}]"
