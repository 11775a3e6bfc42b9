"""The HTTP source against a real JSON API on loopback: three paginations, throttling, failures, HTML."""

from __future__ import annotations

import logging
import uuid

import httpx
import pytest

from conveyor.data.sources import open_source, read
from conveyor.errors import ConfigurationError, SourceReadError
from tests.data.api_server import ITEMS, TOKEN


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("API_TOKEN", TOKEN)
    return TOKEN


def _run() -> str:
    return uuid.uuid4().hex


def test_three_paginations_read_every_record_once(api_server, token) -> None:
    expected = [item["id"] for item in ITEMS]
    by_page = read(f"{api_server.url}/pages", records="data", pagination="page", page_size=5,
                   page_size_param="per_page", params={"run": _run()}, token_env="API_TOKEN")
    assert by_page.column("id").to_pylist() == expected
    assert by_page.column("name").to_pylist()[-1] == "item-23"
    assert by_page.schema.field("score").type == "double"

    source = open_source(f"{api_server.url}/cursor", records="result.items", pagination="cursor",
                         cursor_field="meta.next", token_env="API_TOKEN")
    batches = list(source.batches())
    assert [b.num_rows for b in batches] == [7, 7, 7, 2]           # one batch per page
    assert source.read().column("id").to_pylist() == expected

    by_link = read(f"{api_server.url}/link", pagination="link", params={"run": _run()}, token_secret="env:API_TOKEN")
    assert by_link.column("id").to_pylist() == expected


def test_throttling_and_failures_are_retried_honouring_retry_after(api_server, token, caplog) -> None:
    run = _run()
    caplog.set_level(logging.DEBUG)
    table = read(f"{api_server.url}/pages", records="data", pagination="page", page_size=10,
                 page_size_param="per_page", params={"run": run, "throttle": 1, "fail": 3},
                 token_env="API_TOKEN", backoff=0.01)
    assert table.column("id").to_pylist() == [item["id"] for item in ITEMS]
    arrivals = httpx.get(f"{api_server.url}/_log", params={"run": run}).json()
    # 1 throttled + 2 failed + 3 pages that answered (10, 10, 3 records)
    assert len(arrivals) == 6
    # the client waited the second Retry-After asked for, not its own 0.01 s backoff
    assert arrivals[1] - arrivals[0] >= 0.95
    assert "answered 429" in caplog.text and "answered 503" in caplog.text
    assert TOKEN not in caplog.text

    # a server that keeps failing: the error says so after the last attempt
    with pytest.raises(SourceReadError, match=r"answered HTTP 503.*3 attempts.*raise retries"):
        read(f"{api_server.url}/pages", records="data", pagination="page",
             params={"run": _run(), "fail": 10}, token_env="API_TOKEN", retries=2, backoff=0.01)


def test_html_page_is_a_clear_error_without_the_token(api_server, token, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    run = _run()
    source = open_source(f"{api_server.url}/pages", records="data", pagination="page", page_size=5,
                         page_size_param="per_page", params={"run": run, "broken": 3}, token_env="API_TOKEN")
    seen = []
    with pytest.raises(SourceReadError) as info:
        for batch in source.batches():
            seen.append(batch.num_rows)
    message = str(info.value)
    assert seen == [5, 5]                                          # the pages before the bad one were read
    assert f"http {api_server.url}/pages" in message               # the source
    assert "page=3" in message and f"run={run}" in message          # the page's URL
    assert "did not answer JSON" in message and "text/html" in message and "check the URL, the token" in message
    for text in (message, repr(info.value), source.describe(), repr(source), caplog.text):
        assert TOKEN not in text
    assert source.describe() == f"http {api_server.url}/pages (token from $API_TOKEN)"


def test_bad_token_and_bad_configuration_are_named(api_server, monkeypatch, tmp_path) -> None:
    secret = tmp_path / "api-token"
    secret.write_text(TOKEN + "\n")                                 # a mounted secret file
    assert read(f"{api_server.url}/cursor", records="result.items", pagination="cursor", cursor_field="meta.next",
                token_secret=f"file:{secret}").num_rows == 23

    monkeypatch.setenv("API_TOKEN", "wrong-token")
    with pytest.raises(SourceReadError, match=r"answered HTTP 401.*Check the token \(\$API_TOKEN\)") as info:
        read(f"{api_server.url}/cursor", records="result.items", token_env="API_TOKEN")
    assert "wrong-token" not in str(info.value)

    monkeypatch.delenv("API_TOKEN")
    with pytest.raises(ConfigurationError, match="API_TOKEN.*not set"):
        read(f"{api_server.url}/cursor", token_env="API_TOKEN")
    with pytest.raises(ConfigurationError, match="token_env='NAME'"):
        open_source(f"{api_server.url}/cursor", headers={"Authorization": "Bearer abc"})
    with pytest.raises(ConfigurationError, match="pagination='pages'"):
        open_source(f"{api_server.url}/cursor", pagination="pages")

    monkeypatch.setenv("API_TOKEN", TOKEN)
    with pytest.raises(SourceReadError, match=r"has no 'items' in its body \(found: meta, result\)"):
        read(f"{api_server.url}/cursor", records="items", token_env="API_TOKEN")
