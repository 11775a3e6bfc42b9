"""What the store holds while a run walks: the engine batches its writes, never their order or meaning."""

from __future__ import annotations

import conveyor as cv
from conveyor.store.metadata import MetadataStore


def _seen_from_inside() -> dict[str, str]:
    """The statuses of the run's step runs, read by the running step through its own connection."""
    ctx = cv.get_step_context()
    md = MetadataStore(ctx.metadata_url)
    try:
        return {s.name: s.status for s in md.steps.for_run(ctx.run_id)}
    finally:
        md.close()


def test_a_running_step_is_recorded_as_running_and_the_steps_before_it_as_ended(client) -> None:
    seen: list[dict[str, str]] = []

    @cv.step(name="look_a")
    def look_a() -> int:
        seen.append(_seen_from_inside())
        return 1

    @cv.step(name="look_b")
    def look_b(x: int) -> int:
        seen.append(_seen_from_inside())
        return x + 1

    @cv.pipeline(name="looking_chain")
    def looking_chain():
        look_b(look_b(look_a()))

    run = looking_chain.run(client=client, cache=False)
    assert run.status == "succeeded"
    assert seen == [{"look_a": "running"},
                    {"look_a": "succeeded", "look_b": "running"},
                    {"look_a": "succeeded", "look_b": "succeeded", "look_b_2": "running"}]


def test_the_starts_of_a_fan_out_are_recorded_before_any_element_runs(client) -> None:
    seen: list[dict[str, str]] = []

    @cv.step(name="items")
    def items() -> list:
        return [1, 2, 3]

    @cv.step(name="peek")
    def peek(x: int) -> int:
        seen.append(_seen_from_inside())
        return x

    @cv.pipeline(name="peeking_fanout")
    def peeking_fanout():
        peek.map(x=items())

    peeking_fanout.run(client=client, cache=False)
    assert len(seen) == 3
    for statuses in seen:
        assert statuses["items"] == "succeeded"
        assert sorted(k for k in statuses if k.startswith("peek")) == ["peek[0]", "peek[1]", "peek[2]"]


def test_a_step_that_just_ended_is_a_cache_hit_for_an_equal_call_later_in_the_same_run(client) -> None:
    calls: list[str] = []

    @cv.step(name="listed")
    def listed() -> list:
        calls.append("listed")
        return [1, 2, 3]

    @cv.step(name="summed")
    def summed(xs: list) -> int:
        calls.append("summed")
        return sum(xs)

    @cv.step(name="listed_after")
    def listed_after(n: int) -> list:
        calls.append("listed_after")
        return [1, 2, 3]   # equal data: the second summed call has the first one's key

    @cv.pipeline(name="sum_twice")
    def sum_twice():
        summed(listed_after(summed(listed())))

    run = sum_twice.run(client=client)
    assert calls == ["listed", "summed", "listed_after"]
    steps = run.steps
    assert steps["summed_2"].status == "cached" and steps["summed_2"].cached_from == steps["summed"].id
    assert run.output("summed_2") == 6


def _stored(url: str, expression: bool, monkeypatch) -> dict[str, list[tuple]]:
    """Write a run with one step run's start and end, then read back every table's raw rows (what the
    database holds, not what the store decodes), without the ids and times that differ between runs."""
    import sqlite3

    from conveyor.store.metadata import steps as steps_module
    from conveyor.store.metadata.records import NewArtifact, StepOutcome

    with monkeypatch.context() as m:
        if expression:   # no plain marks for any driver: every write takes its expression statement
            m.setattr(steps_module, "_MARKS", {})
            m.setattr(steps_module, "_plain", {})
            m.setattr(steps_module, "_queries", {})
            m.setattr(steps_module, "_rows", {})
        md = MetadataStore(url)
        try:
            pid, version = md.runs.ensure_pipeline("p", "c" * 64, None)
            env = md.runs.save_environment({"python": "3", "packages": {"a": "1"}})
            run = md.runs.create(kind="pipeline", pipeline_id=pid, pipeline_name="p", parameters={"n": 2},
                                 tags={}, environment_hash=env, git_commit=None, git_dirty=False, run_id="r1")
            md.runs.set_plan(run, "{}")
            md.steps.write_many(started=[("s1", run, "a", "a", dict(cache_key="k" * 64, code_hash="h",
                                                                       map_index=None, cache_parts={"code": {}}))])
            usage = dict(attempt=1, status="completed", executor="thread", host="h", started_at=1.0, ended_at=2.0,
                         wall_s=1.0, cpu_s=0.5, peak_rss_bytes=10, bytes_read=None, bytes_written=0, gpu_s=None,
                         gpu_peak_bytes=None, error=None)
            out = StepOutcome(status="succeeded", logs="", params=[("x", 1), ("none", None)],
                              new_outputs=[NewArtifact(name="out", content_hash="c", materializer="json",
                                                       materializer_version="1", type_name="int", size=1, uri=None,
                                                       inline=None, meta={"k": [1]}, id="a1"),
                                           NewArtifact(name="logged/x", content_hash="d", materializer="json",
                                                       materializer_version="1", type_name="int", size=1, uri=None,
                                                       inline=3, meta={}, id="a2")],
                              metrics=[("loss", 0.5, 1, 3.0)], started_at=1.0, ended_at=2.0, attempt_rows=[usage])
            md.steps.write_many(finished=[("s1", run, out)], started=[("s2", run, "b", "b", dict(
                cache_key=None, code_hash=None, map_index=0, cache_parts=None))])
            md.runs.set_status(run, "succeeded")
            got = md.runs.get(run)
            assert (got.status, got.parameters, got.git_dirty, version) == ("succeeded", {"n": 2}, False, 1)
        finally:
            md.close()
    db = sqlite3.connect(url.removeprefix("sqlite:///"))
    try:
        varying = {"created_at", "at", "ended_at", "started_at", "pipeline_id", "id"}
        rows = {}
        for table in ("pipelines", "environments", "runs", "run_events", "step_runs", "artifacts", "lineage",
                      "metrics", "params", "step_attempts"):
            cur = db.execute(f"SELECT * FROM {table}")
            keep = [i for i, d in enumerate(cur.description) if d[0] not in varying]
            rows[table] = sorted(tuple(repr(r[i]) for i in keep) for r in cur.fetchall())
        return rows
    finally:
        db.close()


def test_the_plain_sql_writes_store_what_the_expression_statements_store(tmp_path, monkeypatch) -> None:
    plain = _stored(f"sqlite:///{tmp_path / 'plain.db'}", False, monkeypatch)
    expression = _stored(f"sqlite:///{tmp_path / 'expression.db'}", True, monkeypatch)
    assert plain == expression
    assert plain["step_runs"] and plain["artifacts"] and plain["lineage"] and plain["params"] and plain["metrics"]
