"""The ASGI app: every protocol's routes plus health, readiness and metrics."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.serving.governance_routes import governance_routes
from conveyor.serving.protocols import PROTOCOLS, protocol_routes
from conveyor.serving.protocols.base import json_response
from conveyor.serving.service import ServingService


def create_app(service: ServingService, settings: Any, protocols: list[str] | None = None) -> Starlette:
    """An app serving ``protocols`` (default: all) from ``service``; starts its poller on startup."""
    routes: list[Route] = []
    for name in protocols or list(PROTOCOLS):
        routes.extend(protocol_routes(name, service, settings))
    routes.extend(governance_routes(service))

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        return json_response({"ready": service.ready, "revision": service.table.revision,
                              "endpoints": sorted(service.table.routes)}, 200 if service.ready else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    routes += [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
               Route("/metrics", metrics, methods=["GET"])]
    # The router tries routes in order: predictions (POST) first, each protocol's order kept.
    routes.sort(key=lambda r: "POST" not in (r.methods or ()))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service.start()
        # Everything loaded so far (libraries, models) lives as long as the server: move it out of the
        # collector's reach so a full collection scans only request garbage, not a 40 ms heap walk.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            service.stop()

    return Starlette(routes=routes, lifespan=lifespan)
