"""``modelport optimize``: graph optimization and int8 quantization behind an accuracy gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelport.cli._options import repo_option
from modelport.errors import VerificationFailedError

if TYPE_CHECKING:
    from modelport.optimize import OptimizationReport

__all__ = ["COMMANDS", "optimize_command"]

_LEVELS = ("basic", "extended", "all")
_MODES = ("auto", "dynamic", "static")


@click.command("optimize")
@click.argument("ref")
@repo_option()
@click.option(
    "--level",
    type=click.Choice(_LEVELS),
    help="Offline graph optimization level ('all' is tied to this processor).",
)
@click.option(
    "--quantize",
    type=click.Choice(_MODES),
    is_flag=False,
    flag_value="auto",
    help="Int8 quantization; bare --quantize means auto (try all, keep the fastest that passes). "
    "The default when --level is not given either.",
)
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Inputs for static calibration (.npy .npz .csv .parquet .json .jsonl); default: generated "
    "around the version's input example.",
)
@click.option(
    "--eval",
    "eval_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Evaluation inputs for the gate; default: the calibration file, else generated inputs.",
)
@click.option(
    "--labels",
    help="True labels: a file, or the name of a column (or .npz key) of the evaluation data.",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    default=0.005,
    show_default=True,
    help="Budget as a fraction: accuracy lost with labels, share of changed predictions without.",
)
@click.option("--atol", type=float, help="Also bound every float output's max absolute error.")
@click.option(
    "--rtol",
    type=float,
    help="Relative error budget for models that are not classifiers (default 0.01).",
)
@click.option("--per-channel", is_flag=True, help="Quantize weights per output channel.")
@click.option(
    "--min-speedup",
    type=float,
    help="Mean speed-up over the float model needed to register (default: 1.0 with auto, "
    "none when a mode is named).",
)
@click.option("--dry-run", is_flag=True, help="Gate and measure, but register nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def optimize_command(
    ref: str,
    repo_dir: Path | None,
    level: str | None,
    quantize: str | None,
    calibration: Path | None,
    eval_path: Path | None,
    labels: str | None,
    max_accuracy_drop: float,
    atol: float | None,
    rtol: float | None,
    per_channel: bool,
    min_speedup: float | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Optimize model version REF and register the result only if it passes the gate.

    Exits 1 with the report, registering nothing, when no candidate stays within the budget.
    """
    from modelport.optimize import optimize
    from modelport.repository import Repository

    with Repository(repo_dir, create=False) as repo:
        try:
            report = optimize(
                repo,
                ref,
                level=level,
                quantize=quantize,
                calibration=calibration,
                eval_data=eval_path,
                labels=labels,
                max_accuracy_drop=max_accuracy_drop,
                atol=atol,
                rtol=rtol,
                per_channel=per_channel,
                register=not dry_run,
                min_speedup=min_speedup,
            )
        except VerificationFailedError as exc:
            if exc.report is not None:
                _show(exc.report, as_json)
            raise
    _show(report, as_json)


def _show(report: OptimizationReport, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
        return
    from rich.console import Console

    Console().print(report.render())


COMMANDS: list[click.Command] = [optimize_command]
