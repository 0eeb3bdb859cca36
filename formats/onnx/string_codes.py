"""String inputs as integer codes: a model's string preprocessing, tabulated ahead of time.

A tabular pipeline's categories reach ONNX as string tensors, and the converters' string ops
(skl2onnx's constant imputer and one-hot encoder: Concat, ArrayFeatureExtractor, LabelEncoder,
Where, Gather, OneHotEncoder on strings) run on every row, and the worker makes a Python str
object per distinct value and batch to feed them. Those ops only ever ask whether a string
*equals* one of the model's constants (a LabelEncoder's keys, a OneHotEncoder's categories),
so every string that is none of them behaves like any other: the string part of the graph is a
function of ``code = index of the value among the constants``, with one more code for
"anything else". :func:`encode` evaluates that part once, on every code, and puts the results
in a table: the rewritten model takes an int32 code per string input and starts with a Gather
from the table. The Spark job computes the codes in the JVM (a CASE), so
the category columns cross to Python as int32 buffers and never become Python strings.

The tables are ONNX Runtime's own outputs for those codes, so the rewritten model returns what
the original returns, bit for bit. Rewritten only where that holds, else :func:`encode` says why
not and the caller feeds strings as before:

- every op that reads a string's content compares it with constants (``EQUALITY`` in
  :mod:`formats.onnx._string_graph`, which reads the graph); the others only move strings
  about (``MOVES``). A regex, a tokenizer or a cast from string
  reads more than equality and stops the rewrite;
- the string part is row-wise: checked on the table's own rows, rotated by one and one by one;
- a table has at most :data:`MAX_TABLE_ROWS` rows. A selection from a concatenation of columns
  (how skl2onnx routes each category column) is resolved first, so a table usually depends on
  one column, and a column's codes tell apart only the constants it is compared with (its
  encoder's categories, a fill value, ""): ``categories + 2`` rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from formats.onnx._string_graph import (
    NotEncoded,
    check_reads,
    depends_on,
    initializer_strings,
    needed,
    renamed,
    resolve_selections,
    string_typed,
    strings_of,
    vocabularies,
)

__all__ = ["MAX_TABLE_ROWS", "StringCodes", "encode"]

MAX_TABLE_ROWS = 4096


@dataclass(frozen=True)
class StringCodes:
    """A model whose string inputs are int32 codes. ``vocabularies[name][i]`` has code ``i``;
    any other string (a category the model never saw) has code ``len(vocabularies[name])``.
    A missing value is the empty string, as the original model is fed one."""

    model: bytes
    vocabularies: dict[str, tuple[str, ...]]

    def codes(self, name: str, values: Iterable[str | None]) -> np.ndarray:
        """``values`` of input ``name`` as the rewritten model takes them (for tests and
        callers outside Spark; the job computes them in the JVM)."""
        vocab = self.vocabularies[name]
        index = {v: i for i, v in enumerate(vocab)}
        return np.array([index.get(v or "", len(vocab)) for v in values], dtype=np.int32)


def _submodel(
    model: onnx.ModelProto,
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[str],
    outputs: Sequence[str],
) -> Any:
    """An ONNX Runtime session of ``nodes``: string ``inputs`` in, ``outputs`` (untyped) out."""
    import onnxruntime as ort

    g = model.graph
    used = {i for n in nodes for i in n.input}
    graph = helper.make_graph(
        list(nodes),
        "string_part",
        [i for i in g.input if i.name in inputs],
        [onnx.ValueInfoProto(name=o) for o in outputs],
        [t for t in g.initializer if t.name in used],
    )
    sub = helper.make_model(graph, opset_imports=model.opset_import, ir_version=model.ir_version)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(
        sub.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _rank(value_info: onnx.ValueInfoProto) -> int:
    return len(value_info.type.tensor_type.shape.dim)


def _feed(
    model: onnx.ModelProto, names: Sequence[str], rows: Sequence[tuple[str, ...]]
) -> dict[str, np.ndarray]:
    ranks = {i.name: _rank(i) for i in model.graph.input}
    feed = {}
    for k, name in enumerate(names):
        column = np.array([r[k] for r in rows], dtype=object)
        feed[name] = column.reshape(-1, 1) if ranks[name] == 2 else column
    return feed


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def encode(model: onnx.ModelProto, max_rows: int = MAX_TABLE_ROWS) -> StringCodes | str:
    """``model`` with its string inputs as int32 codes, or why it cannot be (one line). Never
    raises: the rewrite only saves time, so a graph it cannot handle (ONNX Runtime refusing a
    table's run, the checker refusing the result) is fed strings, and the reason says why."""
    try:
        return _encode(model, max_rows)
    except NotEncoded as exc:
        return str(exc)
    except Exception as exc:  # ORT and onnx errors have no common type
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return f"the rewrite failed ({type(exc).__name__}: {first})"


def _encode(original: onnx.ModelProto, max_rows: int) -> StringCodes:
    g = original.graph
    inits = {t.name for t in g.initializer}
    strings = [
        i.name for i in g.input
        if i.name not in inits and i.type.tensor_type.elem_type == TensorProto.STRING
    ]  # fmt: skip
    if not strings:
        raise NotEncoded("the model has no string input")
    constants = set().union(*(strings_of(n) for n in g.node)) | initializer_strings(
        g, {t.name for t in g.initializer}
    )
    unknown = "\x00unknown"  # a string none of the model's: what "any other string" runs as
    while unknown in constants:
        unknown += "\x00"
    deps, region = depends_on(g, strings)
    check_reads(region, deps, string_typed(g, region, strings))
    _, shapes = _observe(original, region, deps, strings, unknown)
    model = onnx.ModelProto()
    model.CopyFrom(original)
    model.graph.CopyFrom(renamed(g, resolve_selections(g, region, shapes)))
    g = model.graph
    deps, region = depends_on(g, strings)
    types, shapes = _observe(model, region, deps, strings, unknown)
    # again with the types the run gave: an op the static rules do not know may make strings
    check_reads(region, deps, {t for t, d in types.items() if d == np.dtype(object)})
    # the part to tabulate: the nodes that take or make a string, and what they are computed
    # from; constant nodes (no input from the data) stay in the graph
    stringy = [
        o for n in region for o in n.output
        if deps[n.output[0]] and any(types.get(t) == np.dtype(object) for t in [*n.input, *n.output])
    ]  # fmt: skip
    part = [n for n in needed(region, stringy) if deps[n.output[0]]]
    inside = {id(n) for n in part}
    made = {o for n in part for o in n.output}
    read_outside = {i for n in g.node if id(n) not in inside for i in n.input}
    edge = sorted(made & (read_outside | {o.name for o in g.output}))
    for name in strings:
        if name in read_outside:
            raise NotEncoded(f"the string input {name!r} feeds an op that also takes numbers")
    for t in edge:
        if types[t] == np.dtype(object):
            raise NotEncoded(f"the string tensor {t!r} reaches an op that also takes numbers")
    vocab = vocabularies(g, region, deps, strings)
    codes = {s: (*vocab[s], unknown) for s in strings}  # what each code stands for, in order
    groups: dict[tuple[str, ...], list[str]] = {}
    for t in edge:
        groups.setdefault(tuple(s for s in strings if s in deps[t]), []).append(t)
    added: list[onnx.NodeProto] = []
    tables: list[TensorProto] = []
    for k, (inputs, outputs) in enumerate(sorted(groups.items())):
        sizes = [len(codes[s]) for s in inputs]
        rows = int(np.prod(sizes))
        if rows > max_rows:
            raise NotEncoded(
                f"{outputs[0]!r} depends on {len(inputs)} string column(s) together: {rows} "
                f"combinations of codes, over {max_rows}"
            )
        combos = list(itertools.product(*(codes[s] for s in inputs)))
        values = _tabulate(model, needed(region, outputs), inputs, outputs, combos)
        index = _index(inputs, sizes, f"_codes{k}", added, tables)
        for out, table in zip(outputs, values, strict=True):
            name = f"_codes{k}_table{len(tables)}"
            tables.append(numpy_helper.from_array(table, name))
            added.append(helper.make_node("Gather", [name, index], [out], name=f"{name}_gather"))
    return StringCodes(_assemble(model, part, added, tables, strings), vocab)


def _observe(
    model: onnx.ModelProto,
    region: Sequence[onnx.NodeProto],
    deps: dict[str, frozenset[str]],
    strings: Sequence[str],
    unknown: str,
) -> tuple[dict[str, np.dtype[Any]], dict[str, tuple[int, ...]]]:
    """The dtype and shape of every tensor the string inputs reach, from a run on two rows."""
    named = [o for n in region for o in n.output if o and deps[o]]
    try:
        session = _submodel(model, region, strings, named)
        rows = [("",) * len(strings), (unknown,) * len(strings)]
        got = (
            [np.asarray(v) for v in session.run(named, _feed(model, strings, rows))]
            if named
            else []
        )
    except Exception as exc:  # ORT's errors have no common type
        raise NotEncoded(
            f"the string part does not run alone ({str(exc).splitlines()[0]})"
        ) from None
    types = {n: v.dtype for n, v in zip(named, got, strict=True)}
    shapes = {n: tuple(v.shape) for n, v in zip(named, got, strict=True)}
    bad = [n for n, shape in shapes.items() if shape[:1] != (2,)]
    if bad:
        raise NotEncoded(f"the tensor {bad[0]!r} is not one row per input row")
    types.update({s: np.dtype(object) for s in strings})
    shapes.update({s: (2, 1) for s in strings})
    return types, shapes


def _tabulate(
    model: onnx.ModelProto,
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[str],
    outputs: Sequence[str],
    rows: list[tuple[str, ...]],
) -> list[np.ndarray]:
    """``outputs`` on every combination of codes, checked row-wise: the rows rotated by one
    give the values rotated by one, and rows alone (all of them, up to 64) their own values."""
    session = _submodel(model, nodes, inputs, outputs)

    def run(batch: list[tuple[str, ...]]) -> list[np.ndarray]:
        return [np.asarray(v) for v in session.run(list(outputs), _feed(model, inputs, batch))]

    values, rotated = run(rows), run(rows[1:] + rows[:1])
    alone = {i: run([rows[i]]) for i in np.linspace(0, len(rows) - 1, min(len(rows), 64), dtype=int)}
    for k, (v, r) in enumerate(zip(values, rotated, strict=True)):
        if not _same(np.roll(v, -1, axis=0), r) or any(
            not _same(v[i : i + 1], got[k]) for i, got in alone.items()
        ):
            raise NotEncoded("the string part is not row-wise")
    return values


def _index(
    inputs: Sequence[str],
    sizes: Sequence[int],
    prefix: str,
    nodes: list[onnx.NodeProto],
    tables: list[TensorProto],
) -> str:
    """The row of the table, as a 1-D int32 tensor: the inputs' codes as the digits of a
    mixed-radix number (input i's digit has ``sizes[i]`` values), the first most significant
    (itertools.product's order)."""
    index = inputs[0]
    for k, (name, size) in enumerate(zip(inputs[1:], sizes[1:], strict=True)):
        base, scaled, total = f"{prefix}_base{k}", f"{prefix}_scaled{k}", f"{prefix}_sum{k}"
        tables.append(numpy_helper.from_array(np.array(size, dtype=np.int32), base))
        nodes.append(helper.make_node("Mul", [index, base], [scaled], name=scaled))
        nodes.append(helper.make_node("Add", [scaled, name], [total], name=total))
        index = total
    tables.append(numpy_helper.from_array(np.array([-1], dtype=np.int64), f"{prefix}_flat"))
    out = f"{prefix}_index"
    nodes.append(helper.make_node("Reshape", [index, f"{prefix}_flat"], [out], name=out))
    return out


def _assemble(
    model: onnx.ModelProto,
    part: Sequence[onnx.NodeProto],
    added: Sequence[onnx.NodeProto],
    tables: Sequence[TensorProto],
    strings: Sequence[str],
) -> bytes:
    """The graph without ``part``, the tables' lookups in front, string inputs as int32."""
    g = onnx.GraphProto()
    g.CopyFrom(model.graph)
    inside = {id(n) for n in part}
    kept = [*added, *(n for n in model.graph.node if id(n) not in inside)]
    # without what nothing reads any more (the constants only the string part used)
    live = needed(kept, [o.name for o in g.output])
    read = {i for n in live for i in n.input} | {o.name for o in g.output}
    del g.node[:]
    g.node.extend(live)
    initializers = [t for t in [*g.initializer, *tables] if t.name in read]
    del g.initializer[:]
    g.initializer.extend(initializers)
    del g.value_info[:]
    for i in g.input:
        if i.name in strings:
            i.type.tensor_type.elem_type = TensorProto.INT32
    out = helper.make_model(g, opset_imports=model.opset_import, ir_version=model.ir_version)
    out.producer_name = model.producer_name
    onnx.checker.check_model(out)
    data: bytes = out.SerializeToString()
    return data
