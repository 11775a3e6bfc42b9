"""The registry's governance actions over HTTP, where the API key proves who acts.

``CONVEYOR_ACTOR`` only names an actor: anyone who can open a shared store can claim any name. Here
the actor is the one recorded on the presented key (``conveyor keys create --actor NAME --scope
deploy``), and the registry then applies its one policy to that actor's roles, exactly as for the CLI.

Routes (JSON bodies; every error is JSON ``{"error": ...}`` with 400/401/403/404/409)::

    GET    /v1/registry/whoami
    GET    /v1/registry/models/{name}
    POST   /v1/registry/models/{name}/versions/{version}/approve     {"comment": "..."}
    POST   /v1/registry/models/{name}/versions/{version}/reject      {"comment": "..."}
    PUT    /v1/registry/models/{name}/aliases/{alias}                {"version": 3}
    DELETE /v1/registry/models/{name}/aliases/{alias}
    POST   /v1/registry/models/{name}/aliases/{alias}/rollback
    GET    /v1/registry/roles
    POST   /v1/registry/roles                                        {"actor": "bob", "role": "approver"}
    DELETE /v1/registry/roles/{actor}/{role}

These are not on the prediction hot path: each call reads the key and the roles from the store, so
a revoked key or role takes effect on the next call, whatever the server's poll interval.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conveyor.errors import ConveyorError, InvalidRequest, PermissionDenied, Unauthenticated
from conveyor.serving.auth import allows, hash_secret, split_key
from conveyor.serving.openapi import describe
from conveyor.serving.protocols.base import answer_error, json_response, load_json

log = logging.getLogger("conveyor.serving.governance")

PREFIX = "/v1/registry"
NEEDED_SCOPE = "deploy"
MAX_BODY = 64 * 1024


def _presented(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key", "").strip()


def acting_actor(metadata: Any, presented: str) -> str:
    """The actor a presented key acts as; Unauthenticated / PermissionDenied otherwise."""
    if not presented:
        raise Unauthenticated("Governance calls need an API key that carries an actor: send "
                              "`Authorization: Bearer <key>`; create one with "
                              "`conveyor keys create --scope deploy --actor NAME`.")
    parts = split_key(presented)
    record = metadata.endpoints.key(parts[0]) if parts else None
    if record is None or record.revoked_at is not None or not hmac.compare_digest(record.secret_hash,
                                                                                  hash_secret(parts[1])):
        raise Unauthenticated("The API key is not valid or was revoked.")
    if not record.actor:
        raise PermissionDenied(f"Key {record.key_id} carries no actor, so it cannot act on the registry. Create "
                               "one with `conveyor keys create --scope deploy --actor NAME`.")
    if not allows(record.scope, NEEDED_SCOPE):
        raise PermissionDenied(f"Key {record.key_id} has scope '{record.scope}'; registry actions need "
                               f"'{NEEDED_SCOPE}' or 'admin'.")
    return str(record.actor)


async def json_object_body(request: Request, max_bytes: int = MAX_BODY) -> dict[str, Any]:
    """An action's JSON object body (empty: ``{}``); too large or not an object is a clear 400."""
    raw = await request.body()
    if not raw:
        return {}
    if len(raw) > max_bytes:
        raise InvalidRequest(f"The body is larger than {max_bytes} bytes.", field="body")
    data = load_json(raw)
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.", field="body")
    return data


def _int_param(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isdigit() or int(raw) < 1:
        raise InvalidRequest(f"'{raw}' is not a version: use a positive whole number.", field=name)
    return int(raw)


def _comment(body: dict[str, Any]) -> str | None:
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 2000):
        raise InvalidRequest("'comment' must be text of at most 2000 characters.", field="comment")
    return comment


def _version_json(v: Any) -> dict[str, Any]:
    return {"model": v.model, "version": v.version, "aliases": list(v.aliases), "approval": v.approval}


Action = Callable[[Any, Request, dict[str, Any]], Any]


def governance_routes(service: Any) -> list[Route]:
    """The governance routes for a server whose catalog reads a metadata store (none otherwise)."""
    catalog = service.catalog
    metadata = getattr(catalog, "metadata", None)
    artifacts = getattr(catalog, "artifacts", None)
    if metadata is None:
        return []

    def endpoint(action: Action, *, reads_body: bool = False) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            try:
                body = await json_object_body(request) if reads_body else {}
                actor = await run_in_threadpool(acting_actor, metadata, _presented(request))
                from conveyor.registry import ModelRegistry

                registry = ModelRegistry(metadata, artifacts, actor)
                result = await run_in_threadpool(action, registry, request, body)
                return json_response(result)
            except ConveyorError as exc:
                # the same JSON answer, log line and count as every other route; anything else
                # goes up to the edge, which answers it as a JSON 500 with the traceback logged
                resp = answer_error(service, exc, request.headers, "governance", None)
                log.info("governance %s %s -> %d: %s", request.method, request.url.path, resp.status_code,
                         exc.message)
                return resp
        return handler

    def whoami(reg: Any, _r: Request, _b: dict[str, Any]) -> Any:
        return {"actor": reg.actor, "roles": sorted(reg.roles())}

    def show(reg: Any, r: Request, _b: dict[str, Any]) -> Any:
        name = r.path_params["name"]
        versions = reg.versions(name)
        return {"model": name, "aliases": reg.models.aliases(name), "versions": [_version_json(v) for v in versions]}

    def approve(reg: Any, r: Request, b: dict[str, Any]) -> Any:
        v = reg.approve(f"{r.path_params['name']}:{_int_param(r, 'version')}", _comment(b))
        return _version_json(v)

    def reject(reg: Any, r: Request, b: dict[str, Any]) -> Any:
        v = reg.reject(f"{r.path_params['name']}:{_int_param(r, 'version')}", _comment(b))
        return _version_json(v)

    def move_alias(reg: Any, r: Request, b: dict[str, Any]) -> Any:
        version = b.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise InvalidRequest("The body needs 'version': a positive whole number, e.g. {\"version\": 3}.",
                                 field="version")
        name, alias = r.path_params["name"], r.path_params["alias"]
        before = reg.set_alias(name, alias, version)
        return {"model": name, "alias": alias, "before": before, "version": version}

    def remove_alias(reg: Any, r: Request, _b: dict[str, Any]) -> Any:
        name, alias = r.path_params["name"], r.path_params["alias"]
        reg.resolve(name)
        reg.remove_alias(name, alias)
        return {"model": name, "alias": alias, "removed": True}

    def rollback(reg: Any, r: Request, _b: dict[str, Any]) -> Any:
        name, alias = r.path_params["name"], r.path_params["alias"]
        reg.resolve(name)
        before, after = reg.rollback(name, alias)
        return {"model": name, "alias": alias, "before": before, "version": after}

    def list_roles(reg: Any, _r: Request, _b: dict[str, Any]) -> Any:
        return [{"actor": a, "role": role} for a, role in reg.role_grants()]

    def grant(reg: Any, _r: Request, b: dict[str, Any]) -> Any:
        actor, role = b.get("actor"), b.get("role")
        if not isinstance(actor, str) or not isinstance(role, str):
            raise InvalidRequest("The body needs 'actor' and 'role' as text, e.g. "
                                 "{\"actor\": \"bob\", \"role\": \"approver\"}.", field="actor" if not
                                 isinstance(actor, str) else "role")
        reg.grant(actor, role)
        return {"actor": actor, "role": role, "granted": True}

    def revoke(reg: Any, r: Request, _b: dict[str, Any]) -> Any:
        actor, role = r.path_params["actor"], r.path_params["role"]
        reg.revoke(actor, role)
        return {"actor": actor, "role": role, "revoked": True}

    # bodies described for /openapi.json (and so for the fuzzing suite, which reads it)
    def body(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": properties}
        if required:
            schema["required"] = list(required)
        return {"application/json": {"schema": schema}}

    comment = body({"comment": {"type": "string"}})
    approve_h = describe(comment, "Approve a model version")(endpoint(approve, reads_body=True))
    reject_h = describe(comment, "Reject a model version")(endpoint(reject, reads_body=True))
    grant_h = describe(body({"actor": {"type": "string"}, "role": {"type": "string"}}, ("actor", "role")),
                       "Grant a role")(endpoint(grant, reads_body=True))
    move_h = describe(body({"version": {"type": "integer", "minimum": 1}}, ("version",)),
                      "Move an alias to a version")(endpoint(move_alias, reads_body=True))
    rollback_h = describe(body({}), "Move an alias back to its previous version")(endpoint(rollback))
    m = f"{PREFIX}/models/{{name:path}}"
    return [
        Route(f"{PREFIX}/whoami", endpoint(whoami), methods=["GET"]),
        Route(f"{PREFIX}/roles", endpoint(list_roles), methods=["GET"]),
        Route(f"{PREFIX}/roles", grant_h, methods=["POST"]),
        Route(f"{PREFIX}/roles/{{actor}}/{{role}}", endpoint(revoke), methods=["DELETE"]),
        Route(f"{m}/versions/{{version}}/approve", approve_h, methods=["POST"]),
        Route(f"{m}/versions/{{version}}/reject", reject_h, methods=["POST"]),
        Route(f"{m}/aliases/{{alias}}/rollback", rollback_h, methods=["POST"]),
        Route(f"{m}/aliases/{{alias}}", move_h, methods=["PUT"]),
        Route(f"{m}/aliases/{{alias}}", endpoint(remove_alias), methods=["DELETE"]),
        Route(m, endpoint(show), methods=["GET"]),
    ]
