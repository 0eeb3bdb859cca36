"""report.md, report.html (self-contained: inline CSS and SVG, nothing fetched) and report.json,
drawn from :func:`formats.compare.sections.sections` and written atomically."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path

from formats.compare.results import CompareReport
from formats.compare.sections import Section, sections

__all__ = ["to_html", "to_json", "to_markdown", "write_reports"]

_CSS = """
body { font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
code { background: #f3f3f3; padding: 0 3px; }
.plots svg { display: block; margin: 1em 0; }
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: CompareReport) -> str:
    lines = [f"# Format comparison: {report.model}", "", f"Bundle `{report.bundle}`.", ""]
    for s in sections(report):
        lines += [f"## {s.title}", ""]
        for para in s.text:
            lines += [para, ""]
        if s.bullets:
            lines += [f"- {b}" for b in s.bullets] + [""]
        if s.table is not None and s.table.rows:
            lines.append("| " + " | ".join(map(_md_cell, s.table.headers)) + " |")
            lines.append("|" + "---|" * len(s.table.headers))
            lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in s.table.rows]
            lines.append("")
    return "\n".join(lines)


def _inline(text: str) -> str:
    """The little Markdown the sections use (**bold**, `code`), as HTML."""
    html = escape(text)
    html = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", html)


def _html_section(s: Section) -> list[str]:
    out = [f'<section id="{s.ident}">', f"<h2>{escape(s.title)}</h2>"]
    out += [f"<p>{_inline(p)}</p>" for p in s.text]
    if s.bullets:
        out += ["<ul>", *[f"<li>{_inline(b)}</li>" for b in s.bullets], "</ul>"]
    if s.table is not None and s.table.rows:
        out.append("<table><thead><tr>")
        out += [f"<th>{escape(h)}</th>" for h in s.table.headers]
        out.append("</tr></thead><tbody>")
        for row in s.table.rows:
            out.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>")
        out.append("</tbody></table>")
    if s.plots:
        out += ['<div class="plots">', *s.plots, "</div>"]
    return [*out, "</section>"]


def to_html(report: CompareReport) -> str:
    title = f"Format comparison: {report.model}"
    body = [f"<h1>{escape(title)}</h1>", f"<p>Bundle <code>{escape(report.bundle)}</code>.</p>"]
    for s in sections(report):
        body += _html_section(s)
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        *body, "</body></html>", "",
    ])  # fmt: skip


def to_json(report: CompareReport) -> str:
    return json.dumps(report.to_dict(), indent=2, default=str) + "\n"


def write_reports(report: CompareReport, out_dir: str | Path) -> dict[str, Path]:
    """report.md, report.html and report.json in ``out_dir``, each replaced atomically."""
    from formats._files import atomic_write

    directory = Path(out_dir)
    written = {}
    for name, text in (("report.md", to_markdown(report)), ("report.html", to_html(report)),
                       ("report.json", to_json(report))):  # fmt: skip
        with atomic_write(directory / name) as fh:
            fh.write(text.encode())
        written[name] = directory / name
    return written
