"""``python -m formats``: a thin layer over the Python API.

Each module of this package owns a group of commands and exposes them as ``COMMANDS``; a
module is imported only when one of its commands runs (or help lists them), so ``parity`` starts
without loading the converters' CLI. This is the one place where an error from the error tree
becomes one line on stderr and its exit code (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from typing import NoReturn

import click

from formats.errors import ModelportError

__all__ = ["main", "run_api"]

# Command name -> the module that defines it (in its COMMANDS: list[click.Command]).
_COMMAND_MODULES = {
    "save": "formats.cli.bundle",
    "parity": "formats.cli.bundle",
    "compare": "formats.cli.compare",
    "convert": "formats.cli.core",
    "verify": "formats.cli.core",
    "inspect": "formats.cli.core",
    "providers": "formats.cli.core",
    "view": "formats.cli.core",
}


class _Group(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMAND_MODULES)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module_name = _COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(module_name)
        command: click.Command = next(c for c in module.COMMANDS if c.name == cmd_name)
        return command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        # The group's own options and a missing command fail here, before invoke.
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            _usage_error(exc, debug="--debug" in args)

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except ModelportError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # a subcommand's bad option, argument or name
            _usage_error(exc, debug=bool(ctx.obj and ctx.obj.get("debug")))


def _usage_error(exc: click.UsageError, debug: bool) -> NoReturn:
    """click's usage errors as one line like every other error (click's own block: --debug).

    A group called without a command still shows its help (NoArgsIsHelpError).
    """
    if debug or isinstance(exc, click.exceptions.NoArgsIsHelpError):
        raise exc
    message = exc.format_message().rstrip(".")
    message = message[:1].lower() + message[1:]  # "Invalid value ..." -> "invalid value ..."
    hint = f"; see '{exc.ctx.command_path} --help'" if exc.ctx is not None else ""
    click.echo(f"error: {message}{hint}", err=True)
    sys.exit(exc.exit_code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(package_name="modelport")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Save a model as pickle, skops, PMML and ONNX, check their parity, inspect and convert."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug



def run_api(action: Callable[[], object], debug: bool = False) -> int:
    """Run ``action`` for a command that is not a click command (the jobs' ``main``): an error
    from the tree becomes ``error: <one line>`` on stderr and its exit code."""
    try:
        action()
    except ModelportError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def main() -> None:
    cli(prog_name="python -m formats")
