"""A step whose code, inputs and materializers are unchanged is not run again; a miss says why."""

from __future__ import annotations

import conveyor as cv
from conveyor.runtime.cache import miss_reasons
from tests.runtime import pipelines as p


def test_second_run_is_fully_cached(client) -> None:
    first = p.chain.run(n=4, client=client)
    second = p.chain.run(n=4, client=client)
    assert p.count("inc") == 4
    assert all(s.status == "cached" and s.cache_hit for s in second.steps.values())
    assert second.output("inc_4") == first.output("inc_4") == 4
    cached_from = {s.name: s for s in first.steps.values()}
    assert all(s.cached_from == cached_from[s.name].id for s in second.steps.values())


def test_changed_parameter_reruns_only_affected_steps(client) -> None:
    p.fanout.run(n=3, client=client)
    run = p.fanout.run(n=3, threshold=0.1, client=client)
    assert all(s.cache_hit for s in run.steps.values() if s.status != "skipped")
    p.chain.run(n=3, start=0, client=client)      # inc(0)=1, inc_2(1)=2, inc_3(2)=3
    run = p.chain.run(n=3, start=1, client=client)  # inc(1)=2, inc_2(2)=3, inc_3(3)=4
    hits = {s.name: s.cache_hit for s in run.steps.values()}
    assert hits == {"inc": False, "inc_2": True, "inc_3": False}
    assert miss_reasons(client.metadata, run.id) == {"inc": "parameter changed: x (0 -> 1)",
                                                  "inc_3": "input changed: x"}
    assert run.output("inc_3") == 4


def test_equal_content_under_other_node_names_still_hits(client) -> None:
    p.chain.run(n=2, start=0, client=client)
    run = p.chain.run(n=3, start=0, client=client)   # inc, inc_2 identical; inc_3 new
    hits = {s.name: s.cache_hit for s in run.steps.values()}
    assert hits == {"inc": True, "inc_2": True, "inc_3": False}
    assert miss_reasons(client.metadata, run.id) == {"inc_3": "no earlier run of this step"}


def test_equal_data_from_two_different_steps_hits(client) -> None:
    calls: list[str] = []

    @cv.step(name="produce_a")
    def produce_a() -> list:
        calls.append("a")
        return [1, 2, 3]

    @cv.step(name="produce_b")
    def produce_b() -> list:
        calls.append("b")
        return [3, 2, 1][::-1]          # other code, equal data

    @cv.step(name="total_of")
    def total_of(xs: list) -> int:
        calls.append("total")
        return sum(xs)

    @cv.pipeline(name="from_a")
    def from_a():
        total_of(produce_a())

    @cv.pipeline(name="from_b")
    def from_b():
        total_of(produce_b())

    first = from_a.run(client=client)
    second = from_b.run(client=client)
    assert calls == ["a", "total", "b"]
    assert {s.name: s.cache_hit for s in second.steps.values()} == {"produce_b": False, "total_of": True}
    assert second.steps["total_of"].cached_from == first.steps["total_of"].id
    assert second.output("total_of") == 6
    assert miss_reasons(client.metadata, second.id) == {"produce_b": "no earlier run of this step"}


def test_changed_materializer_version_misses(client, monkeypatch) -> None:
    from conveyor.store.artifacts.materializers.json_value import JsonMaterializer

    @cv.step(name="fresh_list", cache=False)
    def fresh_list() -> list:
        return [1, 2, 3]

    @cv.step(name="consume")
    def consume(xs: list) -> int:
        return len(xs)

    @cv.pipeline(name="mat")
    def mat():
        consume(fresh_list())

    mat.run(client=client)
    assert mat.run(client=client).steps["consume"].cache_hit
    monkeypatch.setattr(JsonMaterializer, "version", "2")
    run = mat.run(client=client)
    assert not run.steps["consume"].cache_hit
    assert miss_reasons(client.metadata, run.id) == {
        "fresh_list": "the step is declared cache=False (never cached)", "consume": "input changed: xs"}


def test_changed_output_names_miss(client) -> None:
    @cv.step(name="halves", outputs=["low", "high"])
    def halves(n: int) -> tuple:
        return list(range(n // 2)), list(range(n // 2, n))

    @cv.pipeline(name="outs")
    def outs():
        halves(4)

    outs.run(client=client)
    assert outs.run(client=client).steps["halves"].cache_hit

    @cv.step(name="halves", outputs=["low", "upper"])
    def halves2(n: int) -> tuple:
        return list(range(n // 2)), list(range(n // 2, n))

    @cv.pipeline(name="outs")
    def outs2():
        halves2(4)

    run = outs2.run(client=client)
    assert not run.steps["halves"].cache_hit
    assert run.output("halves", "upper") == [2, 3]
    assert miss_reasons(client.metadata, run.id) == {
        "halves": "outputs changed: ['low', 'high'] -> ['low', 'upper']"}


def test_no_cache_run_and_cache_false_step(client) -> None:
    p.chain.run(n=2, client=client)
    p.chain.run(n=2, cache=False, client=client)
    assert p.count("inc") == 4

    @cv.step(cache=False)
    def always(x: int) -> int:
        p.bump("always")
        return x

    @cv.pipeline
    def uncached():
        always(1)

    uncached.run(client=client)
    uncached.run(client=client)
    assert p.count("always") == 2


def test_code_change_invalidates(client) -> None:
    @cv.step
    def f(x: int) -> int:
        return x + 1

    @cv.pipeline
    def pipe():
        f(1)

    assert pipe.run(client=client).output("f") == 2

    @cv.step(name="f")
    def f2(x: int) -> int:
        return x + 2

    @cv.pipeline
    def pipe2():
        f2(1)

    run = pipe2.run(client=client)
    assert run.output("f") == 3 and not run.steps["f"].cache_hit


def test_cache_version_bump_invalidates(tmp_path, client, monkeypatch) -> None:
    from tests.runtime.project import Project

    monkeypatch.setattr("sys.dont_write_bytecode", True)
    project = Project(tmp_path / "proj", client)
    project.write("flow.py", '''
        import conveyor as cv

        @cv.step(cache_version="1")
        def fetch(n: int) -> int:
            return n

        @cv.pipeline
        def pipe(n: int = 1):
            fetch(n)
    ''')
    project.run()
    assert project.hits(project.run()) == {"fetch": True}
    project.edit("flow.py", 'cache_version="1"', 'cache_version="2"')
    run = project.run()
    assert project.hits(run) == {"fetch": False}
    assert project.reasons(run) == {"fetch": "cache_version changed: '1' -> '2'"}


def test_cache_files_are_hashed_relative_to_the_pipeline_file(tmp_path, client, monkeypatch) -> None:
    from tests.runtime.project import Project

    monkeypatch.setattr("sys.dont_write_bytecode", True)
    project = Project(tmp_path / "proj", client)
    project.write("data/a.csv", "x\n1\n")
    project.write("conf/params.yaml", "k: 1\n")
    project.write("flow.py", '''
        from pathlib import Path
        import conveyor as cv

        HERE = Path(__file__).parent

        @cv.step(cache_files=["data/*.csv", "conf/params.yaml"])
        def read() -> int:
            return sum(len(p.read_text()) for p in sorted((HERE / "data").glob("*.csv")))

        @cv.pipeline
        def pipe():
            read()
    ''')
    monkeypatch.chdir(tmp_path)           # globs are anchored at the file, not the working directory
    project.run()
    assert project.hits(project.run()) == {"read": True}
    project.write("data/b.csv", "x\n2\n")
    run = project.run()
    assert project.hits(run) == {"read": False} and run.output("read") == 8
    assert project.reasons(run) == {"read": "cache file changed: data/b.csv"}
    project.write("conf/params.yaml", "k: 2\n")
    run = project.run()
    assert project.reasons(run) == {"read": "cache file changed: conf/params.yaml"}
    assert project.hits(project.run()) == {"read": True}


def test_cache_key_callable_sees_the_outside_world(tmp_path, client) -> None:
    import hashlib
    import json

    source = tmp_path / "events.json"
    source.write_text(json.dumps([1, 2]))
    calls: list[str] = []

    def file_state(path: str, since: str) -> dict:
        return {"sha": hashlib.sha256(open(path, "rb").read()).hexdigest(), "since": since}

    @cv.step(name="load_recent", cache_key=file_state)
    def load_recent(path: str, since: str = "7d") -> list:
        calls.append(since)
        return json.loads(open(path).read())

    @cv.step(name="count_events")
    def count_events(xs: list) -> int:
        return len(xs)

    @cv.pipeline(name="recent")
    def recent(path: str = str(source)):
        count_events(load_recent(path))

    assert recent.run(client=client).output("count_events") == 2
    second = recent.run(client=client)
    assert {s.name: s.cache_hit for s in second.steps.values()} == {"load_recent": True, "count_events": True}
    source.write_text(json.dumps([1, 2, 3]))
    third = recent.run(client=client)
    assert third.output("count_events") == 3 and calls == ["7d", "7d"]
    assert miss_reasons(client.metadata, third.id)["load_recent"].startswith("cache_key value changed: ")
    assert miss_reasons(client.metadata, third.id)["count_events"] == "input changed: xs"
    fresh = recent.run(client=client, cache=False)          # what triggers use for a fully fresh run
    assert not any(s.cache_hit for s in fresh.steps.values()) and len(calls) == 3
    assert miss_reasons(client.metadata, fresh.id)["load_recent"] == \
        "the cache was turned off for this run (--no-cache / cache=False)"


def test_a_failing_cache_key_fails_the_step_with_its_reason(client) -> None:
    import pytest

    from conveyor.errors import StepFailed

    def broken(n: int) -> dict:
        raise OSError("source unreachable")

    @cv.step(name="guarded_read", cache_key=broken)
    def guarded_read(n: int) -> int:
        return n

    @cv.pipeline(name="broken_key")
    def broken_key():
        guarded_read(1)

    with pytest.raises(StepFailed, match="cache_key function raised OSError: source unreachable"):
        broken_key.run(client=client)


def _cache_lookups(client, fn) -> int:
    """How many queries look step runs up by cache key while ``fn`` runs (real SQL on the real store)."""
    from sqlalchemy import event

    seen: list[str] = []

    def note(_conn, _cursor, statement, _params, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT") and ("cache_key IN" in statement
                                                              or "cache_key = " in statement):
            seen.append(statement)

    engine = client.metadata.engine
    event.listen(engine, "before_cursor_execute", note)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", note)
    return len(seen)


def test_a_fully_cached_re_run_looks_the_cache_up_in_a_constant_number_of_queries(client) -> None:
    lookups = {}
    for n in (5, 20):
        p.chain.run(n=n, client=client)
        run = None

        def again() -> None:
            nonlocal run
            run = p.chain.run(n=n, client=client)

        lookups[n] = _cache_lookups(client, again)
        assert len(run.steps) == n and all(s.status == "cached" for s in run.steps.values())
        assert run.output(f"inc_{n}") == n
    assert p.count("inc") == 20     # the 5 of the first chain are the first 5 of the second: cached too
    assert lookups[20] == lookups[5] <= 2


def test_the_calls_of_a_fan_out_are_looked_up_together(client) -> None:
    @cv.pipeline(name="squares_elsewhere")     # not fanout: its last run's keys are not fetched ahead
    def squares_elsewhere(n: int = 4):
        p.total(p.square.map(v=p.make(n)[0], k=cv.unmapped(2)))

    lookups = {}
    for n in (5, 20):
        p.fanout.run(n=n, client=client)
        run = None

        def elsewhere() -> None:
            nonlocal run
            run = squares_elsewhere.run(n=n, client=client)

        lookups[n] = _cache_lookups(client, elsewhere)
        assert all(s.cache_hit for s in run.steps.values())
        assert run.output("total") == sum(2 * i * i for i in range(n))
    assert lookups[20] == lookups[5] <= 4   # one per ready set (make, the square calls, total), not per call


def test_a_cached_steps_hook_sees_it_and_the_steps_before_it_recorded(client) -> None:
    seen: list[dict[str, str]] = []

    def look(ctx) -> None:
        seen.append({s.name: s.status for s in client.metadata.steps.for_run(ctx.run_id)})

    @cv.step(name="hooked", on_success=look)
    def hooked(x: int) -> int:
        return x * 10

    @cv.pipeline(name="hooked_after_inc")
    def hooked_after_inc():
        hooked(p.inc(1))

    hooked_after_inc.run(client=client)
    run = hooked_after_inc.run(client=client)
    assert {s.name: s.status for s in run.steps.values()} == {"inc": "cached", "hooked": "cached"}
    assert seen[-1] == {"inc": "cached", "hooked": "cached"}
