"""The simple JSON route ``POST /v1/models/{ref}:predict`` (bodies: ``codec_v1``) and its
metadata twin ``GET /v1/models/{ref}``."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelport.errors import NotFoundError
from modelport.serve import infer
from modelport.serve.service import InferenceService

__all__ = ["routes"]

def routes(service: InferenceService) -> list[Route]:
    async def predict(request: Request) -> Response:
        # Reached only by paths the app's gate did not take as inference: unknown ones.
        target = infer.match(request.url.path)
        if target is None:
            raise NotFoundError(f"no such endpoint: POST {request.url.path}; use "
                                "/v1/models/{ref}:predict")
        call = infer.Call(target, await request.body(), None,
                          request.headers.get("content-encoding"))
        return infer.to_response(await infer.call(service, call))

    async def metadata(request: Request) -> Response:
        return Response(orjson.dumps(service.model_metadata(request.path_params["path"])),
                        media_type="application/json")

    return [
        Route("/v1/models/{path:path}", predict, methods=["POST"]),
        Route("/v1/models/{path:path}", metadata, methods=["GET"]),
    ]
