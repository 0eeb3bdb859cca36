"""The OpenAPI description served at ``/openapi.json`` (hand-written: the routes are few and the
protocol's shapes are fixed, so a generator would add a dependency and nothing else)."""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _json(_ref("Error"), "bad request: the message names the input and the problem"),
    "401": _json(_ref("Error"), "missing or wrong bearer token"),
    "404": _json(_ref("Error"), "unknown model, version or alias"),
    "413": _json(_ref("Error"), "request body over the limit"),
    "415": _json(_ref("Error"), "a Content-Encoding other than gzip or deflate"),
    "503": _json(_ref("Error"), "not ready, unloaded, queue full or shutting down"),
}
_MODEL = {"name": "model", "in": "path", "required": True, "schema": {"type": "string"},
          "description": "name, name:VERSION or name@ALIAS"}
_VERSION = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "a version number or an alias"}
_PLAIN = {"200": {"description": "yes"}, "503": {"description": "no"}}


def _model_paths(suffix: str, operation: dict[str, Any]) -> dict[str, Any]:
    plain = {**operation, "parameters": [_MODEL]}
    versioned = {**operation, "parameters": [_MODEL, _VERSION],
                 "operationId": operation["operationId"] + "Version"}
    method = "post" if suffix == "/infer" else "get"
    return {
        f"/v2/models/{{model}}{suffix}": {method: plain},
        f"/v2/models/{{model}}/versions/{{version}}{suffix}": {method: versioned},
    }


def openapi_document(version: str) -> dict[str, Any]:
    tensor_meta: dict[str, Any] = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "datatype": {"type": "string", "example": "FP32"},
            "shape": {"type": "array", "items": {"type": "integer"}, "description": "-1: any"},
        },
    }
    infer_op = {
        "operationId": "infer",
        "summary": "Run inference (JSON tensors, or the binary tensor data extension: the JSON "
        "header then raw tensors, with header Inference-Header-Content-Length)",
        "requestBody": {"required": True, "content": {
            "application/json": {"schema": _ref("InferenceRequest")},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        }},
        "responses": {"200": _json(_ref("InferenceResponse"), "the outputs"), **_ERRORS},
    }
    paths: dict[str, Any] = {
        "/v2/health/live": {"get": {"operationId": "live", "summary": "Server live",
                                    "security": [], "responses": _PLAIN}},
        "/v2/health/ready": {"get": {"operationId": "ready", "summary": "Server ready",
                                     "security": [], "responses": _PLAIN}},
        "/v2": {"get": {"operationId": "serverMetadata", "summary": "Server metadata",
                        "responses": {"200": _json(_ref("ServerMetadata"), "metadata")}}},
        **_model_paths("", {"operationId": "modelMetadata", "summary": "Model metadata",
                            "responses": {"200": _json(_ref("ModelMetadata"), "metadata"),
                                          **_ERRORS}}),
        **_model_paths("/ready", {"operationId": "modelReady", "summary": "Model ready",
                                  "responses": _PLAIN}),
        **_model_paths("/infer", infer_op),
        "/v2/repository/index": {"post": {
            "operationId": "repositoryIndex", "summary": "Models and their state",
            "responses": {"200": _json({"type": "array", "items": _ref("IndexEntry")}, "index")},
        }},
        "/v2/repository/models/{model}/load": {"post": {
            "operationId": "load", "summary": "Load (and serve) a model", "parameters": [_MODEL],
            "responses": {"200": {"description": "loaded"}, **_ERRORS}}},
        "/v2/repository/models/{model}/unload": {"post": {
            "operationId": "unload", "summary": "Unload a model", "parameters": [_MODEL],
            "responses": {"200": {"description": "unloaded"}, **_ERRORS}}},
        "/v1/models/{model}:predict": {"post": {
            "operationId": "predict",
            "summary": 'Simple JSON: {"instances": rows} or {"inputs": tensors} -> '
            '{"predictions": ...}; {"data": ...} -> {"result": ...}',
            "parameters": [_MODEL],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object"}}}},
            "responses": {"200": _json({"type": "object"}, "predictions"), **_ERRORS},
        }},
        "/metrics": {"get": {"operationId": "metrics", "summary": "Prometheus metrics",
                             "responses": {"200": {"description": "text exposition format"}}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "modelport", "version": version,
                 "description": "Open Inference Protocol (V2) REST with the binary tensor data "
                 "and model repository extensions, plus a simple JSON route."},
        "paths": paths,
        "security": [{"bearer": []}],
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": {"error": {"type": "string"}},
                          "required": ["error"]},
                "ServerMetadata": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "extensions": {"type": "array", "items": {"type": "string"}}}},
                "ModelMetadata": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "versions": {"type": "array", "items": {"type": "string"}},
                    "platform": {"type": "string", "example": "onnx_onnxv1"},
                    "inputs": {"type": "array", "items": tensor_meta},
                    "outputs": {"type": "array", "items": tensor_meta}}},
                "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object", "properties": {
                        "binary_data_output": {"type": "boolean"}}},
                    "inputs": {"type": "array", "items": {"type": "object", "required": [
                        "name", "shape", "datatype"], "properties": {
                        **tensor_meta["properties"],
                        "parameters": {"type": "object", "properties": {
                            "binary_data_size": {"type": "integer"}}},
                        "data": {"description": "row-major values, flat or nested"}}}},
                    "outputs": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string"},
                        "parameters": {"type": "object", "properties": {
                            "binary_data": {"type": "boolean"}}}}}}}},
                "InferenceResponse": {"type": "object", "properties": {
                    "model_name": {"type": "string"}, "model_version": {"type": "string"},
                    "id": {"type": "string"},
                    "outputs": {"type": "array", "items": {"type": "object", "properties": {
                        **tensor_meta["properties"],
                        "parameters": {"type": "object"},
                        "data": {"type": "array"}}}}}},
                "IndexEntry": {"type": "object", "properties": {
                    "name": {"type": "string"}, "version": {"type": "string"},
                    "state": {"type": "string"}, "reason": {"type": "string"}}},
            },
        },
    }
