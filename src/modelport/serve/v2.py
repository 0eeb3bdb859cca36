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

from modelport.errors import InputError
from modelport.serve import infer
from modelport.serve.codec import HEADER_LENGTH, parse_json
from modelport.serve.service import InferenceService

__all__ = ["routes"]

_JSON = "application/json"


def _json(value: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status_code=status, media_type=_JSON)


def _status(ok: bool) -> Response:
    return Response(b"", status_code=200 if ok else 503)


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

    async def inference(request: Request) -> Response:
        # The server's fast lane and the app's gate take these requests before Starlette does;
        # this route answers them when the app is mounted without the gate.
        params = request.path_params
        target = infer.Target("v2", params["model"], params.get("version"))
        headers = request.headers
        call = infer.Call(target, await request.body(), headers.get(HEADER_LENGTH),
                          headers.get("content-encoding"))
        return infer.to_response(await infer.call(service, call))

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
        Route(model + "/infer", inference, methods=["POST"]),
        Route(versioned + "/infer", inference, methods=["POST"]),
        Route(model, model_metadata, methods=["GET"]),
        Route(versioned, model_metadata, methods=["GET"]),
        Route(model + "/ready", model_ready, methods=["GET"]),
        Route(versioned + "/ready", model_ready, methods=["GET"]),
        Route("/v2/repository/index", repository_index, methods=["POST"]),
        Route("/v2/repository/models/{model}/load", load, methods=["POST"]),
        Route("/v2/repository/models/{model}/unload", unload, methods=["POST"]),
    ]
