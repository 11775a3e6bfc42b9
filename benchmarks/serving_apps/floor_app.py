"""The floors: minimal FastAPI apps calling the same model, nothing else (no auth, validation, metrics, log).

``app`` is the plain FastAPI endpoint (``await request.json()``); ``fast_app`` parses with orjson as
a hand-tuned endpoint would, a stricter floor once requests carry many values."""

from __future__ import annotations

import os
import pickle

import numpy as np
from fastapi import FastAPI, Request
import orjson
from fastapi.responses import Response

with open(os.environ["BENCH_MODEL"], "rb") as fh:
    model = pickle.load(fh)

app = FastAPI()


def answer(body: dict) -> Response:
    X = np.asarray(body["instances"], dtype=np.float64)
    return Response(orjson.dumps({"predictions": model.predict(X).tolist()}), media_type="application/json")


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    return answer(await request.json())


fast_app = FastAPI()


@fast_app.post("/invocations")
async def fast_invocations(request: Request) -> Response:
    return answer(orjson.loads(await request.body()))
