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
