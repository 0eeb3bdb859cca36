"""What the commands print that more than one command prints: a signature as a rich table.

Commands stay thin (parse, call the API, print); shared printing lives here. Anything
user-provided (names, dtypes, shapes) is escaped, since rich would read ``[...]`` in it as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.table import Table

    from formats.signature import Signature

__all__ = ["escape", "signature_table"]


def escape(value: object) -> str:
    """Escape text for rich: names, paths and shapes may contain '[...]'."""
    from rich.markup import escape as rich_escape

    return rich_escape(str(value))


def signature_table(signature: Signature) -> Table:
    from rich.table import Table

    table = Table(title="signature", title_justify="left", show_edge=False)
    for column in ("", "name", "dtype", "shape"):
        table.add_column(column)
    for kind, specs in (("input", signature.inputs), ("output", signature.outputs)):
        for spec in specs:
            shape = ", ".join("?" if d is None else str(d) for d in spec.shape)
            table.add_row(kind, escape(spec.name), escape(spec.dtype), escape(f"[{shape}]"))
    return table
