"""``python -m formats convert | verify | inspect | providers | view``: thin wrappers over the
Python API of :mod:`formats.onnx`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from formats.cli._render import signature_table

__all__ = ["COMMANDS"]

F = TypeVar("F", bound=Callable[..., Any])
_path = click.Path(path_type=Path)
_file = click.Path(path_type=Path, dir_okay=False)
# Options convert and verify share (click makes a fresh option each time one is applied).
_sample_option = click.option(
    "--sample", type=_file, help="Input example: .npy .npz .csv .parquet .json .jsonl."
)
_providers_option = click.option(
    "--provider",
    "providers",
    multiple=True,
    help="Execution provider to verify on (repeat; default CPU).",
)


def _class_option(help_text: str) -> Callable[[F], F]:
    return click.option("--class", "model_class", metavar="PKG.MOD:CLASS", help=help_text)


def _console() -> Any:
    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped output would otherwise wrap every table at 80 columns.
        console = Console(width=140)
    return console


def _write_json(path: Path, data: Any) -> None:
    from formats._files import atomic_write

    text = json.dumps(data, indent=2, default=str) + "\n"
    if str(path) == "-":
        click.echo(text, nl=False)
        return
    with atomic_write(path) as fh:
        fh.write(text.encode())


def _parse_dynamic_axes(values: tuple[str, ...]) -> dict[str, dict[int, str]] | None:
    axes: dict[str, dict[int, str]] = {}
    for value in values:
        # Split from the right: tensor names may contain ':' (TensorFlow's "x:0").
        parts = value.rsplit(":", 2)
        if len(parts) != 3 or not parts[0] or not parts[2]:
            raise click.BadParameter(
                f"{value!r} is not NAME:AXIS:SYMBOL (e.g. input:0:batch)",
                param_hint="--dynamic-axis",
            )
        name, axis, symbol = parts
        try:
            index = int(axis)
        except ValueError:
            raise click.BadParameter(
                f"axis {axis!r} in {value!r} is not an integer", param_hint="--dynamic-axis"
            ) from None
        axes.setdefault(name, {})[index] = symbol
    return axes or None


def default_output(model: Path) -> Path:
    """MODEL's stem plus .onnx, beside it (a directory model gets its name plus .onnx)."""
    stem = model.name if model.is_dir() else model.stem
    return model.parent / f"{stem}.onnx"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


@click.command()
@click.argument("model", type=_path)
@click.option(
    "-o",
    "--output",
    type=_file,
    help="Where to write the ONNX model (default: MODEL's name with .onnx, beside it).",
)
@_sample_option
@click.option("--framework", help="Framework of MODEL when it cannot be told from the file.")
@_class_option("Model class for state dicts and checkpoints.")
@click.option("--opset", type=int, help="ONNX opset to export to.")
@click.option("--input-name", "input_names", multiple=True, help="Name of an ONNX input (repeat).")
@click.option(
    "--output-name", "output_names", multiple=True, help="Name of an ONNX output (repeat)."
)
@click.option(
    "--dynamic-axis",
    "dynamic_axes",
    multiple=True,
    metavar="NAME:AXIS:SYMBOL",
    help="Make an axis symbolic (repeat); default: the batch axis only.",
)
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    help="torch: force one exporter (default: dynamo, falling back to TorchScript).",
)
@click.option("--keep-float64", is_flag=True, help="sklearn: keep double precision.")
@click.option("--no-verify", is_flag=True, help="Skip verification (not recommended).")
@_providers_option
@click.option("--atol", type=float, help="Absolute tolerance (default: the converter's).")
@click.option("--rtol", type=float, help="Relative tolerance (default: the converter's).")
@click.option("--report-json", type=_file, help="Write the conversion and verification report.")
@click.option("--force", is_flag=True, help="Write the model even if verification failed.")
def convert(
    model: Path,
    output: Path | None,
    sample: Path | None,
    framework: str | None,
    model_class: str | None,
    opset: int | None,
    input_names: tuple[str, ...],
    output_names: tuple[str, ...],
    dynamic_axes: tuple[str, ...],
    exporter: str | None,
    keep_float64: bool,
    no_verify: bool,
    providers: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    report_json: Path | None,
    force: bool,
) -> None:
    """Convert MODEL to ONNX, verify it against the original and write it.

    The model is written only when verification passed (or with --force); a failed verification
    exits with status 1 and prints what differed.
    """
    from formats.onnx.convert import convert as convert_model

    axes = _parse_dynamic_axes(dynamic_axes)
    destination = output or default_output(model)
    result = convert_model(
        model,
        sample=sample,
        framework=framework,
        opset=opset,
        input_names=input_names or None,
        output_names=output_names or None,
        dynamic_axes=axes,
        model_class=model_class,
        keep_float64=keep_float64,
        exporter=exporter,
        verify=not no_verify,
        providers=providers or None,
        atol=atol,
        rtol=rtol,
    )
    from rich.markup import escape

    console = _console()
    used_exporter = result.source.get("exporter")
    console.print(
        f"[bold]{escape(str(model))}[/bold]: {result.framework}"
        + escape(f" ({used_exporter})" if used_exporter else "")
    )
    console.print(signature_table(result.signature))
    for note in result.notes:
        console.print(f"note: {note}", style="dim", markup=False)
    report = result.report
    if report is not None:
        console.print(report.render())
    passed = report is None or report.passed
    written: Path | None = None
    if _same_file(model, destination):
        console.print(
            f"{destination} is the input model: nothing written (use -o for a copy)", markup=False
        )
    elif passed or force:
        written = result.save(destination)
        extra = " despite the failed verification (--force)" if not passed else ""
        console.print(f"wrote {written}{extra}", markup=False)
    else:
        console.print(
            "[red]not written[/red]: verification failed (--force writes "
            f"{escape(str(destination))} anyway)"
        )
    if report_json is not None:
        _write_json(
            report_json,
            {
                "model": str(model),
                "framework": result.framework,
                "output": str(written) if written else None,
                "signature": result.signature.to_dict(),
                "source": result.source,
                "notes": result.notes,
                "verification": report.to_dict() if report is not None else None,
            },
        )
    if not passed:
        sys.exit(1)


@click.command()
@click.argument("model", type=_path)
@click.option("--original", type=_path, help="The model MODEL was converted from.")
@_sample_option
@click.option("--framework", help="Framework of --original when it cannot be told from the file.")
@_class_option("Model class of --original for state dicts and checkpoints.")
@_providers_option
@click.option("--atol", type=float, help="Absolute tolerance.")
@click.option("--rtol", type=float, help="Relative tolerance.")
@click.option("--json", "json_path", type=_file, help="Write the report as JSON ('-': stdout).")
def verify(
    model: Path,
    original: Path | None,
    sample: Path | None,
    framework: str | None,
    model_class: str | None,
    providers: tuple[str, ...],
    atol: float | None,
    rtol: float | None,
    json_path: Path | None,
) -> None:
    """Check an ONNX MODEL and compare it with its --original; exit 1 if anything failed."""
    from formats.onnx.verify import verify as verify_model

    report = verify_model(
        model,
        original,
        sample,
        framework=framework,
        model_class=model_class,
        providers=providers or None,
        atol=atol,
        rtol=rtol,
    )
    if json_path is not None and str(json_path) == "-":
        _write_json(json_path, report.to_dict())  # stdout is the JSON: no table around it
    else:
        _console().print(report.render())
        if json_path is not None:
            _write_json(json_path, report.to_dict())
    if not report.passed:
        sys.exit(1)


@click.command()
@click.argument("model", type=_path)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def inspect(model: Path, as_json: bool) -> None:
    """Summarize an ONNX model: signature, opsets, producer, operators, parameters."""
    from formats.onnx.inspect import inspect as inspect_model

    summary = inspect_model(model)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        _console().print(summary.render())


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def providers(as_json: bool) -> None:
    """List ONNX Runtime's execution providers and which of them can run here."""
    import onnxruntime

    from formats.onnx.runtime.providers import all_providers, available_providers

    every, here = all_providers(), available_providers()
    if as_json:
        click.echo(
            json.dumps(
                {"onnxruntime": onnxruntime.__version__, "all": every, "available": here},
                indent=2,
            )
        )
        return
    from rich.table import Table

    table = Table(
        title=f"ONNX Runtime {onnxruntime.__version__} execution providers",
        title_justify="left",
        show_edge=False,
    )
    table.add_column("provider")
    table.add_column("available here")
    for name in sorted(every, key=lambda n: (n not in here, n)):
        table.add_row(name, "[green]yes[/green]" if name in here else "no")
    _console().print(table)


@click.command()
@click.argument("model")
@click.option("--port", type=int, default=None, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--no-browser", is_flag=True, help="Do not open a browser (headless use).")
def view(model: str, port: int | None, no_browser: bool) -> None:
    """Open MODEL (a model file, or a bundle directory's model.onnx) in Netron on 127.0.0.1.

    Serves until Ctrl-C.
    """
    from formats.onnx.view import ViewServer
    from formats.onnx.view import view as view_model

    def ready(server: ViewServer) -> None:
        click.echo(f"Netron is showing {server.label} at {server.url}  (Ctrl-C to stop)")

    view_model(model, port=port, browse=not no_browser, on_ready=ready)


COMMANDS: list[click.Command] = [convert, verify, inspect, providers, view]
