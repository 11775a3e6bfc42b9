"""Endpoints from Python: ``cv.endpoints.create("api", model="churn@production", canary={"churn:7": 10})``.

The same checks as ``conveyor endpoints`` (the CLI calls this): every reference must resolve, canary
weights lie strictly between 0 and 100 and leave traffic for the main model. Running servers pick a
change up within seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from conveyor.store.metadata import EndpointRecord

Canary = Mapping[str, float] | Iterable[str] | None


def _canary_items(canary: Canary) -> list[str]:
    """``{"churn:7": 10}`` or ``["churn:7=10"]`` as the CLI's ``REF=PERCENT`` items."""
    if canary is None:
        return []
    if isinstance(canary, Mapping):
        return [f"{ref}={pct}" for ref, pct in canary.items()]
    if isinstance(canary, str):
        return [canary]
    return list(canary)


class Endpoints:
    """Create, read, change and delete endpoints in the store ``client`` names (default: the settings)."""

    def __init__(self, client: Any = None) -> None:
        self._client = client

    def _use(self) -> Any:
        if self._client is not None:
            return self._client
        from conveyor.runtime.client import Client

        return Client()

    def spec(self, model: str, *, canary: Canary = None, shadow: Iterable[str] | None = None,
             sticky_header: str | None = None) -> dict[str, Any]:
        """The checked spec an endpoint would store (raises NotFound / InvalidRequest as the CLI does)."""
        from conveyor.serving.registry_catalog import endpoint_spec

        shadows = [shadow] if isinstance(shadow, str) else list(shadow or [])
        return endpoint_spec(self._use().registry, model, _canary_items(canary), shadows, sticky_header)

    def create(self, name: str, model: str, *, canary: Canary = None, shadow: Iterable[str] | None = None,
               sticky_header: str | None = None) -> EndpointRecord:
        """Create endpoint ``name`` serving ``model`` (``churn@production``), with canaries and shadows."""
        client = self._use()
        spec = Endpoints(client).spec(model, canary=canary, shadow=shadow, sticky_header=sticky_header)
        return client.metadata.endpoints.create(_check_name(name), spec, client.settings.actor)

    def update(self, name: str, model: str, *, canary: Canary = None, shadow: Iterable[str] | None = None,
               sticky_header: str | None = None) -> EndpointRecord:
        """Replace the routes of endpoint ``name``; servers switch without dropping requests."""
        client = self._use()
        spec = Endpoints(client).spec(model, canary=canary, shadow=shadow, sticky_header=sticky_header)
        return client.metadata.endpoints.update(name, spec, client.settings.actor)

    def get(self, name: str) -> EndpointRecord:
        """One endpoint (NotFound names the known ones' command)."""
        return self._use().metadata.endpoints.get(name)

    def list(self) -> list[EndpointRecord]:
        """Every endpoint, by name."""
        return self._use().metadata.endpoints.list()

    def delete(self, name: str) -> None:
        """Delete endpoint ``name``."""
        client = self._use()
        client.metadata.endpoints.delete(name, client.settings.actor)


def _check_name(name: str) -> str:
    import re

    from conveyor.errors import InvalidRequest

    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}", name or ""):
        raise InvalidRequest(f"Endpoint name {name!r} is not valid: use letters, digits, '_', '-' and '.', "
                             "starting with a letter or digit (it becomes part of URLs).", field="name")
    return name


endpoints = Endpoints()
"""The endpoints of the store the settings name (``cv.endpoints``)."""
