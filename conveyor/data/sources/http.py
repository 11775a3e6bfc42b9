"""HTTP/REST APIs: JSON pages followed by page number, cursor or ``Link`` header, as Arrow batches.

``open_source("https://api.example.com/v1/items", records="data", pagination="cursor",
cursor_field="meta.next", token_env="API_TOKEN")`` reads every page; each page becomes one
record batch. The token is read from the environment (or a mounted secret file) when the first
request is sent, goes only into a request header, and never into ``describe()``, a log line or
an error. 429 and 5xx answers (and connection errors) are retried with exponential backoff; a
``Retry-After`` header, in seconds or as an HTTP date, is honoured (up to ``backoff_max``).
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from conveyor.errors import ConfigurationError, SourceReadError

if TYPE_CHECKING:
    import httpx
    import pyarrow as pa

log = logging.getLogger("conveyor.data.http")

Pagination = Literal["none", "page", "cursor", "link"]
_RETRIED = frozenset({429, 500, 502, 503, 504})


@dataclass(slots=True, repr=False)
class HttpSource:
    """A JSON API read page by page.

    ``records`` is the dotted path to the list of records in each body (``"data"``,
    ``"result.items"``; None when the body is the list). Pagination:

    - ``"page"``: ``page_param`` counts up from ``first_page`` until a page has no records (or
      fewer than ``page_size``, when ``page_size`` and ``page_size_param`` are given);
    - ``"cursor"``: the value at ``cursor_field`` in a body is sent as ``cursor_param`` for the
      next page, until it is missing, null or empty;
    - ``"link"``: the ``Link: <...>; rel="next"`` header is followed (GitHub's style);
    - ``"none"``: one request.
    """

    url: str
    records: str | None = None
    pagination: Pagination = "none"
    params: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    page_param: str = "page"
    first_page: int = 1
    page_size: int | None = None
    page_size_param: str | None = None
    cursor_field: str = "next_cursor"
    cursor_param: str = "cursor"
    token_env: str | None = None
    token_secret: str | None = None          # a secret reference: "env:NAME" or "file:/run/secrets/api"
    auth_header: str = "Authorization"
    auth_scheme: str | None = "Bearer"
    retries: int = 5
    backoff: float = 0.5
    backoff_max: float = 60.0
    timeout: float = 30.0
    max_pages: int = 100_000
    transport: Any = None                    # an httpx transport (tests, proxies); None is the default
    kind: str = field(default="http", init=False)

    def __post_init__(self) -> None:
        scheme = urlsplit(self.url).scheme
        if scheme not in ("http", "https"):
            raise ConfigurationError(f"HTTP source URL {self.url!r} must start with http:// or https://.")
        if self.pagination not in ("none", "page", "cursor", "link"):
            raise ConfigurationError(f"HTTP source {self.describe()}: pagination={self.pagination!r} is not one of "
                                     "'none', 'page', 'cursor', 'link'.")
        if self.token_env and self.token_secret:
            raise ConfigurationError(f"HTTP source {self.describe()}: give token_env or token_secret, not both.")
        secret_headers = [k for k in self.headers if k.lower() in ("authorization", self.auth_header.lower())]
        if secret_headers:
            raise ConfigurationError(
                f"HTTP source {self.describe()}: a credential in headers={{'{secret_headers[0]}': ...}} would be "
                "stored with the pipeline and shown in logs. Put it in an environment variable and pass "
                "token_env='NAME' (or token_secret='file:/path/to/secret').")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()!r})"

    def describe(self) -> str:
        """The URL without user info or query string (either may carry a key), and the auth's origin."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        where = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        auth = f" (token from ${self.token_env})" if self.token_env else (
            f" (token from {self.token_secret})" if self.token_secret else "")
        return f"http {where}{auth}"

    # --- reading ------------------------------------------------------------------------------

    def pages(self) -> Iterator[list[dict[str, Any]]]:
        """The records of each page, in order."""
        import httpx

        with httpx.Client(timeout=self.timeout, transport=self.transport, headers=self._headers(),
                          follow_redirects=True) as client:
            url: str | None = self.url
            params = dict(self.params)
            if self.pagination == "page":
                params[self.page_param] = self.first_page
                if self.page_size and self.page_size_param:
                    params[self.page_size_param] = self.page_size
            for _ in range(self.max_pages):
                assert url is not None
                response = self._get(client, url, params)
                body = self._json(response)
                rows = self._records(body, response)
                yield rows
                url, params = self._next(response, body, rows, url, params)
                if url is None:
                    return
            raise SourceReadError(f"{self.describe()}: more than max_pages={self.max_pages} pages; the pagination "
                                  "does not end. Check cursor_field/page_param, or raise max_pages.")

    def batches(self) -> Iterator[pa.RecordBatch]:
        """One record batch per non-empty page (columns inferred from the page's records)."""
        import pyarrow as pa

        for number, rows in enumerate(self.pages(), start=1):
            if not rows:
                continue
            try:
                yield pa.RecordBatch.from_pylist(rows)
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise SourceReadError(f"{self.describe()}: the records of page {number} do not form a table ({exc}). "
                                      "Point records= at the list of objects, or give each field one type.") from None

    def read(self) -> pa.Table:
        """Every page as one table; a column missing from some pages is null there."""
        import pyarrow as pa

        tables = [pa.Table.from_batches([b]) for b in self.batches()]
        if not tables:
            return pa.table({})
        return pa.concat_tables(tables, promote_options="permissive")

    # --- one page -----------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self.headers}
        reference = f"env:{self.token_env}" if self.token_env else self.token_secret
        if reference:
            from conveyor.config import read_secret

            token = read_secret(reference)
            headers[self.auth_header] = f"{self.auth_scheme} {token}" if self.auth_scheme else token
        return headers

    def _get(self, client: httpx.Client, url: str, params: dict[str, Any]) -> httpx.Response:
        import httpx

        attempt = 0
        while True:
            attempt += 1
            try:
                response = client.get(url, params=params or None)
            except httpx.TransportError as exc:
                if attempt > self.retries:
                    raise SourceReadError(
                        f"{self.describe()}: {_safe(url, params)} could not be reached after {attempt} attempts "
                        f"({type(exc).__name__}). Check the URL and the network, or raise retries=.") from None
                delay = self._delay(attempt, None)
                log.warning("%s: %s failed (%s); retrying in %.2fs", self.describe(), _safe(url, params),
                            type(exc).__name__, delay)
                time.sleep(delay)
                continue
            if response.status_code < 400:
                return response
            where = _safe(str(response.request.url), {})
            if response.status_code not in _RETRIED or attempt > self.retries:
                raise SourceReadError(self._refusal(response, where, attempt))
            delay = self._delay(attempt, response.headers.get("Retry-After"))
            log.warning("%s: %s answered %d; retrying in %.2fs (attempt %d of %d)", self.describe(), where,
                        response.status_code, delay, attempt, self.retries + 1)
            time.sleep(delay)

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        wanted = _retry_after_seconds(retry_after)
        if wanted is None:
            wanted = self.backoff * 2 ** (attempt - 1)
        return max(0.0, min(self.backoff_max, wanted))

    def _refusal(self, response: httpx.Response, where: str, attempts: int) -> str:
        code = response.status_code
        if code in (401, 403):
            origin = f"${self.token_env}" if self.token_env else (self.token_secret or "no token configured")
            fix = f"Check the token ({origin}) and its permissions."
        elif code == 404:
            fix = "Check the URL and the page parameters."
        elif code in _RETRIED:
            fix = f"The server kept failing through {attempts} attempts; try later or raise retries=."
        else:
            fix = "Check the request parameters against the API's documentation."
        return f"{self.describe()}: {where} answered HTTP {code} {response.reason_phrase}. {fix}"

    def _json(self, response: httpx.Response) -> Any:
        where = _safe(str(response.request.url), {})
        content_type = response.headers.get("content-type", "")
        try:
            return json.loads(response.content)
        except ValueError:
            start = response.text.lstrip()[:60].replace("\n", " ")
            raise SourceReadError(
                f"{self.describe()}: {where} did not answer JSON (Content-Type {content_type or 'missing'}; "
                f"the body starts {start!r}). A login page or a proxy's error page answers HTML: check the URL, the "
                "token and the pagination parameters.") from None

    def _records(self, body: Any, response: httpx.Response) -> list[dict[str, Any]]:
        value = body
        for key in (self.records.split(".") if self.records else []):
            if not isinstance(value, dict) or key not in value:
                keys = ", ".join(sorted(value)) if isinstance(value, dict) else type(value).__name__
                raise SourceReadError(
                    f"{self.describe()}: {_safe(str(response.request.url), {})} has no '{self.records}' in its body "
                    f"(found: {keys}). Set records= to the path of the list of records.")
            value = value[key]
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise SourceReadError(
                f"{self.describe()}: {_safe(str(response.request.url), {})}: "
                f"{self.records or 'the body'} is not a list of objects. Set records= to the path of that list.")
        return value

    def _next(self, response: httpx.Response, body: Any, rows: list[Any], url: str,
              params: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        if self.pagination == "page":
            short = self.page_size is not None and self.page_size_param is not None and len(rows) < self.page_size
            if not rows or short:
                return None, params
            return url, {**params, self.page_param: int(params[self.page_param]) + 1}
        if self.pagination == "cursor":
            cursor: Any = body
            for key in self.cursor_field.split("."):
                cursor = cursor.get(key) if isinstance(cursor, dict) else None
            if cursor in (None, ""):
                return None, params
            return url, {**params, self.cursor_param: cursor}
        if self.pagination == "link":
            link = response.links.get("next", {}).get("url")
            if not link:
                return None, params
            return str(response.url.join(link)), {}     # the next link carries its own query
        return None, params


def _retry_after_seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: a number, or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


def _safe(url: str, params: dict[str, Any]) -> str:
    """A URL for messages: no user info; the query kept (the token is only ever in a header)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = parts.query
    if params:
        from urllib.parse import urlencode

        query = "&".join(q for q in (query, urlencode(params)) if q)
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def open_http(location: str | None, **options: Any) -> HttpSource:
    """The factory the registry calls: ``open_source("https://...", records=..., pagination=...)``."""
    url = options.pop("url", None) or location
    if not url or url == "http":
        raise ConfigurationError("An HTTP source needs a URL: open_source('https://api.example.com/items', ...).")
    try:
        return HttpSource(url=url, **options)
    except TypeError as exc:
        raise ConfigurationError(f"HTTP source {url.split('?')[0]}: {exc}. See docs/data.md for its options.") from None
