"""Offline graph optimization: ONNX Runtime rewrites the graph once and we keep the result.

ONNX Runtime applies the same rewrites every time it loads a model; doing it offline makes the
stored graph the one that runs (inspectable, faster to load). Levels, from ONNX Runtime:

* ``basic``: constant folding, redundant node elimination: standard ONNX ops only, portable.
* ``extended``: adds fusions into ONNX Runtime contrib ops (``com.microsoft`` domain, e.g.
  FusedConv, FusedGemm); the model then needs ONNX Runtime, on any processor.
* ``all``: adds layout rewrites (``com.microsoft.nchwc``) chosen for *this* processor's vector
  width; ONNX Runtime warns that such a model should only run where it was optimized. modelport
  stores it when asked, and the report says so.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from modelport.errors import ModelLoadError, UsageError

__all__ = ["HARDWARE_SPECIFIC_LEVELS", "LEVELS", "optimize_graph", "strip_unused_opsets"]

LEVELS = ("basic", "extended", "all")
HARDWARE_SPECIFIC_LEVELS = ("all",)


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise UsageError(f"unknown optimization level {level!r}; use one of {', '.join(LEVELS)}")
    return level


def optimize_graph(model: onnx.ModelProto, level: str) -> onnx.ModelProto:
    """The graph ONNX Runtime's CPU provider produces at ``level``, as a new ModelProto."""
    import onnxruntime as ort

    check_level(level)
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory(prefix="modelport-graph-") as tmp:
        target = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(target)
        options.log_severity_level = 3  # the 'all' level's portability warning is in our report
        try:
            ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own unexported exception types
            raise ModelLoadError(
                f"ONNX Runtime cannot optimize the model at level {level!r}: {exc}"
            ) from exc
        optimized = onnx.load(str(target))
    return strip_unused_opsets(optimized)


def strip_unused_opsets(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop opset imports no node uses: ONNX Runtime writes every domain it knows of."""
    used = {node.domain for node in _all_nodes(model.graph)}
    used |= {func.domain for func in model.functions}
    for func in model.functions:
        used |= {node.domain for node in func.node}
    keep = [op for op in model.opset_import if op.domain in used or op.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    return model


def _all_nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    nodes = list(graph.node)
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                nodes += _all_nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    nodes += _all_nodes(sub)
    return nodes
