"""A step whose code, inputs and materializers are unchanged is not run again."""

from __future__ import annotations

import conveyor as cv
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
    run = p.chain.run(n=3, start=1, client=client)
    assert not any(s.cache_hit for s in run.steps.values())


def test_equal_content_from_a_different_path_still_hits(client) -> None:
    p.chain.run(n=2, start=0, client=client)
    run = p.chain.run(n=3, start=0, client=client)   # inc, inc_2 identical; inc_3 new
    hits = {s.name: s.cache_hit for s in run.steps.values()}
    assert hits == {"inc": True, "inc_2": True, "inc_3": False}


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
