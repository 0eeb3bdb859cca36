"""ONNX graph surgery shared by the converters whose exporters we do not control.

skl2onnx, onnxmltools and CatBoost's exporter each hand back a graph that needs the same
finishing before it can be served: ZipMap outputs (sequences of maps) replaced by their
probability tensors, outputs renamed, a symbolic batch axis, and output shapes corrected where
the exporter declared them wrongly. :func:`finish_graph` does all of it.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx

from formats._text import one_line
from formats.errors import ConversionError
from formats.onnx.convert.base import Feed

__all__ = [
    "finish_graph",
    "non_tensor_outputs",
    "opset_of",
    "rename_value",
    "run_on_sample",
    "strip_zipmap",
]


def opset_of(model: onnx.ModelProto) -> int | None:
    """The default-domain opset the model imports (None when it imports none)."""
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def non_tensor_outputs(proto: onnx.ModelProto) -> list[str]:
    """Outputs that are not plain tensors (ZipMap's sequences of maps, ...): not servable."""
    return [o.name for o in proto.graph.output if o.type.WhichOneof("value") != "tensor_type"]


def _all_names(graph: onnx.GraphProto) -> set[str]:
    names = {n for node in graph.node for n in (*node.input, *node.output)}
    names.update(v.name for v in (*graph.input, *graph.output, *graph.value_info))
    names.update(i.name for i in graph.initializer)
    return names


def rename_value(graph: onnx.GraphProto, old: str, new: str) -> None:
    """Rename a value everywhere in the graph; a different value already named ``new`` moves."""
    if old == new:
        return
    names = _all_names(graph)
    if new in names:
        spare = new
        while spare in names:
            spare += "_"
        rename_value(graph, new, spare)
    for node in graph.node:
        for field in (node.input, node.output):
            for i, name in enumerate(field):
                if name == old:
                    field[i] = new
    for value in (*graph.input, *graph.output, *graph.value_info, *graph.initializer):
        if value.name == old:
            value.name = new


def strip_zipmap(proto: onnx.ModelProto) -> list[str]:
    """Replace ZipMap outputs (a sequence of {class: probability}) by their probability tensor.

    ZipMap only repackages the ``[batch, classes]`` float tensor it consumes, so the tensor is
    exposed under the output's name instead. Returns the outputs replaced.
    """
    graph = proto.graph
    producers = {out: node for node in graph.node for out in node.output}
    replaced = []
    for position, output in enumerate(list(graph.output)):
        if output.type.WhichOneof("value") == "tensor_type":
            continue
        node = producers.get(output.name)
        if node is None or node.op_type != "ZipMap":
            continue
        labels = [a for a in node.attribute if a.name.startswith("classlabels")]
        classes = len(labels[0].ints or labels[0].strings) if labels else None
        source = node.input[0]
        graph.node.remove(node)
        graph.output.remove(graph.output[position])
        rename_value(graph, source, output.name)
        graph.output.insert(
            position,
            onnx.helper.make_tensor_value_info(
                output.name, onnx.TensorProto.FLOAT, ["batch", classes]
            ),
        )
        replaced.append(output.name)
    return replaced


def _set_batch_axis(value: onnx.ValueInfoProto, rank: int | None = None) -> None:
    tensor = value.type.tensor_type
    if rank is not None and len(tensor.shape.dim) != rank:
        del tensor.shape.dim[:]
        for _ in range(rank):
            tensor.shape.dim.add()
    if tensor.shape.dim:
        dim = tensor.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = "batch"


def finish_graph(
    proto: onnx.ModelProto, rename: Mapping[str, str], feed: Feed | None = None
) -> onnx.ModelProto:
    """Make a converted tree or sklearn model servable and honestly described.

    ZipMap outputs become tensors, outputs get their final names, every input and output gets a
    symbolic ``batch`` first axis (one row in, one row out for all these models), and declared
    output shapes are corrected from a run on the sample where the exporter got them wrong
    (LightGBM declares its label ``[1]``, CatBoost its regression output ``[N]`` for ``[N, 1]``).
    """
    _dedupe_opsets(proto)
    strip_zipmap(proto)
    bad = non_tensor_outputs(proto)
    if bad:
        raise ConversionError(
            f"the converted model has non-tensor output(s) {bad} that cannot be served; "
            "this model type is not supported yet"
        )
    for old, new in rename.items():
        rename_value(proto.graph, old, new)
    for value in proto.graph.input:
        if value.name not in {i.name for i in proto.graph.initializer}:
            _set_batch_axis(value)
    # Empty when ONNX Runtime cannot run the model: verification reports why.
    actual = run_on_sample(proto, feed)[0] if feed else {}
    for value in proto.graph.output:
        shape = actual.get(value.name)
        dims = value.type.tensor_type.shape.dim
        if shape is not None and (
            len(dims) != len(shape)
            or any(
                d.HasField("dim_value") and d.dim_value != s
                for d, s in zip(dims[1:], shape[1:], strict=False)
            )
        ):
            _set_batch_axis(value, len(shape))
            for dim, size in zip(value.type.tensor_type.shape.dim[1:], shape[1:], strict=True):
                dim.dim_value = size
        else:
            _set_batch_axis(value)
    return proto


def run_on_sample(
    proto: onnx.ModelProto, feed: Feed
) -> tuple[dict[str, tuple[int, ...]], str | None]:
    """Run the model once on CPU: its output shapes, or the first line of why it cannot run."""
    import onnxruntime as ort

    try:
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # the wrong declared shapes being fixed here warn otherwise
        session = ort.InferenceSession(
            proto.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, dict(feed))
    except Exception as exc:  # ORT raises its own unexported exception types
        return {}, one_line(exc).rsplit(" : ", 1)[-1]
    return {name: tuple(np.shape(v)) for name, v in zip(names, values, strict=True)}, None


def _dedupe_opsets(proto: onnx.ModelProto) -> None:
    """skl2onnx can import a domain twice; keep one entry per domain, at its highest version."""
    versions: dict[str, int] = {}
    for entry in proto.opset_import:
        versions[entry.domain] = max(versions.get(entry.domain, 0), entry.version)
    if len(versions) != len(proto.opset_import):
        del proto.opset_import[:]
        for domain, opset_version in versions.items():
            proto.opset_import.append(onnx.helper.make_opsetid(domain, opset_version))
