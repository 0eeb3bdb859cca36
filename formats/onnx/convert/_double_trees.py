"""Float64 tree models that ONNX Runtime runs: HistGradientBoosting's trees as a
``TreeEnsembleRegressor`` with their exact thresholds (then, for a classifier, its own last
steps).

HistGradientBoosting compares float64 values with float64 thresholds, and its thresholds can
sit on data values (42.3): a value a rounding error away (42.300000000000004, as arithmetic on
data makes it) is greater in float64 and equal in float32, so in float32 the split goes the
other way for every row holding it. A flipped split can move a probability far, and the
job's parity gate then refuses the bundle. skl2onnx's float64 model of the classifier
cannot help: its ``TreeEnsembleClassifier`` has float32 thresholds, and ONNX Runtime refuses
one with a double output. Its ``TreeEnsembleRegressor`` takes double inputs and double
thresholds (``nodes_values_as_tensor``), so the classifier node is replaced by:

    TreeEnsembleRegressor (every class's raw score, thresholds from the fitted model)
    -> Softmax (multi-class) or [1 - sigmoid, sigmoid] (binary), as scikit-learn computes
       predict_proba -> Cast to double: ``probabilities``
    -> ArgMax -> Gather(classes): ``label``, predict's argmax (first index on ties)

and the numeric imputers, which have no double kernel, become ``Where(IsNaN(x), values, x)``.
A regressor's ``TreeEnsembleRegressor``, whose double output ONNX Runtime refuses too, gets
the exact thresholds and a float output cast to double.

The exact thresholds come from the fitted trees (``_predictors``, in skl2onnx's order: tree
``iteration * trees_per_iteration + k``, node = its index); the rewrite is refused (None)
unless each one rounds to the threshold skl2onnx wrote.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from formats.sklearn_formats import final_estimator

__all__ = ["exact_trees"]

_COPIED = ("nodes_featureids", "nodes_modes", "nodes_nodeids", "nodes_treeids",
           "nodes_truenodeids", "nodes_falsenodeids", "nodes_missing_value_tracks_true",
           "nodes_hitrates")  # fmt: skip


def exact_trees(proto: onnx.ModelProto, estimator: Any) -> onnx.ModelProto | None:
    """``proto`` (skl2onnx's float64 conversion of ``estimator``) with its trees rewritten as
    above; None where this does not apply (another model, a form not known)."""
    final = final_estimator(estimator)
    kind = type(final).__name__
    if kind == "HistGradientBoostingRegressor":
        return _exact_regressor(proto, final)
    if kind != "HistGradientBoostingClassifier":
        return None
    found = [n for n in proto.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(found) != 1:
        return None
    node = found[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    post = attrs.get("post_transform", b"NONE")
    classes = attrs.get("classlabels_strings") or attrs.get("classlabels_int64s")
    thresholds = _thresholds(final, attrs)
    if thresholds is None or not classes or post not in (b"SOFTMAX", b"LOGISTIC"):
        return None
    binary = post == b"LOGISTIC"
    if binary != (len(classes) == 2) or "base_values" not in attrs:
        return None
    targets = 1 if binary else len(classes)
    x, (label, probabilities) = node.input[0], node.output
    name = node.name or "trees"
    scores, proba = f"{name}_scores", f"{name}_proba"
    kept: dict[str, Any] = {k: list(attrs[k]) for k in _COPIED if k in attrs}
    regressor = helper.make_node(
        "TreeEnsembleRegressor", [x], [scores], domain="ai.onnx.ml", name=f"{name}_regressor",
        n_targets=targets, aggregate_function="SUM", post_transform="NONE",
        nodes_values_as_tensor=numpy_helper.from_array(thresholds, f"{name}_thresholds"),
        target_ids=list(attrs["class_ids"]), target_nodeids=list(attrs["class_nodeids"]),
        target_treeids=list(attrs["class_treeids"]), target_weights=list(attrs["class_weights"]),
        base_values=list(attrs["base_values"]), **kept,
    )  # fmt: skip
    nodes = [regressor]
    if binary:  # scikit-learn's binary predict_proba: [1 - sigmoid(raw), sigmoid(raw)]
        one = numpy_helper.from_array(np.array(1.0, np.float32), f"{name}_one")
        proto.graph.initializer.append(one)
        nodes += [
            helper.make_node("Sigmoid", [scores], [f"{name}_p1"]),
            helper.make_node("Sub", [one.name, f"{name}_p1"], [f"{name}_p0"]),
            helper.make_node("Concat", [f"{name}_p0", f"{name}_p1"], [proba], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Softmax", [scores], [proba], axis=1))
    if isinstance(classes[0], bytes):
        table = helper.make_tensor(f"{name}_classes", TensorProto.STRING, [len(classes)],
                                   list(classes))  # fmt: skip
    else:
        table = numpy_helper.from_array(np.asarray(classes, np.int64), f"{name}_classes")
    proto.graph.initializer.append(table)
    nodes += [
        helper.make_node("Cast", [proba], [probabilities], to=_elem_type(proto, probabilities)),
        helper.make_node("ArgMax", [probabilities], [f"{name}_index"], axis=1, keepdims=0),
        helper.make_node("Gather", [table.name, f"{name}_index"], [label], axis=0),
    ]
    return _replace(proto, node, nodes)


def _exact_regressor(proto: onnx.ModelProto, final: Any) -> onnx.ModelProto | None:
    """The regressor's trees with the fitted thresholds; their float sum cast to the double
    output skl2onnx declared (ONNX Runtime's tree regressor returns float)."""
    found = [n for n in proto.graph.node if n.op_type == "TreeEnsembleRegressor"]
    if len(found) != 1:
        return None
    node = found[0]
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    thresholds = _thresholds(final, attrs)
    if thresholds is None:
        return None
    name = node.name or "trees"
    kept = {k: v for k, v in attrs.items() if k != "nodes_values"}
    regressor = helper.make_node(
        "TreeEnsembleRegressor", list(node.input), [f"{name}_sum"], domain="ai.onnx.ml",
        name=f"{name}_exact", **kept,
        nodes_values_as_tensor=numpy_helper.from_array(thresholds, f"{name}_thresholds"),
    )  # fmt: skip
    out = node.output[0]
    cast = helper.make_node("Cast", [f"{name}_sum"], [out], to=_elem_type(proto, out))
    return _replace(proto, node, [regressor, cast])


def _replace(proto: onnx.ModelProto, node: onnx.NodeProto,
             nodes: list[onnx.NodeProto]) -> onnx.ModelProto:  # fmt: skip
    """``node`` replaced by ``nodes``, the numeric imputers by ``Where``, and ai.onnx.ml at
    opset 3 (``nodes_values_as_tensor``'s; 3 changed only the tree ensembles)."""
    _imputers_as_where(proto)
    for opset in proto.opset_import:
        if opset.domain == "ai.onnx.ml" and opset.version < 3:
            opset.version = 3
    at = list(proto.graph.node).index(node)
    proto.graph.node.remove(node)
    for i, new in enumerate(nodes):
        proto.graph.node.insert(at + i, new)
    return proto


def _thresholds(final: Any, attrs: dict[str, Any]) -> np.ndarray | None:
    """The fitted model's float64 threshold for every node skl2onnx wrote (0 for a leaf), in
    its order; None unless every one rounds to what it wrote."""
    predictors = getattr(final, "_predictors", None)
    if not predictors or "nodes_values" not in attrs:
        return None
    per_iteration = len(predictors[0])
    out = np.zeros(len(attrs["nodes_values"]), np.float64)
    modes = attrs["nodes_modes"]
    for i, (tree, node) in enumerate(zip(attrs["nodes_treeids"], attrs["nodes_nodeids"],
                                         strict=True)):  # fmt: skip
        if modes[i] == b"LEAF":
            continue
        if modes[i] != b"BRANCH_LEQ":
            return None
        nodes = predictors[tree // per_iteration][tree % per_iteration].nodes
        out[i] = float(nodes[node]["num_threshold"])
    written = np.asarray(attrs["nodes_values"], np.float32)
    return out if np.array_equal(out.astype(np.float32), written) else None


def _imputers_as_where(proto: onnx.ModelProto) -> None:
    """ai.onnx.ml's ``Imputer`` has no double kernel in ONNX Runtime: each becomes
    ``Where(IsNaN(x), values, x)`` (``Equal`` for a replaced value that is not NaN), in
    double, which is what SimpleImputer does."""
    for node in [n for n in proto.graph.node if n.op_type == "Imputer"]:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        values = np.asarray(attrs.get("imputed_value_floats", []), np.float64)
        if values.size == 0:
            continue  # integer imputation: left as it is
        replaced = float(attrs.get("replaced_value_float", np.nan))
        name = node.name or node.output[0]
        const = numpy_helper.from_array(values.reshape(1, -1), f"{name}_values")
        proto.graph.initializer.append(const)
        x, out = node.input[0], node.output[0]
        if np.isnan(replaced):
            test = helper.make_node("IsNaN", [x], [f"{name}_missing"])
        else:
            ref = numpy_helper.from_array(np.array(replaced, np.float64), f"{name}_replaced")
            proto.graph.initializer.append(ref)
            test = helper.make_node("Equal", [x, ref.name], [f"{name}_missing"])
        where = helper.make_node("Where", [f"{name}_missing", const.name, x], [out])
        at = list(proto.graph.node).index(node)
        proto.graph.node.remove(node)
        proto.graph.node.insert(at, where)
        proto.graph.node.insert(at, test)


def _elem_type(proto: onnx.ModelProto, name: str) -> int:
    for value in proto.graph.output:
        if value.name == name:
            return int(value.type.tensor_type.elem_type)
    return TensorProto.DOUBLE
