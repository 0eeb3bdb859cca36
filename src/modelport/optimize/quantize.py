"""Int8 quantization with ONNX Runtime: dynamic, and static (QDQ) calibrated on real inputs.

Both start from ONNX Runtime's pre-processing (shape inference plus basic graph optimization),
which its quantizer needs to see the shapes of activations. The quantized data types follow
ONNX Runtime's guidance for CPUs: unsigned 8-bit activations and signed 8-bit weights on x86,
weights reduced to 7 bits where the processor lacks VNNI (to avoid saturating the 16-bit
intermediate sums of the AVX2/AVX-512 kernels); signed 8-bit for both on ARM.
"""

from __future__ import annotations

import functools
import platform
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import onnx

from modelport.errors import ConversionError, UsageError
from modelport.optimize.data import Feed, iter_batches

__all__ = [
    "MODES",
    "QuantSettings",
    "cpu_features",
    "default_settings",
    "preprocess",
    "quantize_dynamic_model",
    "quantize_static_model",
]

MODES = ("auto", "dynamic", "static")
# Calibration runs the float model on at most this many rows (MinMax ranges settle quickly).
CALIBRATION_ROWS = 512
CALIBRATION_BATCH = 32


@dataclass(frozen=True)
class QuantSettings:
    activation_type: str  # "uint8" | "int8"
    weight_type: str
    reduce_range: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise UsageError(f"unknown quantization mode {mode!r}; use one of {', '.join(MODES)}")
    return mode


@functools.cache
def cpu_features() -> dict[str, Any]:
    """The processor facts that decide int8 speed: architecture, AVX2/AVX-512, VNNI (Linux)."""
    machine = platform.machine().lower()
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return {
        "machine": machine,
        "avx2": "avx2" in flags,
        "avx512": "avx512f" in flags,
        "vnni": bool(flags & {"avx512_vnni", "avx_vnni", "amx_int8"}),
        "known": bool(flags),
    }


def default_settings() -> QuantSettings:
    features = cpu_features()
    if features["machine"] in ("x86_64", "amd64", "i386", "i686"):
        # Unknown flags: assume no VNNI, the safe (slightly less precise) choice.
        return QuantSettings("uint8", "int8", reduce_range=not features["vnni"])
    return QuantSettings("int8", "int8", reduce_range=False)


def _quant_type(name: str) -> Any:
    from onnxruntime.quantization import QuantType

    return {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}[name]


def preprocess(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's quantization pre-processing, symbolic shape inference only when needed.

    ``quant_pre_process`` runs ONNX Runtime's basic optimizations and ONNX shape inference,
    and first, by default, ONNX Runtime's symbolic shape inference, whose module imports sympy
    and (through ``onnxruntime.tools``) torch when installed: ten seconds and more. ONNX's own
    inference types every activation of most CNNs and MLPs, so the symbolic pass runs only when
    some activation is left without a shape (transformers with dynamic dimensions).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    attempts: list[dict[str, bool]] = [
        {"skip_symbolic_shape": True},
        {},
        {"skip_symbolic_shape": True, "skip_optimization": True},
    ]
    last: Exception | None = None
    with tempfile.TemporaryDirectory(prefix="modelport-quant-") as tmp:
        # A path, not the proto: given a ModelProto, ONNX Runtime moves its weights to a
        # made-up external file in place, which would break the caller's float model.
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "preprocessed.onnx"
        onnx.save_model(model, str(source))
        for kwargs in attempts:
            try:
                quant_pre_process(str(source), str(target), **kwargs)
                prepared = onnx.load(str(target))
            except Exception as exc:  # ORT/sympy raise many types; the last one is reported
                last = exc
                continue
            if kwargs == attempts[0] and _untyped_activations(prepared):
                continue
            return prepared
    raise ConversionError(f"ONNX Runtime cannot pre-process the model for quantization: {last}")


def _untyped_activations(model: onnx.ModelProto) -> list[str]:
    """Node outputs whose shape shape inference could not work out."""
    typed = {
        vi.name
        for vi in [*model.graph.value_info, *model.graph.output]
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.HasField("shape")
    }
    return [out for node in model.graph.node for out in node.output if out and out not in typed]


def quantize_dynamic_model(
    model: onnx.ModelProto, *, per_channel: bool = False, settings: QuantSettings | None = None
) -> onnx.ModelProto:
    """Weights stored as int8; activations quantized on the fly at every run."""
    from onnxruntime.quantization import quantize_dynamic

    settings = settings or default_settings()
    with tempfile.TemporaryDirectory(prefix="modelport-quant-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "dynamic.onnx"
        onnx.save_model(model, str(source))
        try:
            quantize_dynamic(
                source,
                target,
                per_channel=per_channel,
                reduce_range=settings.reduce_range,
                weight_type=_quant_type(settings.weight_type),
            )
        except Exception as exc:
            raise ConversionError(f"dynamic quantization failed: {exc}") from exc
        return onnx.load(str(target))


def quantize_static_model(
    model: onnx.ModelProto,
    calibration: Feed,
    *,
    per_channel: bool = False,
    settings: QuantSettings | None = None,
    batch: int = CALIBRATION_BATCH,
) -> onnx.ModelProto:
    """QDQ int8 with activation ranges (MinMax) calibrated on ``calibration``'s rows."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    settings = settings or default_settings()

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches = iter_batches(calibration, batch)

        def get_next(self) -> Feed | None:
            return next(self._batches, None)

    # ONNX Runtime widens weight scales so that int32 biases cannot overflow; that step breaks on
    # per-channel weights whose bias is shaped [1, N] (skl2onnx's MLPs), so on failure it is
    # retried without it: the gate still judges the result.
    attempts: list[dict[str, Any]] = [{}, {"QDQDisableWeightAdjustForInt32Bias": True}]
    last: Exception | None = None
    with tempfile.TemporaryDirectory(prefix="modelport-quant-") as tmp:
        source, target = Path(tmp) / "float.onnx", Path(tmp) / "static.onnx"
        onnx.save_model(model, str(source))
        for extra in attempts:
            try:
                quantize_static(
                    source,
                    target,
                    _Reader(),
                    quant_format=QuantFormat.QDQ,
                    per_channel=per_channel,
                    reduce_range=settings.reduce_range,
                    activation_type=_quant_type(settings.activation_type),
                    weight_type=_quant_type(settings.weight_type),
                    extra_options=extra,
                )
                return onnx.load(str(target))
            except Exception as exc:  # the quantizer raises plain ValueErrors and the like
                last = exc
    raise ConversionError(f"static quantization failed: {last}") from last
