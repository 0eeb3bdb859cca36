"""What the commands print: rich tables and lines for signatures, models and versions.

Commands stay thin (parse, call the API, print); the printing that more than one command does,
or that would bury a command's logic, lives here. Anything user-provided (names, tags, paths,
shapes) is escaped, since rich would read ``[...]`` in it as markup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from modelport.repository import ModelInfo, ModelVersion
    from modelport.signature import Signature

__all__ = [
    "escape",
    "models_table",
    "show_version",
    "signature_table",
    "verification_line",
    "version_dict",
    "versions_table",
]


def escape(value: object) -> str:
    """Escape text for rich: tag values, paths and shapes may contain '[...]'."""
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


def _listing_table(title: str, fixed: tuple[str, ...]) -> Table:
    """A table of models or versions: short ``fixed`` columns, then the ones that wrap."""
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in fixed:
        table.add_column(column, no_wrap=True)
    for column in ("aliases", "tags", "description"):
        table.add_column(column, overflow="fold", min_width=len(column))
    return table


def models_table(infos: list[ModelInfo], root: object) -> Table:
    table = _listing_table(f"models in {root}", ("name", "latest", "versions"))
    for info in infos:
        table.add_row(
            info.name,
            "-" if info.latest_version is None else str(info.latest_version),
            str(info.versions),
            ", ".join(f"{a}->{v}" for a, v in info.aliases.items()),
            _pairs(info.tags),
            _first_line(info.description),
        )
    return table


def versions_table(name: str, versions: list[ModelVersion]) -> Table:
    table = _listing_table(f"versions of {name}", ("version", "created", "framework", "verified"))
    for found in versions:
        table.add_row(
            str(found.version),
            found.created[:16].replace("T", " "),
            found.framework,
            _verified_mark(found),
            ", ".join(found.aliases),
            _pairs(found.tags),
            _first_line(found.description),
        )
    return table


def show_version(console: Console, found: ModelVersion, checked: bool) -> None:
    """Everything about one version: manifest facts, signature, files, description."""
    from rich.table import Table

    console.print(f"[bold]{found.ref}[/bold]  {escape(found.path)}")
    m = found.manifest
    console.print(f"  created      {escape(m.created)}")
    console.print(f"  framework    {escape(m.framework)}  ({_pairs(_plain(m.source))})")
    console.print(f"  verification {verification_line(found).removeprefix('verification ')}")
    if m.imported_from:
        origin = m.imported_from
        console.print(
            f"  imported     from {escape(origin.get('name'))}:{origin.get('version')} "
            f"({escape(origin.get('archive'))})"
        )
    runtime = m.runtime
    opsets = ", ".join(f"{d} {v}" for d, v in (runtime.get("opset") or {}).items())
    console.print(
        f"  runtime      opset {opsets}; IR {runtime.get('ir_version')}; "
        f"onnxruntime {runtime.get('onnxruntime')}"
    )
    console.print(f"  aliases      {', '.join(found.aliases) or '-'}")
    console.print(f"  tags         {_pairs(found.tags) or '-'}")
    if checked:
        console.print("  checksums    [green]ok[/green]")
    console.print(signature_table(m.signature))
    files = Table(title="files", title_justify="left", show_edge=False)
    files.add_column("file")
    files.add_column("sha256", overflow="fold")
    for file_name, digest in sorted(m.files.items()):
        files.add_row(file_name, digest)
    console.print(files)
    if found.description:
        from rich.markdown import Markdown

        console.print(Markdown(found.description))


def verification_line(found: ModelVersion) -> str:
    m = found.manifest
    if m.verification is None:
        return "not verified"
    passed = bool(m.verified)
    summary = "verification passed" if passed else "verification failed"
    try:
        from modelport.verify.report import VerificationReport

        report = VerificationReport.from_dict(m.verification)
        if report.passed == passed:  # a hand-made report dict may hold only "passed"
            summary = escape(report.summary())
    except (ImportError, KeyError, TypeError, ValueError):
        pass  # an older or foreign report shape: the stored flag says enough
    if m.forced:
        summary += " [red](registered with --force)[/red]"
    return summary


def version_dict(found: ModelVersion, manifest: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ref": found.ref,
        "name": found.name,
        "version": found.version,
        "created": found.created,
        "framework": found.framework,
        "path": str(found.path),
        "aliases": found.aliases,
        "tags": found.tags,
        "description": found.description,
        "verified": found.manifest.verified,
        "forced": found.manifest.forced,
    }
    if manifest:
        data["manifest"] = found.manifest.to_dict()
    return data


def _pairs(tags: dict[str, Any]) -> str:
    return escape(", ".join(f"{k}={v}" for k, v in tags.items()))


def _plain(source: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in source.items() if isinstance(v, str | int | float) and v != ""}


def _first_line(text: str | None, width: int = 60) -> str:
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return escape(line if len(line) <= width else line[: width - 1] + "…")


def _verified_mark(found: ModelVersion) -> str:
    passed = found.manifest.verified
    if found.manifest.forced:
        return "[red]FAILED (forced)[/red]"
    if passed is None:
        return "-"
    return "[green]pass[/green]" if passed else "[red]FAIL[/red]"
