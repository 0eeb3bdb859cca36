"""Invalid rows: the rows a tabular model cannot take, found by Spark SQL expressions in the JVM.

A row is invalid when one of the model's columns holds what the model cannot take (the rules,
in the order a row's first broken rule is reported):

- ``null``: a null where the model needs a value: the manifest says the model takes none there
  (``ColumnSpec.nullable`` is false: training had none, and the original refused one or
  model.onnx scored it otherwise, :mod:`formats.nulls`) or the ONNX input is an integer,
  which has no NaN;
- ``not a number``: a string column where the model takes numbers (cast per row when
  ``on_invalid`` is not ``fail``) whose value does not parse as one;
- ``NaN``: as ``null``: invalid only where a null is (a float column that had NaN in training
  is imputed by the pipeline, so NaN there is valid);
- ``infinite``: +-inf in a numeric column, never valid;
- ``out of range``: a number the ONNX input's type cannot hold (1e300 into float32 or int64);
- ``not a whole number``: a fraction for an integer ONNX input (the cast would truncate it);
- ``unseen category``: a category not among those the manifest recorded from training, in a
  column whose fitted encoder refuses unknown categories (``ColumnSpec.accepts_unknown``).

Every rule is a boolean Column, so validation is one projection that Spark runs vectorised
with the scan; the Python workers only see the result. ``validation.on_invalid`` says what
happens to such a row (:mod:`jobs.scoring.worker` and :mod:`jobs.score` act on it): ``fail`` stops the job
on the first (``raise_error`` in the task, naming the row_id, column and value), ``null``
scores the row as nulls with an ``error`` column, ``quarantine`` writes it to
``<output>_quarantine/`` with a ``reason`` column and scores the rest. Tensor models have no
rules (their inputs are arrays, checked per batch by :mod:`jobs.scoring.tensor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from formats.errors import InputError
from formats.schema import ColumnSpec
from jobs.scoring.model import ModelSpec, spark_type
from jobs.scoring.plan import column, literal, quoted, sql_type
from jobs.scoring.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructField, StructType

__all__ = [
    "ERROR_COLUMN",
    "REASON_COLUMN",
    "RULE",
    "Check",
    "checks",
    "first_rule",
    "invalid_count",
    "quarantine_path",
    "quarantined",
    "reason_of",
    "reason_sql",
    "sql",
    "stop_on_invalid",
    "valid_rows",
    "with_rule",
]

ERROR_COLUMN = "error"  # on_invalid = "null": why the row's predictions are null
RULE = "_mp_rule"  # internal: the key of the rule a row broke first (null: a valid row)
REASON_COLUMN = "reason"  # on_invalid = "quarantine": why the row is in the quarantine
_INTEGER_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_SHOWN = 100  # characters of a value that a message shows


@dataclass(frozen=True)
class Check:
    """One rule on one column: ``key`` is what the run summary counts ("year: null"),
    ``broken`` is true on a row that breaks it, ``message`` says why, with the value.

    Both are Spark SQL text, turned into Columns once per composed expression (:func:`sql`):
    building them as Column objects takes one py4j round trip per node (thousands for a model
    of a few columns); as text the rules cost one parse."""

    key: str
    broken: str
    message: str


def sql(text: str) -> Column:
    from pyspark.sql import functions as F

    return F.expr(text)


class _Expr(str):
    """A piece of a message that is SQL (a value), not text."""


_INF = "CAST('Infinity' AS DOUBLE)"


def checks(schema: StructType, spec: ModelSpec, per_row_cast: bool) -> list[Check]:
    """The rules of every model column, in the order they are reported; [] for tensor models.

    ``per_row_cast``: string columns feeding numeric inputs are cast row by row (as
    :func:`jobs.scoring.model.plan_inputs` then feeds them) instead of refused by the planner."""
    if not spec.tabular:
        return []
    fields = {f.name: f for f in schema.fields}
    out: list[Check] = []
    for col_spec, dtype in zip(spec.columns, spec.onnx_dtypes, strict=True):
        f = fields.get(col_spec.name)
        if f is None:  # plan_inputs names the missing columns first
            continue
        if dtype == "str":
            out += _string_checks(col_spec)
        else:
            out += _numeric_checks(col_spec, f, dtype, per_row_cast)
    return out


def _needs_value(col_spec: ColumnSpec, dtype: str) -> bool:
    return not col_spec.nullable or dtype in _INTEGER_DTYPES


def _shown(value: str) -> _Expr:
    return _Expr(f"substring(CAST({value} AS STRING), 1, {_SHOWN})")


def _check(name: str, rule: str, broken: str, *message: str) -> Check:
    parts = [p if isinstance(p, _Expr) else literal(p) for p in (f"{name}: ", *message)]
    return Check(f"{name}: {rule}", f"({broken})", f"concat({', '.join(parts)})")


def _string_checks(col_spec: ColumnSpec) -> list[Check]:
    name, src = col_spec.name, quoted(col_spec.name)
    out = []
    if _needs_value(col_spec, "str"):
        out.append(_check(name, "null", f"{src} IS NULL", "null where the model needs a value"))
    if not col_spec.accepts_unknown and col_spec.categories is not None:
        known = ", ".join(literal(str(c)) for c in col_spec.categories)
        seen = f"{src} IN ({known})" if known else "false"
        out.append(
            _check(
                name, "unseen category", f"{src} IS NOT NULL AND NOT ({seen})",
                "category '", _shown(src), "' was never seen in training and the model's "
                "encoder refuses unknown categories",
            )  # fmt: skip
        )
    return out


# The smallest double that a cast to float (Java's round to nearest) makes infinite: halfway
# between Float.MAX_VALUE and 2^128, which rounds to even, i.e. up.
_FLOAT_OVERFLOW = repr(float.fromhex("0x1.ffffffp+127"))


def _overflow(source: DataType, fed: DataType, src: str, finite: str, infinite: str) -> str | None:
    """When a finite value of ``source`` does not fit the model's ``fed`` type (SQL), or None
    where the types rule that out: an integer into the same or a wider integer or into a
    float, a float into a float or a double, a double into a double."""
    from pyspark.sql import types as T

    width: dict[type[DataType], int] = {T.ByteType: 1, T.ShortType: 2, T.IntegerType: 4, T.LongType: 8}
    if isinstance(source, T.IntegralType):
        if width.get(type(fed), 99) >= width[type(source)]:  # float types: 99
            return None
    elif isinstance(source, T.FloatType | T.DoubleType) and isinstance(fed, T.FloatType | T.DoubleType):
        if isinstance(source, T.FloatType) or isinstance(fed, T.DoubleType):
            return None
        # a double into a float, with no cast per row; NaN compares greater than every number
        # in Spark SQL, hence the isnan
        return f"NOT isnan({src}) AND abs({src}) >= {_FLOAT_OVERFLOW} AND NOT {infinite}"
    cast = f"try_cast({src} AS {sql_type(fed)})"  # as jobs.scoring.model.tabular_value
    return f"{finite} AND ({cast} IS NULL OR abs(CAST({cast} AS DOUBLE)) = {_INF})"


def _numeric_checks(
    col_spec: ColumnSpec, f: StructField, dtype: str, per_row_cast: bool
) -> list[Check]:
    """The rules a numeric input needs, given the column's Spark type.

    A rule that the type rules out is left out rather than tested on every row (an integer
    column has no NaN, no inf and fits a float; a float fits a double): these tests are the
    only per-row work the scoring adds in the JVM (penguins RF, 1M rows: 0.14 CPU-s with every
    rule on every column, 0.03 without the impossible ones)."""
    from pyspark.sql import types as T

    name, src = col_spec.name, quoted(col_spec.name)
    source = f.dataType
    is_string = isinstance(source, T.StringType | T.CharType | T.VarcharType)
    if is_string and not per_row_cast:
        return []  # plan_inputs refuses the column before any task runs
    fed_type = spark_type(dtype)
    integral = isinstance(source, T.IntegralType)
    # the value as a double: NaN and inf survive
    number = src if isinstance(source, T.DoubleType) else f"try_cast({src} AS DOUBLE)"
    infinite = f"(abs({number}) = {_INF})"
    finite = f"{number} IS NOT NULL AND NOT isnan({number}) AND NOT {infinite}"
    needs = _needs_value(col_spec, dtype)
    out = []
    if needs:
        out.append(_check(name, "null", f"{src} IS NULL", "null where the model needs a value"))
    if is_string:
        broken = f"{src} IS NOT NULL AND {number} IS NULL"
        out.append(_check(name, "not a number", broken, "'", _shown(src), "' is not a number"))
    if needs and not integral:
        out.append(_check(name, "NaN", f"isnan({number})", "NaN where the model needs a value"))
    if not integral:
        out.append(
            _check(name, "infinite", infinite, _shown(src), " is infinite; the model takes "
                   "finite numbers")
        )  # fmt: skip
    overflow = _overflow(source, fed_type, src, finite, infinite)
    if overflow is not None:
        out.append(
            _check(name, "out of range", overflow, _shown(src), f" does not fit the model's "
                   f"{dtype} input ({fed_type.simpleString()})")
        )  # fmt: skip
    if dtype in _INTEGER_DTYPES and not isinstance(source, T.IntegralType | T.BooleanType):
        # the cast would truncate it, so model.onnx would score another value than the pickle
        fraction = f"{finite} AND {number} != floor({number})"
        out.append(
            _check(name, "not a whole number", fraction, _shown(src), f" is not a whole number; "
                   f"the model's {dtype} input would truncate it")
        )  # fmt: skip
    return out


def _first_rule_sql(found: Sequence[Check]) -> str:
    if not found:
        return "CAST(NULL AS STRING)"
    return "coalesce(" + ", ".join(f"CASE WHEN {c.broken} THEN {literal(c.key)} END"
                                   for c in found) + ")"  # fmt: skip


def first_rule(found: Sequence[Check]) -> Column:
    """The key of the row's first broken rule (what the summary counts), or null."""
    return sql(_first_rule_sql(found))


def with_rule(df: DataFrame, found: Sequence[Check]) -> DataFrame:
    """``df`` and a :data:`RULE` column, in a projection of its own.

    The reason, the counts and the quarantine's filter read the rule (``on_invalid`` null or
    quarantine; fail has :func:`stop_on_invalid`'s own CASE); as a column of the projection
    below them Spark tests the rules once per row (CollapseProject does not inline a costly
    expression that is used more than once). Built into one projection, the rules were tested
    again for every row: 1M rows, local[2], 2.2 s instead of 0.4 s for reading and casting."""
    return df.selectExpr("*", f"{_first_rule_sql(found)} AS {quoted(RULE)}")


def reason_sql(found: Sequence[Check]) -> str:
    """:func:`reason_of` as SQL text."""
    rule = quoted(RULE)
    if not found:
        return "CAST(NULL AS STRING)"
    messages = ", ".join(f"CASE WHEN {rule} = {literal(c.key)} THEN {c.message} END"
                         for c in found)  # fmt: skip
    return f"CASE WHEN {rule} IS NOT NULL THEN coalesce({messages}) END"


def reason_of(found: Sequence[Check]) -> Column:
    """Why the row is invalid (the message of its :data:`RULE`, with the value), or null."""
    return sql(reason_sql(found))


def stop_on_invalid(found: Sequence[Check], id_column: str | None, value: str) -> str:
    """``value`` (SQL), or for an invalid row a task failure whose message names the row.

    ``value`` is one of the model's inputs, which the scoring (mapInArrow) receives, so Spark
    can neither prune the test nor push it into a filter: ``raise_error`` runs in the task that
    reads the row, and the job fails while scoring, before anything is committed (a column of
    its own, always null, would cost an Arrow column to Python). The driver turns Spark's USER_RAISED_EXCEPTION into the message (:func:`jobs._cli.spark_error`).

    One CASE over the rules, in one SQL text, without :func:`with_rule`'s RULE column: nothing
    else reads the rule when an invalid row stops the job, and each DataFrame call and each
    SQL text costs the driver's JVM an analysis or a parse on every run. A valid row tests each
    rule once either way; the CASE has no ELSE (its type is raise_error's, null), so
    ``coalesce`` gives ``value`` on a valid row."""
    if not found:
        return value
    which = (
        f"{literal(id_column + ' ')}, coalesce(CAST({quoted(id_column)} AS STRING), 'null')"
        if id_column
        else literal("a row (the input has no id column, output.id_column)")
    )
    hint = literal('; set validation.on_invalid = "null" or "quarantine" to score the other rows')
    # the first broken rule's message, in the order the summary reports rules
    cases = " ".join(
        f"WHEN {c.broken} THEN raise_error(concat('invalid row, ', {which}, ': ', {c.message}, "
        f"{hint}))"
        for c in found
    )
    return f"coalesce(CASE {cases} END, {value})"


def invalid_count(key: str, alias: str) -> Column:
    """How many rows broke the rule ``key`` (an aggregate over the :data:`RULE` column)."""
    return sql(f"count(CASE WHEN {quoted(RULE)} = {literal(key)} THEN 1 END) AS {quoted(alias)}")


def valid_rows(df: DataFrame, spec: ModelSpec, settings: Settings) -> DataFrame:
    """``df``'s valid rows, string columns of numeric inputs cast per row to double: what the
    parity gate samples, since neither model.onnx nor the pickle can take an invalid row."""
    from pyspark.sql import types as T

    per_row = settings.validation.on_invalid != "fail"
    found = checks(df.schema, spec, per_row)
    if not found:
        return df
    numeric = {c.name for c in spec.columns if c.kind == "numeric"}
    strings = {
        f.name for f in df.schema.fields
        if f.name in numeric and isinstance(f.dataType, T.StringType | T.CharType | T.VarcharType)
    }  # fmt: skip
    cast = [column(c).try_cast(T.DoubleType()).alias(c) if c in strings else column(c)
            for c in df.columns]  # fmt: skip
    return df.where(first_rule(found).isNull()).select(*cast)


def quarantine_path(output: str) -> str:
    """Beside the output, not inside it: a reader of the output must never get these rows."""
    return output.rstrip("/") + "_quarantine"


def quarantined(df: DataFrame, spec: ModelSpec, settings: Settings) -> DataFrame:
    """The input rows that are invalid, with every input column and a ``reason`` column."""
    from pyspark.sql import functions as F

    if REASON_COLUMN in df.columns:
        raise InputError(
            f"the input has a column {REASON_COLUMN!r}, which the quarantine adds; rename it"
        )
    found = checks(df.schema, spec, settings.validation.on_invalid != "fail")
    reason = reason_of(found).alias(REASON_COLUMN)
    ruled = with_rule(df, found)
    return ruled.where(F.col(RULE).isNotNull()).select(*[column(c) for c in df.columns], reason)
