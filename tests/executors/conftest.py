"""The executor under test, set up the same way for every case: each executor registered in
``conveyor.executors.registry`` that can run here (thread, process, and the distributed ones
whose library is installed: dask, ray), the distributed ones pointed at the session's cluster."""

from __future__ import annotations

import pytest

from conveyor.config import Settings, load_settings
from conveyor.executors import registry

DISTRIBUTED = {"dask", "ray"}


def _params() -> list[object]:
    return [pytest.param(name, marks=[pytest.mark.slow] if name in DISTRIBUTED else [], id=name)
            for name in registry.available()]


@pytest.fixture(params=_params())
def executor_name(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The name to run with (``executor=``, ``--executor``); the cluster's address is in the environment,
    where the executor (and a driver started as a subprocess) reads it."""
    name = request.param
    if name == "dask":
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", request.getfixturevalue("dask_cluster"))
    elif name == "ray":
        monkeypatch.setenv("RAY_ADDRESS", request.getfixturevalue("ray_cluster").address)
    return name


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    """The suite's settings, read again once a cluster's address is in the environment (``executor_name``,
    ``on_ray``, ``on_dask``): executors take the address from the settings the client passes them."""
    setting_up = [name for name in ("executor_name", "on_ray", "on_dask") if name in request.fixturenames]
    for name in setting_up:
        request.getfixturevalue(name)
    return load_settings() if setting_up else settings
