"""The serving core every wire protocol calls: authorise, route, validate, predict, log, measure.

The hot path reads only memory: the routing table, the models and the key ring are rebuilt by a
background poller when the catalog's revision changes, and swapped in whole.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.errors import NotFound, PermissionDenied, PredictionFailed, RateLimited, Unauthenticated
from conveyor.observability.tracing import annotate
from conveyor.serving.auth import KeyRing, RateLimiter, allows
from conveyor.serving.catalog import ApiKey, Catalog, LoadedModel, ModelKey
from conveyor.serving.metrics import ServerMetrics
from conveyor.serving.models import ModelCache
from conveyor.serving.routing import Route, RoutingTable
from conveyor.serving.schema import Batch, validate
from conveyor.serving.usage import UsageMeter

log = logging.getLogger("conveyor.serving")


class _RequestIds:
    """Unique request ids without a syscall per request: a random per-process prefix and a counter."""

    def __init__(self) -> None:
        self.prefix = os.urandom(6).hex()
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self.prefix}{next(self._count):010x}"


@dataclass(slots=True)
class Prediction:
    """What a protocol renders: the values and who produced them."""

    values: np.ndarray
    endpoint: str
    model: ModelKey
    request_id: str
    batch: Batch


class ServingService:
    """One per server process."""

    def __init__(self, catalog: Catalog, *, prediction_log: Any = None, metrics: ServerMetrics | None = None,
                 memory_cap_bytes: int = 2 << 30, default_endpoint: str | None = None, poll_s: float = 1.0,
                 auth: str = "auto", access_log: Any = None, usage: UsageMeter | None = None,
                 compiled_predict: bool = True) -> None:
        self.catalog = catalog
        self.prediction_log = prediction_log
        self.access_log = access_log
        self.usage = usage             # requests, errors, CPU per endpoint and version, to serving_usage
        self._request_id = _RequestIds()
        self._series: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}
        self.metrics = metrics or ServerMetrics()
        self.default_endpoint = default_endpoint
        self.auth_mode = auth          # "auto": required once any key was created; "on"; "off"
        self.keys = KeyRing()
        self.limiter: Any = RateLimiter()   # replaced by a SharedRateLimiter when workers share limits
        self.models = ModelCache(catalog.load_model, memory_cap_bytes, on_load=self._loaded,
                                 compile_models=compiled_predict)
        self.table = RoutingTable({}, "", default_endpoint)
        self._shadow_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="conveyor-shadow")
        self._poll_s = poll_s
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.ready = False
        self._settled = False
        self._retry_at = 0.0
        self.auth_required = auth == "on"
        self.refresh()

    # --- catalog changes ----------------------------------------------------------------------

    def refresh(self) -> bool:
        """Rebuild routing, keys and preload routed models if the catalog changed; True when it did.

        An endpoint whose routes name a version that does not resolve or fails to load is not served
        (its requests answer 503 naming the version) and the server is not ready, unless a previous
        table served it: then the last good routes stay, so a bad alias move never stops traffic.
        """
        revision = self.catalog.revision()
        if revision == self.table.revision and self._settled and not (
                self.table.broken and time.monotonic() >= self._retry_at):
            return False
        endpoints = dict(self.catalog.endpoints())
        unserved = dict(getattr(self.catalog, "unserved", {}))    # endpoints whose references do not resolve
        failed: dict[ModelKey, str] = {}
        for key in RoutingTable(endpoints, revision).models():   # load before the swap: no request waits
            try:
                self.models.get(key)
            except Exception as exc:   # any loader error: this version cannot be served, say why
                failed[key] = f"{type(exc).__name__}: {exc}"
        old = self.table
        for name, spec in list(endpoints.items()):
            bad = [k for k in (*(r.model for r in spec.routes), *spec.shadows) if k in failed]
            if not bad:
                continue
            del endpoints[name]
            reason = "; ".join(f"version {k} failed to load ({failed[k]})" for k in bad)
            if name in old.routes:
                endpoints[name] = old.routes[name].spec
                log.error("endpoint %s: %s; still serving its previous routes", name, reason)
            else:
                unserved[name] = f"Endpoint '{name}' cannot be served: {reason}."
        table = RoutingTable(endpoints, revision, self.default_endpoint, broken=unserved)
        for name, why in unserved.items():
            if old.broken.get(name) != why:
                log.error("%s The server is not ready until it is fixed (`conveyor endpoints update %s`).", why, name)
        self.keys.load(self.catalog.keys())
        self.auth_required = self.auth_mode == "on" or (self.auth_mode == "auto" and self.catalog.auth_required())
        self.models.pinned = table.models()
        self.table = table
        self._settled = True
        self._retry_at = time.monotonic() + 10.0
        self.ready = not table.broken
        return True

    def readiness(self) -> tuple[dict[str, Any], int]:
        """The body and status every protocol's readiness route answers (503 naming what cannot be served)."""
        body: dict[str, Any] = {"ready": self.ready}
        if self.table.broken:
            body["unserved"] = dict(self.table.broken)
        return body, 200 if self.ready else 503

    def start(self) -> None:
        """Start watching the catalog."""
        if self._poller is None:
            self._poller = threading.Thread(target=self._poll, name="conveyor-catalog-poller", daemon=True)
            self._poller.start()
        if self.usage is not None:
            self.usage.start()

    def _poll(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                if self.refresh():
                    log.info("serving table updated to revision %s", self.table.revision)
            except Exception:   # keep serving the last good table
                log.exception("refreshing the serving table failed; still serving revision %s", self.table.revision)

    def stop(self) -> None:
        self._stop.set()
        self._shadow_pool.shutdown(wait=True)
        if self.prediction_log is not None:
            self.prediction_log.close()
        if self.access_log is not None:
            self.access_log.close()
        if self.usage is not None:
            self.usage.close()

    def _loaded(self, m: LoadedModel) -> None:
        self.metrics.model_load.labels(m.key.name, str(m.key.version)).observe(m.load_seconds)
        self.metrics.models_loaded.set(len(self.models.keys()))

    # --- auth ---------------------------------------------------------------------------------

    def authorize(self, headers: Mapping[str, str], endpoint: str | None, scope: str = "predict") -> ApiKey | None:
        """The caller's key (None when auth is off); raise 401/403/429 errors otherwise."""
        if not self.auth_required:
            return None
        presented = _presented_key(headers)
        if not presented:
            raise Unauthenticated("No API key. Send `Authorization: Bearer <key>` or `X-API-Key: <key>`; "
                                  "create one with `conveyor keys create --scope predict`.")
        key = self.keys.verify(presented)
        if key is None:
            raise Unauthenticated("The API key is not valid or was revoked.")
        if not allows(key.scope, scope):
            raise PermissionDenied(f"Key {key.key_id} has scope '{key.scope}'; this needs '{scope}'.")
        if key.endpoint and endpoint and key.endpoint != endpoint:
            raise PermissionDenied(f"Key {key.key_id} is limited to endpoint '{key.endpoint}'.")
        if key.rate_limit_per_s:
            wait = self.limiter.take(key.key_id, key.rate_limit_per_s)
            if wait > 0:
                raise RateLimited(f"Key {key.key_id} is limited to {key.rate_limit_per_s:g} requests a second.",
                                  retry_after=wait)
        return key

    # --- predicting ---------------------------------------------------------------------------

    def route(self, endpoint: str | None) -> Route:
        return self.table.get(endpoint)

    def model(self, key: ModelKey) -> LoadedModel:
        return self.models.get(key)

    def choose(self, route: Route, headers: Mapping[str, str], version: int | None = None) -> ModelKey:
        """The version that answers: the one asked for, else a weighted (or sticky) draw."""
        if version is not None:
            key = next((k for k in route.keys if k.version == version), None)
            if key is None:
                raise NotFound(f"Endpoint '{route.spec.name}' does not serve version {version}; it serves "
                               f"{', '.join(str(k) for k in route.keys)}.")
            return key
        sticky = headers.get(route.spec.sticky_header.lower()) if route.spec.sticky_header else None
        return route.choose(sticky)

    def predict(self, columns: Mapping[str, list[Any]], *, endpoint: str | None, headers: Mapping[str, str],
                protocol: str, version: int | None = None, request_id: str | None = None,
                authorized: bool = False, key: ModelKey | None = None) -> Prediction:
        """Validate against the chosen version's signature and predict; log and measure.

        ``key`` is the version a protocol already chose (to read its signature); else it is chosen
        here. Raises ConveyorError subclasses: 4xx for bad requests, PredictionFailed when the model raises.
        """
        start, cpu = time.perf_counter(), time.thread_time()
        route = self.route(endpoint)
        name = route.spec.name
        if not authorized:
            self.authorize(headers, name)
        rid = request_id or headers.get("x-request-id") or self._request_id()
        if key is None:
            key = self.choose(route, headers, version)
        loaded = self.models.get(key)
        batch = validate(columns, loaded.signature)
        try:
            values = _predict(loaded, batch)
        except Exception as exc:
            if self.usage is not None:   # the request and its error are counted with the answer (count_error)
                self.usage.add(name, key.name, key.version, time.thread_time() - cpu, time.perf_counter() - start, 0)
            raise PredictionFailed(f"Model {key} raised {type(exc).__name__}: {str(exc)[:300]}",
                                   version=key.version) from exc
        elapsed = time.perf_counter() - start
        annotate(endpoint=name, model=key.name, version=key.version, protocol=protocol, rows=batch.rows,
                 model_ms=elapsed * 1000)
        series = self._series.get((name, key.version, protocol))
        if series is None:
            series = self._series_for(name, key.version, protocol)
        latency, requests, rows = series
        latency.observe(elapsed)
        requests.inc()
        rows.inc(batch.rows)
        now = time.time()
        if self.prediction_log is not None:
            self.prediction_log.record(request_id=rid, ts=now, endpoint=name, model=key.name, version=key.version,
                                       shadow=False, latency_ms=elapsed * 1000, batch=batch, prediction=values)
        for shadow in route.spec.shadows:
            self._shadow_pool.submit(self._shadow, name, shadow, batch, rid, now)
        if self.access_log is not None:
            self.access_log.write(ts=now, request_id=rid, endpoint=name, model=key.name, version=key.version,
                                  protocol=protocol, status=200, rows=batch.rows, ms=round(elapsed * 1000, 3))
        if self.usage is not None:
            self.usage.add(name, key.name, key.version, time.thread_time() - cpu, time.perf_counter() - start)
        return Prediction(values, name, key, rid, batch)

    def _series_for(self, endpoint: str, version: int, protocol: str) -> tuple[Any, Any, Any]:
        """The metric children of one (endpoint, version, protocol), looked up once."""
        v = str(version)
        series = (self.metrics.latency.labels(endpoint, v), self.metrics.requests.labels(endpoint, v, protocol, "200"),
                  self.metrics.rows.labels(endpoint, v))
        if len(self._series) < 10_000:
            self._series[(endpoint, version, protocol)] = series
        return series

    def _shadow(self, endpoint: str, key: ModelKey, batch: Batch, rid: str, ts: float) -> None:
        start = time.perf_counter()
        try:
            loaded = self.models.get(key)
            values = _predict(loaded, batch)
        except Exception:
            self.metrics.shadow_errors.labels(endpoint, str(key.version)).inc()
            log.exception("shadow %s of endpoint %s failed on request %s", key, endpoint, rid,
                          extra={"request_id": rid})
            return
        if self.prediction_log is not None:
            self.prediction_log.record(request_id=rid, ts=ts, endpoint=endpoint, model=key.name, version=key.version,
                                       shadow=True, latency_ms=(time.perf_counter() - start) * 1000,
                                       batch=batch, prediction=values)

    def new_request_id(self) -> str:
        return self._request_id()

    def count_error(self, endpoint: str | None, protocol: str, code: int, kind: str, request_id: str | None = None,
                    version: int | None = None) -> None:
        """Count a failed request in /metrics and write its access-log line.

        Only endpoints of the table label the series: a caller inventing names must not grow the metrics.
        """
        table = self.table
        name = endpoint if endpoint in table.routes or endpoint in table.broken else (
            table.default if endpoint is None and table.default else "-")
        v = "-" if version is None else str(version)
        self.metrics.requests.labels(name, v, protocol, str(code)).inc()
        self.metrics.errors.labels(name, v, kind).inc()
        if self.usage is not None:   # under the version that answered, when one did
            route = table.routes.get(name)
            model = None if route is None else next((k.name for k in route.keys if k.version == version), None)
            self.usage.error(name, model, version if model is not None else None)
        if self.access_log is not None:
            self.access_log.write(ts=time.time(), request_id=request_id, endpoint=name, protocol=protocol,
                                  status=code, error=kind)


def _predict(loaded: LoadedModel, batch: Batch) -> np.ndarray:
    """The model's predictions, through its compiled form when it has one (``compiled.py``)."""
    x = batch.to_model_input(loaded.model)
    if loaded.compiled is not None:
        return loaded.compiled(x)
    return np.asarray(loaded.model.predict(x))


def _presented_key(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("authorization")
    if auth and auth.lower().startswith("bearer "):
        return auth[7:].strip()
    key = headers.get("x-api-key")
    if key:
        return key.strip()
    custom = headers.get("x-amzn-sagemaker-custom-attributes")   # boto3 invoke_endpoint(CustomAttributes=...)
    if custom:
        for part in custom.split(","):
            k, _, v = part.partition("=")
            if k.strip().lower() in ("api-key", "api_key", "x-api-key"):
                return v.strip()
    return None
