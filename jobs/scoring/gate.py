"""The parity gate: a sample of the real input's valid rows scored by model.onnx and by the
bundle's pickle (the fitted original) before a run scores anything; a run whose formats
disagree stops there (exit 1).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from formats.errors import UsageError, VerificationFailedError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from formats.parity import ParityReport
    from jobs.scoring.model import LoadedModel
    from jobs.scoring.settings import Settings

__all__ = ["gate_rows", "parity_gate", "parity_summary"]


def gate_rows(
    df: DataFrame, source: DataFrame, location: str, model: LoadedModel, rows: int
) -> DataFrame:
    """The rows the gate samples from, under the model's column names: for a local input, the
    model's columns of the first rows of its files, read by pyarrow into a DataFrame of the
    same Spark types (no Spark job scans the files for a sample); else ``source`` (the plan's
    input). ``df`` is the input as Spark reads it, whose names the files hold; anything this
    path cannot reproduce exactly (a missing column, a type Arrow does not cast to Spark's)
    falls back to ``source``."""
    from jobs.scoring.checks import arrow_dataset, local_path
    from jobs.scoring.plan import case_sensitive, find_column, model_names

    if local_path(location) is None or not model.spec.columns:
        return source
    spark = df.sparkSession
    exact = case_sensitive(spark)
    found = [find_column(df.columns, c.name, exact) for c in model.spec.columns]
    if any(f is None for f in found):
        return source  # the plan's own check says which column is missing
    from pyspark.sql.types import StructType

    schema = StructType([df.schema[f] for f in found if f is not None])
    try:
        # room for invalid rows: the gate compares valid ones
        head = arrow_dataset(location).head(rows * 4, columns=schema.fieldNames())
        local = spark.createDataFrame(head, schema=schema)
    except Exception:  # pyarrow's or Spark's conversion errors: Spark reads the sample itself
        return source
    return model_names(local, model.spec, exact)


def parity_gate(df: DataFrame, model: LoadedModel, settings: Settings) -> ParityReport | None:
    """Score a sample of the real input with model.onnx and the pickle; refuse if they differ."""
    import pandas as pd

    import formats
    from formats.schema import missing_as_fitted
    from jobs.scoring.plan import column

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
    # Spark has one null: the original takes it in the form training held, as model.onnx does
    sample = missing_as_fitted(sample, model.bundle.manifest.inputs, one_null=True)
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


def parity_summary(report: ParityReport | None) -> dict[str, Any] | None:
    if report is None:
        return None
    r = report.results[0]
    return {
        "rows": report.rows,
        "label_agreement": r.label_agreement,
        "max_abs": max((d.max_abs for d in r.outputs), default=0.0),
    }
