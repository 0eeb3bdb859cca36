"""Structural checks of an ONNX model: is it valid, loadable, supported and servable?

Each check returns a ``CheckResult``; nothing here raises for a bad model, so that one report can
list every problem at once.

Opset support is read from ONNX Runtime itself: the operator schemas compiled into the installed
``onnxruntime`` (``get_all_operator_schema``) are the ones it validates models against, and the
highest ``since_version`` per domain is the newest opset it knows (a model stamped newer fails to
load with "ValidateOpsetForDomain"). Builds without that function fall back to the installed
``onnx`` package's schemas, which is an upper bound and is said so in the check's detail.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from formats._text import one_line
from formats.errors import ModelportError, UsageError
from formats.onnx.verify.report import CheckResult
from formats.signature import numpy_dtype_from_onnx

if TYPE_CHECKING:
    import onnx

    from formats.onnx.runtime import Session

__all__ = ["max_supported_opsets", "requested_providers", "run_checks"]

_DEFAULT_DOMAINS = ("", "ai.onnx")
_PROTOBUF_LIMIT = 2**31 - 1


def run_checks(
    model: onnx.ModelProto, providers: Sequence[str] | None = None
) -> tuple[list[CheckResult], Session | None]:
    """All checks, plus an ONNX Runtime session on the first provider (None if it cannot load)."""
    wanted = requested_providers(providers)
    results = [checker(model), shape_inference(model), opset_supported(model)]
    session: Session | None = None
    payload = model.SerializeToString() if model.ByteSize() < _PROTOBUF_LIMIT else None
    for provider in wanted:
        check, loaded = load_on(payload if payload is not None else model, provider)
        results.append(check)
        if session is None and loaded is not None:
            session = loaded
    results.append(servable(model))
    return results, session


def checker(model: onnx.ModelProto) -> CheckResult:
    import onnx
    if model.ByteSize() >= _PROTOBUF_LIMIT:
        return CheckResult("onnx.checker", True, "skipped: the model is over 2 GiB in memory")
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # ValidationError, InferenceError, ...
        return CheckResult("onnx.checker", False, one_line(exc, limit=400))
    return CheckResult("onnx.checker", True, "valid (full check)")


def shape_inference(model: onnx.ModelProto) -> CheckResult:
    import onnx
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as exc:
        return CheckResult("shape inference", False, one_line(exc, limit=400))
    known = len(inferred.graph.value_info)
    return CheckResult("shape inference", True, f"strict; {known} intermediate value(s) typed")


def opset_supported(model: onnx.ModelProto) -> CheckResult:
    import onnxruntime as ort

    limits, source = max_supported_opsets()
    problems, seen = [], []
    for opset in model.opset_import:
        domain = "" if opset.domain in _DEFAULT_DOMAINS else opset.domain
        label = domain or "ai.onnx"
        limit = limits.get(domain)
        if limit is None:
            seen.append(f"{label} {opset.version} (custom domain, not checked)")
            continue
        seen.append(f"{label} {opset.version}")
        if opset.version > limit:
            problems.append(
                f"{label} opset {opset.version} is newer than ONNX Runtime {ort.__version__} "
                f"supports ({limit}); re-export with --opset {limit} or upgrade onnxruntime"
            )
    if problems:
        return CheckResult("opset", False, "; ".join(dict.fromkeys(problems)))
    # Some exporters import the default domain twice, as "" and as "ai.onnx": list it once.
    listed = ", ".join(dict.fromkeys(seen)) or "none declared"
    return CheckResult("opset", True, f"{listed} ({source})")


@functools.cache
def max_supported_opsets() -> tuple[dict[str, int], str]:
    """Newest opset per domain ("" is ai.onnx) that the installed ONNX Runtime knows."""
    import onnx

    try:
        from onnxruntime.capi import _pybind_state

        schemas = _pybind_state.get_all_operator_schema()
        source = "limits from ONNX Runtime's operator schemas"
    except (ImportError, AttributeError):
        schemas = onnx.defs.get_all_schemas_with_history()
        source = "limits from the onnx package; ONNX Runtime's own were unavailable"
    limits: dict[str, int] = {}
    for schema in schemas:
        domain = "" if schema.domain in _DEFAULT_DOMAINS else schema.domain
        limits[domain] = max(limits.get(domain, 0), int(schema.since_version))
    return limits, source


def load_on(model: bytes | onnx.ModelProto, provider: str) -> tuple[CheckResult, Session | None]:
    from formats.onnx.runtime import Session, SessionOptions, available_providers

    name = f"loads on {provider}"
    if provider not in available_providers():
        return (
            CheckResult(
                name, False, f"not available here; available: {', '.join(available_providers())}"
            ),
            None,
        )
    try:
        session = Session(model, SessionOptions(providers=(provider,)))
    except ModelportError as exc:
        return CheckResult(name, False, _without_cpp_location(str(exc))), None
    if provider not in session.providers:
        # ORT silently falls back to CPU when a provider cannot initialise (missing CUDA libs).
        return (
            CheckResult(name, False, f"ONNX Runtime fell back to {', '.join(session.providers)}"),
            session,
        )
    return CheckResult(name, True, f"session providers: {', '.join(session.providers)}"), session


def servable(model: onnx.ModelProto) -> CheckResult:
    """Only plain tensors can be served over the V2 protocol: no sequences, maps or optionals."""
    import onnx

    problems = []
    initializers = {init.name for init in model.graph.initializer}
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if value.name in initializers:
                continue
            what = value.type.WhichOneof("value")
            if what != "tensor_type":
                problems.append(f"{kind} {value.name!r} is a {_kind_name(what)}")
                continue
            try:
                numpy_dtype_from_onnx(value.type.tensor_type.elem_type)
            except ModelportError:
                elem = onnx.TensorProto.DataType.Name(value.type.tensor_type.elem_type)
                problems.append(f"{kind} {value.name!r} has unsupported element type {elem}")
    if problems:
        return CheckResult(
            "servable",
            False,
            f"{'; '.join(problems)}; only tensors can be served (for sklearn classifiers, "
            "convert without ZipMap)",
        )
    return CheckResult("servable", True, "all inputs and outputs are tensors")


def _kind_name(what: str | None) -> str:
    return {
        "sequence_type": "sequence",
        "map_type": "map",
        "optional_type": "optional",
        "sparse_tensor_type": "sparse tensor",
    }.get(what or "", what or "value of unknown type")


def requested_providers(providers: Sequence[str] | None) -> list[str]:
    """Full names; a name ONNX Runtime has never heard of is a usage error, not a failed check."""
    from formats.onnx.runtime.providers import all_providers, provider_full_name

    if not providers:
        return ["CPUExecutionProvider"]
    names = []
    for provider in providers:
        full = provider_full_name(provider)
        if full not in all_providers():
            raise UsageError(
                f"unknown execution provider {provider!r}; see 'python -m formats providers' for the list"
            )
        names.append(full)
    return names


def _without_cpp_location(text: str) -> str:
    # ORT prefixes some messages with "/onnxruntime_src/...h:46 void f(<C++ signature>) ".
    return re.sub(r"/\S+\.(?:h|cc|cpp):\d+ [^(]*\(.*?\) ", "", text, count=1)
