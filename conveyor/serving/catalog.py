"""What a server needs to know: endpoints, models, keys. A small protocol, so serving never touches SQL.

``RegistryCatalog`` (in ``registry_catalog.py``) implements it on the metadata store; tests may use
``InMemoryCatalog``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    """One input column: its name and dtype (float64, int64, bool, string, category…)."""

    name: str
    dtype: str


@dataclass(frozen=True, slots=True)
class Signature:
    """The columns a model version expects, in order."""

    inputs: tuple[ColumnSpec, ...]
    outputs: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> Signature | None:
        if not data or not data.get("inputs"):
            return None
        return cls(tuple(ColumnSpec(c["name"], c["dtype"]) for c in data["inputs"]), tuple(data.get("outputs") or ()))


@dataclass(frozen=True, slots=True)
class ModelKey:
    """A concrete model version."""

    name: str
    version: int

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


@dataclass(frozen=True, slots=True)
class WeightedRoute:
    model: ModelKey
    weight: float


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """An endpoint with its references already resolved to versions."""

    name: str
    routes: tuple[WeightedRoute, ...]
    shadows: tuple[ModelKey, ...] = ()
    sticky_header: str | None = None


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A verified caller."""

    key_id: str
    scope: str                    # predict | deploy | admin
    endpoint: str | None = None
    rate_limit_per_s: float | None = None


@dataclass(slots=True)
class LoadedModel:
    """A model in memory with what serving needs beside it."""

    key: ModelKey
    model: Any
    signature: Signature | None
    size_bytes: int = 0
    load_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    compiled: Any = None    # equal to model.predict on 2-D float64 arrays, faster (compiled.py), when known


class Catalog(Protocol):
    """The source of endpoints, models and keys for a server."""

    def revision(self) -> str:
        """Cheap; changes whenever endpoints, aliases or keys change."""
        ...

    def endpoints(self) -> Mapping[str, EndpointSpec]:
        """Every endpoint, aliases resolved to versions."""
        ...

    def load_model(self, key: ModelKey) -> LoadedModel:
        """Load one version (hash verified)."""
        ...

    def keys(self) -> Mapping[str, tuple[str, ApiKey]]:
        """key_id -> (secret hash, key) for every active key."""
        ...

    def auth_required(self) -> bool:
        """True once any key was ever created (revoking the last key must not open the server)."""
        ...


class InMemoryCatalog:
    """A catalog held in memory: models are objects, endpoints and keys are set directly."""

    def __init__(self) -> None:
        self._rev = 0
        self.models: dict[ModelKey, tuple[Any, Signature | None]] = {}
        self._endpoints: dict[str, EndpointSpec] = {}
        self._keys: dict[str, tuple[str, ApiKey]] = {}
        self.loads: list[ModelKey] = []
        self.ever_keyed = False

    def _bump(self) -> None:
        self._rev += 1

    def add_model(self, name: str, version: int, model: Any, signature: Signature | None = None) -> ModelKey:
        key = ModelKey(name, version)
        self.models[key] = (model, signature)
        self._bump()
        return key

    def set_endpoint(self, spec: EndpointSpec) -> None:
        self._endpoints[spec.name] = spec
        self._bump()

    def add_key(self, key_id: str, secret_hash: str, key: ApiKey) -> None:
        self._keys[key_id] = (secret_hash, key)
        self.ever_keyed = True
        self._bump()

    def revision(self) -> str:
        return str(self._rev)

    def endpoints(self) -> Mapping[str, EndpointSpec]:
        return dict(self._endpoints)

    def load_model(self, key: ModelKey) -> LoadedModel:
        model, sig = self.models[key]
        self.loads.append(key)
        return LoadedModel(key, model, sig, size_bytes=1)

    def keys(self) -> Mapping[str, tuple[str, ApiKey]]:
        return dict(self._keys)

    def auth_required(self) -> bool:
        return self.ever_keyed or bool(self._keys)

    def revoke(self, key_id: str) -> None:
        del self._keys[key_id]
        self._bump()
