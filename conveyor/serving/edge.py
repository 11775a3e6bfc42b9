"""The edge of the server: what every request meets before and after its route.

- **Body size**: a ``Content-Length`` above ``max_body_bytes`` is answered 413 before a byte is
  read; a body without one (chunked) is counted as it streams and stopped at the limit.
- **Admission**: at most ``max_in_flight`` requests in this worker at once; the next ones are
  answered 503 with ``Retry-After`` at once instead of waiting in a queue that only grows
  (counted in ``/metrics``, summed up in the log; no access-log line each, see ``_shed``).
- **Every unexpected error**: whatever escapes a route becomes a JSON 500 naming the request id,
  logged with its traceback and counted in ``/metrics`` (never a plain-text page).
- Starlette's own 404 (no such path) and 405 (wrong method) answer JSON too (``http_error``).

Model code runs on the event loop (a thread hop per request costs more than a small model), so
requests that arrive together would run one after the other without ever being "in flight"
together: each one yields once on entry, so all of them are counted before any runs, and those
beyond the limit are shed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from conveyor.errors import ConveyorError, PayloadTooLarge
from conveyor.serving.protocols.base import answer_error, json_response

log = logging.getLogger("conveyor.serving")

Scope = dict[str, Any]


class _Headers:
    """Just enough of a headers mapping for ``answer_error`` (``get``), read from the raw ASGI list."""

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.encode("latin-1")
        for k, v in self._raw:
            if k.lower() == wanted:
                return v.decode("latin-1")
        return default


class Edge:
    """ASGI middleware (inside Starlette's, so nothing reaches its plain-text error page)."""

    def __init__(self, app: Any, service: Any, max_body_bytes: int = 32 << 20, max_in_flight: int = 64) -> None:
        self.app = app
        self.service = service
        self.max_body_bytes = max_body_bytes
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0
        self._shed_counters: tuple[Any, Any] | None = None
        self._shed_logged = 0.0
        body = orjson.dumps({"error": f"The server is at its limit of {max_in_flight} requests in flight per worker "
                                      "(CONVEYOR_SERVE_MAX_IN_FLIGHT); retry after the time in Retry-After.",
                             "field": "server"})
        self._shed_start = {"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", b"1")]}
        self._shed_body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            await self._shed(send)
            return
        self.in_flight += 1
        try:
            await asyncio.sleep(0)      # see the module docstring: let requests that came together be counted
            length = _content_length(scope["headers"])
            if length is not None and length > self.max_body_bytes:
                await self._fail(scope, receive, send, self._too_large(length))
                return
            if length is None and scope.get("method") in ("POST", "PUT", "PATCH"):
                receive = self._limited(receive)
            try:
                await self.app(scope, receive, send)
            except Exception as exc:    # the one place an unexpected error turns into an answer
                await self._fail(scope, receive, send, exc)
        finally:
            self.in_flight -= 1

    async def _shed(self, send: Any) -> None:
        """Answer 503 at the least cost: under overload, shedding must stay much cheaper than serving.

        One constant answer (no request id, no access-log line: a flood of them would cost what
        serving costs), counted in /metrics and summed up in the server log at most once a second.
        """
        self.shed += 1
        if self._shed_counters is None:
            m = self.service.metrics
            self._shed_counters = (m.requests.labels("-", "-", "http", "503"), m.errors.labels("-", "-", "Overloaded"))
        for counter in self._shed_counters:
            counter.inc()
        await send(self._shed_start)
        await send(self._shed_body)
        now = time.monotonic()
        if now - self._shed_logged >= 1.0:
            log.warning("overloaded: %d requests shed so far (limit %d in flight per worker)", self.shed,
                        self.max_in_flight)
            self._shed_logged = now

    def _too_large(self, length: int | None) -> PayloadTooLarge:
        size = f"{length} bytes" if length is not None else "A body without Content-Length"
        return PayloadTooLarge(f"{size} is more than this server accepts ({self.max_body_bytes} bytes, "
                               "CONVEYOR_SERVE_MAX_BODY_BYTES); send smaller batches.", field="body")

    def _limited(self, receive: Any) -> Any:
        seen = 0
        limit = self.max_body_bytes

        async def limited() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise self._too_large(None)
            return message
        return limited

    async def _fail(self, scope: Scope, receive: Any, send: Any, exc: BaseException) -> None:
        headers = _Headers(scope["headers"])
        protocol = scope.get("conveyor.protocol", "http")
        endpoint = (scope.get("path_params") or {}).get("name") or "-"   # "-": not the default endpoint's fault
        if isinstance(exc, ConveyorError):
            response = answer_error(self.service, exc, headers, protocol, endpoint)
        else:
            rid = headers.get("x-request-id") or self.service.new_request_id()
            log.error("request %s (%s %s) failed unexpectedly", rid, scope.get("method"), scope.get("path"),
                      exc_info=exc, extra={"request_id": rid})
            self.service.count_error(endpoint, protocol, 500, type(exc).__name__, rid)
            response = json_response({"error": f"The server failed on this request ({type(exc).__name__}); "
                                               f"its log has the details under request id {rid}.",
                                      "field": "server", "request_id": rid}, 500, {"X-Request-ID": rid})
        try:
            await response(scope, receive, send)
        except Exception:   # the route had already started its answer: the connection is all we can end
            log.debug("could not send the error answer of %s", scope.get("path"), exc_info=True)


def _content_length(raw: list[tuple[bytes, bytes]]) -> int | None:
    for k, v in raw:
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
    return None


def http_error_handler(service: Any) -> Any:
    """Starlette's 404/405 (no route, wrong method) as JSON, logged and counted like every other error."""
    async def handler(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        rid = request.headers.get("x-request-id") or service.new_request_id()
        if exc.status_code == 405:
            field, text = "method", f"{request.method} is not allowed on {request.url.path}."
        elif exc.status_code == 404:
            field, text = "path", (f"No route {request.method} {request.url.path[:200]}. The server's routes are "
                                   "listed at /openapi.json.")
        else:
            field, text = "request", str(exc.detail)
        service.count_error("-", "http", exc.status_code, "HTTPException", rid)
        return json_response({"error": text, "field": field, "request_id": rid}, exc.status_code,
                             {**(exc.headers or {}), "X-Request-ID": rid})
    return handler
