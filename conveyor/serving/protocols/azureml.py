"""Azure ML online endpoints: ``POST /score`` with the key in ``Authorization: Bearer``.

Bodies: ``{"data": [...]}`` (objects or rows) or ``{"input_data": {"columns", "index", "data"}}``;
the answer is the JSON list of predictions, as an Azure scoring script returns it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.serving.openapi import FRAME_BODY, describe
from conveyor.serving.protocols.base import frame_from_json, guarded, json_response, load_json, signature_names


def routes(service: Any, settings: Any) -> list[Route]:
    guard = guarded(service, "azureml", lambda r: None)

    @describe(FRAME_BODY)
    @guard
    async def score(request: Request) -> Response:
        headers = request.headers
        route = service.route(None)
        service.authorize(headers, route.spec.name)
        key = service.choose(route, headers)
        columns = frame_from_json(load_json(await request.body()), signature_names(service, key))
        pred = service.predict(columns, endpoint=None, headers=headers, protocol="azureml", authorized=True, key=key)
        return json_response(pred.values.tolist(), headers={"X-Request-ID": pred.request_id})

    return [Route("/score", score, methods=["POST"])]
