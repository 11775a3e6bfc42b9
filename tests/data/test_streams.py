"""Redis Streams (a real redis-server) and SQS (moto's server): micro-batches acknowledged only after
the step that consumed them succeeded; a failed step leaves them for the next run."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from conveyor.data.sources import open_source
from conveyor.errors import SourceReadError, StepFailed
from tests.data import stream_pipelines as sp


def _seen(out: Path) -> list[tuple[int, str]]:
    if not out.exists():
        return []
    return [(int(a), b) for a, b in (line.split(" ", 1) for line in out.read_text().splitlines())]


def _runs_consume_exactly_once(client, tmp_path: Path, location: str, produce, pending) -> None:
    """The flow both kinds pass: fail → same messages again; retry → same again; success → once."""
    out = tmp_path / "seen.txt"
    first = produce(5)

    with pytest.raises(StepFailed, match="consumer failed after reading 5 messages"):
        sp.drain.run(source=location, out=str(out), fail="always", client=client)
    # both attempts read the same five; none was acknowledged
    assert sorted(v for a, v in _seen(out) if a == 1) == sorted(first)
    assert sorted(v for a, v in _seen(out) if a == 2) == sorted(first)
    assert pending() == 5

    out.unlink()
    run = sp.drain.run(source=location, out=str(out), fail="first", client=client, executor="process")
    assert run.status == "succeeded" and run.output("consume") == 5
    assert sorted(v for a, v in _seen(out) if a == 2) == sorted(first)   # the retry got them back
    assert pending() == 0

    out.unlink()
    second = produce(3)
    run = sp.drain.run(source=location, out=str(out), client=client)
    assert run.output("consume") == 3 and sorted(v for _, v in _seen(out)) == sorted(second)
    run = sp.drain.run(source=location, out=str(out), client=client)
    assert run.output("consume") == 0                                   # nothing is delivered twice
    assert pending() == 0


@pytest.mark.slow
def test_redis_stream_is_acknowledged_after_the_step_succeeds(client, tmp_path: Path, redis_server) -> None:
    import redis

    r = redis.Redis.from_url(redis_server.url)
    stream = f"orders-{uuid.uuid4().hex[:8]}"
    location = f"{redis_server.url}?stream={stream}&group=train"

    def produce(n: int) -> list[str]:
        return [r.xadd(stream, {"order": str(i), "total": f"{i * 2.5}"}).decode() for i in range(n)]

    def pending() -> int:
        return int(r.xpending(stream, "train")["pending"])

    _runs_consume_exactly_once(client, tmp_path, location, produce, pending)

    # from Python, outside a step: the caller acknowledges; what another consumer left idle is claimed
    ids = produce(4)
    source = open_source(location, consumer="worker-a", max_wait=0)
    assert source.read().column("order").to_pylist() == ["0", "1", "2", "3"]
    assert source.describe() == f"redis-stream {redis_server.url} stream '{stream}' group 'train' consumer 'worker-a'"
    assert source.waiting() == 4                                        # delivered, not acknowledged
    source.nack()
    other = open_source(location, consumer="worker-b", max_wait=0, claim_idle=0)
    assert other.read().column("_id").to_pylist() == ids
    other.ack()
    assert pending() == 0 and other.waiting() == 0

    r.set("plain-key", "x")
    with pytest.raises(SourceReadError, match="stream 'plain-key'.*Check that the key is a stream"):
        open_source(f"{redis_server.url}?stream=plain-key").read()


@pytest.mark.slow
def test_sqs_queue_is_deleted_after_the_step_succeeds(client, tmp_path: Path, s3_emulator,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    import boto3

    for key, value in s3_emulator.environment.items():
        monkeypatch.setenv(key, value)
    sqs = boto3.client("sqs")
    name = f"orders-{uuid.uuid4().hex[:8]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]

    def produce(n: int) -> list[str]:
        return [sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"order": i}))["MessageId"] for i in range(n)]

    def pending() -> int:
        attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    _runs_consume_exactly_once(client, tmp_path, f"sqs://{name}", produce, pending)

    # held messages are invisible to other readers; nack gives them back at once
    ids = produce(2)
    held = open_source(f"sqs://{name}", max_wait=0.2)
    assert sorted(held.read().column("_message_id").to_pylist()) == sorted(ids)
    assert open_source(f"sqs://{name}", max_wait=0).read().num_rows == 0
    held.nack()
    # a reader that neither acknowledges nor gives back: its visibility timeout returns the messages
    quitter = open_source(f"sqs://{name}", visibility_timeout=1, max_wait=1)
    got: list[str] = []
    deadline = time.monotonic() + 60
    while len(got) < 2 and time.monotonic() < deadline:
        got += quitter.read().column("_message_id").to_pylist()
    assert sorted(got) == sorted(ids)
    again = open_source(f"sqs://{name}", max_wait=1)
    got = []
    while len(got) < 2 and time.monotonic() < deadline:
        got += again.read().column("_message_id").to_pylist()
    assert sorted(got) == sorted(ids)
    again.ack()
    assert pending() == 0

    sqs.send_message(QueueUrl=url, MessageBody="<not json>")
    with pytest.raises(SourceReadError, match=r"is not a JSON object.*body='text'"):
        open_source(f"sqs://{name}").read()
    with pytest.raises(SourceReadError, match="NonExistentQueue.*create the queue"):
        open_source("sqs://no-such-queue").read()
