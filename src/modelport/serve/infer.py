"""One inference call, body to body: V2 ``/infer`` and V1 ``:predict``, for every HTTP layer.

``start_call`` is the whole request: find the model, decode and check the body, hand the feed to
the model's batcher, encode what comes back, and call ``reply`` exactly once with a ``Reply``
(status, body, content headers), errors included as ``{"error": ...}``. It takes a callback
rather than being a coroutine so that the server's protocol-level fast lane
(``modelport.serve.protocol``) can answer a request without creating a task, a future or an
ASGI message; ``call`` wraps it for the ASGI app. It knows bodies and statuses, not sockets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from starlette.responses import Response

from modelport.errors import (
    InputError,
    ModelportError,
    PayloadTooLargeError,
    UnsupportedEncodingError,
)
from modelport.serve.codec import decode_v2_request, encode_v2_response, parse_json
from modelport.serve.codec_v1 import decode_v1_request, encode_v1_response
from modelport.serve.service import InferenceService, LoadedModel

__all__ = ["Call", "Reply", "Target", "call", "error_reply", "match", "start_call", "to_response"]

log = logging.getLogger("modelport.serve")

_JSON = [(b"content-type", b"application/json")]
_PREDICT = ":predict"


@dataclass(frozen=True, slots=True)
class Target:
    """What an inference path names: the protocol ("v2" or "v1"), the model and the version."""

    protocol: str
    model: str
    version: str | None = None


@dataclass(slots=True)
class Call:
    """One inference request as the HTTP layer read it."""

    target: Target
    body: bytes
    header_length: str | None = None  # Inference-Header-Content-Length
    content_encoding: str | None = None  # gzip or deflate bodies are inflated before decoding


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    headers: list[tuple[bytes, bytes]]  # content headers only; the HTTP layer adds the rest


def match(path: str) -> Target | None:
    """The target of an inference path (``/v2/models/{m}[/versions/{v}]/infer`` or
    ``/v1/models/{ref}:predict``), else None."""
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[11:-6].split("/")
        if len(parts) == 1 and parts[0]:
            return Target("v2", parts[0])
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return Target("v2", parts[0], parts[2])
        return None
    if path.startswith("/v1/models/") and path.endswith(_PREDICT):
        ref = path[11 : -len(_PREDICT)]
        return Target("v1", ref) if ref and "/" not in ref else None
    return None


def to_response(reply: Reply) -> Response:
    """The reply as a Starlette response (for the routes)."""
    return Response(reply.body, status_code=reply.status,
                    headers={k.decode(): v.decode() for k, v in reply.headers})


def error_reply(status: int, message: str) -> Reply:
    return Reply(status, orjson.dumps({"error": message}), _JSON)


def start_call(
    service: InferenceService,
    request: Call,
    reply: Callable[[Reply], None],
    abandoned: Callable[[], bool] = lambda: False,
    alone: bool = False,
) -> asyncio.Task[None] | None:
    """Run one call; ``reply`` gets its answer, possibly before this returns (but never when
    ``abandoned()`` says by the time of the run that the client is gone). ``alone``: no other
    request can arrive in this turn of the loop (see ``DynamicBatcher.enqueue``). A model that
    is not loaded yet (or not looked up in the last moments) is found by a task, returned so
    that the server can wait for it at shutdown; the hot path creates none."""
    try:
        model = service.hot_model(request.target.model, request.target.version)
    except ModelportError as exc:
        service.metrics.unknown_model_failure()  # no model to count it against
        reply(_error(exc))
        return None
    except Exception:
        log.exception("looking up the model of an inference request failed")
        reply(_INTERNAL)
        return None
    if model is not None:
        _run(model, request, reply, abandoned, alone, service.config.max_body_bytes)
        return None
    return asyncio.ensure_future(_find_then_run(service, request, reply, abandoned))


async def call(service: InferenceService, request: Call) -> Reply:
    """``start_call`` as a coroutine (the ASGI app's way)."""
    answer: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    def settle(reply: Reply) -> None:
        if not answer.done():  # not cancelled: the client is still there
            answer.set_result(reply)

    start_call(service, request, settle, answer.cancelled)
    return await answer


async def _find_then_run(
    service: InferenceService,
    request: Call,
    reply: Callable[[Reply], None],
    abandoned: Callable[[], bool],
) -> None:
    try:
        model = await service.model(request.target.model, request.target.version)
    except ModelportError as exc:
        service.metrics.unknown_model_failure()
        reply(_error(exc))
        return
    except Exception:
        log.exception("loading the model of an inference request failed")
        reply(_INTERNAL)
        return
    _run(model, request, reply, abandoned, False, service.config.max_body_bytes)


def _run(
    model: LoadedModel,
    request: Call,
    reply: Callable[[Reply], None],
    abandoned: Callable[[], bool],
    alone: bool,
    max_body_bytes: int,
) -> None:
    context: Any
    target = request.target
    try:
        body = request.body
        if request.content_encoding is not None:
            body = inflate(body, request.content_encoding, max_body_bytes)
        if target.protocol == "v2":
            context = decode_v2_request(body, request.header_length, model.signature)
            feed, outputs = context.feed, context.outputs
        else:
            feed, context = decode_v1_request(parse_json(body), model.signature)
            outputs = None
    except ModelportError as exc:
        model.record_failure()
        reply(_error(exc))
        return
    except Exception:
        model.record_failure()
        log.exception("decoding an inference request for %s failed", model.ref)
        reply(_INTERNAL)
        return
    started = time.perf_counter()

    def done(result: dict[str, np.ndarray] | None, error: BaseException | None) -> None:
        metrics = model.metrics
        if result is None:
            metrics.failure.inc()
            if isinstance(error, ModelportError):
                reply(_error(error))
            else:
                log.error("inference of %s failed", model.ref, exc_info=error)
                reply(_INTERNAL)
            return
        metrics.request.observe(time.perf_counter() - started)
        metrics.success.inc()
        try:
            answer = _encode(model, target, result, context)
        except Exception:
            log.exception("encoding the answer of %s failed", model.ref)
            answer = _INTERNAL
        reply(answer)

    try:
        model.batcher.enqueue(feed, outputs, done, abandoned, alone)
    except ModelportError as exc:  # queue full, model unloading
        model.metrics.failure.inc()
        reply(_error(exc))


def _encode(
    model: LoadedModel, target: Target, result: dict[str, np.ndarray], context: Any
) -> Reply:
    if target.protocol == "v2":
        content, json_size = encode_v2_response(model.name, str(model.version), result, context)
        if json_size is None:
            return Reply(200, content, _JSON)
        return Reply(200, content, [
            (b"content-type", b"application/octet-stream"),
            (b"inference-header-content-length", b"%d" % json_size),
        ])
    return Reply(200, encode_v1_response(result, context), _JSON)


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    """A request body sent with ``Content-Encoding: gzip`` or ``deflate`` (zlib-wrapped, as HTTP
    and tritonclient mean it), inflated to at most ``limit`` bytes."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        wbits = zlib.MAX_WBITS
    else:
        raise UnsupportedEncodingError(
            f"Content-Encoding {encoding!r} is not supported; send the body as it is, or "
            "compressed with gzip or deflate"
        )
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise InputError(f"the request body is not valid {coding} data ({exc})") from None
    if len(out) > limit:  # a small body that inflates without bound must not take the memory
        raise PayloadTooLargeError(
            f"the request body inflates to more than the limit of {limit} bytes; send less or "
            "start the server with a larger --max-body-bytes"
        )
    if not inflater.eof:
        raise InputError(f"the request body ends before its {coding} data does")
    return out


def _error(exc: ModelportError) -> Reply:
    if exc.http_status >= 500:
        log.warning("inference request -> %d: %s", exc.http_status, exc)
    return error_reply(exc.http_status, str(exc))


_INTERNAL = error_reply(500, "internal server error; see the server log")
