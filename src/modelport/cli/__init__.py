"""The ``modelport`` command: a thin layer over the Python API.

Each module of this package owns a group of commands and exposes them as ``COMMANDS``; errors
from the error tree become one line on stderr and their exit code (``--debug`` shows tracebacks).
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from modelport.errors import ModelportError

__all__ = ["main"]

# Modules that contribute commands; each defines COMMANDS: list[click.Command].
_COMMAND_MODULES = (
    "modelport.cli.core",  # convert, verify, inspect, providers
    "modelport.cli.models",  # models ...
    "modelport.cli.serve",  # serve
    "modelport.cli.optimize",  # optimize
    "modelport.cli.story",  # predict, bench, view, deploy
    "modelport.cli.demo",  # demo
)


class _Group(click.Group):
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
    """Convert, verify, version and serve machine-learning models as ONNX."""
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


for _module_name in _COMMAND_MODULES:
    try:
        _module = importlib.import_module(_module_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module_name:
            raise
        continue
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli(prog_name="modelport")
