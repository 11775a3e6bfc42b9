"""``conveyor ui``: the web dashboard over this home's stores."""

from __future__ import annotations

from typing import Annotated

import typer


def ui(host: Annotated[str, typer.Option(help="Address to listen on. Keep 127.0.0.1 unless API keys exist "
                                              "(`conveyor keys create --actor NAME`).")] = "127.0.0.1",
       port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765) -> None:
    """Open the dashboard: runs, comparisons, lineage, models (approve, roll back), endpoints, monitoring.

    It reads the same stores as the CLI. Once API keys exist, every page and /api call needs one
    (log in with it in the browser; scripts send `Authorization: Bearer KEY`); the JSON API is
    described at /api/openapi.json.
    """
    import socket

    import uvicorn

    from conveyor.errors import ConfigurationError
    from conveyor.runtime.client import Client
    from conveyor.ui.app import create_ui_app

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.bind((host, port))
    except OSError as exc:
        raise ConfigurationError(f"Cannot listen on {host}:{port} ({exc.strerror}). Pick another with "
                                 "`conveyor ui --port N`.") from None
    client = Client()
    app = create_ui_app(client, host=host)
    typer.echo(f"Conveyor dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")
