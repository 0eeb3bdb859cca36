"""The baseline: a FastAPI + ONNX Runtime app written the way tutorials write it.

    MODEL_PATH=model.onnx uvicorn bench.naive_app:app --port 8001

``POST /predict`` with ``{"data": [...]}`` (the input tensor as nested lists) answers
``{"result": [...]}`` (every output as nested lists), like the seed's ``score.py``. Nothing here is
tuned on purpose: a pydantic body model, a plain ``def`` endpoint (FastAPI runs it in its thread
pool), ``tolist()`` on the way out. ONNX Runtime gets one intra-op thread (``ORT_THREADS``) so that
the comparison with modelport and the raw loop is at the same thread budget.
Falls back to Starlette when FastAPI is not installed.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

MODEL_PATH = os.environ.get("MODEL_PATH", "model.onnx")

options = ort.SessionOptions()
options.intra_op_num_threads = int(os.environ.get("ORT_THREADS", "1"))
session = ort.InferenceSession(MODEL_PATH, options, providers=["CPUExecutionProvider"])
input_name = session.get_inputs()[0].name

try:
    from fastapi import FastAPI
    from pydantic import BaseModel

    app = FastAPI(title="model")

    class PredictRequest(BaseModel):
        data: list[Any]

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        x = np.array(request.data, dtype=np.float32)
        outputs = session.run(None, {input_name: x})
        return {"result": [output.tolist() for output in outputs]}

except ImportError:  # pragma: no cover - the same thing without FastAPI
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def predict_starlette(request: Request) -> JSONResponse:
        body = await request.json()
        x = np.array(body["data"], dtype=np.float32)
        outputs = session.run(None, {input_name: x})
        return JSONResponse({"result": [output.tolist() for output in outputs]})

    app = Starlette(routes=[Route("/predict", predict_starlette, methods=["POST"])])
