"""Starting a server: ``conveyor serve`` builds the catalog, the prediction log and the app, then runs uvicorn."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Any

from conveyor.config import Settings, load_settings


def build_app(settings: Settings | None = None, *, auth: str = "auto", default_endpoint: str | None = None,
              access_log: bool = True, prediction_log: bool = True, rate_table: str | None = None) -> Any:
    """The production app for ``settings``: registry catalog, Parquet prediction log, all protocols.

    ``rate_table`` is the shared rate-limit table of a multi-worker server (``rate_limits.py``).
    """
    from conveyor.runtime.client import Client
    from conveyor.serving.app import create_app
    from conveyor.serving.prediction_log import PredictionLog
    from conveyor.serving.registry_catalog import RegistryCatalog
    from conveyor.serving.service import ServingService

    settings = settings or load_settings()
    client = Client(settings)
    catalog = RegistryCatalog(client.metadata, client.artifacts, client.registry)
    service = ServingService(catalog, memory_cap_bytes=settings.serve_memory_mb << 20,
                             default_endpoint=default_endpoint or settings.default_endpoint, auth=auth,
                             compiled_predict=settings.serve_compiled_predict)
    if rate_table:
        from conveyor.serving.rate_limits import SharedRateLimiter

        service.limiter = SharedRateLimiter(rate_table)
    if prediction_log:
        max_rows = settings.serve_log_max_rows
        service.prediction_log = PredictionLog(settings.artifact_root, max_rows=max_rows,
                                               flush_rows=max(1, min(50_000, max_rows // 2)),
                                               interval_s=settings.serve_log_interval_s,
                                               writer=settings.serve_log_writer,
                                               on_drop=lambda n: service.metrics.log_dropped.inc(n))
    if settings.serve_usage_interval_s > 0:
        from conveyor.serving.usage import UsageMeter

        service.usage = UsageMeter(client.metadata.serving_usage.record, interval_s=settings.serve_usage_interval_s)
    if access_log:
        from conveyor.serving.access_log import AccessLog

        service.access_log = AccessLog(sys.stderr)
    if not service.auth_required and service.auth_mode != "off":
        logging.getLogger("conveyor.serving").warning(
            "no API keys exist: serving without authentication until one is created (`conveyor keys create`)")
    return create_app(service, settings)


def app_factory() -> Any:
    """For ``uvicorn --factory conveyor.serving.server:app_factory`` and multi-worker serving."""
    import os

    return build_app(auth=os.environ.get("CONVEYOR_SERVE_AUTH", "auto"),
                     access_log=os.environ.get("CONVEYOR_SERVE_ACCESS_LOG", "1") == "1",
                     prediction_log=os.environ.get("CONVEYOR_SERVE_PREDICTION_LOG", "1") == "1",
                     rate_table=os.environ.get("CONVEYOR_SERVE_RATE_TABLE") or None)


HTTP_SERVERS = ("uvicorn", "granian")


def serve(host: str, port: int, *, workers: int = 1, auth: str = "auto", default_endpoint: str | None = None,
          access_log: bool = True, prediction_log: bool = True, server: str | None = None) -> None:
    """Run the server until interrupted (SIGINT/SIGTERM flush the prediction log).

    ``server``: the HTTP server under the app, ``uvicorn`` or ``granian`` (Rust, ``conveyor[granian]``);
    by default CONVEYOR_SERVE_HTTP, else uvicorn.
    """
    import os

    from conveyor.errors import ConfigurationError
    from conveyor.observability.logs import configure

    server = (server or os.environ.get("CONVEYOR_SERVE_HTTP") or "uvicorn").strip().lower()
    if server not in HTTP_SERVERS:
        raise ConfigurationError(f"HTTP server {server!r} is not one of: {', '.join(HTTP_SERVERS)} "
                                 "(--server / CONVEYOR_SERVE_HTTP).")
    if server == "granian":
        try:
            import granian  # noqa: F401
        except ImportError as exc:
            raise ConfigurationError("--server granian needs the granian package: pip install 'conveyor[granian]'"
                                     ", or serve with --server uvicorn.") from exc
    fmt = configure(logging.INFO, text_format="%(levelname)s %(name)s: %(message)s")
    uvicorn_logs: dict[str, Any] = {"log_config": None} if fmt == "json" else {}   # uvicorn's lines as JSON too
    if workers > 1 or server == "granian":
        # The app is built in each worker process from these variables (granian always runs workers).
        os.environ["CONVEYOR_SERVE_AUTH"] = auth
        os.environ["CONVEYOR_SERVE_ACCESS_LOG"] = "1" if access_log else "0"
        os.environ["CONVEYOR_SERVE_PREDICTION_LOG"] = "1" if prediction_log else "0"
        if default_endpoint:
            os.environ["CONVEYOR_DEFAULT_ENDPOINT"] = default_endpoint
        from conveyor.serving.rate_limits import create_table

        # One rate-limit table for all workers, made before they start, so a key's limit holds in all.
        os.environ["CONVEYOR_SERVE_RATE_TABLE"] = table = create_table()
        try:
            if server == "granian":
                _run_granian(host, port, workers)
            else:
                import uvicorn

                uvicorn.run("conveyor.serving.server:app_factory", factory=True, host=host, port=port,
                            workers=workers, log_level="warning", access_log=False, **uvicorn_logs)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(table)
        return
    import uvicorn

    app = build_app(auth=auth, default_endpoint=default_endpoint, access_log=access_log,
                    prediction_log=prediction_log)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, **uvicorn_logs)


def _run_granian(host: str, port: int, workers: int) -> None:
    from granian import Granian
    from granian.constants import Interfaces, Loops
    from granian.log import LogLevels

    try:
        import uvloop  # noqa: F401
        loop = Loops.uvloop
    except ImportError:
        loop = Loops.asyncio
    Granian("conveyor.serving.server:app_factory", factory=True, address=host, port=port, workers=workers,
            interface=Interfaces.ASGI, loop=loop, log_access=False, log_level=LogLevels.warning,
            respawn_failed_workers=True).serve()
