"""``modelport models ...``: the model repository from the command line.

Every command is a thin call into :class:`modelport.repository.Repository`; errors are rendered
as one line by the top-level group (exit code 2, 1 for a failed verification).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from modelport.cli._options import repo_option
from modelport.cli._render import (
    escape,
    models_table,
    show_version,
    verification_line,
    version_dict,
    versions_table,
)
from modelport.errors import UsageError, VerificationFailedError

if TYPE_CHECKING:
    from rich.console import Console

    from modelport.repository import Repository

__all__ = ["COMMANDS", "models"]

F = TypeVar("F", bound=Callable[..., Any])
_REPO_KEY = "models_repo"


def _repo_option(func: F) -> F:
    # --repo is accepted on the group and on every command ("--repo anywhere"); a command's
    # own --repo wins over the group's.
    return repo_option()(func)


def _open(repo_dir: Path | None, create: bool = False) -> Repository:
    """Only register and import start a new repository; elsewhere a wrong path is an error."""
    from modelport.repository import Repository

    ctx = click.get_current_context()
    obj = ctx.find_object(dict) or {}
    return Repository(repo_dir or obj.get(_REPO_KEY), create=create)


def _console() -> Console:
    from rich.console import Console

    return Console(highlight=False, soft_wrap=False)


def _parse_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    tags: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"tag {pair!r} is not KEY=VALUE; write it like team=vision")
        tags[key] = value
    return tags


def _version_of(repo: Repository, ref: str) -> tuple[str, int | None]:
    """(name, version) for tag/describe: a bare name means the model itself."""
    from modelport.repository import parse_ref

    parsed = parse_ref(ref)
    if parsed.version is None and parsed.alias is None:
        return parsed.name, None
    return parsed.name, repo.resolve(parsed).version


@click.group(name="models")
@repo_option()
@click.pass_context
def models(ctx: click.Context, repo_dir: Path | None) -> None:
    """Register, version, alias, tag, export and import models in a repository."""
    ctx.ensure_object(dict)
    ctx.obj[_REPO_KEY] = repo_dir


@models.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--name", "-n", required=True, help="Model name (letters, digits, '._-').")
@click.option(
    "--sample",
    type=click.Path(path_type=Path),
    help="Sample input file (.npy .npz .csv .parquet .json .jsonl); stored as the input example "
    "and used to verify.",
)
@click.option("--framework", help="Framework of SOURCE when it cannot be detected.")
@click.option("--class", "model_class", help="package.module:Class for state dicts/checkpoints.")
@click.option("--opset", type=int, help="ONNX opset to export with.")
@click.option("--atol", type=float, help="Absolute tolerance for verification.")
@click.option("--rtol", type=float, help="Relative tolerance for verification.")
@click.option("--force", is_flag=True, help="Register even if verification fails (recorded).")
@click.option("--description", "-d", help="Markdown description of this version.")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="Version tag (repeat).")
@click.option("--alias", "alias", help="Point this alias at the new version.")
@_repo_option
def register(
    source: Path,
    name: str,
    sample: Path | None,
    framework: str | None,
    model_class: str | None,
    opset: int | None,
    atol: float | None,
    rtol: float | None,
    force: bool,
    description: str | None,
    tags: tuple[str, ...],
    alias: str | None,
    repo_dir: Path | None,
) -> None:
    """Convert, verify and register SOURCE (.onnx or a framework model file) as NAME."""
    from modelport.repository.names import validate_alias

    if alias is not None:
        validate_alias(alias)  # before registering: a bad alias must not leave a new version
    repo = _open(repo_dir, create=True)
    kwargs: dict[str, Any] = {
        key: value
        for key, value in (
            ("model_class", model_class),
            ("opset", opset),
            ("atol", atol),
            ("rtol", rtol),
        )
        if value is not None
    }
    try:
        found = repo.register(
            source,
            name,
            sample=sample,
            framework=framework,
            force=force,
            description=description,
            tags=_parse_pairs(tags),
            **kwargs,
        )
    except VerificationFailedError as exc:
        # A failed verification exits 1 with its report, as 'convert' does.
        render = getattr(exc.report, "render", None)
        if callable(render):
            _console().print(render())
        raise
    if alias is not None:  # an empty --alias is an invalid alias, not no alias
        repo.set_alias(found.name, alias, found.version)
        found = repo.resolve(found.ref)
    console = _console()
    console.print(f"registered [bold]{found.ref}[/bold] in {escape(found.path)}")
    console.print(f"  {verification_line(found)}")
    if found.aliases:
        console.print(f"  aliases: {', '.join(found.aliases)}")  # validated: no markup


@models.command(name="list")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_repo_option
def list_(name: str | None, as_json: bool, repo_dir: Path | None) -> None:
    """List models, or the versions of model NAME."""
    repo = _open(repo_dir)
    if name is None:
        infos = repo.list_models()
        if as_json:
            click.echo(json.dumps([info.__dict__ for info in infos], indent=2))
            return
        _console().print(
            models_table(infos, repo.root)
            if infos
            else "no models yet; add one with 'modelport models register MODEL --name NAME'"
        )
        return
    versions = repo.list_versions(name)
    if as_json:
        click.echo(json.dumps([version_dict(v) for v in versions], indent=2))
        return
    _console().print(versions_table(name, versions))


@models.command()
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the version and manifest as JSON.")
@click.option("--check", is_flag=True, help="Also verify the checksums of every file.")
@_repo_option
def show(ref: str, as_json: bool, check: bool, repo_dir: Path | None) -> None:
    """Show one version (REF: name, name:3 or name@alias): manifest, verification, aliases, tags."""
    repo = _open(repo_dir)
    found = repo.load(ref) if check else repo.resolve(ref)
    if as_json:
        click.echo(json.dumps(version_dict(found, manifest=True), indent=2))
        return
    show_version(_console(), found, checked=check)


@models.group()
def alias() -> None:
    """Set or remove aliases (name@alias references)."""


@alias.command(name="set")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@click.argument("version")
@click.option("--no-move", is_flag=True, help="Fail instead of moving an existing alias.")
@_repo_option
def alias_set(
    name: str, alias_name: str, version: str, no_move: bool, repo_dir: Path | None
) -> None:
    """Point ALIAS of model NAME at VERSION (moving it if it exists)."""
    from modelport.repository.names import validate_version

    repo = _open(repo_dir)
    number = validate_version(version)
    previous = repo.set_alias(name, alias_name, number, move=not no_move)
    moved = f" (moved from {previous})" if previous is not None and previous != number else ""
    click.echo(f"{name}@{alias_name} -> {name}:{number}{moved}")


@alias.command(name="rm")
@click.argument("name")
@click.argument("alias_name", metavar="ALIAS")
@_repo_option
def alias_rm(name: str, alias_name: str, repo_dir: Path | None) -> None:
    """Remove ALIAS of model NAME."""
    _open(repo_dir).remove_alias(name, alias_name)
    click.echo(f"removed {name}@{alias_name}")


@models.group()
def tag() -> None:
    """Set or remove tags of a model (REF = name) or a version (name:3, name@alias)."""


@tag.command(name="set")
@click.argument("ref")
@click.argument("pairs", nargs=-1, required=True, metavar="KEY=VALUE...")
@_repo_option
def tag_set(ref: str, pairs: tuple[str, ...], repo_dir: Path | None) -> None:
    """Set tags on REF."""
    repo = _open(repo_dir)
    name, version = _version_of(repo, ref)
    tags = _parse_pairs(pairs)
    for key, value in tags.items():
        repo.set_tag(name, key, value, version=version)
    pairs_text = ", ".join(f"{k}={v}" for k, v in tags.items())
    click.echo(f"tagged {name if version is None else f'{name}:{version}'}: {pairs_text}")


@tag.command(name="rm")
@click.argument("ref")
@click.argument("keys", nargs=-1, required=True, metavar="KEY...")
@_repo_option
def tag_rm(ref: str, keys: tuple[str, ...], repo_dir: Path | None) -> None:
    """Remove tags from REF."""
    repo = _open(repo_dir)
    name, version = _version_of(repo, ref)
    for key in keys:
        repo.remove_tag(name, key, version=version)
    click.echo(f"removed tag(s) {', '.join(keys)}")


@models.command()
@click.argument("ref")
@click.argument("text")
@_repo_option
def describe(ref: str, text: str, repo_dir: Path | None) -> None:
    """Set the Markdown description of a model (REF = name) or a version; TEXT '-' reads stdin,
    '' clears it."""
    repo = _open(repo_dir)
    name, version = _version_of(repo, ref)
    if text == "-":
        text = sys.stdin.read()
    repo.set_description(name, text, version=version)
    click.echo(f"described {name if version is None else f'{name}:{version}'}")


@models.command()
@click.argument("ref")
@_repo_option
def delete(ref: str, repo_dir: Path | None) -> None:
    """Delete one version (REF = name:3 or name@alias); aliases must not point at it."""
    from modelport.repository import parse_ref

    parsed = parse_ref(ref)
    if parsed.version is None and parsed.alias is None:
        raise UsageError(f"name the version to delete, e.g. {parsed.name}:1")
    repo = _open(repo_dir)
    found = repo.resolve(parsed)
    repo.delete_version(found.name, found.version)
    click.echo(f"deleted {found.ref}")


@models.command(name="export")
@click.argument("ref")
@click.argument("out", type=click.Path(path_type=Path))
@_repo_option
def export(ref: str, out: Path, repo_dir: Path | None) -> None:
    """Export one version to a portable .tar.gz archive OUT (a directory: NAME-VERSION.tar.gz)."""
    path = _open(repo_dir).export_version(ref, out)
    click.echo(f"exported {ref} to {path}")


@models.command(name="import")
@click.argument("archive", type=click.Path(path_type=Path))
@click.option("--name", "-n", help="Import under this model name instead of the archive's.")
@_repo_option
def import_(archive: Path, name: str | None, repo_dir: Path | None) -> None:
    """Import an exported ARCHIVE as the next version of its model."""
    found = _open(repo_dir, create=True).import_archive(archive, name=name)
    origin = found.manifest.imported_from or {}
    click.echo(f"imported {found.ref} (was {origin.get('name')}:{origin.get('version')})")


@models.command()
@_repo_option
def check(repo_dir: Path | None) -> None:
    """Verify the checksums of every version; exit 2 if any file is corrupt."""
    from modelport.errors import IntegrityError

    problems = _open(repo_dir).check()
    if problems:  # one error line that carries every problem, like every other error
        raise IntegrityError(f"{len(problems)} version(s) failed the check: {'; '.join(problems)}")
    click.echo("all versions intact")


@models.command()
@_repo_option
def gc(repo_dir: Path | None) -> None:
    """Remove leftovers of interrupted registrations and deletions."""
    removed = _open(repo_dir).gc()
    click.echo(f"removed {removed} leftover(s)")


COMMANDS: list[click.Command] = [models]
