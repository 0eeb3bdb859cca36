"""The driver's view of a bundle's ONNX model: what the executors need to know of it
(:class:`ModelSpec`), and the models the job may broadcast (:class:`LoadedModel`).

:func:`load_model` reads the manifest and ``model.onnx`` (checked against its sha256) and learns
the ONNX signature by building one CPU session on the driver, so a damaged model fails before
Spark starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from formats.bundle import Bundle
from formats.errors import InputError
from formats.schema import ColumnSpec, output_columns
from jobs.scoring.tensor import OutputField, TensorInput, probe_outputs, tensor_inputs

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql.types import DataType, StructField, StructType

    from formats.onnx.string_codes import StringCodes

__all__ = [
    "MODEL_COLUMNS",
    "LoadedModel",
    "ModelSpec",
    "load_model",
    "output_struct",
    "spark_type",
    "strings_as_codes",
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
        when first asked for, once per driver. Its label is
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
        from formats.diff import Tolerance, first_difference
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
        want = original.predict(x)[[f.name for f in spec.outputs]]
        got = scorer.canonical(scorer.run(scorer.feed(columns)), x.index)
        # the same scores by construction: float32 rounding is the only slack
        differs = first_difference(want, got, Tolerance(atol=1e-6))
        what = "with category codes" if coded else "with its label as a class index"
        return f"{what}: {differs} of the sample" if differs else ""

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


