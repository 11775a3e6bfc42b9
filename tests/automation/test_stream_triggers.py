"""Stream triggers: the agent starts a run when a Redis stream (real redis-server) or an SQS queue
(moto's server) has messages; the run's step consumes them, acknowledged only when it succeeds."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest

from conveyor.automation.agent import Agent
from conveyor.errors import InvalidRequest
from tests.cli.test_cli import cli  # noqa: F401  (fixture)

PIPELINE = '''
import os
import conveyor as cv

@cv.step(cache=False)
def consume(source: str, out: str) -> int:
    table = cv.data.read(source, max_wait=0.2)
    with open(out, "a") as fh:
        fh.writelines(f"{value}\\n" for value in table.column(0).to_pylist())
    flag = out + ".fail-once"
    if os.path.exists(flag):
        os.remove(flag)
        raise RuntimeError("the consumer failed once")
    return table.num_rows

@cv.pipeline
def drain(source: str = "-", out: str = "seen.txt"):
    consume(source, out)
'''


def _tick_until(agent: Agent, store, trigger: str, firings: int, deadline_s: float = 120) -> None:
    """Tick (and let launched runs finish) until ``trigger`` has ``firings`` finished firings."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        agent.tick()
        agent.wait_for_children()
        done = [f for f in store.firings(trigger) if f.status in ("succeeded", "failed")]
        if len(done) >= firings:
            return
        time.sleep(0.2)
    raise AssertionError(f"{trigger}: {store.firings(trigger)}")


def _flow(client, tmp_path: Path, location: str, produce, pending) -> None:
    """Messages → a firing → a failed run (messages stay) → a later firing consumes them → nothing more."""
    (tmp_path / "flow.py").write_text(PIPELINE)
    out = tmp_path / "seen.txt"
    store = client.metadata.automation
    store.create_trigger("on-orders", "stream", location, f"{tmp_path / 'flow.py'}:drain",
                         {"source": "{source}", "out": str(out)}, max_concurrent=1)
    agent = Agent(client, deliver=False, cwd=str(tmp_path))
    agent.tick()
    assert store.firings("on-orders") == []                       # an empty stream fires nothing

    ids = produce(3)
    Path(str(out) + ".fail-once").write_text("")
    _tick_until(agent, store, "on-orders", 1)
    first = store.firings("on-orders")[0]
    assert first.status == "failed" and first.cause["messages"] == 3 and first.cause["source"] == location
    assert sorted(out.read_text().split()) == sorted(ids) and pending() == 3      # read, not acknowledged

    _tick_until(agent, store, "on-orders", 2)                     # after a short backoff it fires again
    latest = store.firings("on-orders")[0]
    assert latest.status == "succeeded" and client.get_run(latest.run_id).output("consume") == 3
    assert pending() == 0
    agent.tick()
    assert len(store.firings("on-orders")) == 2                   # consumed: nothing waits, nothing fires

    assert sorted(out.read_text().split()) == sorted(ids * 2)      # read by the failed run, then once more


@pytest.mark.slow
def test_redis_stream_trigger_runs_a_pipeline_that_consumes_once(client, tmp_path: Path, redis_server) -> None:
    import redis

    r = redis.Redis.from_url(redis_server.url)
    stream = f"orders-{uuid.uuid4().hex[:8]}"

    def produce(n: int) -> list[str]:
        return [r.xadd(stream, {"order": str(i)}).decode() for i in range(n)]

    def pending() -> int:
        return int(r.xpending(stream, "agent")["pending"]) + int(r.xinfo_groups(stream)[0]["lag"] or 0)

    _flow(client, tmp_path, f"{redis_server.url}?stream={stream}&group=agent", produce, pending)


@pytest.mark.slow
def test_sqs_trigger_runs_a_pipeline_that_consumes_once(client, tmp_path: Path, s3_emulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
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

    _flow(client, tmp_path, f"sqs://{name}", produce, pending)


def test_stream_trigger_locations_are_checked_before_anything_is_stored(cli, tmp_path: Path) -> None:  # noqa: F811
    from conveyor.automation.streams import check_stream_location

    (tmp_path / "flow.py").write_text(PIPELINE)
    cli("triggers", "create", "--on", "stream:sqs://orders", "--run", "flow.py:drain", "-p", "source={source}")
    bad = cli("triggers", "create", "--on", "stream:redis://:hunter2@127.0.0.1:6379/0?stream=orders",
              "--run", "flow.py:drain", "-p", "source={source}", ok=False)
    assert bad.returncode == 2 and "carries a password" in bad.stderr and "hunter2" not in bad.stderr
    listed = json.loads(cli("triggers", "list", "--json").stdout)
    assert [(t["name"], t["on"]) for t in listed] == [("drain-on-orders", "stream:sqs://orders")]

    with pytest.raises(InvalidRequest, match="carries a password.*password_env"):
        check_stream_location("redis://:hunter2@127.0.0.1:6379/0?stream=orders")
    with pytest.raises(InvalidRequest, match="needs a stream"):
        check_stream_location("redis://127.0.0.1:6379/0")
    with pytest.raises(InvalidRequest, match="not a stream or queue"):
        check_stream_location("https://api.example.com/items")
