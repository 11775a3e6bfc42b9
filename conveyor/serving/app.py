"""The ASGI app: every protocol's routes plus health, readiness, metrics and the OpenAPI description."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.serving.governance_routes import governance_routes
from conveyor.serving.edge import Edge, http_error_handler
from conveyor.serving.openapi import openapi_document
from conveyor.serving.protocols import PROTOCOLS, protocol_routes
from conveyor.serving.protocols.base import json_response
from conveyor.serving.service import ServingService


def create_app(service: ServingService, settings: Any, protocols: list[str] | None = None,
               extra_routes: list[Any] | None = None) -> Starlette:
    """An app serving ``protocols`` (default: all) from ``service``; starts its poller on startup.

    ``extra_routes`` (e.g. registry actions) join the same edge: size limit, admission, JSON errors,
    and the OpenAPI description the fuzzing suite reads.
    """
    routes: list[Any] = []
    for name in protocols or list(PROTOCOLS):
        routes.extend(protocol_routes(name, service, settings))
    routes.extend(governance_routes(service))
    routes.extend(extra_routes or [])

    async def healthz(request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(request: Request) -> Response:
        body, status = service.readiness()
        return json_response({**body, "revision": service.table.revision,
                              "endpoints": sorted(service.table.routes)}, status)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request) -> Response:
        # Built from the live route list on each call, so routes mounted after create_app appear too.
        return json_response(openapi_document(request.app.routes))

    routes += [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
               Route("/metrics", metrics, methods=["GET"]), Route("/openapi.json", openapi, methods=["GET"])]
    # The router tries routes in order: predictions (POST) first, each protocol's order kept.
    routes.sort(key=lambda r: "POST" not in (getattr(r, "methods", None) or ()))

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

    edge = Middleware(Edge, service=service, max_body_bytes=getattr(settings, "serve_max_body_bytes", 32 << 20),
                      max_in_flight=getattr(settings, "serve_max_in_flight", 64))
    from conveyor.observability.tracing import traced_app

    return traced_app(Starlette(routes=routes, lifespan=lifespan, middleware=[edge],
                                exception_handlers={HTTPException: http_error_handler(service)}))
