"""The driver's view of a bundle's ONNX model, and its contract with a Spark DataFrame.

:func:`load_model` reads the manifest and ``model.onnx`` (checked against its sha256) and learns
the ONNX signature by building one CPU session on the driver, so a damaged model fails before
Spark starts. :func:`plan_inputs` checks a DataFrame's schema against the model before any task
runs (a missing column, a string where a number is needed: one line) and casts in the JVM to
the dtypes ONNX takes (``double`` -> ``float``), so the Python workers get exactly the tensors'
types over Arrow and convert nothing. Pure functions of a schema: tested without data.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.bundle import Bundle
from formats.errors import InputError, UsageError
from formats.schema import ColumnSpec, output_columns
from jobs._settings import OutputSettings, TensorSettings
from jobs._tensor import OutputField, TensorInput, probe_outputs, tensor_inputs

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructField, StructType

    from formats.onnx.string_codes import StringCodes

__all__ = [
    "MODEL_COLUMNS",
    "LoadedModel",
    "ModelSpec",
    "case_sensitive",
    "code_of",
    "column",
    "find_column",
    "input_alias",
    "literal",
    "load_model",
    "model_names",
    "output_struct",
    "passthrough_alias",
    "passthrough_columns",
    "plan_inputs",
    "quoted",
    "spark_type",
    "sql_type",
    "strings_as_codes",
    "tabular_value",
]

TABULAR_TASKS = ("classification", "regression")
MODEL_COLUMNS = ("model_name", "model_version", "model_sha256")


@dataclass(frozen=True)
class ModelSpec:
    """What executors need to know about the model (small: pickled into every task)."""

    name: str
    version: str
    sha256: str
    task: str
    classes: tuple[Any, ...] | None
    columns: tuple[ColumnSpec, ...]  # tabular: the manifest's inputs, in order
    onnx_dtypes: tuple[str, ...]  # tabular: the ONNX dtype of each column ("float32", "str")
    tensors: tuple[TensorInput, ...]  # tensor models: the ONNX inputs
    outputs: tuple[OutputField, ...]
    # tabular, when the job feeds the string columns as codes (formats.onnx.string_codes):
    # each column's vocabulary (code i is codes[c][i], len(codes[c]) any other string), None
    # for a numeric column; () when strings are fed as strings
    codes: tuple[tuple[str, ...] | None, ...] = ()

    @property
    def tabular(self) -> bool:
        return not self.tensors

    @property
    def input_names(self) -> list[str]:
        """The UDF's arguments, in order."""
        return [c.name for c in self.columns] if self.tabular else [t.name for t in self.tensors]


@dataclass(frozen=True)
class LoadedModel:
    bundle: Bundle
    spec: ModelSpec
    onnx: bytes = field(repr=False)

    @cached_property
    def string_codes(self) -> StringCodes | str:
        """The model with its string inputs as int32 codes, or why it cannot have them; made
        when first asked for (~30 ms for the penguins forest), once per driver. Its label is
        the class index where formats.onnx.label_index applies, as in :attr:`strings_model`."""
        import onnx

        from formats.onnx.string_codes import encode

        if not self.spec.tabular:
            return "the model takes tensors"
        codes = encode(onnx.load_from_string(self.onnx))
        return codes if isinstance(codes, str) else replace(codes, model=self._indexed(codes.model))

    @cached_property
    def strings_model(self) -> bytes:
        """model.onnx as the job and the public UDF run it when they feed strings: the label
        as the class index where formats.onnx.label_index applies (the lookup is then an Arrow
        ``take`` in the worker), else model.onnx as saved."""
        return self._indexed(self.onnx)

    def _indexed(self, data: bytes) -> bytes:
        import onnx

        from formats.onnx.label_index import label_as_index

        if self.spec.task != "classification" or not self.spec.classes:
            return data
        rewritten = label_as_index(onnx.load_from_string(data), list(self.spec.classes))
        return data if rewritten is None else rewritten.SerializeToString()

    def codes_for(self, schema: StructType, wanted: bool) -> StringCodes | str:
        """What the job feeds the model's string columns of ``schema``: the codes, or why
        strings ("" when the model takes none). The one decision the transform and the parity
        gate both follow."""
        if "str" not in self.spec.onnx_dtypes:
            return ""
        if not wanted:
            return "execution.string_codes = false"
        codes = self.string_codes
        if isinstance(codes, str):
            return codes
        return strings_as_codes(schema, self.spec, codes) or codes

    def broadcast(self, codes: StringCodes | str) -> bytes:
        """The model the job broadcasts: ``codes``' model, or :attr:`strings_model` when
        ``codes`` says why the job feeds strings."""
        return self.strings_model if isinstance(codes, str) else codes.model

    def broadcast_disagrees(self, codes: StringCodes | str, sample: pd.DataFrame) -> str:
        """How the scores of ``sample`` by :meth:`broadcast`'s model differ from model.onnx's
        as saved ("" when they are the same, or when the job broadcasts model.onnx itself):
        the parity gate's check of the rewrites (category codes, the label's class index)."""
        import numpy as np

        from formats.onnx.scorer import OnnxScorer
        from formats.schema import conform

        broadcast = self.broadcast(codes)
        if broadcast is self.onnx:
            return ""
        m, spec = self.bundle.manifest, self.spec
        args = (m.task, m.classes, m.inputs)
        original = OnnxScorer(self.onnx, *args, providers=["CPUExecutionProvider"])
        scorer = OnnxScorer(broadcast, *args, providers=["CPUExecutionProvider"])
        x = conform(sample, m.inputs)
        columns = {c: x[c].to_numpy() for c in x.columns}
        coded = not isinstance(codes, str)
        if not isinstance(codes, str):  # the category columns as the JVM's CASE makes them
            for name in codes.vocabularies:
                values = [v if isinstance(v, str) else None for v in x[name]]
                columns[name] = codes.codes(name, values)
        want = original.predict(x)
        got = scorer.canonical(scorer.run(scorer.feed(columns)), x.index)
        for f in spec.outputs:
            a, b = want[f.name].to_numpy(), got[f.name].to_numpy()
            same = (a == b) if a.dtype == object else np.isclose(a, b, rtol=0, atol=1e-6)
            if not np.all(same):
                what = "with category codes" if coded else "with its label as a class index"
                return f"{what}: {f.name} differs on {int((~same).sum())} of {len(x)} sample rows"
        return ""

    def coded_spec(self, codes: StringCodes) -> ModelSpec:
        """The spec whose string columns arrive as ``codes``' int32 codes."""
        vocab = codes.vocabularies
        return replace(self.spec, codes=tuple(vocab.get(c.name) for c in self.spec.columns))


def load_model(location: str | Path) -> LoadedModel:
    from formats.onnx.scorer import OnnxScorer

    bundle = Bundle.open(location)
    m = bundle.manifest
    data = bundle.read(bundle.file_of("onnx"))  # raises IntegrityError on a sha256 mismatch
    scorer = OnnxScorer(data, m.task, m.classes, m.inputs, providers=["CPUExecutionProvider"])
    signature = scorer.session.signature
    classes = tuple(m.classes) if m.classes is not None else None
    if m.task in TABULAR_TASKS:
        dtypes = {s.name: s.dtype for s in signature.inputs}
        with_proba = m.has_proba and "probabilities" in signature.output_names
        names = output_columns(m.task, m.classes, with_proba)
        outputs = tuple(OutputField(n, _canonical_dtype(n, classes)) for n in names)
        # an all-numeric pipeline takes one [batch, n] tensor (OnnxScorer stacks the columns)
        matrix = signature.inputs[0].dtype if len(signature.inputs) == 1 else "float32"
        columns = tuple(m.inputs)
        onnx_dtypes = tuple(dtypes.get(c.name, matrix) for c in m.inputs)
        tensors: tuple[TensorInput, ...] = ()
    else:
        tensors = tensor_inputs(signature)
        outputs = probe_outputs(scorer.run, tensors, signature.output_names)
        columns, onnx_dtypes = (), ()
    spec = ModelSpec(
        m.name, m.version, m.sha256, m.task, classes, columns, onnx_dtypes, tensors, outputs
    )
    return LoadedModel(bundle, spec, data)


def _canonical_dtype(column: str, classes: tuple[Any, ...] | None) -> str:
    if column != "label":
        return "float64"  # proba_<class> and prediction
    sample = classes[0] if classes else ""
    if isinstance(sample, bool):
        return "bool"
    if isinstance(sample, int):
        return "int64"
    return "float64" if isinstance(sample, float) else "str"


def spark_type(dtype: str, width: int = 0) -> DataType:
    """The Spark type of an ONNX dtype (an array of it when a row holds ``width`` values)."""
    from pyspark.sql import types as T

    table: dict[str, DataType] = {
        "str": T.StringType(),
        "bool": T.BooleanType(),
        "int8": T.ByteType(),
        "int16": T.ShortType(),
        "int32": T.IntegerType(),
        "int64": T.LongType(),
        "uint8": T.ShortType(),
        "uint16": T.IntegerType(),
        "uint32": T.LongType(),
        "float16": T.FloatType(),
        "float32": T.FloatType(),
        "float64": T.DoubleType(),
    }
    if dtype not in table:
        raise InputError(f"the model returns {dtype} values, which Spark has no type for")
    return T.ArrayType(table[dtype]) if width else table[dtype]


def output_struct(spec: ModelSpec) -> list[StructField]:
    from pyspark.sql.types import StructField

    return [StructField(f.name, spark_type(f.dtype, f.width)) for f in spec.outputs]


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
    that does not parse becomes null, an invalid row for :mod:`jobs._validate`) instead of
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
    task with Spark's own error; as null it is an invalid row that jobs._validate names.
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


def strings_as_codes(schema: StructType, spec: ModelSpec, codes: StringCodes) -> str:
    """Why Spark cannot make ``codes`` for these string columns ("" when it can): ONNX
    compares bytes, and a column with another collation (UTF8_LCASE) or a CHAR column
    (padded) compares otherwise in Spark; a category with a control character or one that is
    not UTF-8 has no place in the CASE's SQL text."""
    from pyspark.sql import types as T

    for c, dtype in zip(spec.columns, spec.onnx_dtypes, strict=True):
        f = schema[c.name] if c.name in schema.fieldNames() else None
        if dtype == "str" and f is not None and f.dataType != T.StringType():
            return f"column {c.name!r} is {f.dataType.simpleString()}, not a plain string"
    for v in codes.vocabularies.values():
        if any(ord(ch) < 32 or 0xD800 <= ord(ch) < 0xE000 for s in v for ch in s):
            return "a category has a control character or is not UTF-8, which SQL text cannot hold"
    return ""


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
