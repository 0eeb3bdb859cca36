"""``create_app``: the ASGI app. Routes translate HTTP to ``InferenceService`` calls, nothing more.

Around the routes sit one pure-ASGI gate (bearer-token auth for everything but ``/v2/health/*``
and the request body size limit, checked on ``Content-Length`` and again while reading) and one
error handler: every ``ModelportError`` becomes ``{"error": "..."}`` with its ``http_status``;
unknown paths are 404 and wrong methods 405 in the same shape; anything else is a logged 500.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from modelport.errors import ModelportError, PayloadTooLargeError
from modelport.serve import infer, simple, v2
from modelport.serve.service import InferenceService

__all__ = ["ModelportApp", "RequestHeaders", "create_app", "error_response", "read_headers"]

log = logging.getLogger("modelport.serve")


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps({"error": message}),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )


async def _modelport_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelportError)
    if exc.http_status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.http_status, exc)
    return error_response(exc.http_status, str(exc))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}; see /openapi.json"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(exc.status_code, message, dict(exc.headers or {}))


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal server error; see the server log")


def create_app(service: InferenceService, *, wait_for_models: bool = False) -> ModelportApp:
    """The ASGI app for ``service``; models load in the background at startup (the server is
    live at once and ready when they are warm) unless ``wait_for_models``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await service.start(wait=wait_for_models)
        try:
            yield
        finally:
            await service.close()  # after uvicorn finished in-flight requests: drain batchers

    async def metrics(request: Request) -> Response:
        text, content_type = service.metrics.render()
        return Response(text, headers={"Content-Type": content_type})

    document: list[bytes] = []  # built at the first request: nothing at start-up needs it

    async def openapi(request: Request) -> Response:
        if not document:
            from modelport.serve.openapi import openapi_document

            document.append(orjson.dumps(openapi_document(service.version)))
        return Response(document[0], media_type="application/json")

    async def docs(request: Request) -> Response:
        return HTMLResponse(_DOCS_PAGE)

    routes = [
        *v2.routes(service),
        *simple.routes(service),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ModelportError: _modelport_error,
            HTTPException: _http_error,
            Exception: _internal_error,
        },
    )
    app.state.service = service
    return ModelportApp(app, service)


class ModelportApp:
    """The ASGI app: auth and body size limit for every request, inference (V2 ``/infer`` and V1
    ``:predict``) handled here, body to body, without Starlette's routing, request objects and
    middleware, everything else through the Starlette app. (Under ``modelport serve`` most
    inference requests never get here: the server's protocol answers them itself, see
    ``modelport.serve.protocol``; this is the path for the rest.)"""

    def __init__(self, starlette: Starlette, service: InferenceService) -> None:
        self.starlette = starlette
        self.service = service
        self.state = starlette.state
        config = service.config
        token = config.auth_token
        self.expected = f"bearer {token}".encode() if token else None
        self.max_body_bytes = config.max_body_bytes
        self.lane_answers = 0  # inference requests the server's protocol answered itself

    def authorized(self, path: str, authorization: bytes) -> bool:
        """Whether a request for ``path`` with this Authorization header value may pass."""
        if self.expected is None or path.startswith("/v2/health/"):
            return True
        scheme, _, _ = authorization.partition(b" ")
        given = scheme.lower() + authorization[len(scheme) :]
        return hmac.compare_digest(given, self.expected)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)
            return
        headers = read_headers(scope["headers"])
        length = headers.length
        path: str = scope["path"]
        if not self.authorized(path, headers.authorization):
            message = "missing bearer token" if not headers.authorization else "wrong bearer token"
            response = error_response(
                401,
                f"{message}; send the header 'Authorization: Bearer <token>'",
                {"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        limit = self.max_body_bytes
        if length > limit:
            response = error_response(413, _too_large(length, limit))
            await response(scope, receive, send)
            return
        if scope["method"] == "POST":
            target = infer.match(path)
            if target is not None:
                await self._infer(send, receive, target, headers)
                return
        if length < 0:  # no Content-Length: count while reading
            receive = _limited(receive, limit)
        await self.starlette(scope, receive, send)

    async def _infer(
        self,
        send: Send,
        receive: Receive,
        target: infer.Target,
        headers: RequestHeaders,
    ) -> None:
        try:
            body = await _read_body(receive, headers.length, self.max_body_bytes)
            if body is None:
                return  # the client went away
            call = infer.Call(target, body, headers.header_length, headers.encoding)
            reply = await infer.call(self.service, call)
        except ModelportError as exc:  # the body was too large
            reply = infer.error_reply(exc.http_status, str(exc))
        response_headers = [*reply.headers, (b"content-length", b"%d" % len(reply.body))]
        await send({"type": "http.response.start", "status": reply.status,
                    "headers": response_headers})
        await send({"type": "http.response.body", "body": reply.body})


@dataclass(slots=True)
class RequestHeaders:
    """What the gate (and the server's fast lane) read of a request's headers."""

    length: int = -1  # Content-Length; -1 when absent or not a number
    authorization: bytes = b""
    header_length: str | None = None  # Inference-Header-Content-Length
    encoding: str | None = None  # Content-Encoding
    chunked: bool = False  # a Transfer-Encoding was given


def read_headers(headers: Iterable[tuple[bytes, bytes]]) -> RequestHeaders:
    """One pass over lower-cased (name, value) pairs, as uvicorn gives them."""
    found = RequestHeaders()
    for name, value in headers:
        if name == b"content-length":
            found.length = int(value) if value.isdigit() else -1
        elif name == b"authorization":
            found.authorization = value
        elif name == b"inference-header-content-length":
            found.header_length = value.decode("latin-1")
        elif name == b"content-encoding":
            found.encoding = value.decode("latin-1")
        elif name == b"transfer-encoding":
            found.chunked = True
    return found


async def _read_body(receive: Receive, length: int, limit: int) -> bytes | None:
    message = await receive()
    if message["type"] != "http.request":
        return None
    body: bytes = message.get("body", b"")
    seen = len(body)
    if length < 0 and seen > limit:
        raise PayloadTooLargeError(_too_large(seen, limit))
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        seen += len(chunk)
        if length < 0 and seen > limit:
            raise PayloadTooLargeError(_too_large(seen, limit))
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _limited(receive: Receive, limit: int) -> Receive:
    seen = 0

    async def limited() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLargeError(_too_large(seen, limit))
        return message

    return limited


def _too_large(size: int, limit: int) -> str:
    return (
        f"request body of {size} bytes or more is over the limit of {limit} bytes; send less "
        "or start the server with a larger --max-body-bytes"
    )


_DOCS_PAGE = """<!doctype html>
<html><head><title>modelport API</title><meta charset="utf-8">
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head><body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
<noscript>The API description is at <a href="/openapi.json">/openapi.json</a>.</noscript>
</body></html>
"""

