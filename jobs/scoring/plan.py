"""The scoring plan as Spark SQL text: the model's inputs cast in the JVM to the dtypes ONNX
takes, string columns as codes, the pass-through columns, and column names resolved as Spark
resolves them. Pure functions of a schema: tested without data.

SQL text rather than Columns because PySpark makes about 13 py4j round trips per ``F.col`` and
per method on a Column, while ``selectExpr`` takes a whole projection in one call.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from formats.errors import InputError, UsageError
from jobs.scoring.model import MODEL_COLUMNS, ModelSpec, spark_type
from jobs.scoring.settings import OutputSettings, TensorSettings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructField, StructType

__all__ = [
    "case_sensitive",
    "check_partitioning",
    "code_of",
    "column",
    "find_column",
    "input_alias",
    "literal",
    "model_names",
    "passthrough_alias",
    "passthrough_columns",
    "plan_inputs",
    "quoted",
    "sql_type",
    "tabular_value",
]


def quoted(name: str) -> str:
    """A column name as SQL (dots and backticks in names are not paths)."""
    return "`" + name.replace("`", "``") + "`"


def literal(text: str) -> str:
    """A SQL string that reads as ``text`` under either string-literal parser: a quote or a
    backslash is written as ``chr()``, not escaped, since with the legacy
    ``spark.sql.parser.escapedStringLiterals`` a backslash is kept as it is (a category
    ``o'brien`` would then match nothing, a model name would be written wrong)."""
    if "'" not in text and "\\" not in text:
        return f"'{text}'"
    pieces = re.split(r"(['\\])", text)
    sql = [f"chr({ord(p)})" if p in ("'", "\\") else f"'{p}'" for p in pieces if p]
    return f"concat({', '.join(sql)})"


def column(name: str) -> Column:
    """A column by its exact name (dots and backticks in names are not paths)."""
    from pyspark.sql import functions as F

    return F.col(quoted(name))


def sql_type(dt: DataType) -> str:
    """A Spark type as SQL text: ``FLOAT``, ``ARRAY<FLOAT>``."""
    return dt.simpleString().upper()


def input_alias(i: int) -> str:
    """Inputs travel to mapInArrow under private names: a pass-through column may share a
    model input's name."""
    return f"_mp_in{i}"


def passthrough_alias(i: int) -> str:
    """Pass-through columns travel under private names too: mapInArrow looks its input
    columns up by name, and a name with a backtick does not parse as one."""
    return f"_mp_pass{i}"


def plan_inputs(
    schema: StructType, spec: ModelSpec, tensor: TensorSettings, per_row_cast: bool = False
) -> list[str]:
    """The model's inputs as Spark SQL (``expr AS alias``) cast to the ONNX dtypes, or a
    one-line error. SQL text, not Columns: PySpark makes ~13 py4j round trips per ``F.col``
    and as many per method on a Column; ``selectExpr`` takes the whole projection in one call.

    ``per_row_cast``: a string column feeding a numeric input is cast row by row (a value
    that does not parse becomes null, an invalid row for :mod:`jobs.scoring.rules`) instead of
    being refused here."""
    fields = {f.name: f for f in schema.fields}
    if not spec.tabular:
        return _plan_tensors(fields, spec, tensor)
    missing = [c.name for c in spec.columns if c.name not in fields]
    if missing:
        raise InputError(
            f"the input lacks column(s) {missing} that the model needs; it has "
            f"{list(fields)}: rename or add them{_nearest(missing, list(fields))}"
        )
    exprs = []
    for i, (spec_col, dtype) in enumerate(zip(spec.columns, spec.onnx_dtypes, strict=True)):
        f, vocab = fields[spec_col.name], spec.codes[i] if spec.codes else None
        exprs.append(f"{tabular_value(f, dtype, per_row_cast, vocab)} AS {input_alias(i)}")
    return exprs


def _is_numeric(dt: DataType) -> bool:
    from pyspark.sql import types as T

    return isinstance(dt, T.NumericType | T.BooleanType)


def _nearest(missing: list[str], have: list[str]) -> str:
    """A hint for a renamed column (case or a typo): "; did you mean 'Sex' for 'sex'?"."""
    import difflib

    lowered = {h.lower(): h for h in have}
    hints = []
    for name in missing:
        near = lowered.get(name.lower()) or next(
            iter(difflib.get_close_matches(name, have, n=1, cutoff=0.75)), None
        )
        if near is not None:
            hints.append(f"{near!r} for {name!r}")
    return f"; did you mean {', '.join(hints)}?" if hints else ""


def tabular_value(
    f: StructField, dtype: str, per_row_cast: bool = False, codes: Sequence[str] | None = None
) -> str:
    """The column ``f`` as the model's ``dtype`` input takes it (SQL). ``try_cast``, not ``cast``:
    under ANSI mode a value the type cannot hold (NaN or 1e300 into int64) would fail the
    task with Spark's own error; as null it is an invalid row that jobs.scoring.rules names.
    ``codes``: a string column's vocabulary; the value is then its int32 code."""
    from pyspark.sql import types as T

    seen = f.dataType.simpleString()
    if dtype == "str":
        if not isinstance(f.dataType, T.StringType | T.CharType | T.VarcharType):
            raise InputError(
                f"column {f.name!r} is {seen} but the model takes strings (categories); cast it "
                "to string first"
            )
        return quoted(f.name) if codes is None else code_of(quoted(f.name), codes)
    is_string = isinstance(f.dataType, T.StringType | T.CharType | T.VarcharType)
    if not _is_numeric(f.dataType) and not (is_string and per_row_cast):
        raise InputError(
            f"column {f.name!r} is {seen} but the model takes numbers ({dtype}); cast it to a "
            "numeric type first"
            + (" (or set validation.on_invalid = null or quarantine to cast it per row)"
               if is_string else "")
        )  # fmt: skip
    return f"try_cast({quoted(f.name)} AS {sql_type(spark_type(dtype))})"


def code_of(value: str, codes: Sequence[str]) -> str:
    """SQL: the int code of the string ``value`` (see formats.onnx.string_codes): null is fed
    as "" (as OnnxScorer feeds a missing string), a value outside ``codes`` as len(codes).
    A CASE on literals: Spark compiles it to a chain of comparisons, no lookup per row in
    Python, and the column crosses to the worker as 4 bytes a row."""
    whens = " ".join(f"WHEN {literal(v)} THEN {i}" for i, v in enumerate(codes))
    return f"CASE coalesce({value}, '') {whens} ELSE {len(codes)} END"


def _plan_tensors(
    fields: dict[str, StructField], spec: ModelSpec, tensor: TensorSettings
) -> list[str]:
    from pyspark.sql import types as T

    if tensor.columns and len(spec.tensors) != 1:
        raise UsageError(
            f"tensor.columns feeds a model with one input; this one has {spec.input_names}"
        )
    exprs = []
    for i, t in enumerate(spec.tensors):
        target = sql_type(spark_type(t.dtype, width=1))
        if tensor.columns:
            missing = [c for c in tensor.columns if c not in fields]
            if missing:
                raise InputError(f"the input lacks tensor.columns {missing}; it has {list(fields)}")
            bad = [c for c in tensor.columns if not _is_numeric(fields[c].dataType)]
            if bad:
                raise InputError(f"tensor.columns {bad} are not numeric; cast them first")
            if len(tensor.columns) != t.size:
                raise InputError(
                    f"the model's input {t.name!r} takes {t.size} values per row "
                    f"{list(t.shape)}; tensor.columns names {len(tensor.columns)}"
                )
            expr = f"CAST(array({', '.join(quoted(c) for c in tensor.columns)}) AS {target})"
        else:
            source = tensor.column or t.name
            f = fields.get(source)
            if f is None:
                raise InputError(
                    f"the input has no column {source!r} for the model's tensor input {t.name!r} "
                    f"{list(t.shape)}; it has {list(fields)}: set tensor.column or tensor.columns"
                )
            dt = f.dataType
            if not (isinstance(dt, T.ArrayType) and _is_numeric(dt.elementType)):
                raise InputError(
                    f"column {source!r} is {dt.simpleString()} but the model's input {t.name!r} "
                    f"takes an array of numbers ({t.size} per row)"
                )
            expr = f"CAST({quoted(source)} AS {target})"
        exprs.append(f"{expr} AS {input_alias(i)}")
    return exprs


CASE_CONF = "spark.sql.caseSensitive"


def case_sensitive(spark: Any) -> bool:
    """Whether the session tells column names apart by case (Spark's default: it does not)."""
    return str(spark.conf.get(CASE_CONF, "false")).lower() == "true"


def model_names(df: DataFrame, spec: ModelSpec, case_sensitive: bool) -> DataFrame:
    """``df`` with each model column that it holds under another case renamed to the model's
    spelling, as Spark resolves ``select("island")`` on an ``ISLAND`` column, unless the session
    is ``case_sensitive`` (:func:`case_sensitive`). Every later step (the plan, the invalid-row
    rules, the parity gate's sample) then reads the model's names. An exact match wins; two
    matches that differ only in case are left alone (Spark itself refuses to read them)."""
    if case_sensitive or not spec.columns:  # a tensor model has no columns
        return df
    have = df.columns
    found = {c.name: find_column(have, c.name, case_sensitive=False) for c in spec.columns}
    renames = {n: name for name, n in found.items() if n is not None and n != name}
    return df.withColumnsRenamed(renames) if renames else df


def find_column(names: Sequence[str], name: str, case_sensitive: bool) -> str | None:
    """The input's column that ``name`` means: itself, else (unless ``case_sensitive``) the one
    column equal to it but for case."""
    if not name or name in names:
        return name or None
    if case_sensitive:
        return None
    near = [n for n in names if n.lower() == name.lower()]
    return near[0] if len(near) == 1 else None


def passthrough_columns(
    schema: StructType, spec: ModelSpec, out: OutputSettings, case_sensitive: bool = True
) -> list[str]:
    """The input columns the output keeps: the id column when present, and every passthrough.
    Unless ``case_sensitive``, a name finds the input's column in any case, as Spark's own
    resolution does, and a kept column whose name equals an output's in another case is a
    clash (Spark's writer and reader refuse such a pair)."""
    names = schema.fieldNames()
    missing = [c for c in out.passthrough if find_column(names, c, case_sensitive) is None]
    if missing:
        raise InputError(f"output.passthrough names {missing}, not in the input; it has {names}")
    row_id = find_column(names, out.id_column, case_sensitive)
    keep = [row_id] if row_id is not None else []
    found = (find_column(names, c, case_sensitive) for c in out.passthrough)
    keep += [n for n in found if n is not None and n not in keep]
    taken = [f.name for f in spec.outputs] + (list(MODEL_COLUMNS) if out.model_columns else [])
    fold = (lambda n: n) if case_sensitive else str.lower
    clash = [c for c in keep if fold(c) in {fold(t) for t in taken}]
    if clash:
        raise InputError(
            f"pass-through column(s) {clash} would collide with the model's output columns "
            f"{taken}; rename them in the input"
        )
    return keep


def check_partitioning(partition_by: Sequence[str], columns: Sequence[str]) -> None:
    unknown = [c for c in partition_by if c not in columns]
    if unknown:
        raise InputError(
            f"output.partition_by names {unknown}, not among the output columns {list(columns)}"
        )
