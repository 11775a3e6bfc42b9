"""The catalog a real server uses: endpoints, aliases and keys from the metadata store, models from artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from conveyor.errors import ConveyorError
from conveyor.serving.catalog import ApiKey, EndpointSpec, LoadedModel, ModelKey, Signature, WeightedRoute


class RegistryCatalog:
    """Reads the registry; its revision is the store's serving counter (bumped by alias and endpoint changes)."""

    def __init__(self, metadata: Any, artifacts: Any, registry: Any) -> None:
        self.metadata = metadata
        self.artifacts = artifacts
        self.registry = registry
        self.unserved: dict[str, str] = {}    # endpoint -> why, from the last endpoints() call

    def revision(self) -> str:
        return str(self.metadata.models.state_version("serving"))

    def resolve(self, ref: str) -> ModelKey:
        v = self.registry.resolve(ref)
        return ModelKey(v.model, v.version)

    def endpoints(self) -> Mapping[str, EndpointSpec]:
        out: dict[str, EndpointSpec] = {}
        unserved: dict[str, str] = {}
        for rec in self.metadata.endpoints.list():
            spec = rec.spec
            refs = [r["model"] for r in spec["routes"]] + list(spec.get("shadows", []))
            try:
                routes = tuple(WeightedRoute(self.resolve(r["model"]), float(r["weight"])) for r in spec["routes"])
                shadows = tuple(self.resolve(s) for s in spec.get("shadows", []))
            except ConveyorError as exc:   # e.g. a version was deleted: keep the other endpoints serving
                unserved[rec.name] = (f"Endpoint '{rec.name}' cannot be served: its routes name "
                                      f"{', '.join(refs)} and {exc}")
                continue
            out[rec.name] = EndpointSpec(rec.name, routes, shadows, spec.get("sticky_header"))
        self.unserved = unserved
        return out

    def load_model(self, key: ModelKey) -> LoadedModel:
        from conveyor.runtime.slots import stored_from_record

        version = self.registry.resolve(f"{key.name}:{key.version}")
        record = self.metadata.artifacts.get(version.artifact_id)
        model = self.artifacts.get(stored_from_record(record))
        return LoadedModel(key, model, Signature.from_dict(version.signature), size_bytes=int(record.size or 0))

    def keys(self) -> Mapping[str, tuple[str, ApiKey]]:
        return {k.key_id: (k.secret_hash, ApiKey(k.key_id, k.scope, k.endpoint, k.rate_limit))
                for k in self.metadata.endpoints.keys()}

    def auth_required(self) -> bool:
        return bool(self.metadata.endpoints.keys(include_revoked=True))


def endpoint_spec(registry: Any, model: str, canaries: list[str], shadows: list[str],
                  sticky_header: str | None) -> dict[str, Any]:
    """Build and check an endpoint spec from CLI-style arguments (``--canary churn:7=10`` is 10%)."""
    from conveyor.errors import InvalidRequest

    registry.resolve(model)
    routes = []
    total = 0.0
    for item in canaries:
        ref, sep, pct = item.rpartition("=")
        try:
            weight = float(pct)
        except ValueError:
            weight = -1
        if not sep or not 0 < weight < 100:
            raise InvalidRequest(f"--canary {item!r} must be REF=PERCENT with 0 < PERCENT < 100, e.g. churn:7=10.",
                                 field="canary")
        registry.resolve(ref)
        routes.append({"model": ref, "weight": weight})
        total += weight
    if total >= 100:
        raise InvalidRequest(f"Canary weights add up to {total:g}%; leave some traffic for {model}.", field="canary")
    for s in shadows:
        registry.resolve(s)
    return {"routes": [{"model": model, "weight": 100 - total}, *routes], "shadows": list(shadows),
            "sticky_header": sticky_header}
