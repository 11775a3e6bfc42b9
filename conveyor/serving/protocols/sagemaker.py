"""SageMaker: the container contract (``GET /ping``, ``POST /invocations``) and the runtime API path
``POST /endpoints/{name}/invocations`` that ``boto3.client("sagemaker-runtime").invoke_endpoint`` calls.

``/invocations`` is shared with MLflow's scoring server: ``text/csv`` bodies are rows in signature
order (a header row is allowed); JSON bodies take any shape ``frame_from_json`` knows
(``dataframe_split``, ``dataframe_records``, ``instances``, ``inputs``, a list). Answers are
``{"predictions": [...]}``, or CSV lines when the caller accepts only ``text/csv``.
A key can travel as ``CustomAttributes="api-key=<key>"``.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import InvalidRequest
from conveyor.serving.openapi import CSV_BODY, FRAME_BODY, describe
from conveyor.serving.protocols.base import frame_from_json, guarded, json_response, load_json, signature_names


# Clients that send JSON without saying so (curl -d, some SDKs) are accepted as JSON too.
JSON_TYPES = frozenset({"application/json", "", "application/x-www-form-urlencoded", "text/plain",
                        "application/octet-stream"})


def parse_csv(body: bytes, names: list[str] | None) -> dict[str, list[Any]]:
    text = body.decode("utf-8", errors="replace")
    try:
        rows = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
    except csv.Error as exc:
        raise InvalidRequest(f"The CSV body could not be read: {exc}.", field="body") from None
    if not rows:
        raise InvalidRequest("The CSV body holds no rows.", field="body")
    if names and [c.strip() for c in rows[0]] == names:
        rows = rows[1:]
    if names is None:
        raise InvalidRequest("CSV needs a model with a signature (column order).", field="body")
    for i, r in enumerate(rows):
        if len(r) != len(names):
            raise InvalidRequest(f"CSV row {i} has {len(r)} values; expected {len(names)} ({', '.join(names)}).",
                                 field=f"row[{i}]")
    return {n: [r[j].strip() for r in rows] for j, n in enumerate(names)}


def routes(service: Any, settings: Any) -> list[Route]:
    def endpoint_of(request: Request) -> str | None:
        return request.path_params.get("name")

    guard = guarded(service, "sagemaker", endpoint_of)

    @describe({**FRAME_BODY, **CSV_BODY})
    @guard
    async def invocations(request: Request) -> Response:
        name = endpoint_of(request)
        headers = request.headers
        route = service.route(name)
        service.authorize(headers, route.spec.name)
        key = service.choose(route, headers)
        body = await request.body()
        names = signature_names(service, key)
        ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if ctype == "text/csv":
            columns = parse_csv(body, names)
        elif ctype in JSON_TYPES or ctype.endswith("+json"):
            columns = frame_from_json(load_json(body), names)
        else:
            raise InvalidRequest(f"Content-Type {ctype[:60]!r} is not accepted; send application/json or text/csv.",
                                 field="content-type")
        pred = service.predict(columns, endpoint=name, headers=headers, protocol="sagemaker", authorized=True,
                               key=key)
        values = pred.values.tolist()
        accept = headers.get("accept", "")
        out_headers = {"X-Request-ID": pred.request_id, "X-Conveyor-Model": str(pred.model)}
        if "text/csv" in accept and "json" not in accept:
            lines = "\n".join(",".join(map(str, v)) if isinstance(v, list) else str(v) for v in values)
            return Response(lines + "\n", media_type="text/csv", headers=out_headers)
        return json_response({"predictions": values}, headers=out_headers)

    async def ping(request: Request) -> Response:
        return json_response(*service.readiness())

    return [Route("/ping", ping, methods=["GET"]),
            Route("/invocations", invocations, methods=["POST"]),
            Route("/endpoints/{name}/invocations", invocations, methods=["POST"])]
