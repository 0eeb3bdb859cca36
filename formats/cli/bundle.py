"""``python -m formats save | parity``: bundles from the command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

__all__ = ["COMMANDS"]

_ALL = "pickle,skops,pmml,onnx"


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    tags = {}
    for value in values:
        key, sep, val = value.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="--tag")
        tags[key] = val
    return tags


@click.command()
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--sample",
    required=True,
    type=click.Path(path_type=Path),
    help="Parquet of the training features (their columns and dtypes become the input schema).",
)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="Bundle dir.")
@click.option("--formats", "fmts", default=_ALL, show_default=True, help="Formats to save.")
@click.option("--name", help="Model name (default: the output directory's name).")
@click.option("--version", "model_version", default="1", show_default=True)
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag (repeat).")
@click.option("--description", default="")
@click.option(
    "--onnx-precision",
    type=click.Choice(["auto", "float32", "float64"]),
    default="auto",
    show_default=True,
    help="auto: float32 unless it flips a label of the sample, then float64.",
)
@click.option(
    "--onnx-trees",
    type=click.Choice(["auto", "matmul", "ensemble"]),
    default="auto",
    show_default=True,
    help="Tree ensembles as matrix products (faster for small trees) or as ai.onnx.ml trees.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle.")
def save(
    model: Path,
    sample: Path,
    output: Path,
    fmts: str,
    name: str | None,
    model_version: str,
    tags: tuple[str, ...],
    description: str,
    onnx_precision: str,
    onnx_trees: str,
    overwrite: bool,
) -> None:
    """Save the fitted pipeline in MODEL (a pickle or joblib file) as a bundle.

    Loading MODEL runs the code it contains: only pass a file you trust.
    """
    from formats.parity import read_data
    from formats.render import print_saved
    from formats.save import save as save_bundle
    from formats.sklearn_formats import load_pickle

    try:
        data = model.read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {model}: {exc.strerror}", param_hint="MODEL") from None
    bundle = save_bundle(
        load_pickle(data),
        output,
        sample=read_data(sample),
        formats=_split(fmts),
        name=name,
        version=model_version,
        tags=_tags(tags),
        description=description,
        onnx_precision=onnx_precision,
        onnx_trees=onnx_trees,
        overwrite=overwrite,
    )
    print_saved(bundle)


@click.command()
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), help="Parquet of held-out rows.")
@click.option("--formats", "fmts", help="Only these formats (comma-separated).")
@click.option("--rows", type=int, help="Compare the first ROWS rows only.")
@click.option("--labels", type=float, help="Share of labels that must agree (default 1.0).")
@click.option("--atol", type=float, help="Absolute tolerance of probabilities/predictions.")
@click.option("--rtol", type=float, help="Relative tolerance.")
@click.option("--json", "json_path", help="Write the report as JSON ('-': stdout only).")
def parity(
    bundle: Path,
    data: Path | None,
    fmts: str | None,
    rows: int | None,
    labels: float | None,
    atol: float | None,
    rtol: float | None,
    json_path: str | None,
) -> None:
    """Score BUNDLE's every format and engine and compare each with the original model.

    Exits 1 when a saved format disagrees beyond the tolerance.
    """
    from dataclasses import replace

    from formats.bundle import Bundle
    from formats.parity import parity as run_parity
    from formats.render import console, parity_table

    opened = Bundle.open(bundle)
    tol = opened.manifest.tolerance
    overrides = {"labels": labels, "atol": atol, "rtol": rtol}
    tol = replace(tol, **{k: v for k, v in overrides.items() if v is not None})
    report = run_parity(
        opened, data, formats=_split(fmts) if fmts else None, tolerance=tol, rows=rows
    )
    text = json.dumps(report.to_dict(), indent=2, default=str) + "\n"
    if json_path == "-":
        click.echo(text, nl=False)
    else:
        console().print(parity_table(report))
        if json_path:
            Path(json_path).write_text(text)
    if not report.passed:
        sys.exit(1)


COMMANDS = [save, parity]
