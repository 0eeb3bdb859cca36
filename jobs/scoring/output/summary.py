"""The score job's run summary: data (``to_dict``), a rich table, and a JSON file.

The JSON goes inside the output directory as ``_modelport_summary.json``. Inside, because it
travels and disappears with the output it describes (an ``overwrite`` run that fails part-way
has already deleted the old one with the old data, so a stale summary can never sit beside a
new, partial output, as a sibling ``OUT.summary.json`` could). The leading underscore makes
Spark and pyarrow skip it when reading the output as Parquet, like ``_SUCCESS``. It is written
only after the write succeeded, atomically (temp file, rename), and an ``append`` run
removes the previous one before its files join the output: at the commit of the workers'
writer, which adds nothing when a task fails; before Spark's writer starts, which commits
inside one call.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from formats._files import pyarrow_filesystem
from jobs.scoring.checks import local_path

__all__ = ["SUMMARY_NAME", "RunSummary", "location", "remove_summary", "render", "write_summary"]

SUMMARY_NAME = "_modelport_summary.json"


@dataclass(frozen=True)
class RunSummary:
    bundle: str
    model_name: str
    model_version: str
    model_sha256: str
    input: str
    output: str
    mode: str
    rows_in: int
    rows_scored: int
    rows_invalid: int  # rows the model could not take (jobs.scoring.rules); 0 when on_invalid = fail
    invalid_reasons: dict[str, int]  # rows_invalid by the rule each broke first: {"year: null": 3}
    on_invalid: str  # what happened to them: fail | null | quarantine
    quarantine: str | None  # where on_invalid = quarantine wrote them
    seconds: float
    rows_per_second: float
    provider: str  # what ONNX Runtime really ran on the executors (session.get_providers()[0])
    worker_processes: int
    ort_sessions: int
    # how string columns reached the model: "int32 codes (island, sex)" (made in the JVM,
    # formats.onnx.string_codes), "strings (why not codes)", "" when the model takes none
    string_inputs: str
    # how the batches sent to the workers were sized (jobs.scoring.output.batches): by rows alone,
    # Spark's per-row size check skipped, or by Spark's byte limit and why
    arrow_batches: str
    # who wrote the Parquet (jobs.scoring.output.arrow): pyarrow in the workers, or Spark's writer and why
    writer: str
    parity: dict[str, Any] | None
    finished: str
    # from the start of the process the user launched (spark-submit's JVM) to the commit, and
    # that time by phase (jobs.scoring.clock); ``seconds`` above is the score-and-write phase
    wall_seconds: float | None = None
    phases: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def render(summary: RunSummary) -> Any:
    from rich.table import Table

    table = Table(title="modelport score", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    rows = [
        ("model", f"{summary.model_name} {summary.model_version}"),
        ("sha256", summary.model_sha256[:16]),
        ("input", summary.input),
        ("output", f"{summary.output} ({summary.mode})"),
        ("rows in", f"{summary.rows_in:,}"),
        ("rows scored", f"{summary.rows_scored:,}"),
        ("rows invalid", _invalid_text(summary)),
        ("seconds", _seconds_text(summary)),
        ("rows/s", f"{summary.rows_per_second:,.0f}"),
        ("provider", summary.provider),
        ("ORT sessions", f"{summary.ort_sessions} in {summary.worker_processes} worker(s)"),
    ]
    if summary.string_inputs:
        rows.append(("string inputs", summary.string_inputs))
    rows.append(("Arrow batches", summary.arrow_batches))
    rows.append(("writer", summary.writer))
    if summary.parity is not None:
        rows.append(("parity gate", _parity_text(summary.parity)))
    for what, value in rows:
        table.add_row(what, value)
    return table


def _seconds_text(summary: RunSummary) -> str:
    if summary.wall_seconds is None:
        return f"{summary.seconds:.2f} scoring and writing"
    phases = ", ".join(f"{name} {s:.1f}" for name, s in summary.phases.items())
    return f"{summary.wall_seconds:.1f} in all ({phases})"


def _invalid_text(summary: RunSummary) -> str:
    if not summary.rows_invalid:
        return f"0 (on_invalid = {summary.on_invalid})"
    where = {"null": "scored as null", "quarantine": f"in {summary.quarantine}"}
    reasons = ", ".join(f"{key} {n:,}" for key, n in sorted(summary.invalid_reasons.items()))
    return f"{summary.rows_invalid:,} {where.get(summary.on_invalid, '')}: {reasons}"


def _parity_text(parity: dict[str, Any]) -> str:
    agreement = parity.get("label_agreement")
    labels = f", labels {agreement:.2%}" if agreement is not None else ""
    return f"passed on {parity['rows']} rows{labels}, max |diff| {parity['max_abs']:.2e}"


def location(output: str) -> str:
    """Where the summary of a run into ``output`` is written."""
    local = local_path(output)
    return str(local / SUMMARY_NAME) if local is not None else f"{output.rstrip('/')}/{SUMMARY_NAME}"


def write_summary(summary: RunSummary, output: str) -> str:
    """Write the summary into ``output``; returns where."""
    text = json.dumps(summary.to_dict(), indent=2) + "\n"
    local = local_path(output)
    if local is not None:
        target = local / SUMMARY_NAME
        fd, tmp = tempfile.mkstemp(prefix=".summary.", dir=local)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, target)
        return location(output)
    filesystem, root = pyarrow_filesystem(output)
    path = f"{root.rstrip('/')}/{SUMMARY_NAME}"
    with filesystem.open_output_stream(path) as fh:  # object stores: a write is all or nothing
        fh.write(text.encode())
    return location(output)


def remove_summary(output: str) -> None:
    """Before an append: the old summary must not describe the new, maybe partial, output."""
    local = local_path(output)
    if local is not None:
        (local / SUMMARY_NAME).unlink(missing_ok=True)
        return
    try:
        filesystem, root = pyarrow_filesystem(output)
        filesystem.delete_file(f"{root.rstrip('/')}/{SUMMARY_NAME}")
    except (OSError, ValueError):  # absent, or a filesystem pyarrow cannot open: nothing to do
        pass
