"""Fixtures for the data-source tests: the paginating, throttling JSON API on loopback."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.data.api_server import ApiServer, api_server as _api_server


@pytest.fixture(scope="session")
def api_server() -> Iterator[ApiServer]:
    with _api_server() as server:
        yield server
