"""Tree ensembles rewritten as matrix products: the same trees, run by ONNX Runtime's GEMM.

ONNX Runtime's ``TreeEnsembleClassifier``/``Regressor`` walk each tree row by row: a chain of
data-dependent branches, which a CPU predicts badly because the way each goes depends on the
row. Small trees (a few dozen splits) run faster as dense algebra, the "GEMM strategy" of Microsoft's
Hummingbird (Nakandala et al., OSDI 2020). For a tree with ``I`` splits and ``I + 1`` leaves::

    C = x[:, feature] <= threshold          # [rows, I] 0/1: which way each split goes
    M = C @ B                               # B[i, l] = +1 / -1: leaf l is left / right of i
    leaf = Relu(M + 1 - D)                  # D[l] = splits for which l is on the left
    out = leaf @ V                          # V[l] = leaf l's class weights (or value)

``M`` is a whole number no larger than ``D``, equal to it only on the leaf the row reaches, so
``M + 1 - D`` is 1 there and at most 0 elsewhere: the leaf one-hot is one Gemm with a bias,
which ONNX Runtime fuses with the Relu (FusedGemm), instead of a MatMul, an Equal and a Cast.
Each tree is its own 2-D Gemm; the trees' ``[outputs, rows]`` parts meet in one Sum. Every
comparison is the one the ensemble makes, in float32; only the order of the float sum over
trees can differ (last-bit differences of probabilities; the tests bound them against the
original scikit-learn model). The rewritten part uses core ONNX ops only, which execution
providers without ``ai.onnx.ml`` tree kernels (CUDA) also run.

Rewritten only where it is the same model: float input, splits all ``BRANCH_LEQ`` or all
``BRANCH_LT``, no missing-value routing, post transform ``NONE``, every class with a weight.
It costs ``I * (I + 1)`` multiply-adds per tree and row where a walk costs about ``log2(I)``
branches, so it is only faster for small trees: :data:`MAX_MEAN_SPLITS` bounds the mean
splits per tree for ``form="auto"``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["FORMS", "MAX_MEAN_SPLITS", "TreePlan", "plan", "rewrite"]

FORMS = ("auto", "matmul", "ensemble")
ML = "ai.onnx.ml"
KINDS = ("TreeEnsembleClassifier", "TreeEnsembleRegressor")
# form="auto" rewrites an ensemble whose trees have at most this many splits on average. The
# matmul form's cost grows with the splits, a walk's with their logarithm; `make bench`'s trees
# section measures where they meet (docs/benchmarks.md), and the bound sits below that, to
# leave room for a CPU where the gain is smaller.
MAX_MEAN_SPLITS = 16
_COMPARE = {b"BRANCH_LEQ": "LessOrEqual", b"BRANCH_LT": "Less"}
MIN_OPSET = 13  # LessOrEqual (12), and Gather of 13


@dataclass(frozen=True)
class TreePlan:
    """Whether an ensemble node can be rewritten, and what it holds."""

    node: str
    kind: str
    trees: int
    splits: int
    reason: str = ""  # why not, when it cannot be

    @property
    def mean_splits(self) -> float:
        return self.splits / max(self.trees, 1)


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


# ai.onnx.ml ops onnx's shape inference leaves untyped: their output has their input's type
# (or is always float). Unknown stays unknown, and an unknown input is not rewritten.
_SAME_TYPE = ("Imputer", "Concat", "Reshape", "Identity", "Flatten", "Binarizer", "Squeeze")
_FLOAT_OUT = ("Scaler", "Normalizer", "OneHotEncoder", "FeatureVectorizer", "LinearRegressor")


def _float_values(model: onnx.ModelProto) -> set[str]:
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        for out in n.output:
            if types.get(out, 0) == 0:
                if n.op_type in _FLOAT_OUT:
                    types[out] = TensorProto.FLOAT
                elif n.op_type in _SAME_TYPE and n.input:
                    types[out] = types.get(n.input[0], 0)
    return {name for name, t in types.items() if t == TensorProto.FLOAT}


def _why_not(node: onnx.NodeProto, att: dict[str, Any], floats: set[str]) -> str:
    if node.input[0] not in floats:
        return "its input is not float32"
    modes = set(att.get("nodes_modes", [])) - {b"LEAF"}
    if len(modes) > 1 or not modes <= set(_COMPARE):
        return f"split modes {sorted(m.decode() for m in modes)} (only one of LEQ or LT)"
    if any(att.get("nodes_missing_value_tracks_true", [])):
        return "it routes missing values to the true branch"
    if att.get("post_transform", b"NONE") != b"NONE":
        return f"post_transform {att['post_transform'].decode()}"
    if any(k.endswith("_as_tensor") for k in att):
        return "double-precision attributes"
    if node.op_type == "TreeEnsembleClassifier":
        labels = att.get("classlabels_strings") or att.get("classlabels_int64s") or []
        if set(att.get("class_ids", [])) != set(range(len(labels))):
            return "not every class has leaf weights (the binary special case)"
        if any(att.get("base_values", [])):
            return "base values"
    elif att.get("aggregate_function", b"SUM") not in (b"SUM", b"AVERAGE"):
        return f"aggregate_function {att['aggregate_function'].decode()}"
    return ""


def plan(model: onnx.ModelProto) -> list[TreePlan]:
    """Every tree ensemble in ``model``'s main graph, with whether it can be rewritten."""
    nodes = [n for n in model.graph.node if n.domain == ML and n.op_type in KINDS]
    if not nodes:
        return []
    floats = _float_values(model)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    out = []
    for n in nodes:
        att = _attributes(n)
        modes = att.get("nodes_modes", [])
        trees = len(set(att.get("nodes_treeids", [])))
        splits = sum(1 for m in modes if m != b"LEAF")
        reason = _why_not(n, att, floats) if opset >= MIN_OPSET else f"opset {opset} < 13"
        out.append(TreePlan(n.name or n.output[-1], n.op_type, trees, splits, reason))
    return out


@dataclass
class _Tree:
    features: list[int]
    thresholds: list[float]
    paths: np.ndarray  # [leaves, splits]: +1 left of the split, -1 right, 0 not under it
    lefts: np.ndarray  # [leaves]: how many +1 in the row
    values: np.ndarray  # [leaves, outputs]


def _trees(att: dict[str, Any], outputs: int, prefix: str) -> list[_Tree]:
    index: dict[int, dict[int, int]] = defaultdict(dict)
    for i, (t, n) in enumerate(zip(att["nodes_treeids"], att["nodes_nodeids"], strict=True)):
        index[t][n] = i
    weights: dict[tuple[int, int], np.ndarray] = defaultdict(lambda: np.zeros(outputs))
    for t, n, k, w in zip(
        att[f"{prefix}_treeids"], att[f"{prefix}_nodeids"], att[f"{prefix}_ids"],
        att[f"{prefix}_weights"], strict=True,
    ):  # fmt: skip
        weights[(t, n)][k] += w
    modes, true, false = att["nodes_modes"], att["nodes_truenodeids"], att["nodes_falsenodeids"]
    out = []
    for t, nodes in sorted(index.items()):
        splits = [n for n in sorted(nodes) if modes[nodes[n]] != b"LEAF"]
        leaves = [n for n in sorted(nodes) if modes[nodes[n]] == b"LEAF"]
        column = {n: k for k, n in enumerate(splits)}
        row = {n: k for k, n in enumerate(leaves)}
        paths = np.zeros((len(leaves), len(splits)), np.float32)
        children = {c for n in splits for c in (true[nodes[n]], false[nodes[n]])}
        roots = set(nodes) - children
        if len(roots) != 1 or len(leaves) != len(splits) + 1:  # not one binary tree
            raise ValueError(f"tree {t} has {len(roots)} roots, {len(splits)} splits and "
                             f"{len(leaves)} leaves")  # fmt: skip
        (root,) = roots
        stack: list[tuple[int, list[tuple[int, int]]]] = [(root, [])]  # depth first
        seen: set[int] = set()
        while stack:
            n, path = stack.pop()
            if n in seen:
                raise ValueError(f"tree {t} reaches node {n} twice")
            seen.add(n)
            i = nodes[n]
            if modes[i] == b"LEAF":
                for split, side in path:
                    paths[row[n], column[split]] = side
                continue
            stack.append((true[i], [*path, (n, 1)]))
            stack.append((false[i], [*path, (n, -1)]))
        if len(seen) != len(nodes):
            raise ValueError(f"tree {t} has nodes its root does not reach")
        out.append(
            _Tree(
                [int(att["nodes_featureids"][nodes[n]]) for n in splits],
                [float(att["nodes_values"][nodes[n]]) for n in splits],
                paths,
                (paths > 0).sum(axis=1).astype(np.float32),
                np.stack([weights[(t, n)] for n in leaves]),
            )
        )
    return out


class _Builder:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{self.prefix}{hint}_{self._n}"

    def const(self, value: np.ndarray, hint: str = "c") -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(value, name))
        return name

    def op(self, op: str, inputs: Sequence[str], output: str | None = None, **kw: Any) -> str:
        out = output or self.name(op.lower())
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=self.name(op), **kw))
        return out


def _sum_of_trees(b: _Builder, x: str, trees: list[_Tree], outputs: int, compare: str) -> str:
    """[outputs, rows]: the sum over ``trees`` of each row's leaf values.

    One 2-D Gemm per tree, not a batched MatMul per group of equal-sized trees: the bias and
    the Relu fuse into the Gemm only in 2-D (replacing an Equal and a Cast), and a tree's
    ``[leaves, rows]`` block stays in cache. That is faster in batches, the job's case, and
    slower for a single row, which runs a few ops per tree."""
    xt = b.op("Transpose", [x], perm=[1, 0])  # [features, rows]: a split's values are a row
    constant = np.zeros(outputs)
    parts = []
    for t in trees:
        if not t.features:  # a tree that is one leaf adds its value to every row
            constant += t.values[0]
            continue
        took = b.op("Gather", [xt, b.const(np.array(t.features, np.int64), "features")], axis=0)
        thresholds = np.array(t.thresholds, np.float32).reshape(-1, 1)
        went = b.op(compare, [took, b.const(thresholds, "thresholds")])
        sides = b.op("Cast", [went], to=TensorProto.FLOAT)  # [splits, rows]
        bias = b.const((1 - t.lefts).reshape(-1, 1), "bias")
        hits = b.op("Gemm", [b.const(t.paths, "paths"), sides, bias])  # [leaves, rows]
        leaf = b.op("Relu", [hits])  # 1 on the leaf each row reaches, 0 on the others
        values = t.values.T.astype(np.float32)
        parts.append(b.op("MatMul", [b.const(values, "values"), leaf]))  # [outputs, rows]
    column = constant.astype(np.float32).reshape(-1, 1)
    if not parts:  # every tree is one leaf: the constant, once per row
        rows = b.op(
            "Slice", [b.op("Shape", [xt]), *(b.const(np.array([i], np.int64)) for i in (1, 2))]
        )
        shape = b.op("Concat", [b.const(np.array([outputs], np.int64)), rows], axis=0)
        ones = b.op(
            "ConstantOfShape", [shape], value=numpy_helper.from_array(np.ones(1, np.float32))
        )
        return b.op("Mul", [ones, b.const(column)])
    total = parts[0] if len(parts) == 1 else b.op("Sum", parts)
    return b.op("Add", [total, b.const(column)]) if constant.any() else total


def _rewrite_node(node: onnx.NodeProto, prefix: str) -> tuple[list[onnx.NodeProto], list[Any]]:
    att = _attributes(node)
    b = _Builder(prefix)
    compare = _COMPARE[next((m for m in att["nodes_modes"] if m != b"LEAF"), b"BRANCH_LEQ")]
    x = node.input[0]
    if node.op_type == "TreeEnsembleClassifier":
        labels: list[Any] = list(
            att.get("classlabels_strings") or att.get("classlabels_int64s") or []
        )
        trees = _trees(att, len(labels), "class")
        total = _sum_of_trees(b, x, trees, len(labels), compare)
        scores = b.op("Transpose", [total], node.output[1] if len(node.output) > 1 else None,
                      perm=[1, 0])  # fmt: skip
        best = b.op("ArgMax", [scores], axis=1, keepdims=0)
        if att.get("classlabels_strings"):
            table = b.name("labels")
            b.inits.append(helper.make_tensor(table, TensorProto.STRING, [len(labels)], labels))
        else:
            table = b.const(np.array(labels, np.int64), "labels")
        b.op("Gather", [table, best], node.output[0], axis=0)
    else:
        n = int(att["n_targets"])
        trees = _trees(att, n, "target")
        total = _sum_of_trees(b, x, trees, n, compare)
        if att.get("aggregate_function", b"SUM") == b"AVERAGE":
            total = b.op("Div", [total, b.const(np.full((1, 1), len(trees), np.float32))])
        base = att.get("base_values")
        if base:
            total = b.op("Add", [total, b.const(np.array(base, np.float32).reshape(-1, 1))])
        b.op("Transpose", [total], node.output[0], perm=[1, 0])
    return b.nodes, b.inits


def rewrite(model: onnx.ModelProto, form: str = "auto") -> tuple[onnx.ModelProto, list[TreePlan]]:
    """``model`` with its tree ensembles in matmul form where ``form`` asks and they can be.

    ``form``: ``"auto"`` (those with small trees, :data:`MAX_MEAN_SPLITS`), ``"matmul"``
    (every one that can be), ``"ensemble"`` (none). Returns the model (a copy when changed)
    and the plans of the ensembles rewritten; ``plan(model)`` says why the others were not.
    """
    if form not in FORMS:
        raise ValueError(f"unknown tree form {form!r}; use one of {', '.join(FORMS)}")
    if form == "ensemble":
        return model, []
    plans = {p.node: p for p in plan(model)}
    chosen = {
        name: p
        for name, p in plans.items()
        if not p.reason and (form == "matmul" or p.mean_splits <= MAX_MEAN_SPLITS)
    }
    if not chosen:
        return model, []
    out = onnx.ModelProto()
    out.CopyFrom(model)
    nodes: list[onnx.NodeProto] = []
    for k, node in enumerate(out.graph.node):
        name = node.name or node.output[-1]
        if node.domain == ML and name in chosen:
            try:
                new, inits = _rewrite_node(node, f"trees{k}_")
            except (ValueError, KeyError):  # attributes that do not describe binary trees
                chosen.pop(name)
                nodes.append(node)
                continue
            nodes += new
            out.graph.initializer.extend(inits)
        else:
            nodes.append(node)
    if not chosen:
        return model, []
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if not any(n.domain == ML for n in nodes):  # nothing left of the ML domain
        keep = [o for o in out.opset_import if o.domain != ML]
        del out.opset_import[:]
        out.opset_import.extend(keep)
    onnx.checker.check_model(out)
    return out, list(chosen.values())
