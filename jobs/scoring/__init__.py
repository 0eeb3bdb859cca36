"""The scoring library: a bundle's ONNX model over a Parquet input on Spark, in one call.

:func:`run` is a whole run inside a session: the input checks that need Spark, the parity
gate, the scoring plan, the write and its commit, the quarantine and the run summary.
:func:`run_job` is what ``spark-submit jobs/score.py`` does: the checks that need no JVM
(:func:`check`), the session from the settings, :func:`run`, the session stopped.
The job, the benchmark's ``job`` peer and the comparison's ONNX engine all call :func:`run`.
This package imports no benchmark, comparison or cluster code.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from formats.errors import InputError, UsageError
from jobs.scoring.clock import Phases
from jobs.scoring.model import LoadedModel, load_model
from jobs.scoring.output.summary import RunSummary
from jobs.scoring.settings import Settings, load_settings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["Checked", "LoadedModel", "RunSummary", "Settings", "check", "load_model", "load_settings",
           "outputs", "run", "run_job"]  # fmt: skip


def outputs(settings: Settings) -> list[str]:
    """Where a run writes rows: the output, and beside it the quarantine when there is one."""
    from jobs.scoring.rules import quarantine_path

    where = [settings.job.output]
    if settings.validation.on_invalid == "quarantine":
        where.append(quarantine_path(settings.job.output))
    return where


@dataclass(frozen=True)
class Checked:
    """What :func:`check` found before Spark starts, for :func:`run`."""

    model: LoadedModel
    input_rows: int | None  # the rows of a local input's files (None: a cluster filesystem's)


def check(settings: Settings) -> Checked:
    """The checks that need no JVM, so that a mistake is one line within seconds: the settings
    name a bundle, an input and an output; the bundle (sha256 checked); the input's files
    (local paths: every footer read); the outputs (mode, writable); Java and the master.

    Returns
    -------
    Checked
        The bundle's model and the input's row count, for :func:`run`.

    Raises
    ------
    UsageError, InputError, IntegrityError
        One line each, before Spark starts.
    """
    from jobs.scoring.checks import check_input, check_output
    from jobs.scoring.preflight import check_writable, preflight

    for key in ("bundle", "input", "output"):
        if not getattr(settings.job, key):
            raise UsageError(f"no {key}: pass --{key} (or set job.{key} in the conf)")
    model = load_model(settings.job.bundle)
    rows = check_input(settings.job.input, [c.name for c in model.spec.columns])
    for location in outputs(settings):
        check_output(location, settings.output.mode)
        check_writable(location)
    preflight(settings)
    return Checked(model, rows)


def run(
    spark: SparkSession,
    settings: Settings,
    checked: Checked | None = None,
    phases: Phases | None = None,
) -> RunSummary:
    """Score ``settings.job.input`` into ``settings.job.output`` in ``spark``.

    Parameters
    ----------
    spark : the session (classic or Spark Connect).
    settings : :func:`load_settings`'s; ``job.bundle``, ``job.input`` and ``job.output`` set.
    checked : what :func:`check` found, when it ran: the model is not loaded again, and a
        local input's emptiness is read off its footers rather than by a Spark job.
    phases : the run's clock when it started before this call (:func:`run_job`'s); the
        summary's ``wall_seconds`` and ``phases`` then count from there.

    Returns
    -------
    RunSummary
        What ran, also written as ``_modelport_summary.json`` inside the output, only once
        the output is complete.

    Raises
    ------
    InputError, UsageError
        A bad input or setting, found on the driver before any task runs (one line).
    VerificationFailedError
        The parity gate found model.onnx and the pickle disagreeing on the input's sample.

    Examples
    --------
    >>> settings = load_settings(None, values={"job.bundle": bundle, "job.input": data,
    ...                                        "job.output": out})
    >>> summary = run(spark, settings)
    >>> summary.rows_scored == summary.rows_in
    True
    """
    from jobs.scoring import output
    from jobs.scoring.checks import check_not_input
    from jobs.scoring.gate import gate_rows, parity_gate, parity_summary
    from jobs.scoring.output.summary import write_summary
    from jobs.scoring.plan import check_partitioning
    from jobs.scoring.rules import valid_rows
    from jobs.scoring.transform import ScoreMetrics, plan

    job, out = settings.job, settings.output
    clock = phases if phases is not None else Phases()
    model = checked.model if checked is not None else load_model(job.bundle)
    rows = checked.input_rows if checked is not None else None
    df = spark.read.parquet(job.input)
    if out.mode == "overwrite":  # Spark's writer would delete the input before reading it
        reads = {"the input": job.input, "the bundle": model.bundle.location}
        check_not_input(spark, reads, outputs(settings))
    writer = output.choose(spark, settings)  # arrow asked for where it cannot: exit 2
    metrics = ScoreMetrics()
    scoring = plan(df, model, settings, metrics)  # checks the schema: before any task runs
    if writer.sink is None:
        check_partitioning(out.partition_by, scoring.columns.fieldNames())
    if out.mode == "append":
        output.check_append(spark, job.output, scoring.columns, out.partition_by)
    empty = rows == 0 if rows is not None else scoring.source.isEmpty()
    if not job.allow_empty_input and empty:  # an upstream step most likely failed
        raise InputError(f"input {job.input!r} has no rows; nothing to score (set "
                         "job.allow_empty_input = true to write an empty output)")  # fmt: skip
    clock.mark("checks")
    report = None
    if job.parity_gate:
        sample = gate_rows(df, scoring.source, job.input, model, job.parity_rows)
        report = parity_gate(valid_rows(sample, model.spec, settings), model, settings)
    clock.mark("parity gate")
    # first: a run whose quarantine cannot be written must not leave a complete output
    quarantine = output.write_quarantine(scoring.source, model.spec, settings)
    if quarantine is not None:
        clock.mark("quarantine")
    batches = output.write(scoring, writer, job.output, out.mode, out.partition_by)
    seconds = clock.mark("score and write")
    got = metrics.result()
    spec = model.spec
    summary = RunSummary(
        bundle=model.bundle.location,
        model_name=spec.name,
        model_version=spec.version,
        model_sha256=spec.sha256,
        input=job.input,
        output=job.output,
        mode=out.mode,
        rows_in=got["rows_in"],
        rows_scored=got["rows_scored"],
        rows_invalid=got["rows_invalid"],
        invalid_reasons=got["invalid_reasons"],
        on_invalid=settings.validation.on_invalid,
        quarantine=quarantine,
        seconds=round(seconds, 3),
        rows_per_second=round(got["rows_scored"] / seconds, 1) if seconds > 0 else 0.0,
        provider=", ".join(got["providers"]) or "none (no rows)",
        worker_processes=got["worker_processes"],
        ort_sessions=got["ort_sessions"],
        string_inputs=scoring.strings,
        arrow_batches=batches,
        writer=writer.why,
        parity=parity_summary(report),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
        wall_seconds=round(sum(clock.seconds.values()), 3),
        phases=dict(clock.seconds),
    )
    write_summary(summary, job.output)  # only now: the write succeeded
    return summary


def _warm(model: LoadedModel, settings: Settings) -> None:
    """The Python work the run needs that no Spark call waits for: the gate's original
    unpickled once (which imports scikit-learn and its estimators' modules: the gate's own
    load is then quick) and the model with string codes. A failure here is left to the step
    that needs the thing to report it."""
    import contextlib

    import formats

    with contextlib.suppress(Exception):
        if settings.job.parity_gate and "pickle" in model.bundle.manifest.saved_formats():
            formats.load(model.bundle, "pickle")
        if settings.execution.string_codes:
            _ = model.string_codes


def run_job(settings: Settings, started: float | None = None) -> RunSummary:
    """:func:`check`, then :func:`run` in the session the settings describe (an active one is
    used and left running; one built here is stopped). ``started``: when the user's clock
    started (epoch seconds; :func:`jobs.scoring.clock.process_started` for an entry point),
    else now."""
    from jobs.scoring.session import build_session

    clock = Phases(since=started)
    clock.mark("start")  # the JVM of spark-submit, Python, the imports
    checked = check(settings)  # before Spark starts: a bad bundle or path fails fast
    clock.mark("checks before Spark")
    # the JVM builds the session while Python readies what the run needs of its own
    warming = threading.Thread(target=_warm, args=(checked.model, settings), daemon=True)
    warming.start()
    built = build_session(settings)
    warming.join()
    clock.mark("session")
    try:
        return run(built.spark, settings, checked, clock)
    finally:
        if built.created:
            built.spark.stop()

