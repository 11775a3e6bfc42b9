"""API keys: generated once, stored as a SHA-256 of the secret, checked in constant time.

A key reads ``cvk_<key_id>_<secret>``. The secret has 256 bits of entropy, so a plain SHA-256 is
enough (a slow password hash protects guessable secrets; these are not guessable).
Scopes nest: admin ⊇ deploy ⊇ predict.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from conveyor.serving.catalog import ApiKey

SCOPES = ("predict", "deploy", "admin")
PREFIX = "cvk_"


def generate_key() -> tuple[str, str, str]:
    """A new key: (key_id, full key to show once, hash to store)."""
    key_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return key_id, f"{PREFIX}{key_id}_{secret}", hash_secret(secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def split_key(presented: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, else None."""
    if not presented.startswith(PREFIX):
        return None
    key_id, sep, secret = presented[len(PREFIX):].partition("_")
    return (key_id, secret) if sep and key_id and secret else None


def allows(scope: str, needed: str) -> bool:
    return SCOPES.index(scope) >= SCOPES.index(needed)


class KeyRing:
    """Verifies presented keys against the catalog's table, remembering good ones."""

    def __init__(self) -> None:
        self._table: Mapping[str, tuple[str, ApiKey]] = {}
        self._verified: dict[str, ApiKey] = {}

    def load(self, table: Mapping[str, tuple[str, ApiKey]]) -> None:
        self._table = dict(table)
        self._verified = {}

    @property
    def active(self) -> bool:
        return bool(self._table)

    def verify(self, presented: str) -> ApiKey | None:
        hit = self._verified.get(presented)
        if hit is not None:
            return hit
        parts = split_key(presented)
        if parts is None:
            return None
        entry = self._table.get(parts[0])
        if entry is None or not hmac.compare_digest(entry[0], hash_secret(parts[1])):
            return None
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[presented] = entry[1]
        return entry[1]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to ``max(1, rate)``."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def take(self, key_id: str, rate: float) -> float:
        """0.0 when allowed, else the seconds to wait."""
        now = time.monotonic()
        cap = max(1.0, rate)
        with self._lock:
            b = self._buckets.get(key_id)
            if b is None:
                b = self._buckets[key_id] = _Bucket(cap, now)
            b.tokens = min(cap, b.tokens + (now - b.at) * rate)
            b.at = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return 0.0
            return (1.0 - b.tokens) / rate
