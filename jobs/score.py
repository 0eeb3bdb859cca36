"""Score Parquet with a bundle's ONNX model on Spark: the project's main job.

    spark-submit --properties-file conf/spark/local.conf jobs/score.py \\
        --conf conf/local.toml --bundle B --input IN --output OUT [--set key=value ...]
    python -m jobs.score --conf conf/local.toml --bundle B --input IN --output OUT

Reads the bundle (sha256 checked) and checks the input and output paths, Java and the master
(:mod:`jobs._preflight`) before Spark starts, the input's schema against the model before any
task runs, then runs the parity gate (a sample of valid rows scored by model.onnx and by the
bundle's pickle), scores (:func:`jobs._udf.score`; invalid rows per validation.on_invalid,
:mod:`jobs._validate`), writes Parquet (by the Python workers where :mod:`jobs._arrow_writer`
can, else Spark's writer; and ``<output>_quarantine``), and prints and writes the
run summary (:mod:`jobs._summary`). Every failure a
user can cause is one ``error: ...`` line on stderr: exit 2, or 1 for a failed parity gate.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn

from formats import errors
from formats.errors import InputError, ModelportError, UsageError, VerificationFailedError
from jobs._arrow_writer import check_output

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from formats.parity import ParityReport
    from jobs._model import LoadedModel
    from jobs._settings import Settings

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, through the one error path
        raise UsageError(f"{message} (see --help)")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="jobs/score.py", description="Score Parquet with a bundle's ONNX model.")
    p.add_argument("--conf", help="job settings (TOML); default conf/local.toml")
    p.add_argument("--bundle", help="the bundle directory (job.bundle)")
    p.add_argument("--input", help="input Parquet file or directory (job.input)")
    p.add_argument("--output", help="output Parquet directory (job.output)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a setting, e.g. --set output.mode=overwrite (repeatable)",
    )  # fmt: skip
    return p


def main(argv: Sequence[str] | None = None) -> int:
    return guarded(_run, argv)


def guarded(run: Callable[[list[str]], int], argv: Sequence[str] | None) -> int:
    """``run(argv)`` as an entry point: our errors and the Spark errors :func:`spark_error`
    knows become one line on stderr and their exit code (2 for bad input)."""
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except ModelportError as exc:
        return _fail(exc)
    except Exception as exc:
        translated = spark_error(exc)
        if translated is None:
            raise  # a bug of ours: its traceback is the report
        return _fail(translated)


def _fail(exc: ModelportError) -> int:
    print(f"error: {exc}", file=sys.stderr)
    return exc.exit_code


_OURS = {name: getattr(errors, name) for name in errors.__all__}
_LINE = re.compile(r"^\s*(?:[\w.]+\.)?(\w+Error): (.+)$")
_CLASS = re.compile(r"\[([A-Z][A-Z0-9_.]+)\] (.+?)(?: SQLSTATE: \w+)?\s*$")


def spark_error(exc: BaseException) -> ModelportError | None:
    """A Spark or Py4J failure as one of our one-line errors; None if it is not one."""
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException

    if not isinstance(exc, PySparkException | Py4JError):
        return None
    lines = [line for line in str(exc).splitlines() if line.strip()]
    for line in reversed(lines):  # ours, raised in a Python worker: its class and message
        match = _LINE.match(line)
        if match and match.group(1) in _OURS:
            cls = _OURS[match.group(1)]
            return cls(match.group(2)) if cls is not VerificationFailedError else cls(line)
    for line in lines:  # Spark's error classes: "[PATH_NOT_FOUND] Path does not exist: ..."
        match = _CLASS.search(line)
        if match and match.group(1) == "USER_RAISED_EXCEPTION":  # ours: jobs._validate
            return InputError(match.group(2).strip())
        if match:
            detail = _read_fix(match.group(1), match.group(2).strip(), lines)
            return InputError(f"spark: [{match.group(1)}] {detail}")
    useful = [ln.strip(" :") for ln in lines if not ln.startswith("An error occurred while")]
    return ModelportError(f"spark: {useful[0] if useful else type(exc).__name__}"[:500])


_CAUSE = re.compile(r"^Caused by: [\w.$]+: (.+)$")


def _read_fix(error_class: str, detail: str, lines: Sequence[str]) -> str:
    """For a file Spark could not read (on a cluster filesystem, which the driver does not
    check beforehand): the cause Spark nests under its class ("is not a Parquet file") and
    what to do."""
    if not error_class.startswith("FAILED_READ_FILE"):
        return detail
    if error_class.endswith("DATA_TYPE_MISMATCH"):
        return (f"{detail.rstrip('.')}; the input's files disagree on that column's type: "
                "rewrite them with one type, or score them apart")  # fmt: skip
    cause = next((m.group(1).strip() for m in map(_CAUSE.match, lines) if m), "")
    return f"{detail.rstrip('.')}{': ' + cause if cause else ''}; remove or replace that file"


def _run(argv: list[str]) -> int:
    from jobs._settings import load_settings

    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    flags = {"job.bundle": args.bundle, "job.input": args.input, "job.output": args.output}
    settings = load_settings(args.conf, args.set, flags)
    for key, flag in (("bundle", "--bundle"), ("input", "--input"), ("output", "--output")):
        if not getattr(settings.job, key):
            raise UsageError(f"no {key}: pass {flag} (or set job.{key} in the conf)")
    from jobs._model import load_model

    model = load_model(settings.job.bundle)  # before Spark starts: a bad bundle fails fast
    check_input(settings.job.input, [c.name for c in model.spec.columns])
    check_output(settings.job.output, settings.output.mode)
    from jobs._preflight import check_writable, preflight
    from jobs._validate import quarantine_path

    outputs = [settings.job.output]
    if settings.validation.on_invalid == "quarantine":
        outputs.append(quarantine_path(settings.job.output))
        check_output(outputs[-1], settings.output.mode)
    for location in outputs:
        check_writable(location)
    preflight(settings)  # Java and the master, before a JVM starts
    from jobs._session import build_session

    built = build_session(settings)
    try:
        return _score(built.spark, model, settings)
    finally:
        if built.created:
            built.spark.stop()


def _score(spark: Any, model: LoadedModel, settings: Settings) -> int:
    from rich.console import Console

    from jobs import _summary
    from jobs._arrow_batches import skipping_size_check
    from jobs._arrow_writer import arrow_sink, check_append, write_scored, written_schema
    from jobs._inputs import check_not_input
    from jobs._model import case_sensitive, check_partitioning, model_names
    from jobs._udf import ScoreMetrics, score
    from jobs._validate import quarantine_path, quarantined, valid_rows

    job, out = settings.job, settings.output
    # ISLAND is island, as in Spark
    df = model_names(spark.read.parquet(job.input), model.spec, case_sensitive(spark))
    if out.mode == "overwrite":  # Spark's writer would delete the input before reading it
        kept = settings.validation.on_invalid == "quarantine"
        check_not_input(spark, {"the input": job.input, "the bundle": model.bundle.location},
                        [job.output, *[quarantine_path(job.output)] * kept])  # fmt: skip
    metrics = ScoreMetrics()
    sink, wrote_by = arrow_sink(spark, settings)  # arrow asked for where it cannot: exit 2
    scored = score(df, model, settings, metrics, sink)  # checks the schema: before any task runs
    if sink is None:
        check_partitioning(out.partition_by, scored.columns)
    if out.mode == "append":
        check_append(spark, job.output, written_schema(scored, sink), out.partition_by)
    if not job.allow_empty_input and df.isEmpty():  # an upstream step most likely failed
        raise InputError(f"input {job.input!r} has no rows; nothing to score (set "
                         "job.allow_empty_input = true to write an empty output)")  # fmt: skip
    report = parity_gate(valid_rows(df, model.spec, settings), model, settings)
    if out.mode == "append" and sink is None:  # the workers' writer: at its commit
        _summary.remove_summary(job.output)
    quarantine = None
    if settings.validation.on_invalid == "quarantine":
        # first: a run whose quarantine cannot be written must not leave a complete output
        quarantine = quarantine_path(job.output)
        quarantined(df, model.spec, settings).write.mode(out.mode).parquet(quarantine)
    start = time.perf_counter()
    with skipping_size_check(spark, *metrics.row_bytes) as batches:
        write_scored(scored, sink, job.output, out.mode, out.partition_by)
    seconds = time.perf_counter() - start
    got = metrics.result()
    spec = model.spec
    summary = _summary.RunSummary(
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
        string_inputs=got["string_inputs"],
        arrow_batches=batches,
        writer=wrote_by,
        parity=_parity_dict(report),
        finished=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    where = _summary.write_summary(summary, job.output)  # only now: the write succeeded
    console = Console()
    console.print(_summary.render(summary))
    console.print(f"summary: {where}")
    return 0


def check_input(location: str, columns: Sequence[str] = ()) -> None:
    """A local input (a path or a Hadoop glob pattern) must exist and hold data files, each
    of them Parquet, and agree on whether the model's ``columns`` hold strings or numbers."""
    from jobs._inputs import check_footers, data_files, is_glob, matches

    roots = matches(location)
    if roots is None:
        return
    if not roots and is_glob(location):
        raise InputError(f"input {location!r} matches nothing; check the pattern")
    if not roots:
        raise InputError(f"input {location!r} does not exist; pass a Parquet file or directory")
    files = data_files(roots)
    if not files:
        raise InputError(f"input {location!r} holds no data files; it is empty")
    check_footers(location, files, columns)


def parity_gate(df: DataFrame, model: LoadedModel, settings: Settings) -> ParityReport | None:
    """Score a sample of the real input with model.onnx and the pickle; refuse if they differ."""
    import pandas as pd

    import formats
    from jobs._model import column

    if not settings.job.parity_gate:
        return None
    if "pickle" not in model.bundle.manifest.saved_formats():
        raise UsageError(
            f"the parity gate compares model.onnx with the bundle's pickle and "
            f"{model.bundle.location!r} has none; set job.parity_gate = false to score without"
        )
    names = [c.name for c in model.spec.columns]
    with warnings.catch_warnings():
        # pyspark warns, in many lines, before re-raising a read error that becomes one line
        warnings.filterwarnings("ignore", "toPandas attempted Arrow optimization", UserWarning)
        sample: pd.DataFrame = (
            df.select(*[column(n) for n in names]).limit(settings.job.parity_rows).toPandas()
        )
    if sample.empty:
        return None
    report = formats.parity(model.bundle, sample, formats=["onnx"])
    if not report.passed:
        raise VerificationFailedError(_parity_failure(report), report)
    codes = model.codes_for(df.schema, settings.execution.string_codes)
    # the job broadcasts model.onnx rewritten (formats.onnx.string_codes, label_index): the
    # same scores by construction, checked here on the same sample
    differs = model.broadcast_disagrees(codes, sample)
    if differs:
        fix = (
            "set execution.string_codes = false to score with strings"
            if not isinstance(codes, str)
            else "a modelport bug: please report it with the bundle"
        )
        raise VerificationFailedError(
            f"parity gate failed: model.onnx as saved and as the job runs it ({differs}) "
            f"disagree; {fix}",
            report,
        )
    return report


def _parity_failure(report: ParityReport) -> str:
    r = report.results[0]
    tol = report.tolerance
    if r.status == "error":
        return f"parity gate: model.onnx could not score the sample: {r.reason}"
    parts = []
    if r.label_agreement is not None:
        parts.append(f"labels agree on {r.label_agreement:.2%} (need {tol.labels:.2%})")
    parts += [
        f"{d.column} max |diff| {d.max_abs:.3g} on {d.rows_over} row(s)"
        for d in r.outputs
        if not d.passed
    ]
    return (
        f"parity gate failed: model.onnx and the pickle disagree on {r.rows_disagree} of "
        f"{report.rows} sample rows: {'; '.join(parts)} (tolerance atol {tol.atol:g}, rtol "
        f"{tol.rtol:g}); not scoring (job.parity_gate = false skips the gate)"
    )


def _parity_dict(report: ParityReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    r = report.results[0]
    return {
        "rows": report.rows,
        "label_agreement": r.label_agreement,
        "max_abs": max((d.max_abs for d in r.outputs), default=0.0),
    }


if __name__ == "__main__":
    sys.exit(main())
