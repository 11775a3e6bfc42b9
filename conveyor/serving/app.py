"""The ASGI app: every protocol's routes plus health, readiness, metrics and the OpenAPI description."""

from __future__ import annotations

import contextlib
import gc
import inspect
from collections.abc import AsyncIterator
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route

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
    predictions = [r for r in routes if "POST" in (getattr(r, "methods", None) or ())]
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
    fixed = Middleware(FixedPosts, endpoints=fixed_posts(predictions, routes))
    from conveyor.observability.tracing import traced_app

    return traced_app(Starlette(routes=routes, lifespan=lifespan, middleware=[edge, fixed],
                                exception_handlers={HTTPException: http_error_handler(service)}))


class FixedPosts:
    """POSTs to a fixed path (``/invocations``, ``/score``, ``/predict``) go straight to their function.

    Inside the edge (size limit, admission, errors), in front of the router: one dict lookup instead of
    the router's scan of route patterns and Starlette's per-route exception wrapper (these routes answer
    their own errors and raise no HTTPException). Everything else goes on to the router unchanged.
    """

    def __init__(self, app: Any, endpoints: dict[str, Any]) -> None:
        self.app = app
        self.endpoints = endpoints

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            endpoint = self.endpoints.get(scope["path"])
            if endpoint is not None:
                scope["path_params"] = {}
                scope["endpoint"] = endpoint
                response = await endpoint(Request(scope, receive, send))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def fixed_posts(candidates: list[Any], routes: list[Any]) -> dict[str, Any]:
    """Path -> function of the ``candidates`` (POST, no path parameter) the router of ``routes`` would choose."""
    found: dict[str, Any] = {}
    for route in candidates:
        if not isinstance(route, Route) or "POST" not in (route.methods or ()) or route.param_convertors \
                or not inspect.isfunction(route.endpoint):
            continue
        probe = {"type": "http", "path": route.path, "method": "POST", "root_path": ""}
        chosen = next((r for r in routes if r.matches(probe)[0] == Match.FULL), None)
        if chosen is route:
            found.setdefault(route.path, route.endpoint)
    return found
