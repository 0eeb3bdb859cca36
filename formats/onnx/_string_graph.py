"""The string part of an ONNX graph, read before anything runs: which tensors depend on which
string inputs (:func:`depends_on`), whether every op that reads a string only compares it with
constants (:func:`check_reads`), and which constants each input is compared with
(:func:`vocabularies`). :mod:`formats.onnx.string_codes` tabulates the part these find.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = [
    "EQUALITY",
    "ML",
    "MOVES",
    "NotEncoded",
    "attrs",
    "check_reads",
    "depends_on",
    "initializer_strings",
    "needed",
    "renamed",
    "resolve_selections",
    "string_typed",
    "strings_of",
    "vocabularies",
]

ML = "ai.onnx.ml"
# Ops that move strings about without reading them.
MOVES = {
    ("", op)
    for op in (
        "Identity", "Concat", "Gather", "Split", "Reshape", "Flatten", "Squeeze", "Unsqueeze",
        "Transpose", "Where", "Expand", "Slice", "Tile",
    )
} | {(ML, "ArrayFeatureExtractor")}  # fmt: skip
# Ops that read a string only to compare it with constants (Equal: with one side constant).
EQUALITY = {(ML, "LabelEncoder"), (ML, "OneHotEncoder"), (ML, "CategoryMapper"), ("", "Equal")}


class NotEncoded(Exception):
    """Why a model keeps its string inputs (caught by :func:`encode`)."""


def attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _graphs_in(node: onnx.NodeProto) -> bool:
    return any(
        a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute
    )


def depends_on(
    graph: onnx.GraphProto, strings: Sequence[str]
) -> tuple[dict[str, frozenset[str]], list[onnx.NodeProto]]:
    """Which string inputs each tensor depends on, over the nodes no other input reaches (the
    region); a tensor any other input reaches is left out."""
    deps: dict[str, frozenset[str]] = {s: frozenset([s]) for s in strings}
    deps.update({i.name: frozenset() for i in graph.initializer})
    deps[""] = frozenset()  # an omitted optional input
    region = []
    for node in graph.node:
        if _graphs_in(node) or any(i not in deps for i in node.input):
            continue
        d = frozenset().union(*(deps[i] for i in node.input))
        deps.update({o: d for o in node.output})
        region.append(node)
    return deps, region


def needed(nodes: Sequence[onnx.NodeProto], targets: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes (in order) that ``targets`` are computed from."""
    want, keep = set(targets), []
    for node in reversed(nodes):
        if want & set(node.output):
            keep.append(node)
            want |= set(node.input)
    return keep[::-1]


def strings_of(node: onnx.NodeProto) -> set[str]:
    found: set[str] = set()
    for a in node.attribute:
        if a.type == onnx.AttributeProto.STRING:
            found.add(a.s.decode("utf-8", "surrogateescape"))
        elif a.type == onnx.AttributeProto.STRINGS:
            found.update(s.decode("utf-8", "surrogateescape") for s in a.strings)
        elif a.type == onnx.AttributeProto.TENSOR and a.t.data_type == TensorProto.STRING:
            found.update(s.decode("utf-8", "surrogateescape") for s in a.t.string_data)
    return found


def initializer_strings(graph: onnx.GraphProto, read: set[str]) -> set[str]:
    return {
        s.decode("utf-8", "surrogateescape")
        for t in graph.initializer
        if t.data_type == TensorProto.STRING and t.name in read
        for s in t.string_data
    }


def vocabularies(
    graph: onnx.GraphProto,
    region: Sequence[onnx.NodeProto],
    deps: dict[str, frozenset[str]],
    strings: Sequence[str],
) -> dict[str, tuple[str, ...]]:
    """The strings each input can be compared with, so the only ones its code must tell
    apart: the constants of the nodes it reaches (a LabelEncoder's keys, a OneHotEncoder's
    categories), and the constant tensors (an Equal's other side: from a node no input
    reaches, or an initializer). "" is always one: a missing value is fed as ""."""
    shared = {""} | initializer_strings(graph, {i for n in region for i in n.input})
    for n in region:
        if n.output and not deps[n.output[0]]:
            shared |= strings_of(n)
    found = {s: set(shared) for s in strings}
    for n in region:
        for s in deps[n.output[0]] if n.output else ():
            found[s] |= strings_of(n)
    return {s: tuple(sorted(v)) for s, v in found.items()}


def resolve_selections(
    graph: onnx.GraphProto, region: Sequence[onnx.NodeProto], shapes: dict[str, tuple[int, ...]]
) -> dict[str, str]:
    """Selections of one column from a concatenation of ``[rows, 1]`` columns, as that column:
    ``{selected tensor: concatenated column}``. Without this every category column would
    depend on every other through skl2onnx's Concat, and a table would need their product."""
    consts = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    concats = {
        n.output[0]: list(n.input)
        for n in region
        if n.op_type == "Concat" and attrs(n).get("axis") in (1, -1)
        and all(shapes.get(i, ())[1:] == (1,) for i in n.input)
    }  # fmt: skip
    alias = {}
    for n in region:
        if n.input[:1] == [] or n.input[0] not in concats or len(n.input) < 2:
            continue
        axis = attrs(n).get("axis", 0)
        picks = (n.domain == ML and n.op_type == "ArrayFeatureExtractor") or (
            n.domain == "" and n.op_type == "Gather" and axis in (1, -1)
        )
        index = consts.get(n.input[1])
        if not picks or index is None or index.size != 1 or shapes.get(n.output[0], ())[1:] != (1,):
            continue
        columns = concats[n.input[0]]
        i = int(index.reshape(-1)[0])
        if -len(columns) <= i < len(columns):
            alias[n.output[0]] = columns[i]
    return alias


def renamed(graph: onnx.GraphProto, alias: dict[str, str]) -> onnx.GraphProto:
    g = onnx.GraphProto()
    g.CopyFrom(graph)
    del g.node[:]
    for node in graph.node:
        if alias.keys() & set(node.output):
            continue  # a resolved selection
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.input[:] = [alias.get(i, i) for i in node.input]
        g.node.append(n)
    for o in g.output:
        if o.name in alias:
            raise NotEncoded(f"the graph output {o.name!r} is a string column")
    return g


def string_typed(graph: onnx.GraphProto, region: Sequence[onnx.NodeProto], strings: Sequence[str]) -> set[str]:
    """The region's string tensors, from the ops' type rules (before anything runs: an op that
    parses strings would fail on the probe's values)."""
    typed = set(strings) | {t.name for t in graph.initializer if t.data_type == TensorProto.STRING}
    for n in region:
        op, a = (n.domain if n.domain != "ai.onnx" else "", n.op_type), attrs(n)
        if op == ("", "Where"):
            out = bool(typed & set(n.input[1:]))
        elif op in MOVES:
            out = bool(typed & set(n.input[:1] if op[1] != "Concat" else n.input))
        elif op == (ML, "LabelEncoder"):
            out = "values_strings" in a or (
                "values_tensor" in a and a["values_tensor"].data_type == TensorProto.STRING
            )
        elif op == (ML, "CategoryMapper"):
            out = n.input[0] not in typed
        elif op == ("", "Cast"):
            out = a.get("to") == TensorProto.STRING
        elif op == ("", "Constant"):
            out = "value_strings" in a or (
                "value" in a and a["value"].data_type == TensorProto.STRING
            )
        else:
            out = False
        if out:
            typed.update(n.output)
    return typed


def check_reads(
    region: Sequence[onnx.NodeProto], deps: dict[str, frozenset[str]], typed: set[str]
) -> None:
    for n in region:
        strings = [i for i in n.input if deps.get(i) and i in typed]
        if not strings:
            continue
        op = (n.domain if n.domain != "ai.onnx" else "", n.op_type)
        if op in MOVES and not (op == ("", "Where") and n.input[0] in strings):
            continue
        if op in EQUALITY and not (op == ("", "Equal") and len(strings) == 2):
            continue
        raise NotEncoded(f"{n.op_type} node {n.name!r} reads strings beyond comparing them")
