"""A classifier's label returned as the class index its graph already computed.

The bundle's forests in matrix-product form (:mod:`formats.onnx.trees_matmul`) end in
``label = Gather(classes, ArgMax(probabilities, axis=1))``. When the label is a string, ONNX
Runtime copies one ``std::string`` per row into the Gather's output and then makes one Python
``str`` per row to hand it over, and the Spark job's worker reads those back into an Arrow
string column: work per row, all to look up one of a few values. :func:`label_as_index` returns the model with the ArgMax's int64 output as
``label_index`` in place of ``label``; the caller looks the class up itself (the job: an Arrow
``take`` from the class names, with no Python object per row).

Rewritten only where the label is that lookup exactly: a Gather on axis 0 from a constant
holding the classes, in order, of an ArgMax over the ``probabilities`` output on its class
axis, first index on ties (``select_last_index`` 0, as numpy's argmax). Otherwise the model is
left as it is and its label output is read as before. The index is the one the original's
Gather reads, so the label is the original's, row for row.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from formats.schema import canonical_columns

if TYPE_CHECKING:
    import onnx

__all__ = ["LABEL_INDEX", "label_as_index"]

LABEL_INDEX = "label_index"


def _constant(graph: onnx.GraphProto, name: str) -> np.ndarray | None:
    from onnx import numpy_helper
    for init in graph.initializer:
        if init.name == name:
            return numpy_helper.to_array(init)
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in ("", "ai.onnx") and name in node.output:
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
    return None


def _attr(node: onnx.NodeProto, name: str, default: int) -> int:
    from onnx import helper
    for a in node.attribute:
        if a.name == name:
            return int(helper.get_attribute_value(a))
    return default


def _same_classes(table: np.ndarray, classes: Sequence[Any]) -> bool:
    """The Gather's constant, read as the label is read (canonical_columns), is ``classes``
    in order: then ``classes[index]`` is the label the original returns."""
    values = np.array(
        [v.decode() if isinstance(v, bytes) else v for v in table.reshape(-1).tolist()],
        dtype=object,
    )
    if len(values) != len(classes):
        return False
    read = canonical_columns("classification", list(classes), label=values)["label"]
    return all(type(a) is type(b) and a == b for a, b in zip(read.tolist(), classes, strict=True))


def label_as_index(model: onnx.ModelProto, classes: Sequence[Any]) -> onnx.ModelProto | None:
    """``model`` with its ``label`` output replaced by ``label_index`` (int64, the row's class
    index into ``classes``), or None where the label is not that lookup (see the module)."""
    import onnx
    from onnx import helper

    g = model.graph
    outputs = [o.name for o in g.output]
    if "label" not in outputs or "probabilities" not in outputs or LABEL_INDEX in outputs:
        return None
    producer = {o: n for n in g.node for o in n.output}
    gather = producer.get("label")
    if gather is None or gather.op_type != "Gather" or gather.domain not in ("", "ai.onnx"):
        return None
    if _attr(gather, "axis", 0) != 0 or len(gather.input) != 2:
        return None
    table = _constant(g, gather.input[0])
    if table is None or table.ndim != 1 or not _same_classes(table, classes):
        return None
    argmax = producer.get(gather.input[1])
    if argmax is None or argmax.op_type != "ArgMax" or argmax.domain not in ("", "ai.onnx"):
        return None
    if list(argmax.input) != ["probabilities"] or _attr(argmax, "select_last_index", 0) != 0:
        return None
    if _attr(argmax, "axis", 0) not in (1, -1):  # probabilities are [batch, classes]
        return None
    index = argmax.output[0]
    if index in outputs or any(index in n.input for n in g.node if n is not gather):
        return None  # the index feeds something else too: leave the graph as it is
    rewritten = onnx.ModelProto()
    rewritten.CopyFrom(model)
    graph = rewritten.graph
    kept = [n for n in graph.node if list(n.output) != ["label"]]
    del graph.node[:]
    graph.node.extend(kept)
    for node in graph.node:  # the ArgMax's output takes the new name
        for i, name in enumerate(node.output):
            if name == index:
                node.output[i] = LABEL_INDEX
    used = {i for n in graph.node for i in n.input}
    if gather.input[0] not in used:  # the class table, now read by nothing
        tables = [t for t in graph.initializer if t.name != gather.input[0]]
        del graph.initializer[:]
        graph.initializer.extend(tables)
        constants = [n for n in graph.node if gather.input[0] not in n.output]
        del graph.node[:]
        graph.node.extend(constants)
    label_at = outputs.index("label")
    rank = 1 if _attr(argmax, "keepdims", 1) == 0 else 2
    shape: list[Any] = ["batch"] if rank == 1 else ["batch", 1]
    graph.output.remove(graph.output[label_at])
    graph.output.insert(
        label_at, helper.make_tensor_value_info(LABEL_INDEX, onnx.TensorProto.INT64, shape)
    )
    return rewritten
