"""Alert delivery to webhooks (Slack-compatible JSON), retried with backoff, off the checking path."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from conveyor.errors import InvalidRequest

log = logging.getLogger("conveyor.automation")

MAX_ATTEMPTS = 5


def check_url(url: str) -> str:
    """An ``http://`` or ``https://`` URL with a host, or ``InvalidRequest`` saying what to write."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port                           # noqa: B018  (raises on a port that is not a number)
    except ValueError as exc:
        raise InvalidRequest(f"Webhook URL {url!r} is not a URL ({exc}); write e.g. "
                             "https://hooks.example.com/alerts.", field="url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidRequest(f"Webhook URL {url!r} must be http:// or https:// with a host, e.g. "
                             "https://hooks.example.com/alerts.", field="url")
    return url


def payload(alert: Any) -> dict[str, Any]:
    """Slack's incoming-webhook shape (``text``) plus the alert as data."""
    return {"text": f":rotating_light: {alert.message}",
            "alert": {"id": alert.id, "source": alert.source, "at": alert.at, "message": alert.message,
                      "details": alert.details}}


class Deliverer:
    """Delivers pending alerts from the store; a failing receiver is retried, never blocks checks."""

    def __init__(self, store: Any, *, timeout_s: float = 5.0, backoff_s: float = 2.0,
                 max_attempts: int = MAX_ATTEMPTS) -> None:
        self.store = store
        self.timeout_s, self.backoff_s, self.max_attempts = timeout_s, backoff_s, max_attempts
        self._next_try: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, interval_s: float = 0.5) -> None:
        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.deliver_pending()
                except Exception:
                    log.exception("alert delivery failed")
        self._thread = threading.Thread(target=loop, name="conveyor-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)

    def deliver_pending(self) -> int:
        """Try every pending alert that is due; returns how many were delivered."""
        import httpx

        hooks = self.store.webhooks()
        delivered = 0
        now = time.monotonic()
        for alert in self.store.pending_alerts():
            if self._next_try.get(alert.id, 0.0) > now:
                continue
            targets = [h for h in hooks if not h["sources"] or alert.source in h["sources"]]
            if not targets:
                self.store.mark_delivery(alert.id, "none", alert.attempts)
                continue
            errors = []
            for hook in targets:
                try:
                    resp = httpx.post(hook["url"], json=payload(alert), timeout=self.timeout_s)
                    if resp.status_code >= 300:
                        errors.append(f"{hook['name']}: HTTP {resp.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(f"{hook['name']}: {type(exc).__name__}: {exc}")
            attempts = alert.attempts + 1
            if not errors:
                self.store.mark_delivery(alert.id, "delivered", attempts)
                self._next_try.pop(alert.id, None)
                delivered += 1
            elif attempts >= self.max_attempts:
                self.store.mark_delivery(alert.id, "failed", attempts, "; ".join(errors))
                log.error("alert %s not delivered after %d attempts: %s", alert.id, attempts, "; ".join(errors))
            else:
                self.store.mark_delivery(alert.id, "pending", attempts, "; ".join(errors))
                self._next_try[alert.id] = now + self.backoff_s * 2 ** (attempts - 1)
        return delivered
