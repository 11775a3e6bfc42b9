"""The object store stopping mid-run: an S3 emulator SIGKILLed and restarted under a real run.

The emulator is moto's server in its own process (``moto_s3.py``); it keeps objects in memory, so
a restart loses every object written before it, as a wiped bucket would. Decided behaviour:

- a write or read that meets a dead store is retried with a doubling backoff
  (``CONVEYOR_ARTIFACT_RETRIES``, ``CONVEYOR_ARTIFACT_BACKOFF_S``); if the store comes back in
  time, the run goes on as if nothing happened;
- once the retries are spent the step fails with ``ArtifactStoreUnavailable`` naming the URL and
  the fix, never a botocore traceback;
- ``conveyor runs resume`` then completes, and recomputes every reused output whose bytes are no
  longer in the store (a completed step whose outputs survived is not run again).

botocore's own retries are switched off here (``AWS_MAX_ATTEMPTS=1``) so that the policy under
test is Conveyor's; in production both apply, botocore's inside each of ours.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.fault.harness import (Home, check_artifacts, conveyor, final_outputs, first_connection, only_run,
                                 query, spawn_run, wait_for)

pytestmark = pytest.mark.slow

AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
       "AWS_MAX_ATTEMPTS": "1"}


class S3Emulator:
    """A moto S3 server process that a test can SIGKILL and start again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bucket = f"cv-fault-{uuid.uuid4().hex[:10]}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("moto_s3.py")), str(self.port),
                                      self.bucket], env={**os.environ, **AWS}, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready", "the S3 emulator did not start"

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.proc = None

    def read(self, uri: str) -> bytes:
        import boto3

        bucket, _, key = uri.removeprefix("s3://").partition("/")
        client = boto3.client("s3", endpoint_url=self.url, **{k.lower(): v for k, v in AWS.items()
                                                              if k.startswith("AWS_ACCESS") or k.startswith("AWS_SECRET")},
                              region_name="us-east-1")
        return client.get_object(Bucket=bucket, Key=key)["Body"].read()


@pytest.fixture
def s3() -> Iterator[S3Emulator]:
    emulator = S3Emulator()
    emulator.start()
    try:
        yield emulator
    finally:
        if emulator.proc is not None:
            emulator.kill()


def _home(tmp_path: Path, s3: S3Emulator, **extra: str) -> tuple[Home, dict[str, str]]:
    home = Home(tmp_path)
    env = home.env(CONVEYOR_ARTIFACT_ROOT=f"s3://{s3.bucket}/artifacts", AWS_ENDPOINT_URL=s3.url,
                   CVFAULT_GATE=str(tmp_path / "gate"), **AWS, **extra)
    return home, env


def _step(db: Path, run_id: str, name: str) -> list[dict]:
    return [dict(r) for r in query(db, "SELECT status, error, logs FROM step_runs WHERE run_id=? AND name=? "
                                       "ORDER BY started_at", run_id, name)]


def test_a_short_outage_is_ridden_out_by_retries(tmp_path: Path, s3: S3Emulator) -> None:
    home, env = _home(tmp_path, s3, CONVEYOR_ARTIFACT_RETRIES="12", CONVEYOR_ARTIFACT_BACKOFF_S="0.2")
    proc = spawn_run(home, env=env)
    wait_for(lambda: "big" in home.ledger_counts(), "step big to compute its output", proc)
    s3.kill()                                  # the store dies just before big writes its output
    (tmp_path / "gate").write_text("go")
    first_connection(s3.port)                 # big's write reached the dead store and failed
    s3.start()                                 # the store comes back, empty, within the retry budget
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    run = only_run(home.db)
    assert run is not None and run["status"] == "succeeded"
    (big,) = _step(home.db, run["id"], "big")
    assert big["status"] == "succeeded"
    assert "The artifact store did not answer while writing an artifact" in big["logs"]
    assert "retry 1 of 12" in big["logs"]
    # What was written after the restart is whole in the store (what was written before died with it).
    outputs = final_outputs(home.db, run["id"])
    for name in ("big/output", "summary/output"):
        data = s3.read(_uri(home, outputs[name]))
        assert f"sha256:{hashlib.sha256(data).hexdigest()}" == outputs[name]


def test_a_long_outage_fails_clearly_and_resume_recomputes_what_was_lost(tmp_path: Path,
                                                                          s3: S3Emulator) -> None:
    home, env = _home(tmp_path, s3, CONVEYOR_ARTIFACT_RETRIES="2", CONVEYOR_ARTIFACT_BACKOFF_S="0.05")
    proc = spawn_run(home, env=env)
    wait_for(lambda: "big" in home.ledger_counts(), "step big to compute its output", proc)
    s3.kill()
    (tmp_path / "gate").write_text("go")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err                              # StepFailed, not a crash
    assert "Artifact store unavailable" in err or "ArtifactStoreUnavailable" in err
    assert f"s3://{s3.bucket}/artifacts" in err
    assert "CONVEYOR_ARTIFACT_RETRIES" in err and "conveyor runs resume" in err
    assert "botocore" not in err and "aiohttp" not in err        # no library traceback reaches the user
    run = only_run(home.db)
    assert run is not None and run["status"] == "failed"
    done_before = {r["name"] for r in query(home.db, "SELECT name FROM step_runs WHERE run_id=? AND status="
                                                     "'succeeded'", run["id"])}
    assert {"source", "join"} <= done_before and "big" not in done_before

    s3.start()                                 # back, but empty: every artifact written so far is gone
    result = conveyor(home, "runs", "resume", run["id"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    after = only_run(home.db)
    assert after is not None and after["status"] == "succeeded"
    ledger = home.ledger_counts()
    # Outputs whose bytes were lost are recomputed (source's list is inline in the metadata: kept).
    assert ledger["source"] == 1
    assert all(ledger[n] == 2 for n in ("chunk[0]", "join", "fingerprint", "big"))
    # Content addressing: the recomputed bytes land where the old records point, so every record is whole.
    assert check_artifacts(home.db, read=s3.read) >= 8


def _uri(home: Home, content_hash: str) -> str:
    (row,) = query(home.db, "SELECT uri FROM artifacts WHERE content_hash=? LIMIT 1", content_hash)
    return row["uri"]
