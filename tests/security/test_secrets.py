"""No secret ever leaves: a database password, an API key and cloud credentials are planted, then every
output (CLI, errors, server log, metrics) and every stored record is searched for them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

from tests import warm_cli
from tests.conftest import REPO, free_port
from tests.servers import ServeProcess

pytestmark = pytest.mark.slow

DB_PASSWORD = "Db-pass-" + uuid.uuid4().hex[:12]
CLOUD = {
    "AWS_ACCESS_KEY_ID": "AKIA" + uuid.uuid4().hex[:16].upper(),
    "AWS_SECRET_ACCESS_KEY": "aws-secret-" + uuid.uuid4().hex,
    "AWS_SESSION_TOKEN": "aws-session-" + uuid.uuid4().hex,
    "AZURE_STORAGE_KEY": "azure-key-" + uuid.uuid4().hex,
    "AZURE_CLIENT_SECRET": "azure-client-" + uuid.uuid4().hex,
    "GOOGLE_API_KEY": "gcp-key-" + uuid.uuid4().hex,
}

FLOW = '''
import logging
import numpy as np
import conveyor as cv
from sklearn.linear_model import LogisticRegression

@cv.step
def fit(seed: int) -> int:
    logging.getLogger("flow").warning("training with seed %s", seed)
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(100, 2))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    return cv.register_model("churn", model, metrics={"auc": 0.8}, data=X).version

@cv.step
def explode(version: int, fail: bool) -> int:
    if fail:
        raise RuntimeError("exploded on purpose")
    return version

@cv.pipeline
def train(seed: int = 0, fail: bool = False):
    explode(fit(seed), fail)
'''


@pytest.fixture
def secret_user(postgres_server: str) -> str:
    """A real PostgreSQL role with a password, owning a fresh database; its URL carries the password."""
    import psycopg

    user, db = f"u_{uuid.uuid4().hex[:8]}", f"d_{uuid.uuid4().hex[:8]}"
    dsn = postgres_server.replace("postgresql+psycopg://", "postgresql://") + "/postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {user} LOGIN PASSWORD '{DB_PASSWORD}'")
        conn.execute(f"CREATE DATABASE {db} OWNER {user}")
    host = postgres_server.split("@", 1)[1]
    return f"postgresql+psycopg://{user}:{DB_PASSWORD}@{host}/{db}"


def test_no_secret_reaches_outputs_logs_metrics_or_records(secret_user: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONVEYOR_", "AWS_", "AZURE_", "GOOGLE_"))}
    env.update(CLOUD, CONVEYOR_HOME=str(tmp_path / "home"), CONVEYOR_METADATA_URL=secret_user,
               CONVEYOR_ACTOR="alice", COLUMNS="200",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    (tmp_path / "flow.py").write_text(FLOW)
    outputs: dict[str, str] = {}

    def cli(*args: str, ok: bool = True, **extra: str) -> subprocess.CompletedProcess[str]:
        proc = warm_cli.run(args, cwd=tmp_path, env={**env, **extra}, timeout=180)    # a real process, forked warm
        outputs[" ".join(args)] = proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    cli("init", "--admin", "alice")
    run = json.loads(cli("run", "flow.py:train", "--json").stdout)
    failed = cli("run", "flow.py:train", "-p", "fail=true", "--json", ok=False)
    assert failed.returncode == 3
    cli("runs", "show", run["id"], "--json")
    _endpoint(env, tmp_path)
    api_key = json.loads(cli("keys", "create", "--scope", "admin", "--actor", "alice", "--json").stdout)["key"]
    del outputs["keys create --scope admin --actor alice --json"]      # the one place a key is shown, once
    # errors that print the database URL: an unreachable server and a wrong database
    broken = secret_user.rsplit(":", 1)[0].rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/nowhere"
    down = cli("runs", "list", ok=False, CONVEYOR_METADATA_URL=broken)
    assert down.returncode == 5 and "***" in down.stderr

    server = ServeProcess(env=env, cwd=tmp_path).wait_healthy()
    url = server.url
    try:
        good = {"Authorization": f"Bearer {api_key}"}
        body = {"inputs": [{"name": "x0", "shape": [1], "datatype": "FP64", "data": [0.5]},
                           {"name": "x1", "shape": [1], "datatype": "FP64", "data": [0.1]}]}
        answers = [httpx.post(f"{url}/v2/models/api/infer", json=body, headers=good, timeout=30),
                   httpx.post(f"{url}/v2/models/api/infer", json=body, timeout=30),
                   httpx.post(f"{url}/v2/models/api/infer", json=body, timeout=30,
                              headers={"Authorization": f"Bearer {api_key[:-4]}abcd"}),
                   httpx.post(f"{url}/v2/models/api/infer", content=b"{bad", headers=good, timeout=30),
                   httpx.get(f"{url}/v1/registry/whoami", headers=good, timeout=30),
                   httpx.get(f"{url}/metrics", timeout=30)]
        assert answers[0].status_code == 200 and answers[1].status_code == 401
        for i, r in enumerate(answers):
            outputs[f"http {i}"] = json.dumps(dict(r.headers)) + r.text
    finally:
        server.kill(signal.SIGTERM)                 # its shutdown lines are searched too
        outputs["server log"] = server.output()
        server.stop()

    secrets = {"database password": DB_PASSWORD, "API key": api_key,
               "API key secret": api_key.split("_", 2)[2], **CLOUD}
    outputs.update(_stored_records(secret_user))
    outputs.update({f"file {p.relative_to(tmp_path)}": _text(p) for p in (tmp_path / "home").rglob("*")
                    if p.is_file()})
    leaks = [f"{name} in {where}" for where, text in outputs.items() for name, value in secrets.items()
             if value in text]
    assert leaks == []
    # and the searches did see what they searched: the run, its environment, the served prediction
    assert run["id"] in outputs["runs show " + run["id"] + " --json"]
    assert any("packages" in text for where, text in outputs.items() if where.startswith("table environments"))
    assert "conveyor_requests_total" in outputs["http 5"] or "conveyor_" in outputs["http 5"]


def _endpoint(env: dict[str, str], cwd: Path) -> None:
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client
    from conveyor.serving.endpoints import Endpoints

    client = Client(load_settings(env=env, cwd=cwd))
    try:
        Endpoints(client).create("api", model="churn:1")
    finally:
        client.close()


def _text(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="replace")


def _stored_records(url: str) -> dict[str, str]:
    """Every row of every table of the metadata database, as text."""
    from sqlalchemy import create_engine, inspect, text

    engine = create_engine(url)
    out: dict[str, str] = {}
    try:
        with engine.connect() as conn:
            for table in inspect(conn).get_table_names():
                rows = conn.execute(text(f'SELECT * FROM "{table}"')).fetchall()
                out[f"table {table}"] = "\n".join(repr(tuple(r)) for r in rows)
    finally:
        engine.dispose()
    return out


def test_redaction_hides_the_password_in_every_url_form() -> None:
    from conveyor.store.metadata import redact

    for url in (f"postgresql+psycopg://bob:{DB_PASSWORD}@db.internal:5432/conveyor",
                f"postgresql://bob:{DB_PASSWORD}@db.internal/conveyor?sslmode=require",
                f"postgresql://bob:p%40ss{DB_PASSWORD}@db/x", f"mysql://bob:{DB_PASSWORD}@h/db"):
        shown = redact(url)
        assert DB_PASSWORD not in shown and "bob:***@" in shown, shown
