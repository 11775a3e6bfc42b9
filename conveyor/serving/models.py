"""Models in memory: loaded lazily, evicted least-recently-used beyond a memory cap."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from conveyor.serving.catalog import LoadedModel, ModelKey
from conveyor.serving.compiled import compile_predict


class ModelCache:
    """Holds loaded models; ``pinned`` ones (routed right now) are evicted only as a last resort."""

    def __init__(self, load: Callable[[ModelKey], LoadedModel], cap_bytes: int,
                 on_load: Callable[[LoadedModel], None] | None = None, *, compile_models: bool = True) -> None:
        self._load = load
        self.compile_models = compile_models
        self.cap_bytes = cap_bytes
        self._models: OrderedDict[ModelKey, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[ModelKey, threading.Lock] = {}
        self._on_load = on_load or (lambda _m: None)
        self.pinned: set[ModelKey] = set()

    def __contains__(self, key: ModelKey) -> bool:
        return key in self._models

    def keys(self) -> list[ModelKey]:
        return list(self._models)

    def get(self, key: ModelKey) -> LoadedModel:
        """The model, loading it (once, even under concurrent requests) when absent."""
        found = self._models.get(key)
        if found is not None:
            try:
                self._models.move_to_end(key)
            except KeyError:   # evicted between the two lines: load again below
                found = None
            else:
                return found
        with self._lock:
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:
            found = self._models.get(key)
            if found is not None:
                return found
            start = time.perf_counter()
            loaded = self._load(key)
            loaded.load_seconds = time.perf_counter() - start
            if self.compile_models and loaded.compiled is None:
                loaded.compiled = compile_predict(loaded.model)
            with self._lock:
                self._models[key] = loaded
                self._evict()
            self._on_load(loaded)
            return loaded

    def preload(self, keys: Iterable[ModelKey]) -> None:
        for k in keys:
            self.get(k)

    def used_bytes(self) -> int:
        return sum(m.size_bytes for m in self._models.values())

    def _evict(self) -> None:
        while self.used_bytes() > self.cap_bytes and len(self._models) > 1:
            victim = next((k for k in self._models if k not in self.pinned), None)
            if victim is None:
                victim = next(iter(self._models))
            del self._models[victim]
