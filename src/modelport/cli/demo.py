"""``modelport demo``: the README's first command."""

from __future__ import annotations

import sys

import click

__all__ = ["COMMANDS"]


@click.command()
@click.option("--repo", "repo_dir", type=click.Path(file_okay=False), help="Repository directory "
              "to register the demo models in (default: a new temporary one).")
@click.option("--epochs", default=5, show_default=True, help="Training epochs for the CNN.")
@click.option("--short", is_flag=True, help="One epoch and fewer timing runs (for tests).")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=0, help="Port to serve on (default: a free one).")
@click.option("--keep-serving", is_flag=True, help="Keep the server running after the demo.")
def demo(
    repo_dir: str | None, epochs: int, short: bool, host: str, port: int, keep_serving: bool
) -> None:
    """Train, convert, verify, register, serve and call two digit classifiers, offline."""
    from modelport.demo import run_demo

    result = run_demo(
        repo_dir=repo_dir,
        epochs=epochs,
        short=short,
        host=host,
        port=port,
        keep_serving=keep_serving,
    )
    if not result.ok:
        click.echo("error: the demo's ONNX models did not match the originals", err=True)
        sys.exit(1)


COMMANDS = [demo]
