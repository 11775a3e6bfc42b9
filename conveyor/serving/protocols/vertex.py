"""Vertex AI custom containers: predict on ``AIP_PREDICT_ROUTE`` and health on ``AIP_HEALTH_ROUTE``.

``{"instances": [...], "parameters": {...}}`` → ``{"predictions": [...], "deployedModelId": "<model:version>"}``;
an instance is an object (named columns) or a list (signature order).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import InvalidRequest
from conveyor.serving.openapi import FRAME_BODY, describe
from conveyor.serving.protocols.base import frame_from_json, guarded, json_response, load_json, signature_names


def routes(service: Any, settings: Any) -> list[Route]:
    guard = guarded(service, "vertex", lambda r: None)

    @describe(FRAME_BODY)
    @guard
    async def predict(request: Request) -> Response:
        headers = request.headers
        route = service.route(None)
        service.authorize(headers, route.spec.name)
        key = service.choose(route, headers)
        body = load_json(await request.body())
        if not isinstance(body, dict) or "instances" not in body:
            raise InvalidRequest("Vertex AI requests are {\"instances\": [...]}.", field="instances")
        columns = frame_from_json({"instances": body["instances"]}, signature_names(service, key))
        pred = service.predict(columns, endpoint=None, headers=headers, protocol="vertex", authorized=True, key=key)
        return json_response({"predictions": pred.values.tolist(), "deployedModelId": str(pred.model)},
                             headers={"X-Request-ID": pred.request_id})

    async def health(request: Request) -> Response:
        return json_response(*service.readiness())

    return [Route(settings.aip_predict_route, predict, methods=["POST"]),
            Route(settings.aip_health_route, health, methods=["GET"])]
