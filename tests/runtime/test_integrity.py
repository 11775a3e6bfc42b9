"""A tampered or truncated artifact is refused with an error that names it; nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.errors import ArtifactIntegrityError, StepFailed
from tests.runtime import pipelines as p


def _frame_file(client, run_id: str) -> Path:
    outs = {step: a for step, _n, a in client.metadata.artifacts.for_run(run_id)}
    uri = outs["frame"].uri
    assert uri, "a DataFrame is stored as a file"
    return Path(uri.removeprefix("file://"))


def test_tampered_artifact_fails_with_its_name(client) -> None:
    run = p.frames.run(rows=2000, client=client)
    path = _frame_file(client, run.id)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    fresh = client.get_run(run.id)
    with pytest.raises(ArtifactIntegrityError) as err:
        fresh.output("frame")
    assert path.name in str(err.value) or str(path) in str(err.value)


def test_truncated_cached_input_fails_the_consumer_not_the_run_history(client) -> None:
    run = p.frames.run(rows=2000, client=client)
    path = _frame_file(client, run.id)
    path.write_bytes(path.read_bytes()[:100])
    # frame is a cache hit (its bytes are not read); column_mean must load it and is refused.
    with pytest.raises(StepFailed, match="ArtifactIntegrityError") as err:
        p.frames_fresh_consumer.run(rows=2000, client=client)
    assert err.value.run.steps["frame"].cache_hit
    assert client.get_run(run.id).status == "succeeded"
