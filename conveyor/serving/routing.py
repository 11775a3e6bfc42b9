"""Routing: which version answers a request (weights, sticky header) and which shadows get a copy."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.errors import NotFound, Unavailable
from conveyor.serving.catalog import EndpointSpec, ModelKey


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint's compiled routing: cumulative weights for a fast draw."""

    spec: EndpointSpec
    keys: tuple[ModelKey, ...]
    cumulative: tuple[float, ...]

    @classmethod
    def compile(cls, spec: EndpointSpec) -> Route:
        total = sum(r.weight for r in spec.routes)
        acc, cum = 0.0, []
        for r in spec.routes:
            acc += r.weight / total
            cum.append(acc)
        cum[-1] = 1.0
        return cls(spec, tuple(r.model for r in spec.routes), tuple(cum))

    def choose(self, sticky_value: str | None = None) -> ModelKey:
        if len(self.keys) == 1:
            return self.keys[0]
        if sticky_value is not None:
            digest = hashlib.blake2b(sticky_value.encode(), digest_size=8).digest()
            u = int.from_bytes(digest, "big") / 2**64
        else:
            u = random.random()
        return self.keys[min(bisect.bisect_right(self.cumulative, u), len(self.keys) - 1)]


class RoutingTable:
    """All endpoints of one catalog revision; replaced whole when the catalog changes."""

    def __init__(self, endpoints: Mapping[str, EndpointSpec], revision: str, default: str | None = None, *,
                 broken: Mapping[str, str] | None = None) -> None:
        self.revision = revision
        self.routes = {name: Route.compile(spec) for name, spec in endpoints.items() if spec.routes}
        self.broken = dict(broken or {})      # endpoint -> why it cannot be served
        names = [*self.routes, *(n for n in self.broken if n not in self.routes)]
        self.default = default if default in names else (names[0] if len(names) == 1 else None)

    def models(self) -> set[ModelKey]:
        keys: set[ModelKey] = set()
        for r in self.routes.values():
            keys.update(r.keys)
            keys.update(r.spec.shadows)
        return keys

    def get(self, name: str | None) -> Route:
        if name is None:
            if self.default is None:
                raise NotFound("This path names no endpoint and the server has no default one. Start the server with "
                               f"--default-endpoint NAME. Endpoints: {', '.join(sorted(self.routes)) or '(none)'}.")
            name = self.default
        route = self.routes.get(name)
        if route is None:
            if name in self.broken:
                raise Unavailable(self.broken[name], field="endpoint")
            raise NotFound(f"No endpoint '{name}'. Endpoints: {', '.join(sorted(self.routes)) or '(none)'}.")
        return route
