"""Exporting a torch module: the torch.export-based exporter first, TorchScript as the fallback.

The dynamo exporter (``dynamo=True``) goes first because it refuses what it cannot capture
faithfully, such as a branch on a tensor's value; the TorchScript exporter is the fallback, and
``result.source`` says which one produced the model and why the first one failed. A TorchScript
trace freezes data-dependent branches silently, which is exactly what verification runs several
inputs to catch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from formats.errors import ConversionError, InputError, UsageError
from formats.onnx.convert._graph import opset_of
from formats.onnx.convert._torch_run import (
    TorchSample,
    call_module,
    describe_error,
    eval_mode,
    make_runner,
    torch_module,
)
from formats.onnx.convert.base import ConversionResult, ConvertOptions, Tolerance
from formats.signature import Signature

__all__ = ["EXPORTERS", "EXPORTER_ENV", "export_module"]

EXPORTERS = ("dynamo", "torchscript")
# Lets a user pin the exporter without touching code (the option wins over the variable).
EXPORTER_ENV = "MODELPORT_TORCH_EXPORTER"
TOLERANCE = Tolerance(atol=1e-4, rtol=1e-3)


def export_module(
    module: Any,
    sample: TorchSample,
    options: ConvertOptions,
    *,
    framework: str,
    source: Mapping[str, Any] | None = None,
) -> ConversionResult:
    """Export ``module`` with ``sample``: dynamo first, TorchScript as the recorded fallback."""
    torch = torch_module()
    try:
        flat = call_module(module, sample.arrays)
    except Exception as exc:
        shapes = ", ".join(f"{n} {list(a.shape)} {a.dtype}" for n, a in sample.feed.items())
        raise InputError(
            f"the sample does not fit the model ({shapes}): {describe_error(exc)}; pass a sample "
            "shaped like the model's input"
        ) from exc
    if not flat:
        raise ConversionError("the model returned no tensors; forward must return tensors")
    outs = _output_names(flat, options.output_names)
    reference = {name: array for name, (_, array) in zip(outs, flat, strict=True)}
    axes = _dynamic_axes(options, sample, reference)
    export = _Export(
        module,
        tuple(torch.from_numpy(np.ascontiguousarray(a)) for a in sample.arrays),
        sample.names,
        outs,
        axes,
        options.opset,
    )
    with eval_mode(module), _quiet():
        model, info = _export_with_fallback(
            export, _requested_exporter(options), isinstance(module, torch.jit.ScriptModule)
        )
    _name_axes(model, axes)
    info = {"torch": torch.__version__.split("+")[0], **info, "opset": opset_of(model)}
    info.update(source or {})
    notes = [f"exported by the {info['exporter']} exporter at opset {info['opset']}"]
    if "fallback_reason" in info:
        notes.append(f"used the TorchScript exporter because {info['fallback_reason']}")
    return ConversionResult(
        model=model,
        signature=Signature.from_onnx(model),
        framework=framework,
        sample=sample.feed,
        native=make_runner(module, sample.names, outs),
        tolerance=TOLERANCE,
        source=info,
        notes=notes,
    )


def _output_names(
    flat: Sequence[tuple[str | None, np.ndarray]], requested: Sequence[str] | None
) -> list[str]:
    if requested:
        if len(requested) != len(flat):
            raise InputError(
                f"{len(requested)} output name(s) {list(requested)} given, but the model "
                f"returns {len(flat)} tensor(s)"
            )
        return list(requested)
    keys = [k for k, _ in flat]
    if all(keys) and len(set(keys)) == len(keys):
        return [str(k) for k in keys]
    return ["output"] if len(flat) == 1 else [f"output_{i}" for i in range(len(flat))]


def _dynamic_axes(
    options: ConvertOptions, sample: TorchSample, outputs: Mapping[str, np.ndarray]
) -> dict[str, dict[int, str]]:
    if options.dynamic_axes is not None:
        known = set(sample.names) | set(outputs)
        unknown = sorted(set(options.dynamic_axes) - known)
        if unknown:
            raise InputError(
                f"dynamic axes name unknown tensor(s) {unknown}; inputs and outputs are "
                f"{sorted(known)}"
            )
        return {k: dict(v) for k, v in options.dynamic_axes.items()}
    axes: dict[str, dict[int, str]] = {}
    for name, array in [*sample.feed.items(), *outputs.items()]:
        if array.ndim >= 1:
            axes[name] = {0: "batch"}
    return axes


def _requested_exporter(options: ConvertOptions) -> str | None:
    choice = getattr(options, "exporter", None) or os.environ.get(EXPORTER_ENV) or None
    if choice is not None and choice not in EXPORTERS:
        raise UsageError(f"unknown torch exporter {choice!r}; use one of {', '.join(EXPORTERS)}")
    return choice


@dataclass
class _Export:
    """One export of ``module`` on ``tensors``, by either exporter."""

    module: Any
    tensors: tuple[Any, ...]
    names: list[str]
    outputs: list[str]
    axes: dict[str, dict[int, str]]
    opset: int | None

    def run(self, exporter: str) -> onnx.ModelProto:
        return self.dynamo() if exporter == "dynamo" else self.torchscript()

    def dynamo(self) -> onnx.ModelProto:
        dynamic_shapes = tuple(self.axes.get(name) for name in self.names)
        program = torch_module().onnx.export(
            self.module,
            self.tensors,
            dynamo=True,
            verbose=False,
            input_names=self.names,
            output_names=self.outputs,
            opset_version=self.opset,
            dynamic_shapes=dynamic_shapes if any(dynamic_shapes) else None,
            optimize=True,
        )
        model: onnx.ModelProto = program.model_proto
        return model

    def torchscript(self) -> onnx.ModelProto:
        torch = torch_module()
        # Its C++ log (a graph dump on failure, even with verbose=False) goes to stdout by
        # default; point it at stderr, which _quiet() mutes, and back to the default afterwards.
        set_log_stream = getattr(torch._C, "_jit_set_onnx_log_output_stream", lambda _: None)
        set_log_stream("stderr")
        try:
            with tempfile.TemporaryDirectory(prefix="modelport-torch-") as tmp:
                path = Path(tmp) / "model.onnx"
                torch.onnx.export(
                    self.module,
                    self.tensors,
                    str(path),
                    dynamo=False,
                    input_names=self.names,
                    output_names=self.outputs,
                    opset_version=self.opset,
                    dynamic_axes=self.axes or None,
                )
                # onnx.load pulls any external weights back in, so the proto is self-contained.
                return onnx.load(str(path))
        finally:
            set_log_stream("stdout")


def _export_with_fallback(
    export: _Export, requested: str | None, is_script: bool
) -> tuple[onnx.ModelProto, dict[str, Any]]:
    """Run the requested exporter, or dynamo then TorchScript; say which one and why."""
    if requested == "dynamo" or (requested is None and not is_script):
        try:
            model = export.run("dynamo")
            _check_opset(model, export.opset)
            return model, {"exporter": "dynamo"}
        except Exception as exc:
            reason = describe_error(exc)
            if requested == "dynamo":
                raise ConversionError(
                    f"the dynamo exporter cannot export the model ({reason}); {_hint(reason)}"
                ) from exc
    elif requested == "torchscript":
        reason = "the torchscript exporter was requested"
    else:
        reason = "a TorchScript module cannot be captured by torch.export"
    try:
        model = export.run("torchscript")
    except Exception as exc:
        cause = describe_error(exc)
        both = f"dynamo exporter: {reason}; " if requested is None and not is_script else ""
        raise ConversionError(
            f"cannot export the model to ONNX ({both}TorchScript exporter: {cause}); {_hint(cause)}"
        ) from exc
    return model, {"exporter": "torchscript", "fallback_reason": reason}


def _check_opset(model: onnx.ModelProto, requested: int | None) -> None:
    """The dynamo exporter keeps its own opset when it cannot convert to the requested one."""
    made = opset_of(model)
    if requested is not None and made != requested:
        raise ConversionError(
            f"the dynamo exporter makes opset {made} here, not the requested opset {requested}"
        )


def _hint(reason: str) -> str:
    """What the user can do about an exporter's failure."""
    if "data-dependent" in reason or "DataDependent" in reason:
        return (
            "forward branches on a tensor's value: express it with torch.where or torch.cond, "
            "or use exporter='torchscript' and check the verification"
        )
    if "not the requested opset" in reason:
        return "ask for an opset it makes (or none), or use exporter='torchscript'"
    if "ScriptModule" in reason:
        return "export TorchScript modules with exporter='torchscript'"
    return (
        "replace the unsupported operation, try another opset (--opset), or pick the other "
        "exporter (exporter='dynamo'|'torchscript')"
    )


def _name_axes(model: onnx.ModelProto, axes: Mapping[str, Mapping[int, str]]) -> None:
    """Give requested dynamic axes their names; exporters invent names for derived axes."""
    for value in [*model.graph.input, *model.graph.output]:
        wanted = axes.get(value.name)
        if not wanted or not value.type.HasField("tensor_type"):
            continue
        dims = value.type.tensor_type.shape.dim
        for axis, symbol in wanted.items():
            if 0 <= axis < len(dims) and not dims[axis].HasField("dim_value"):
                dims[axis].dim_param = symbol


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters' graph dumps, logs and warnings; our error says what matters.

    torch.export prints failed graphs to ``sys.stderr``, torch's loggers carry their own levels
    and handlers, and the TorchScript exporter's C++ side writes to file descriptor 2 (its
    ``verbose=False`` does not switch that off), so each channel is muted on its own.
    """
    loggers = [logging.getLogger("torch")] + [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if name.startswith("torch.")
    ]
    levels = [(logger, logger.level) for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stderr(io.StringIO()),
            _silence_fd(2),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in levels:
            logger.setLevel(level)


@contextlib.contextmanager
def _silence_fd(fd: int) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (e.g. a daemon): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
