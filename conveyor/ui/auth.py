"""Who is looking at the dashboard: the server's API keys, a session cookie, and CSRF checks.

The dashboard takes the same keys as the server (``conveyor keys create``). While the store holds no
active key it is open, as the CLI is to whoever can open the store, and acts as ``settings.actor``,
answering only to this machine's names (the host it listens on, ``localhost``, loopback).
Once a key exists nothing is served without one: a browser logs in with the key once and gets a
session cookie (HttpOnly, SameSite=Strict); a script sends ``Authorization: Bearer <key>``.

Roles are the registry's own (``approver``, ``admin``), held by the actor the key carries; a key
without one of them is a viewer. The registry decides every action itself, so a viewer's approve
meets the same ``PermissionDenied`` (403) as on the CLI or the server's governance API.

CSRF: an action (any POST) coming with the session cookie must carry the session's token in the
``X-CSRF-Token`` header (double-submit: the token is also in the readable ``conveyor_csrf``
cookie), and a request with an ``Origin`` header must come from the dashboard's own origin.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request

from conveyor.errors import PermissionDenied, Unauthenticated
from conveyor.serving.auth import hash_secret, split_key
from conveyor.serving.governance_routes import acting_actor

SESSION_COOKIE = "conveyor_session"
CSRF_COOKIE = "conveyor_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL_S = 12 * 3600


@dataclass(slots=True)
class Viewer:
    """Who makes a request: the actor, how they proved it, and the key (kept server-side only)."""

    actor: str
    auth: str                  # "open" (no keys in the store) | "session" | "bearer"
    key_id: str | None = None
    presented: str | None = None
    csrf: str | None = None


@dataclass(slots=True)
class _Session:
    key_id: str
    presented: str
    csrf: str
    expires: float


def key_record(metadata: Any, presented: str) -> Any:
    """The active key record a presented key matches, else raise Unauthenticated."""
    parts = split_key(presented.strip())
    record = metadata.endpoints.key(parts[0]) if parts else None
    if record is None or record.revoked_at is not None or not hmac.compare_digest(
            record.secret_hash, hash_secret(parts[1])):
        raise Unauthenticated("The API key is not valid or was revoked. Create one with "
                              "`conveyor keys create --actor NAME`.")
    return record


class Sessions:
    """Logged-in browsers, in this process's memory (a restart asks for the key again)."""

    def __init__(self) -> None:
        self._by_token: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def open(self, key_id: str, presented: str) -> tuple[str, str]:
        """A new session for a verified key: (session token, CSRF token)."""
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            for stale in [k for k, s in self._by_token.items() if s.expires < now]:
                del self._by_token[stale]
            self._by_token[token] = _Session(key_id, presented, csrf, now + SESSION_TTL_S)
        return token, csrf

    def get(self, token: str) -> _Session | None:
        with self._lock:
            s = self._by_token.get(token)
        return s if s is not None and s.expires >= time.time() else None

    def close(self, token: str) -> None:
        with self._lock:
            self._by_token.pop(token, None)


def keys_active(metadata: Any) -> bool:
    """True once the store holds an unrevoked key: from then on every request needs one."""
    return bool(metadata.endpoints.keys())


def presented_bearer(request: Request) -> str:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth.lower().startswith("bearer ") else ""


LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


def identify(request: Request, metadata: Any, sessions: Sessions, default_actor: str,
             open_hosts: frozenset[str] = LOOPBACK) -> Viewer:
    """Who makes this request; Unauthenticated when keys exist and none (or a bad one) came."""
    bearer = presented_bearer(request)
    if bearer:
        record = key_record(metadata, bearer)
        return Viewer(record.actor or f"key:{record.key_id}", "bearer", record.key_id, bearer)
    token = request.cookies.get(SESSION_COOKIE)
    session = sessions.get(token) if token else None
    if session is not None:
        record = key_record(metadata, session.presented)     # a revoked key ends its sessions at once
        return Viewer(record.actor or f"key:{record.key_id}", "session", record.key_id, session.presented,
                      session.csrf)
    if keys_active(metadata):
        raise Unauthenticated("This dashboard needs an API key: log in at /login, or send "
                              "`Authorization: Bearer <key>` (create one with `conveyor keys create --actor NAME`).")
    host = (request.url.hostname or "").strip("[]").lower()
    if host not in open_hosts:
        # without keys, only names of this machine: a page elsewhere that rebinds its own name to
        # 127.0.0.1 must not read the dashboard as if it were its own site
        raise PermissionDenied(f"This dashboard has no API key yet, so it answers only as {', '.join(sorted(open_hosts))}, "
                               f"not {host!r}. Create a key (`conveyor keys create --actor NAME`) to serve other names.")
    return Viewer(default_actor, "open", csrf=request.cookies.get(CSRF_COOKIE))


def same_origin(request: Request) -> bool:
    """False when the request names an Origin other than the one it was sent to."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host", "")
    return origin in (f"{request.url.scheme}://{host}", f"http://{host}", f"https://{host}")


def check_csrf(request: Request, viewer: Viewer) -> None:
    """Refuse a cross-site action: a foreign Origin, or a cookie-borne request without its token."""
    if not same_origin(request):
        raise PermissionDenied(f"Actions must come from the dashboard's own page, not from "
                               f"{request.headers.get('origin')!r}.")
    if viewer.auth == "bearer":
        return      # a browser never attaches an Authorization header on its own
    sent = request.headers.get(CSRF_HEADER, "")
    expected = viewer.csrf or ""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not sent or not expected or not hmac.compare_digest(sent, expected) or not hmac.compare_digest(sent, cookie):
        raise PermissionDenied("The action carries no valid CSRF token: reload the page and try again "
                               "(scripts send the `conveyor_csrf` cookie's value as the X-CSRF-Token header).")


def acting(metadata: Any, viewer: Viewer) -> str:
    """The actor an action acts as: the key's (through the server's own rule), or settings' when open."""
    if viewer.auth == "open":
        return viewer.actor
    return acting_actor(metadata, viewer.presented or "")


def role_of(roles: set[str]) -> str:
    """The dashboard's word for an actor's registry roles."""
    return "admin" if "admin" in roles else "approver" if "approver" in roles else "viewer"
