"""A small JSON API on loopback that paginates three ways, throttles, fails and sometimes answers HTML.

Every route takes ``run=<id>`` so each test keeps its own counters, and records when each request
arrived (``/_log?run=...``), so a test can check the client's waits from the server's side.
Every route except ``/_log`` wants ``Authorization: Bearer <TOKEN>``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

TOKEN = "tok-7c1f0e9a-secret"
ITEMS = [{"id": i, "name": f"item-{i}", "score": i / 2} for i in range(1, 24)]    # 23 items


def build_app():  # type: ignore[no-untyped-def]
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    hits: dict[tuple[str, str], list[float]] = defaultdict(list)

    def note(request: Request) -> tuple[str, int]:
        run = request.query_params.get("run", "")
        key = (request.url.path, run)
        hits[key].append(time.monotonic())
        return run, len(hits[key])

    def authorized(request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    def denied() -> JSONResponse:
        return JSONResponse({"error": "bad token"}, status_code=401)

    async def pages(request: Request) -> JSONResponse | HTMLResponse:
        """?page=N&per_page=K over ITEMS; ``broken=3`` answers page 3 with HTML."""
        run, count = note(request)
        if not authorized(request):
            return denied()
        page, size = int(request.query_params.get("page", 1)), int(request.query_params.get("per_page", 5))
        if request.query_params.get("broken") == str(page):
            return HTMLResponse("<html><body><h1>Sign in</h1></body></html>")
        # throttle=N: the first N requests are told to come back in 1 s
        if count <= int(request.query_params.get("throttle", 0)):
            return JSONResponse({"error": "slow down"}, status_code=429, headers={"Retry-After": "1"})
        # fail=N: the first N requests answer 503
        if count <= int(request.query_params.get("fail", 0)):
            return JSONResponse({"error": "unavailable"}, status_code=503)
        chunk = ITEMS[(page - 1) * size: page * size]
        return JSONResponse({"data": chunk, "page": page})

    async def cursor(request: Request) -> JSONResponse:
        """{"result": {"items": [...]}, "meta": {"next": CURSOR | null}}; cursors are opaque strings."""
        note(request)
        if not authorized(request):
            return denied()
        start = int(request.query_params.get("cursor", "c0")[1:])
        chunk = ITEMS[start: start + 7]
        nxt = f"c{start + 7}" if start + 7 < len(ITEMS) else None
        return JSONResponse({"result": {"items": chunk}, "meta": {"next": nxt}})

    async def link(request: Request) -> JSONResponse:
        """A bare list per page with ``Link: <...>; rel="next"`` (relative), as GitHub does."""
        run, _ = note(request)
        if not authorized(request):
            return denied()
        page = int(request.query_params.get("p", 1))
        chunk = ITEMS[(page - 1) * 10: page * 10]
        headers = {}
        if page * 10 < len(ITEMS):
            headers["Link"] = f'</link?p={page + 1}&run={run}>; rel="next", </link?p=1&run={run}>; rel="first"'
        return JSONResponse(chunk, headers=headers)

    async def log(request: Request) -> JSONResponse:
        run = request.query_params.get("run", "")
        path = request.query_params.get("path", "/pages")
        return JSONResponse(hits.get((path, run), []))

    return Starlette(routes=[Route("/pages", pages), Route("/cursor", cursor), Route("/link", link),
                             Route("/_log", log)])


@dataclass(frozen=True, slots=True)
class ApiServer:
    url: str


@contextlib.contextmanager
def api_server() -> Iterator[ApiServer]:
    """The app under uvicorn in a thread on a free loopback port, stopped on exit."""
    import uvicorn

    from tests.conftest import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(), host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, name="test-api-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test API server did not start on port {port}")
        time.sleep(0.02)
    try:
        yield ApiServer(f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=30)
