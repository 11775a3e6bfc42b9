"""The dashboard's JSON API under ``/api`` (described at ``/api/openapi.json``); the pages read it too.

Every route identifies its caller first (``conveyor.ui.auth``); actions (POST) also pass the CSRF
checks and then act through the registry as the key's actor, so the registry's one policy decides.
Every error is JSON ``{"error", "field"}`` with the status its class maps to, as on the server.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import ConveyorError, InvalidRequest
from conveyor.serving.governance_routes import json_object_body
from conveyor.serving.openapi import describe, openapi_document
from conveyor.serving.protocols.base import error_response, json_response
from conveyor.ui import catalog, lineage, runs
from conveyor.ui.auth import LOOPBACK, Sessions, Viewer, acting, check_csrf, identify, role_of

log = logging.getLogger("conveyor.ui")
MAX_BODY = 64 * 1024


@dataclass(slots=True)
class Call:
    """What a route's function gets: the stores, the request's parts, who asks, and (actions) the registry."""

    client: Any
    request: Request
    viewer: Viewer
    body: dict[str, Any]
    registry: Any = None

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def number(self, name: str) -> int:
        raw = self.path(name)
        if not raw.isdigit() or int(raw) < 1:
            raise InvalidRequest(f"'{raw}' is not a version: use a positive whole number.", field=name)
        return int(raw)

    def ids(self) -> list[str]:
        raw = self.request.query_params.get("ids", "")
        ids = [x for x in raw.split(",") if x]
        if not ids:
            raise InvalidRequest("Name the runs: ids=RUN_ID,RUN_ID,...", field="ids")
        return ids


Handler = Callable[[Call], Any]

RUN_FILTERS = {
    "pipeline": "only this pipeline (or tracking run name)", "status": "only these states, comma-separated",
    "kind": "pipeline, tracking or trial", "tag*": "KEY=VALUE, repeatable: runs whose tag KEY is VALUE",
    "param*": "KEY=VALUE, repeatable: runs whose parameter KEY is VALUE",
    "since": "created at or after: epoch seconds or ISO 8601", "until": "created before: epoch seconds or ISO 8601",
    "limit": "runs per page, 1-500 (default 50)", "cursor": "next_cursor of the previous page",
    "offset": "runs to skip (when no cursor)", "total": "0 to skip counting the matching runs"}
IDS = {"ids": "run ids, comma-separated (at most 200)"}
KEYS = {"keys": "only these metric keys, comma-separated"}
POINTS = {"points": "at most about this many points a curve, its shape kept (each step range's lowest and "
                    "highest value); all of them when absent"}


class Api:
    """Builds the routes over one client and one session table."""

    def __init__(self, client: Any, sessions: Sessions, open_hosts: frozenset[str] = LOOPBACK) -> None:
        self.client = client
        self.sessions = sessions
        self.open_hosts = open_hosts

    def viewer(self, request: Request) -> Viewer:
        return identify(request, self.client.metadata, self.sessions, self.client.settings.actor, self.open_hosts)

    def route(self, path: str, fn: Handler, *, action: bool = False, body: dict[str, Any] | None = None,
              summary: str | None = None, query: dict[str, str] | None = None) -> Route:
        async def handler(request: Request) -> Response:
            try:
                data = await json_object_body(request, MAX_BODY) if action else {}
                viewer = await run_in_threadpool(self.viewer, request)
                call = Call(self.client, request, viewer, data)
                if action:
                    check_csrf(request, viewer)
                    call.registry = await run_in_threadpool(self._registry, viewer)
                result = await run_in_threadpool(fn, call)
                return result if isinstance(result, Response) else json_response(result)
            except ConveyorError as exc:
                resp = error_response(exc)
                log.info("ui %s %s -> %d: %s", request.method, request.url.path, resp.status_code, exc.message)
                return resp
        handler.__doc__ = summary or fn.__doc__
        handler.openapi_query = query or {}  # type: ignore[attr-defined]
        if action:
            describe({"application/json": {"schema": body or {"type": "object"}}}, summary)(handler)
        return Route(path, handler, methods=["POST" if action else "GET"])

    def _registry(self, viewer: Viewer) -> Any:
        from conveyor.registry import ModelRegistry

        return ModelRegistry(self.client.metadata, self.client.artifacts, acting(self.client.metadata, viewer))

    def routes(self) -> list[Route]:
        r = self.route
        comment = {"type": "object", "properties": {"comment": {"type": "string", "maxLength": 2000}}}
        version = {"type": "object", "required": ["version"],
                   "properties": {"version": {"type": "integer", "minimum": 1}}}
        m = "/api/models/{name}"
        routes = [
            r("/api/session", session, summary="Who you are: actor, role, how you logged in, the CSRF token"),
            r("/api/pipelines", lambda c: runs.pipelines(c.client.metadata), summary="Pipeline names"),
            r("/api/runs", list_runs, summary="Runs, newest first: filters and keyset pagination", query=RUN_FILTERS),
            r("/api/runs/{run_id}", lambda c: runs.run_detail(c.client, c.path("run_id"),
                                                              c.request.query_params.get("explain") != "0"),
              summary="One run in full", query={"explain": "0 to leave out why steps missed the cache"}),
            r("/api/runs/{run_id}/cache-misses", lambda c: runs.cache_misses(c.client.metadata, c.path("run_id")),
              summary="Why each step that ran missed the cache, by node name"),
            r("/api/runs/{run_id}/states", lambda c: runs.run_states(c.client.metadata, c.path("run_id")),
              summary="A run's status and its steps' states (what a live page polls)"),
            r("/api/runs/{run_id}/logs", lambda c: runs.logs(c.client.metadata, c.path("run_id"),
                                                             c.request.query_params.get("step")),
              summary="What each step wrote", query={"step": "only this step (node or step name)"}),
            r("/api/runs/{run_id}/curves", run_curves, summary="A run's metric curves", query=KEYS),
            r("/api/compare", lambda c: runs.compare(c.client, c.ids()), summary="Parameters and metrics side by side",
              query=IDS),
            r("/api/curves", lambda c: runs.curves(c.client.metadata, c.ids(), _keys(c), _points(c)),
              summary="Metric curves of several runs", query=IDS | KEYS | POINTS),
            r("/api/lineage/artifacts/{artifact_id}",
              lambda c: lineage.artifact_lineage(c.client, c.path("artifact_id")),
              summary="An artifact's producers, consumers, model versions and endpoints"),
            r("/api/lineage/models/{name}/{version}",
              lambda c: lineage.model_lineage(c.client, c.path("name"), c.number("version")),
              summary="A model version back to its run and data, forward to its endpoints"),
            r("/api/lineage/datasets/{name}/{version}",
              lambda c: lineage.dataset_lineage(c.client, c.path("name"), c.number("version")),
              summary="A dataset version forward to models and endpoints"),
            r("/api/models", lambda c: catalog.models(c.client), summary="Registered models"),
            r(m, lambda c: catalog.model(c.client, c.path("name")),
              summary="A model: versions, approvals, aliases and their history, audit log"),
            r(f"{m}/versions/{{version}}/approve", approve, action=True, body=comment,
              summary="Approve a model version (approver role)"),
            r(f"{m}/versions/{{version}}/reject", reject, action=True, body=comment,
              summary="Reject a model version (approver role)"),
            r(f"{m}/aliases/{{alias}}", move_alias, action=True, body=version,
              summary="Point an alias at a version (a protected alias needs an approved version)"),
            r(f"{m}/aliases/{{alias}}/rollback", rollback, action=True, body={"type": "object"},
              summary="Move an alias back to the version it held before"),
            r("/api/audit", lambda c: catalog.audit(c.client), summary="The registry's audit log, newest first"),
            r("/api/endpoints", lambda c: catalog.endpoints(c.client), summary="Serving endpoints"),
            r("/api/monitoring", lambda c: catalog.monitoring(c.client), summary="Monitors, their checks and alerts"),
            r("/api/monitoring/{name}/report", lambda c: catalog.monitor_report(c.client, c.path("name")),
              summary="The drift and data-quality report (HTML with plots) of a monitor's current window"),
            r("/api/automation", lambda c: catalog.automation(c.client), summary="Schedules, triggers and firings"),
            r("/api/datasets", lambda c: catalog.datasets(c.client), summary="Datasets"),
            r("/api/datasets/{name}", lambda c: catalog.dataset(c.client, c.path("name")),
              summary="A dataset's versions"),
            r("/api/datasets/{name}/diff",
              lambda c: catalog.dataset_diff(c.client, c.path("name"), c.request.query_params.get("a"),
                                             c.request.query_params.get("b"), c.request.query_params.get("key")),
              summary="Two versions compared: schema, rows added, removed and changed, distributions",
              query={"a": "the earlier version", "b": "the later version",
                     "key": "columns that identify a row, comma-separated (for changed rows)"}),
            r("/api/studies", lambda c: catalog.studies(c.client), summary="Tuning studies"),
            r("/api/studies/{name}", lambda c: catalog.study(c.client, c.path("name")),
              summary="A study's trials: parameters and metrics"),
        ]
        everything = list(routes)

        async def openapi(request: Request) -> Response:
            try:
                await run_in_threadpool(self.viewer, request)
            except ConveyorError as exc:
                return error_response(exc)
            doc = openapi_document(everything)
            doc["info"]["title"] = "Conveyor dashboard"
            for route in everything:
                op = doc["paths"][route.path]["post" if "POST" in (route.methods or ()) else "get"]
                op.setdefault("parameters", []).extend(
                    {"name": name.rstrip("*"), "in": "query", "required": False, "description": text,
                     "schema": {"type": "array", "items": {"type": "string"}} if name.endswith("*")
                     else {"type": "string"}, **({"explode": True} if name.endswith("*") else {})}
                    for name, text in route.endpoint.openapi_query.items())
            return json_response(doc)

        return routes + [Route("/api/openapi.json", openapi, methods=["GET"])]


def _keys(c: Call) -> list[str] | None:
    raw = c.request.query_params.get("keys")
    return [k for k in raw.split(",") if k] if raw else None


def _points(c: Call) -> int | None:
    raw = c.request.query_params.get("points")
    if raw is None:
        return None
    if not raw.isdigit() or not 2 <= int(raw) <= 100_000:
        raise InvalidRequest(f"points={raw!r}: use a whole number from 2 to 100000.", field="points")
    return int(raw)


def run_curves(c: Call) -> Any:
    rid = c.client.metadata.runs.get(c.path("run_id")).id
    return runs.curves(c.client.metadata, [rid], _keys(c))[rid]


def _comment(body: dict[str, Any]) -> str | None:
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise InvalidRequest("'comment' must be text of at most 2000 characters.", field="comment")
    return comment or None


def session(c: Call) -> dict[str, Any]:
    """Who you are."""
    roles = c.client.metadata.models.roles_of(c.viewer.actor)
    return {"actor": c.viewer.actor, "auth": c.viewer.auth, "roles": sorted(roles), "role": role_of(roles),
            "key_id": c.viewer.key_id, "csrf_token": c.viewer.csrf}


def list_runs(c: Call) -> dict[str, Any]:
    q = c.request.query_params
    query: dict[str, Any] = {k: v for k, v in q.items() if k not in ("tag", "param")}
    query["tag"], query["param"] = q.getlist("tag"), q.getlist("param")
    return runs.list_runs(c.client.metadata, query)


def _version_json(v: Any) -> dict[str, Any]:
    return {"model": v.model, "version": v.version, "aliases": list(v.aliases), "approval": v.approval}


def approve(c: Call) -> Any:
    return _version_json(c.registry.approve(f"{c.path('name')}:{c.number('version')}", _comment(c.body)))


def reject(c: Call) -> Any:
    return _version_json(c.registry.reject(f"{c.path('name')}:{c.number('version')}", _comment(c.body)))


def move_alias(c: Call) -> Any:
    version = c.body.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidRequest("The body needs 'version': a positive whole number, e.g. {\"version\": 3}.",
                             field="version")
    name, alias = c.path("name"), c.path("alias")
    before = c.registry.set_alias(name, alias, version)
    return {"model": name, "alias": alias, "before": before, "version": version}


def rollback(c: Call) -> Any:
    name, alias = c.path("name"), c.path("alias")
    c.registry.resolve(name)
    before, after = c.registry.rollback(name, alias)
    return {"model": name, "alias": alias, "before": before, "version": after}

