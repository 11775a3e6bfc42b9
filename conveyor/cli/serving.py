"""``conveyor serve``, ``conveyor endpoints`` and ``conveyor keys``."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from conveyor.cli.output import console, print_json, when

endpoints_app = typer.Typer(no_args_is_help=True)
keys_app = typer.Typer(no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _client() -> Any:
    from conveyor.runtime.client import Client

    return Client()


def serve(host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
          port: Annotated[Optional[int], typer.Option(help="Port (default: AIP_HTTP_PORT or 8080).")] = None,  # noqa: UP007
          workers: Annotated[int, typer.Option(help="Worker processes.")] = 1,
          default_endpoint: Annotated[Optional[str], typer.Option(help="Endpoint for paths that name none.")] = None,  # noqa: UP007
          auth: Annotated[str, typer.Option(help="auto (once a key exists), on, off.")] = "auto",
          access_log: Annotated[bool, typer.Option(help="JSON access log on stderr.")] = True,
          prediction_log: Annotated[bool, typer.Option(
              help="Log features and predictions to Parquet (what monitoring reads).")] = True,
          server: Annotated[Optional[str], typer.Option(  # noqa: UP007
              help="HTTP server: uvicorn or granian (default: CONVEYOR_SERVE_HTTP, else uvicorn).")] = None) -> None:
    """Serve every endpoint over OIP v2, SageMaker, Vertex AI, Azure ML and MLflow contracts."""
    from conveyor.config import load_settings
    from conveyor.errors import ConfigurationError
    from conveyor.serving.server import serve as run

    if auth not in ("auto", "on", "off"):
        raise ConfigurationError(f"--auth {auth!r}: use auto, on or off.")
    settings = load_settings()
    run(host, port or settings.aip_http_port or 8080, workers=workers, auth=auth,
        default_endpoint=default_endpoint, access_log=access_log, prediction_log=prediction_log, server=server)


def _endpoints() -> Any:
    from conveyor.serving.endpoints import Endpoints

    return Endpoints(_client())


ModelOpt = Annotated[str, typer.Option("--model", help="Main model, e.g. churn@production.")]
CanaryOpt = Annotated[Optional[list[str]], typer.Option("--canary", help="REF=PERCENT, e.g. churn:7=10.")]  # noqa: UP007
ShadowOpt = Annotated[Optional[list[str]], typer.Option("--shadow", help="A model that gets a copy of each request.")]  # noqa: UP007
StickyOpt = Annotated[Optional[str], typer.Option(help="Keep a caller on one version by this header.")]  # noqa: UP007


@endpoints_app.command("create")
def create(name: str, model: ModelOpt, canary: CanaryOpt = None, shadow: ShadowOpt = None,
           sticky_header: StickyOpt = None) -> None:
    """Create an endpoint; running servers pick it up within seconds."""
    rec = _endpoints().create(name, model, canary=canary, shadow=shadow, sticky_header=sticky_header)
    console().print(f"Created endpoint {rec.name}: {_describe(rec.spec)}")


@endpoints_app.command("update")
def update(name: str, model: ModelOpt, canary: CanaryOpt = None, shadow: ShadowOpt = None,
           sticky_header: StickyOpt = None) -> None:
    """Replace an endpoint's routes; servers switch without dropping requests."""
    rec = _endpoints().update(name, model, canary=canary, shadow=shadow, sticky_header=sticky_header)
    console().print(f"Updated endpoint {rec.name}: {_describe(rec.spec)}")


@endpoints_app.command("list")
def list_endpoints(as_json: JsonOpt = False) -> None:
    """Endpoints with their routes and shadows."""
    recs = _endpoints().list()
    if as_json:
        print_json([{"name": r.name, **r.spec} for r in recs])
        return
    for r in recs:
        console().print(f"[bold]{r.name}[/]  {_describe(r.spec)}  (updated {when(r.updated_at)})")


@endpoints_app.command("delete")
def delete(name: str) -> None:
    """Delete an endpoint."""
    _endpoints().delete(name)
    console().print(f"Deleted endpoint {name}.")


def _describe(spec: dict[str, Any]) -> str:
    text = " + ".join(f"{r['model']} {r['weight']:g}%" for r in spec["routes"])
    if spec.get("shadows"):
        text += f"; shadows {', '.join(spec['shadows'])}"
    if spec.get("sticky_header"):
        text += f"; sticky on {spec['sticky_header']}"
    return text


@keys_app.command("create")
def create_key(scope: Annotated[str, typer.Option(help="predict, deploy or admin.")] = "predict",
               endpoint: Annotated[Optional[str], typer.Option(help="Only this endpoint.")] = None,  # noqa: UP007
               rate_limit: Annotated[Optional[float], typer.Option(help="Requests per second.")] = None,  # noqa: UP007
               description: Annotated[Optional[str], typer.Option()] = None,  # noqa: UP007
               actor: Annotated[Optional[str], typer.Option(  # noqa: UP007
                   help="Act as this actor in the server's governance API (admin role; scope deploy or admin).")] = None,
               as_json: JsonOpt = False) -> None:
    """Create an API key. It is shown once; only its hash is stored."""
    from conveyor.errors import InvalidRequest
    from conveyor.serving.auth import SCOPES, generate_key

    if scope not in SCOPES:
        raise InvalidRequest(f"--scope {scope!r}: use one of {', '.join(SCOPES)}.", field="scope")
    if rate_limit is not None and rate_limit <= 0:
        raise InvalidRequest("--rate-limit must be positive.", field="rate_limit")
    client = _client()
    if endpoint:
        client.metadata.endpoints.get(endpoint)
    if actor is not None:
        from conveyor.registry.refs import check_actor

        check_actor(actor)
        if scope == "predict":
            raise InvalidRequest("A key that carries an actor acts on the registry: give it --scope deploy or admin.",
                                 field="scope")
        client.registry.authorize("issue_key")
    key_id, key, digest = generate_key()
    client.metadata.endpoints.add_key(key_id, digest, scope, endpoint, rate_limit, description, client.settings.actor,
                                      acts_as=actor)
    if as_json:
        print_json({"key_id": key_id, "key": key, "scope": scope, "endpoint": endpoint, "rate_limit": rate_limit,
                    "actor": actor})
        return
    c = console()
    c.print(f"Key {key_id} (scope {scope}{', endpoint ' + endpoint if endpoint else ''}). Store it now; "
            "it is not shown again:")
    c.print(key, highlight=False, soft_wrap=True)


@keys_app.command("list")
def list_keys(as_json: JsonOpt = False) -> None:
    """Active keys (never their secrets)."""
    keys = _client().metadata.endpoints.keys()
    data = [{"key_id": k.key_id, "scope": k.scope, "endpoint": k.endpoint, "rate_limit": k.rate_limit,
             "actor": k.actor, "description": k.description, "created": when(k.created_at)} for k in keys]
    if as_json:
        print_json(data)
        return
    for d in data:
        console().print(d)


@keys_app.command("revoke")
def revoke(key_id: str) -> None:
    """Revoke a key; servers refuse it within seconds."""
    client = _client()
    client.metadata.endpoints.revoke_key(key_id, client.settings.actor)
    console().print(f"Revoked {key_id}.")
