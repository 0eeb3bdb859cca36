"""``inspect``: what is inside an ONNX model, without running it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from formats.errors import InputError, ModelLoadError, UsageError
from formats.signature import numpy_dtype_from_onnx

if TYPE_CHECKING:
    import onnx

__all__ = ["ModelSummary", "inspect"]

_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass
class ModelSummary:
    inputs: list[dict[str, Any]]  # {"name", "dtype", "shape"}; shape entries int | str | None
    outputs: list[dict[str, Any]]
    opsets: dict[str, int]  # domain ("ai.onnx" for the default one) -> version
    ir_version: int
    producer_name: str
    producer_version: str
    metadata: dict[str, str]
    op_histogram: dict[str, int]  # op type (domain-qualified when not ai.onnx) -> count
    node_count: int
    parameter_count: int  # elements in initializers
    parameter_bytes: int
    path: str | None = None
    file_bytes: int | None = None
    model_version: int = 0
    domain: str = ""
    doc_string: str = ""
    external_data: bool = False
    functions: list[str] = field(default_factory=list)  # model-local functions, domain:name

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render(self) -> Any:
        """A rich renderable: header, inputs/outputs, opsets and metadata, operator counts."""
        from rich.console import Group
        from rich.markup import escape
        from rich.table import Table
        from rich.text import Text

        head = Text()
        head.append(self.path or "<ModelProto>", style="bold")
        producer = f"{self.producer_name} {self.producer_version}".strip() or "unknown"
        head.append(
            f"\nproducer {producer}, IR version {self.ir_version}, "
            f"{self.node_count} node(s), {self.parameter_count:,} parameter(s) "
            f"({_bytes(self.parameter_bytes)})"
        )
        if self.file_bytes is not None:
            head.append(f", file {_bytes(self.file_bytes)}")
        if self.external_data:
            head.append(", weights in external data")

        tensors = Table(title="inputs and outputs", title_justify="left", show_edge=False)
        for column in ("", "name", "dtype", "shape"):
            tensors.add_column(column)
        for kind, specs in (("input", self.inputs), ("output", self.outputs)):
            for spec in specs:
                tensors.add_row(
                    kind, escape(spec["name"]), escape(spec["dtype"]), escape(_shape(spec["shape"]))
                )

        info = Table(title="opsets and metadata", title_justify="left", show_edge=False)
        info.add_column("key")
        info.add_column("value")
        for domain, version in self.opsets.items():
            info.add_row(escape(f"opset {domain}"), str(version))
        for key, value in self.metadata.items():
            info.add_row(escape(key), escape(value if len(value) < 80 else value[:77] + "..."))

        ops = Table(title="operators", title_justify="left", show_edge=False)
        ops.add_column("op")
        ops.add_column("count", justify="right")
        for op, count in self.op_histogram.items():
            ops.add_row(escape(op), str(count))
        return Group(head, tensors, info, ops)


def inspect(model: str | Path | onnx.ModelProto) -> ModelSummary:
    """Summarize an ONNX file or proto: signature, opsets, producer, operators, parameters."""
    import onnx

    from formats.onnx.convert.onnx import load_onnx

    path: Path | None = None
    if not isinstance(model, onnx.ModelProto):
        path = Path(model)
        try:
            # Weights are not needed to count them; external data stays on disk.
            model = load_onnx(path, load_external_data=False)
        except ModelLoadError as exc:
            if path.suffix.lower() != ".onnx" and not path.is_dir():
                raise UsageError(
                    f"inspect reads ONNX models and {str(path)!r} is not one; convert it first "
                    "with 'python -m formats convert'"
                ) from exc
            raise
    initializers = {init.name for init in model.graph.initializer}
    histogram: Counter[str] = Counter()
    for node in _nodes(model.graph):
        domain = "" if node.domain in _DEFAULT_DOMAINS else node.domain
        histogram[f"{domain}:{node.op_type}" if domain else node.op_type] += 1
    count, size = _parameters(model.graph)
    return ModelSummary(
        inputs=[_describe(vi) for vi in model.graph.input if vi.name not in initializers],
        outputs=[_describe(vi) for vi in model.graph.output],
        opsets={
            (o.domain if o.domain not in _DEFAULT_DOMAINS else "ai.onnx"): int(o.version)
            for o in model.opset_import
        },
        ir_version=int(model.ir_version),
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        metadata={p.key: p.value for p in model.metadata_props},
        op_histogram=dict(histogram.most_common()),
        node_count=sum(histogram.values()),
        parameter_count=count,
        parameter_bytes=size,
        path=str(path) if path else None,
        file_bytes=path.stat().st_size if path else None,
        model_version=int(model.model_version),
        domain=model.domain,
        doc_string=model.doc_string,
        external_data=any(
            init.data_location == onnx.TensorProto.EXTERNAL for init in model.graph.initializer
        ),
        functions=[f"{f.domain}:{f.name}" for f in model.functions],
    )


def _describe(value_info: onnx.ValueInfoProto) -> dict[str, Any]:
    """Like a TensorSpec, but never refuses: exotic element types are shown by their ONNX name."""
    import onnx

    kind = value_info.type.WhichOneof("value")
    if kind != "tensor_type":
        return {"name": value_info.name, "dtype": f"<{kind}>", "shape": []}
    tensor = value_info.type.tensor_type
    try:
        dtype = numpy_dtype_from_onnx(tensor.elem_type)
    except InputError:
        dtype = onnx.TensorProto.DataType.Name(tensor.elem_type).lower()
    shape: list[int | str | None] = []
    for dim in tensor.shape.dim if tensor.HasField("shape") else ():
        if dim.HasField("dim_value"):
            shape.append(int(dim.dim_value))
        else:
            shape.append(str(dim.dim_param) if dim.HasField("dim_param") else None)
    return {"name": value_info.name, "dtype": dtype, "shape": shape}


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, including those in the bodies of If, Loop and Scan."""
    import onnx

    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _nodes(sub)


def _parameters(graph: onnx.GraphProto) -> tuple[int, int]:
    """Elements and bytes of all initializers (from their dims, so external data need not load)."""
    count = size = 0
    for init in graph.initializer:
        elements = int(np.prod(init.dims, dtype=np.int64)) if init.dims else 1
        count += elements
        size += elements * _itemsize(init.data_type)
    for sparse in graph.sparse_initializer:
        elements = int(np.prod(sparse.values.dims, dtype=np.int64)) if sparse.values.dims else 1
        count += elements
        size += elements * _itemsize(sparse.values.data_type)
    return count, size


def _itemsize(data_type: int) -> int:
    import onnx
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(data_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 0  # strings and exotic types: no fixed width to count


def _shape(shape: list[Any]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
