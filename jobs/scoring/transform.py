"""The job's transform, built on the driver before any task runs: :func:`plan` checks the
input's schema against the model and returns a :class:`Plan` (what crosses to the workers, the
function they run, what the output holds); :func:`score` is that plan as a DataFrame.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from formats.errors import InputError
from formats.onnx.runtime import providers as _providers
from jobs.scoring.model import MODEL_COLUMNS, LoadedModel, ModelSpec, output_struct
from jobs.scoring.output.batches import row_bytes
from jobs.scoring.plan import (
    case_sensitive,
    find_column,
    input_alias,
    literal,
    model_names,
    passthrough_alias,
    passthrough_columns,
    plan_inputs,
    quoted,
    tabular_value,
)
from jobs.scoring.rules import (
    ERROR_COLUMN,
    RULE,
    Check,
    checks,
    invalid_count,
    reason_sql,
    sql,
    stop_on_invalid,
    with_rule,
)
from jobs.scoring.settings import Settings
from jobs.scoring.worker import PROVIDER, REASON, WORKER, ArrowTask

if TYPE_CHECKING:
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

__all__ = ["Plan", "ScoreMetrics", "plan", "score"]

TIME_ZONE_CONF = "spark.sql.session.timeZone"


class ScoreMetrics:
    """Spark Observations of a scoring run (they work on Spark Connect too, unlike
    accumulators); read :meth:`result` after the action that wrote the output."""

    def __init__(self) -> None:
        from pyspark.sql import Observation

        tag = uuid.uuid4().hex[:8]
        self.input = Observation(f"modelport_in_{tag}")
        self.output = Observation(f"modelport_out_{tag}")
        self.rules: list[str] = []  # the invalid-row rules counted, by their aggregate's index

    def observe_input(self, df: DataFrame, found: Sequence[Check]) -> DataFrame:
        """``df`` counting its rows and, per rule of ``found``, the rows that broke it first
        (aggregates of the same scan)."""
        self.rules = [c.key for c in found]
        counts = [invalid_count(key, f"invalid_{i}") for i, key in enumerate(self.rules)]
        return df.observe(self.input, sql("count(1) AS `rows`"), *counts)

    def observe_rows(self, scored: DataFrame, error: bool) -> DataFrame:
        """``scored`` (the scored rows) counting the rows the model scored (with ``error``,
        those whose error column is null), and collecting providers and workers."""
        scored_rows = f"{quoted(ERROR_COLUMN)} IS NULL" if error else "true"
        return scored.observe(
            self.output,
            sql(f"count(CASE WHEN {scored_rows} THEN 1 END) AS `rows`"),
            sql(f"collect_set({quoted(PROVIDER)}) AS providers"),
            sql(f"collect_set({quoted(WORKER)}) AS workers"),
        )

    def observe_tasks(self, results: DataFrame) -> DataFrame:
        """The same observation as :meth:`observe_rows` made of the workers' writer's one row
        per task (output.arrow), so :meth:`result` reads the same keys."""
        return results.observe(
            self.output,
            sql("coalesce(sum(scored), 0) AS `rows`"),
            sql("array_distinct(flatten(collect_list(providers))) AS providers"),
            sql("array_distinct(flatten(collect_list(workers))) AS workers"),
        )

    def result(self) -> dict[str, Any]:
        got_in, got_out = self.input.get, self.output.get
        reasons = {key: int(got_in.get(f"invalid_{i}") or 0) for i, key in enumerate(self.rules)}
        reasons = {key: n for key, n in reasons.items() if n}
        sessions: dict[str, int] = {}
        for tag in got_out.get("workers") or []:
            pid, _, count = str(tag).partition(":")
            sessions[pid] = max(sessions.get(pid, 0), int(count))
        return {
            "rows_in": int(got_in.get("rows") or 0),
            "rows_scored": int(got_out.get("rows") or 0),
            "rows_invalid": sum(reasons.values()),
            "invalid_reasons": reasons,
            "providers": sorted(got_out.get("providers") or []),
            "worker_processes": len(sessions),
            "ort_sessions": sum(sessions.values()),
        }


@dataclass(frozen=True)
class Plan:
    """One run's scoring, planned on the driver: the batches that cross to the workers, the
    function they run on them, and the columns the output holds. Nothing has run yet."""

    source: DataFrame  # the input, the model's columns under the model's names (Spark's rule)
    batches: DataFrame  # what crosses to Python: the model's inputs, pass-through[, reason]
    task: ArrowTask  # what mapInArrow runs on them
    literals: dict[str, str]  # constant columns after the scores (output.model_columns)
    row_id: str  # the id column kept ("" when the input has none)
    error: bool  # on_invalid = null: the output's error column says why a row is null
    strings: str  # how string columns reach the model, for the run summary
    # the most bytes a row of ``batches`` takes, or None and a column of variable width:
    # whether the write may skip Spark's per-row batch size check (output.batches)
    row_bytes: tuple[int | None, str]
    metrics: ScoreMetrics | None = field(default=None, compare=False)

    @property
    def columns(self) -> StructType:
        """The columns the output holds: pass-through, scores[, error], then the literals."""
        from pyspark.sql.types import StringType, StructField, StructType

        scored = [f for f in self.task.spark_schema.fields if f.name not in (PROVIDER, WORKER)]
        return StructType(scored + [StructField(n, StringType(), False) for n in self.literals])

    def frame(self) -> DataFrame:
        """The scored rows as a DataFrame (mapInArrow), for Spark's writer or the caller's own."""
        schema = self.task.spark_schema
        scored = self.batches.mapInArrow(self.task, schema)
        if self.metrics is not None:
            scored = self.metrics.observe_rows(scored, self.error)
        # one projection for the tags' drop and the literals: each DataFrame call is one more
        # analysis of the whole plan on the driver
        shown = [quoted(f.name) for f in schema.fields if f.name not in (PROVIDER, WORKER)]
        shown += [f"{literal(v)} AS {n}" for n, v in self.literals.items()]
        return scored.selectExpr(*shown)


def plan(
    df: DataFrame, model: LoadedModel, settings: Settings, metrics: ScoreMetrics | None = None
) -> Plan:
    """``df``'s scoring by ``model`` under ``settings``, checked before any task runs.

    Parameters
    ----------
    df : the input; its model columns are found as Spark finds names (case, unless
        spark.sql.caseSensitive).
    model : :func:`jobs.scoring.model.load_model`'s.
    settings : the job's settings (execution, output, tensor, validation).
    metrics : observations for the run summary (rows in and scored, invalid rows by rule,
        providers, sessions); None for none.

    Returns
    -------
    Plan

    Raises
    ------
    InputError
        A missing column, a type the model cannot take, a pass-through clash (one line).
    UsageError
        A setting this input cannot have (tensor.columns on a model of several inputs, CUDA
        asked for where the driver sees none).
    """
    import onnxruntime as ort
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StringType, StructField, StructType

    from jobs.scoring.session import master_of, share_bytes

    spark, e = df.sparkSession, settings.execution
    exact = case_sensitive(spark)
    df = model_names(df, model.spec, exact)
    spec, onnx_bytes, strings = _string_inputs(df, model, e.string_codes)
    on_invalid = settings.validation.on_invalid
    per_row = on_invalid != "fail"  # string columns for numeric inputs: cast per row
    inputs = plan_inputs(df.schema, spec, settings.tensor, per_row)
    keep = passthrough_columns(df.schema, spec, settings.output, exact)
    row_id = find_column(keep, settings.output.id_column, exact)
    if on_invalid == "null" and find_column(keep, ERROR_COLUMN, exact):
        raise InputError(
            f"pass-through column {ERROR_COLUMN!r} would collide with the {ERROR_COLUMN!r} "
            "column that validation.on_invalid = null adds; rename it in the input"
        )
    _providers.check_driver(
        e.provider, ort.get_available_providers(), master_of(spark), e.allow_cpu_fallback
    )
    found = checks(df.schema, spec, per_row)  # the invalid-row rules, as SQL text
    rule = quoted(RULE)
    if on_invalid == "fail":  # an invalid row fails its task, through the first input
        base, extra = df, []
        if found:
            first = tabular_value(
                df.schema[spec.columns[0].name], spec.onnx_dtypes[0], per_row,
                spec.codes[0] if spec.codes else None,
            )  # fmt: skip
            inputs[0] = f"{stop_on_invalid(found, row_id, first)} AS {input_alias(0)}"
    else:  # the reason and the counts read the row's first broken rule
        base, extra = with_rule(df, found), [rule]
        if on_invalid == "null":
            extra.append(f"{reason_sql(found)} AS {quoted(REASON)}")
    passed = [f"{quoted(c)} AS {passthrough_alias(i)}" for i, c in enumerate(keep)]
    selected = base.selectExpr(*inputs, *passed, *extra)
    if metrics is not None:
        # fail: a run that ends has no invalid row, so counting them by rule would only cost
        # an aggregate per rule and row
        selected = metrics.observe_input(selected, found if on_invalid != "fail" else [])
    if on_invalid == "quarantine":  # output.write_quarantine writes the others
        selected = selected.where(f"{rule} IS NULL")
    if on_invalid != "fail":
        selected = selected.drop(RULE)  # the batch: inputs, pass-through[, REASON]
    width, alias = row_bytes(selected.schema)
    names = {input_alias(i): n for i, n in enumerate(spec.input_names)}
    names |= {passthrough_alias(i): c for i, c in enumerate(keep)}
    names[REASON] = "the invalid-row reason"
    error = [StructField(ERROR_COLUMN, StringType())] if on_invalid == "null" else []
    schema = StructType(
        [df.schema[c] for c in keep]
        + output_struct(spec)
        + error
        + [StructField(PROVIDER, StringType()), StructField(WORKER, StringType())]
    )
    # Spark sends a timestamp column to Python in the session's time zone, and the scored batch
    # must give it back typed the same (pyspark's to_arrow_schema refuses one without a zone)
    zone = str(spark.conf.get(TIME_ZONE_CONF))
    task = ArrowTask(
        spec, share_bytes(spark, onnx_bytes), e,
        to_arrow_schema(schema, timezone=zone), len(keep), with_error=bool(error),
        spark_schema=schema,
    )  # fmt: skip
    literals = dict(zip(MODEL_COLUMNS, (spec.name, spec.version, spec.sha256), strict=True))
    return Plan(
        source=df, batches=selected, task=task,
        literals=literals if settings.output.model_columns else {},
        row_id=row_id or "", error=bool(error), strings=strings,
        row_bytes=(width, names.get(alias, alias)), metrics=metrics,
    )  # fmt: skip


def score(
    df: DataFrame, model: LoadedModel, settings: Settings, metrics: ScoreMetrics | None = None
) -> DataFrame:
    """``df`` scored: pass-through columns, then the model's output columns (:func:`plan`'s
    :meth:`Plan.frame`). Knows nothing about reading, writing or building the session."""
    return plan(df, model, settings, metrics).frame()


def _string_inputs(df: DataFrame, model: LoadedModel, wanted: bool) -> tuple[ModelSpec, bytes, str]:
    """The spec and the model the tasks get, and how string columns travel (for the summary):
    as int32 codes made in the JVM when the model allows it (formats.onnx.string_codes)."""
    codes = model.codes_for(df.schema, wanted)
    if isinstance(codes, str):
        return model.spec, model.broadcast(codes), codes and f"strings ({codes})"
    names = [c.name for c in model.spec.columns if c.name in codes.vocabularies]
    return model.coded_spec(codes), model.broadcast(codes), f"int32 codes ({', '.join(names)})"
