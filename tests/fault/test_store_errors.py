"""The artifact store's retry policy and error translation, and reuse of outputs whose bytes are gone."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from conveyor.errors import ArtifactError, ArtifactStoreUnavailable
from conveyor.store.artifacts.retry import RetryPolicy, is_transient, translated, with_retries


class Flaky:
    """Fails ``times`` times with ``exc``, then answers."""

    def __init__(self, times: int, exc: BaseException) -> None:
        self.times, self.exc, self.calls = times, exc, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.exc
        return "ok"


def test_transient_remote_errors_are_retried_with_doubling_backoff(caplog: pytest.LogCaptureFixture) -> None:
    policy = RetryPolicy(retries=3, backoff_s=0.001, backoff_max_s=0.003)
    assert [policy.delay(i) for i in (1, 2, 3, 4)] == [0.001, 0.002, 0.003, 0.003]
    fn = Flaky(2, ConnectionResetError("reset by peer"))
    with caplog.at_level(logging.WARNING, logger="conveyor.artifacts"):
        assert with_retries(policy, fn, remote=True, what="reading an artifact", where="s3://b/x") == "ok"
    assert fn.calls == 3
    assert [r.getMessage().split(";")[1].strip() for r in caplog.records] == ["retry 1 of 3 in 0.00s.",
                                                                              "retry 2 of 3 in 0.00s."]


def test_spent_retries_name_the_url_and_the_fix_without_the_library_traceback() -> None:
    fn = Flaky(10, ConnectionRefusedError("connection refused"))
    with pytest.raises(ArtifactStoreUnavailable) as err:
        with_retries(RetryPolicy(retries=2, backoff_s=0.0), fn, remote=True, what="writing an artifact",
                     where="s3://bucket/artifacts")
    assert fn.calls == 3
    text = str(err.value)
    assert "s3://bucket/artifacts" in text and "ConnectionRefusedError: connection refused" in text
    assert "CONVEYOR_ARTIFACT_RETRIES" in text and "conveyor runs resume" in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


@pytest.mark.parametrize("exc", [FileNotFoundError("no such key"), PermissionError("denied"),
                                 OSError(errno.ENOSPC, "No space left on device")])
def test_errors_that_waiting_cannot_fix_are_not_retried(exc: BaseException) -> None:
    assert not is_transient(exc, remote=True)
    fn = Flaky(1, exc)
    with pytest.raises(type(exc)):
        with_retries(RetryPolicy(retries=5, backoff_s=0.0), fn, remote=True, what="writing", where="x")
    assert fn.calls == 1


def test_local_errors_are_never_retried() -> None:
    assert not is_transient(ConnectionResetError(), remote=False)


def test_a_full_disk_says_what_to_do() -> None:
    err = translated(OSError(errno.ENOSPC, "No space left on device"), what="writing an artifact",
                     where="/data/art", root="/data/art")
    assert isinstance(err, ArtifactError)
    assert str(err).startswith("No space left on device while writing an artifact at /data/art. Free space there, "
                               "or set CONVEYOR_ARTIFACT_ROOT")


def test_a_cached_output_whose_bytes_are_gone_is_recomputed(client, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fault import pipelines as p

    monkeypatch.setenv("CVFAULT_LEDGER", str(tmp_path / "ledger"))
    first = p.faulty.run(client=client)
    outs = client.metadata.steps.outputs([first.steps["join"].id])[first.steps["join"].id]
    path = Path(outs["output"].uri.removeprefix("file://"))
    path.unlink()                                   # the bytes are lost; the record still names them
    second = p.faulty.run(client=client)
    steps = second.steps
    assert not steps["join"].cache_hit and steps["join"].status == "succeeded"
    assert steps["fingerprint"].cache_hit and steps["chunk[0]"].cache_hit   # what is intact stays cached
    assert path.read_bytes() == second.output("join")
    assert (tmp_path / "ledger").read_text().split().count("join") == 2
