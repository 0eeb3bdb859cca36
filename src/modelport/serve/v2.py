"""Open Inference Protocol (V2) REST routes, thin over ``InferenceService``.

Every model route also exists with a ``/versions/{version}`` segment (a number or an alias), and
the model name may itself be ``name@alias`` or ``name:3``.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.errors import InputError, ModelportError
from modelport.serve.codec import HEADER_LENGTH, decode_v2_request, encode_v2_response, parse_json
from modelport.serve.service import InferenceService

__all__ = ["infer_bytes", "match_infer", "routes"]

_JSON = "application/json"


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type=_JSON)


def _status(ok: bool) -> Response:
    return Response(b"", status_code=200 if ok else 503)


async def infer_bytes(
    service: InferenceService,
    model_name: str,
    version: str | None,
    body: bytes,
    header_length: str | None,
) -> tuple[bytes, int | None]:
    """One inference request, body to body: the response and its JSON header's length (None:
    all JSON). Shared by the Starlette route and the gate's fast path."""
    try:
        model = await service.model(model_name, version)
    except ModelportError:
        service.metrics.unknown_model_failure()  # no model to count it against
        raise
    try:
        decoded = decode_v2_request(body, header_length, model.signature)
    except ModelportError:
        model.record_failure()
        raise
    outputs = await model.infer(decoded.feed, decoded.outputs)
    return encode_v2_response(model.name, str(model.version), outputs, decoded)


def match_infer(path: str) -> tuple[str, str | None] | None:
    """(model, version) when ``path`` is an inference path, else None."""
    if not (path.startswith("/v2/models/") and path.endswith("/infer")):
        return None
    parts = path[11:-6].split("/")
    if len(parts) == 1 and parts[0]:
        return parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return parts[0], parts[2]
    return None


def routes(service: InferenceService) -> list[Route]:
    async def live(request: Request) -> Response:
        return _status(service.live())

    async def ready(request: Request) -> Response:
        return _status(service.ready())

    async def server_metadata(request: Request) -> Response:
        return _json(service.server_metadata())

    async def model_metadata(request: Request) -> Response:
        params = request.path_params
        return _json(service.model_metadata(params["model"], params.get("version")))

    async def model_ready(request: Request) -> Response:
        params = request.path_params
        return _status(service.model_ready(params["model"], params.get("version")))

    async def infer(request: Request) -> Response:
        # Only reached through Starlette when the gate's fast path did not take the request.
        params = request.path_params
        content, header_length = await infer_bytes(
            service, params["model"], params.get("version"), await request.body(),
            request.headers.get(HEADER_LENGTH),
        )
        if header_length is None:
            return Response(content, media_type=_JSON)
        return Response(
            content,
            media_type="application/octet-stream",
            headers={"Inference-Header-Content-Length": str(header_length)},
        )

    async def repository_index(request: Request) -> Response:
        body = await request.body()
        doc = parse_json(body) if body.strip() else {}
        if not isinstance(doc, dict):
            raise InputError("the repository index request must be a JSON object")
        return _json(service.repository_index(ready_only=bool(doc.get("ready", False))))

    async def load(request: Request) -> Response:
        body = await request.body()
        doc = parse_json(body) if body.strip() else {}
        parameters = doc.get("parameters") if isinstance(doc, dict) else None
        if parameters:
            raise InputError(
                "load parameters (config, files) are not supported: register the model in the "
                "repository and load it by name"
            )
        await service.load_model(request.path_params["model"])
        return Response(b"", status_code=200)

    async def unload(request: Request) -> Response:
        await service.unload_model(request.path_params["model"])
        return Response(b"", status_code=200)

    model = "/v2/models/{model}"
    versioned = "/v2/models/{model}/versions/{version}"
    return [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2", server_metadata, methods=["GET"]),
        Route(model + "/infer", infer, methods=["POST"]),
        Route(versioned + "/infer", infer, methods=["POST"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(model + "/ready", model_ready, methods=["GET"]),
        Route(versioned + "/ready", model_ready, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{model}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", unload, methods=["POST"]),
    ]
