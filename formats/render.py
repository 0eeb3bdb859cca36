"""What the commands print: rich tables of a saved bundle and of a parity report.

Results are data (the manifest, :class:`formats.parity.ParityReport`); drawing them lives here so
that the CLI, the jobs and the demo print the same tables. Anything user-given is escaped: rich
would read ``[...]`` in a class name or path as markup.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from formats.bundle import Bundle
    from formats.parity import ParityReport

__all__ = ["console", "parity_table", "print_saved", "saved_table"]


def console() -> Console:
    from rich.console import Console

    out = Console()
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(width=140)  # piped output would otherwise wrap every table at 80 columns
    return out


def _esc(value: object) -> str:
    from rich.markup import escape

    return escape(str(value))


def saved_table(bundle: Bundle) -> Table:
    from rich.table import Table

    m = bundle.manifest
    table = Table(
        title=f"{_esc(m.name)} v{_esc(m.version)}: {_esc(m.model_type)}",
        title_justify="left",
        show_edge=False,
    )
    for column in ("format", "file", "bytes", "notes"):
        table.add_column(column, justify="right" if column == "bytes" else "left")
    for fmt, entry in m.formats.items():
        if entry.saved and entry.file:
            notes = _format_notes(entry.details)
            size = f"{m.files[entry.file]['bytes']:,}"
            table.add_row(fmt, entry.file, size, _esc(notes))
        else:
            table.add_row(fmt, "[red]-[/red]", "", "[red]" + _esc(entry.why_not()) + "[/red]")
    return table


def _format_notes(details: dict[str, Any]) -> str:
    parts = []
    if "precision" in details:
        parts.append(str(details["precision"]))
        if details.get("why"):
            parts.append(str(details["why"]))
    if "trusted_types" in details:
        parts.append(f"{len(details['trusted_types'])} trusted types")
    if "sklearn2pmml" in details:
        parts.append(f"sklearn2pmml {details['sklearn2pmml']}")
    if details.get("labels_only"):
        parts.append(f"labels only ({details['labels_only']})")
    if details.get("engines"):
        from formats.pmml_engines import faithful_engine

        agreed = [e for e, v in details["engines"].items() if v.get("agrees")]
        parts.append(f"agreed on the sample: {', '.join(agreed) or 'no engine'}; "
                     f"load runs {faithful_engine(details)}")  # fmt: skip
    return "; ".join(parts)


def print_saved(bundle: Bundle) -> None:
    console().print(saved_table(bundle))


def _num(value: float | None) -> str:
    if value is None:
        return ""
    return "0" if value == 0 else f"{value:.2g}"


def parity_table(report: ParityReport) -> Table:
    from rich.table import Table

    tol = report.tolerance
    table = Table(
        title=f"parity against the original (the unpickled model, rows as given), {report.rows:,} "
        f"rows; pass: labels >= {tol.labels:.0%}, |diff| <= {tol.atol:g} + {tol.rtol:g}*|original|",
        title_justify="left",
        show_edge=False,
    )
    for column in ("format", "engine", "result", "labels equal", "max abs", "max rel",
                   "rows differing", "precision", "seconds"):  # fmt: skip
        table.add_column(column)
    for r in report.results:
        style = {"pass": "green", "fail": "red", "error": "red"}.get(r.status, "yellow")
        result = f"[{style}]{r.status}[/{style}]"
        if r.status in ("not saved", "error"):
            table.add_row(r.fmt, r.engine, result, _esc(r.reason), "", "", "", "", "")
            continue
        max_abs = max((o.max_abs for o in r.outputs), default=None)
        max_rel = max((o.max_rel for o in r.outputs), default=None)
        labels = "" if r.label_agreement is None else f"{r.label_agreement:.2%}"
        table.add_row(
            r.fmt, r.engine, result, labels, _num(max_abs), _num(max_rel),
            f"{r.rows_disagree:,}", r.precision or "", f"{r.seconds:.2f}",
        )  # fmt: skip
    # why a format that ran failed, where it is more than its numbers (a PMML of labels only)
    notes = [f"{r.fmt} ({r.engine}): {r.reason}" for r in report.results
             if r.status == "fail" and r.reason]  # fmt: skip
    if notes:
        table.caption, table.caption_justify = _esc("\n".join(notes)), "left"
    return table
