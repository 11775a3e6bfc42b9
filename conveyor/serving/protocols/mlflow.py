"""MLflow's scoring protocol: ``/invocations`` (served by the SageMaker module, same body shapes),
``/ping``, ``/health`` and ``/version``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import conveyor
from conveyor.serving.protocols.base import json_response


def routes(service: Any, settings: Any) -> list[Route]:
    async def health(request: Request) -> Response:
        return json_response(*service.readiness())

    async def version(request: Request) -> Response:
        return Response(conveyor.__version__, media_type="text/plain")

    return [Route("/health", health, methods=["GET"]), Route("/version", version, methods=["GET"])]
