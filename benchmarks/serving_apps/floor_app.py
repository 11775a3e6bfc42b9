"""The floor: a minimal FastAPI app calling the same model, nothing else (no auth, validation, metrics, log).

It parses and answers with orjson, as a hand-written fast endpoint would, so the comparison is not
about the JSON library."""

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


@app.post("/invocations")
async def invocations(request: Request) -> Response:
    body = orjson.loads(await request.body())
    X = np.asarray(body["instances"], dtype=np.float64)
    return Response(orjson.dumps({"predictions": model.predict(X).tolist()}), media_type="application/json")
