"""The process executor with the artifact root on an object store (moto's S3 emulator): each
attempt's child opens its own client, so storing outputs never waits on a client forked half-alive."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runtime import pipelines as p
from tests.store.test_s3_emulator import bucket, s3_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.mark.timeout(180)
def test_process_executor_with_artifacts_on_s3(bucket: str, settings, monkeypatch, tmp_path: Path) -> None:  # noqa: F811
    from conveyor.config import load_settings
    from conveyor.runtime.client import Client

    monkeypatch.setenv("CONVEYOR_ARTIFACT_ROOT", f"s3://{bucket}/artifacts")
    monkeypatch.setenv("CVTEST_COUNTS", str(tmp_path / "counts"))
    client = Client(load_settings())
    try:
        run = p.fanout.run(n=3, executor="process", client=client)
        assert run.output("total") == 10 and run.output("square") == [0, 2, 8]
    finally:
        client.close()
