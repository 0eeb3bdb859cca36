"""Where a run's rows go: the writer chosen for the output (:func:`choose_writer`), the one
call that writes a plan (:func:`write`), the append check, and the quarantine.

Two writers, one commit rule: the workers' writer (:mod:`.arrow`, pyarrow in the Python
workers, committed by the driver) for local outputs, Spark's writer (Hadoop's filesystems and
committers) for the others; either way the output is complete or as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from formats.errors import InputError, UsageError
from jobs.scoring.checks import local_path
from jobs.scoring.output.arrow import CODEC_CONF, CODECS, MAX_ROWS_CONF, ArrowSink
from jobs.scoring.output.batches import skipping_size_check
from jobs.scoring.output.summary import remove_summary

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

    from jobs.scoring.model import ModelSpec
    from jobs.scoring.settings import Settings
    from jobs.scoring.transform import Plan

__all__ = ["Writer", "check_append", "choose", "choose_writer", "write", "write_quarantine"]


@dataclass(frozen=True)
class Writer:
    """The writer of one run's output: ``sink`` for the workers' writer, None for Spark's;
    ``why`` says which and why, for the run summary."""

    sink: ArrowSink | None
    why: str


def choose_writer(
    setting: str, output: str, partition_by: Sequence[str], codec: str, connect: bool = False
) -> tuple[str, str]:
    """("arrow" or "spark", why): ``output.writer`` resolved for this output. ``arrow`` asked
    for where it cannot write is a usage error (exit 2) before anything runs. On Spark Connect
    the driver that commits is this client, which may not see the executors' files: ``auto``
    leaves that to Spark's writer, ``arrow`` says they share a filesystem (the commit checks)."""
    why_not = ""
    if local_path(output) is None:
        why_not = f"output {output!r} is not a local path (Hadoop's filesystems write it)"
    elif partition_by:
        why_not = "output.partition_by is set"
    elif codec.lower() not in CODECS:
        why_not = f"{CODEC_CONF} is {codec!r}, which pyarrow does not write"
    if setting == "spark":
        return "spark", "Spark's writer (output.writer = spark)"
    if setting == "arrow" and why_not:
        raise UsageError(f"output.writer = arrow cannot write this run: {why_not}; "
                         "use output.writer = spark or auto")  # fmt: skip
    if setting == "auto" and connect and not why_not:
        why_not = "a Spark Connect client, which may not see the executors' files"
    if why_not:
        return "spark", f"Spark's writer ({why_not})"
    return "arrow", "pyarrow in the Python workers, one file per task, committed by the driver"


def choose(spark: Any, settings: Settings) -> Writer:
    """The writer of ``settings``' output in this session."""
    from jobs.scoring.session import is_connect

    out = settings.output
    codec = str(spark.conf.get(CODEC_CONF, "snappy")).lower()
    kind, why = choose_writer(out.writer, settings.job.output, out.partition_by, codec,
                              is_connect(spark))  # fmt: skip
    if kind == "spark":
        return Writer(None, why)
    max_rows = max(int(spark.conf.get(MAX_ROWS_CONF, "0")), 0)  # Spark refuses a non-number
    return Writer(ArrowSink(settings.job.output, out.mode, CODECS[codec], max_rows), why)


def check_append(spark: Any, output: str, written: StructType,
                 partition_by: Sequence[str] = ()) -> None:  # fmt: skip
    """An ``append`` writes the columns the output holds, typed the same, or nothing: Parquet
    readers take one file's schema, so another model's columns (a regressor's ``prediction``
    beside a classifier's ``label``, or ``error`` from on_invalid = null) would be invisible or
    null to them. Partition columns are compared by name: Spark infers their types."""
    from pyspark.errors import AnalysisException

    try:
        held = spark.read.parquet(output).schema
    except AnalysisException:  # no output yet, or none with data files
        return
    have = {f.name: f.dataType.simpleString() for f in held.fields}
    new = {f.name: f.dataType.simpleString() for f in written.fields}
    typed = [n for n in new if n in have and n not in partition_by and have[n] != new[n]]
    only_new, only_held = [n for n in new if n not in have], [n for n in have if n not in new]
    if not (typed or only_new or only_held):
        return
    parts = ([f"writes {only_new}, which it does not hold"] if only_new else []) + (
        [f"does not write {only_held}, which it holds"] if only_held else []) + [
        f"writes {n} as {new[n]}, not {have[n]}" for n in typed]  # fmt: skip
    raise InputError(
        f"appending to {output!r} would mix two schemas (Parquet readers take one file's): "
        f"this run {'; '.join(parts)}; write to another output, or set output.mode = overwrite"
    )


def write(plan: Plan, writer: Writer, output: str, mode: str,
          partition_by: Sequence[str] = ()) -> str:  # fmt: skip
    """``plan`` run and written to ``output``, committed by the workers' writer's sink or by
    Spark's writer. Spark's per-row Arrow batch size check is skipped where the batches cannot
    reach its limit (output.batches). Returns how the batches were sized, for the summary."""
    spark = plan.batches.sparkSession
    with skipping_size_check(spark, *plan.row_bytes) as batches:
        if writer.sink is not None:
            writer.sink.write(plan)
        else:
            if mode == "append":  # Spark's writer commits inside one call: before it starts
                remove_summary(output)
            frame = plan.frame().write.mode(mode)
            if partition_by:
                frame = frame.partitionBy(*partition_by)
            frame.parquet(output)
    return batches


def write_quarantine(df: DataFrame, spec: ModelSpec, settings: Settings) -> str | None:
    """With ``validation.on_invalid = quarantine``, ``df``'s invalid rows written beside the
    output with their reason; returns where (None in the other modes)."""
    from jobs.scoring.rules import quarantine_path, quarantined

    if settings.validation.on_invalid != "quarantine":
        return None
    where = quarantine_path(settings.job.output)
    quarantined(df, spec, settings).write.mode(settings.output.mode).parquet(where)
    return where
