"""The dashboard's ASGI app: the JSON API, the login form, the pages and their static files.

Pages are one HTML shell (``static/index.html``) whose script draws the page its path names from the
API; there is no build step and nothing is fetched from the internet. Without a key (once keys
exist) only ``/login`` and ``/static`` answer: the static files are the dashboard's own code.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from conveyor.errors import ConveyorError, NotFound, PermissionDenied, Unauthenticated
from conveyor.serving.protocols.base import error_response, json_response
from conveyor.ui.api import Api
from conveyor.ui.auth import (CSRF_COOKIE, LOOPBACK, SESSION_COOKIE, SESSION_TTL_S, Sessions, check_csrf, key_record,
                              same_origin)

log = logging.getLogger("conveyor.ui")
STATIC = Path(__file__).parent / "static"
PAGES = ["/runs", "/runs/{run_id}", "/compare", "/models", "/models/{name}", "/lineage", "/endpoints",
         "/monitoring", "/automation", "/datasets", "/datasets/{name}", "/studies", "/studies/{name}"]
HEADERS = [(b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            b"frame-ancestors 'none'; form-action 'self'"),
           (b"x-frame-options", b"DENY"), (b"x-content-type-options", b"nosniff"),
           (b"referrer-policy", b"same-origin")]


def asset_version() -> str:
    """A digest of the static files: pages name their scripts with it, so browsers may keep them for good."""
    digest = hashlib.sha256()
    for path in sorted(STATIC.iterdir()):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:12]


class Assets(StaticFiles):
    """The static files; one asked for with the current version is cached by the browser for a year."""

    def __init__(self, version: str) -> None:
        super().__init__(directory=STATIC)
        self.version = version

    async def get_response(self, path: str, scope: Scope) -> Response:
        resp = await super().get_response(path, scope)
        if resp.status_code == 200 and f"v={self.version}".encode() in scope.get("query_string", b""):
            resp.headers["cache-control"] = "public, max-age=31536000, immutable"
        return resp


def _html(name: str, version: str) -> bytes:
    return (STATIC / name).read_text(encoding="utf-8").replace("__V__", version).encode()


class SecurityHeaders:
    """Adds the dashboard's security headers (CSP, no framing, no sniffing) to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def _cookie(resp: Response, request: Request, name: str, value: str, *, http_only: bool) -> None:
    resp.set_cookie(name, value, max_age=SESSION_TTL_S, path="/", httponly=http_only, samesite="strict",
                    secure=request.url.scheme == "https")


def _next(raw: str | None) -> str:
    """A local path to go to after logging in (never another site)."""
    return raw if raw and raw.startswith("/") and not raw.startswith("//") else "/runs"


def create_ui_app(client: Any, *, host: str | None = None) -> Starlette:
    """The dashboard over ``client``'s metadata and artifact stores; ``host`` is the name it listens on
    (answered, besides loopback, while the store has no key)."""
    version = asset_version()
    index, login_page = _html("index.html", version), _html("login.html", version)
    sessions = Sessions()
    api = Api(client, sessions, LOOPBACK | ({host.strip("[]").lower()} if host and host not in ("0.0.0.0", "::") else set()))

    async def page(request: Request) -> Response:
        try:
            viewer = await run_in_threadpool(api.viewer, request)
        except Unauthenticated:
            return RedirectResponse(f"/login?next={quote(request.url.path)}", status_code=303)
        except PermissionDenied as exc:
            return Response(exc.message, status_code=403, media_type="text/plain")
        resp = Response(index, media_type="text/html", headers={"cache-control": "no-store"})
        if viewer.auth == "open" and not viewer.csrf:
            _cookie(resp, request, CSRF_COOKIE, secrets.token_urlsafe(24), http_only=False)
        return resp

    async def login_form(request: Request) -> Response:
        return Response(login_page, media_type="text/html", headers={"cache-control": "no-store"})

    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        target = _next((form.get("next") or [None])[0])
        if not same_origin(request):
            return Response("Log in from the dashboard's own page.", status_code=403)
        key = (form.get("key") or [""])[0].strip()
        try:
            record = await run_in_threadpool(key_record, client.metadata, key)
        except ConveyorError:
            return RedirectResponse(f"/login?failed=1&next={quote(target)}", status_code=303)
        token, csrf = sessions.open(record.key_id, key)
        resp = RedirectResponse(target, status_code=303)
        _cookie(resp, request, SESSION_COOKIE, token, http_only=True)
        _cookie(resp, request, CSRF_COOKIE, csrf, http_only=False)
        return resp

    async def logout(request: Request) -> Response:
        try:
            viewer = await run_in_threadpool(api.viewer, request)
            check_csrf(request, viewer)
        except (Unauthenticated, PermissionDenied) as exc:
            return error_response(exc)
        token = request.cookies.get(SESSION_COOKIE)
        if token:
            sessions.close(token)
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(SESSION_COOKIE, path="/")
        return resp

    async def favicon(request: Request) -> Response:
        return Response(status_code=204)

    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    routes: list[Any] = api.routes() + [
        Route("/", home, methods=["GET"]),
        Route("/favicon.ico", favicon, methods=["GET"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        Mount("/static", app=Assets(version), name="static"),
    ] + [Route(p, page, methods=["GET"]) for p in PAGES]
    async def unknown_api(request: Request) -> Response:
        return error_response(NotFound(f"No API route {request.method} {request.url.path}. The routes are listed at "
                                       "/api/openapi.json."))

    async def unexpected(request: Request, exc: Exception) -> Response:
        # the one place an unexpected error is answered: logged with its traceback, answered as JSON
        log.error("dashboard %s %s failed", request.method, request.url.path, exc_info=exc)
        return json_response({"error": f"Unexpected error: {type(exc).__name__}. The dashboard's log has the "
                              "traceback.", "field": "server"}, 500)

    routes.append(Route("/api/{rest:path}", unknown_api, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]))
    app = Starlette(routes=routes, exception_handlers={Exception: unexpected})
    app.add_middleware(SecurityHeaders)
    return app
