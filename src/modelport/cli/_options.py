"""Options that several commands share, written once so their names, types and help agree."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import click

__all__ = ["repo_option"]

F = TypeVar("F", bound=Callable[..., object])

REPO_HELP = (
    "Model repository directory (default: $MODELPORT_HOME, else $XDG_DATA_HOME/modelport or "
    "~/.local/share/modelport)."
)


def repo_option(param: str = "repo_dir") -> Callable[[F], F]:
    """``--repo DIR``, passed to the command as ``param``."""
    return click.option(
        "--repo", param, type=click.Path(file_okay=False, path_type=Path), default=None,
        help=REPO_HELP,
    )
