"""Fixtures of the dashboard's tests: a home with real runs and models, keys for three roles."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from dataclasses import dataclass
from typing import Any

import pytest

from tests.ui.pipelines import training


@dataclass
class Keys:
    admin: str
    approver: str
    viewer: str


def make_key(client: Any, actor: str | None, scope: str = "deploy") -> str:
    """A real API key, stored as ``conveyor keys create`` stores it."""
    from conveyor.serving.auth import generate_key

    key_id, key, digest = generate_key()
    client.metadata.endpoints.add_key(key_id, digest, scope, None, None, None, "test", acts_as=actor)
    return key


def grant_roles(client: Any) -> None:
    from conveyor.registry import ModelRegistry

    boss = ModelRegistry(client.metadata, client.artifacts, "boss")
    boss.bootstrap_admin("boss")
    boss.grant("alice", "approver")


def _populate(client: Any) -> None:
    from conveyor.registry import ModelRegistry

    for i, lr in enumerate((0.1, 0.2, 0.3)):
        training.run(seed=i, lr=lr, client=client)
    grant_roles(client)
    alice = ModelRegistry(client.metadata, client.artifacts, "alice")
    alice.approve("clf:1", "first")
    alice.set_alias("clf", "production", 1)


@pytest.fixture(scope="session")
def template_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home every test starts from, made once by real runs (each test gets its own copy)."""
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    root = tmp_path_factory.mktemp("ui-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    c = Client(load_settings(env={**env, "CONVEYOR_HOME": str(root / "home")}, cwd=root))
    try:
        _populate(c)
    finally:
        c.close()
    return root / "home"


@pytest.fixture
def home(template_home: Path, settings: Any, client: Any) -> Any:
    """Three real training runs (three versions of model 'clf'), version 1 approved and in production."""
    shutil.copytree(template_home, settings.home, dirs_exist_ok=True)
    return client


@pytest.fixture
def keys(home: Any) -> Keys:
    return Keys(make_key(home, "boss"), make_key(home, "alice"), make_key(home, "victor", "predict"))


@pytest.fixture
def api(home: Any) -> Iterator[Any]:
    from starlette.testclient import TestClient

    from conveyor.ui.app import create_ui_app

    with TestClient(create_ui_app(home), base_url="http://127.0.0.1:8765") as tc:
        yield tc
