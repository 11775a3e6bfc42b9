"""Property-based engine tests: random graphs behave exactly as a small reference interpreter says.

Graphs are chains, joins (a step taking a list of outputs), fan-outs (``.map`` over a literal list
or over another fan-out's outputs) and conditions (``cv.when(out > t)``). Every step fails its
first ``fails`` attempts and has 0-2 retries; one step may fail on every attempt. The reference
interpreter below says which steps succeed, fail or are skipped, how many attempts each made and
what each returned. A second property fails a random step, resumes with that failure removed,
and checks that only what had not finished ran again and that every artifact is byte-identical
to the one a run that never failed produced.
"""

from __future__ import annotations

import json
import threading
from contextlib import nullcontext
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import conveyor as cv

EXAMPLES_OUTCOMES = 60
EXAMPLES_RESUME = 40

CALLS: list[tuple[str, str]] = []     # (run id, node name) per attempt, appended by the steps
_lock = threading.Lock()


def _num(x: Any) -> int:
    return sum(_num(v) for v in x) if isinstance(x, list) else int(x)


def _work(base: int, fails: int, boom: bool) -> int:
    ctx = cv.get_step_context()
    with _lock:
        CALLS.append((ctx.run_id, ctx.node_name))
    if boom:
        raise RuntimeError("boom on every attempt")
    if ctx.attempt <= fails:
        raise RuntimeError(f"transient failure on attempt {ctx.attempt}")
    return base


@cv.step(backoff=0)
def combine0(xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(_num(xs) + c, fails, boom)


@cv.step(retries=1, backoff=0)
def combine1(xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(_num(xs) + c, fails, boom)


@cv.step(retries=2, backoff=0)
def combine2(xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(_num(xs) + c, fails, boom)


@cv.step(backoff=0)
def spread0(x: int, xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(x + _num(xs) + c, fails, boom)


@cv.step(retries=1, backoff=0)
def spread1(x: int, xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(x + _num(xs) + c, fails, boom)


@cv.step(retries=2, backoff=0)
def spread2(x: int, xs: list, c: int, fails: int, boom: bool) -> int:
    return _work(x + _num(xs) + c, fails, boom)


COMBINE = (combine0, combine1, combine2)
SPREAD = (spread0, spread1, spread2)


@cv.pipeline
def random_graph(spec: str, fail: int = -1):
    """Build the graph a JSON spec describes; node ``fail`` fails on every attempt."""
    outs: list[Any] = []
    for i, n in enumerate(json.loads(spec)):
        xs = [outs[j] for j in n["ups"]]
        cond = n["cond"]
        with cv.when(outs[cond["up"]] > cond["gt"]) if cond else nullcontext():
            if n["kind"] == "combine":
                out = COMBINE[n["retries"]](xs, n["c"], n["fails"], i == fail)
            else:
                over = outs[n["over"]] if n["over"] is not None else list(range(n["n"]))
                out = SPREAD[n["retries"]].map(x=over, xs=cv.unmapped(xs), c=cv.unmapped(n["c"]),
                                               fails=cv.unmapped(n["fails"]), boom=cv.unmapped(i == fail))
        outs.append(out)


# --- the reference interpreter ---------------------------------------------------------------------

def node_names(nodes: list[dict[str, Any]]) -> list[str]:
    """Node names as the DSL gives them: the step name, then ``_2``, ``_3`` for repeated calls."""
    seen: dict[str, int] = {}
    names = []
    for n in nodes:
        step = ("combine" if n["kind"] == "combine" else "spread") + str(n["retries"])
        seen[step] = seen.get(step, 0) + 1
        names.append(step if seen[step] == 1 else f"{step}_{seen[step]}")
    return names


def reference(nodes: list[dict[str, Any]], fail: int) -> dict[str, dict[str, Any]]:
    """Per node: status, value, and attempts (a list per element for fan-outs)."""
    out: dict[int, dict[str, Any]] = {}
    for i, n in enumerate(nodes):
        deps = set(n["ups"]) | ({n["over"]} if n["kind"] == "map" and n["over"] is not None else set())
        cond = n["cond"]
        if cond:
            deps.add(cond["up"])
        if any(out[d]["status"] in ("failed", "skipped") for d in deps):
            out[i] = {"status": "skipped"}
            continue
        if cond and not out[cond["up"]]["value"] > cond["gt"]:
            out[i] = {"status": "skipped"}
            continue
        ok = i != fail and n["fails"] <= n["retries"]
        attempts = n["fails"] + 1 if ok else n["retries"] + 1
        base = sum(_num(out[j]["value"]) for j in n["ups"]) + n["c"]
        if n["kind"] == "combine":
            out[i] = {"status": "succeeded" if ok else "failed", "value": base if ok else None, "attempts": attempts}
        else:
            elements = out[n["over"]]["value"] if n["over"] is not None else list(range(n["n"]))
            out[i] = {"status": "succeeded" if ok or not elements else "failed",
                      "value": [e + base for e in elements] if ok or not elements else None,
                      "attempts": [attempts] * len(elements)}
    names = node_names(nodes)
    return {names[i]: v for i, v in out.items()}


@st.composite
def graphs(draw: Any, *, permanent_failures: bool = True) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 7))):
        ints = [j for j in range(i) if nodes[j]["kind"] == "combine"]
        maps = [j for j in range(i) if nodes[j]["kind"] == "map"]
        retries = draw(st.integers(0, 2))
        fails = draw(st.sampled_from([0, 0, 0, 1, 1, 2, 3])) if permanent_failures else draw(st.integers(0, retries))
        node: dict[str, Any] = {
            "kind": draw(st.sampled_from(["combine", "combine", "map"])),
            "ups": draw(st.lists(st.integers(0, i - 1), max_size=3, unique=True)) if i else [],
            "c": draw(st.integers(-3, 5)), "fails": fails, "retries": retries,
            "cond": {"up": draw(st.sampled_from(ints)), "gt": draw(st.integers(-5, 25))}
            if ints and draw(st.booleans()) else None,
        }
        if node["kind"] == "map":
            node["over"] = draw(st.sampled_from([None, *maps]))
            node["n"] = draw(st.integers(0, 3))
        nodes.append(node)
    return nodes


def observed(client: Any, run: Any, nodes: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the run recorded, in the reference's shape."""
    steps = run.steps
    result: dict[str, dict[str, Any]] = {}
    for name, n in zip(node_names(nodes), nodes, strict=True):
        if n["kind"] == "combine" or name in steps:     # a skipped fan-out is recorded under its own name
            s = steps[name]
            entry: dict[str, Any] = {"status": s.status}
            if s.status != "skipped":
                entry["attempts"] = s.attempts if n["kind"] == "combine" else []
                entry["value"] = run.output(name) if s.status == "succeeded" else None
            result[name] = entry
            continue
        children = sorted((s for s in steps.values() if s.name.startswith(f"{name}[")), key=lambda s: s.map_index)
        statuses = {c.status for c in children}
        ok = statuses <= {"succeeded"}
        result[name] = {"status": "succeeded" if ok else "failed", "attempts": [c.attempts for c in children],
                        "value": run.output(name) if ok else None}
    return result


@pytest.mark.slow
@settings(max_examples=EXAMPLES_OUTCOMES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(nodes=graphs(), data=st.data())
def test_random_graphs_match_the_reference_interpreter(client, nodes, data) -> None:
    fail = data.draw(st.integers(-1, len(nodes) - 1), label="fail")
    run = client.run_pipeline(random_graph, {"spec": json.dumps(nodes), "fail": fail}, cache=False,
                              raise_on_failure=False)
    expected = reference(nodes, fail)
    assert observed(client, run, nodes) == expected
    failed = any(v["status"] == "failed" for v in expected.values())
    assert run.status == ("failed" if failed else "succeeded")


@pytest.mark.slow
@settings(max_examples=EXAMPLES_RESUME, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(nodes=graphs(permanent_failures=False), data=st.data())
def test_resume_after_a_failure_reruns_only_what_had_not_finished_and_ends_byte_identical(client, nodes, data) -> None:
    clean = reference(nodes, -1)
    names = node_names(nodes)
    candidates = [i for i, name in enumerate(names) if clean[name]["status"] == "succeeded"
                  and (nodes[i]["kind"] == "combine" or clean[name]["value"])]
    assume(candidates)
    fail = data.draw(st.sampled_from(candidates), label="fail")
    spec = json.dumps(nodes)

    broken = client.run_pipeline(random_graph, {"spec": spec, "fail": fail}, cache=False, raise_on_failure=False)
    assert broken.status == "failed"
    before = reference(nodes, fail)
    assert observed(client, broken, nodes) == before
    mark = len(CALLS)

    resumed = client.resume(broken.id, params={"fail": -1})
    assert resumed.status == "succeeded" and resumed.parameters["fail"] == -1
    final = observed(client, resumed, nodes)
    assert final[names[fail]]["status"] == "succeeded"
    assert {k: (v["status"], v.get("value")) for k, v in final.items()} == \
        {k: (v["status"], v.get("value")) for k, v in clean.items()}

    # only what had not finished ran again: the failed step and what it had kept from running
    ran_again = {name.partition("[")[0] for run_id, name in CALLS[mark:] if run_id == broken.id}
    unfinished = {k for k, v in clean.items() if v["status"] == "succeeded" and before[k]["status"] != "succeeded"}
    assert ran_again == {k for k in unfinished if nodes[names.index(k)]["kind"] == "combine" or clean[k]["value"]}

    # every artifact is byte-identical to what a run that never failed stored
    fresh = client.run_pipeline(random_graph, {"spec": spec, "fail": -1}, cache=False)

    def hashes(run_id: str) -> dict[tuple[str, str], str]:
        return {(step, name): a.content_hash for step, name, a in client.metadata.artifacts.for_run(run_id)}

    assert hashes(resumed.id) == hashes(fresh.id)
    assert len(hashes(fresh.id)) == sum(1 if nodes[names.index(k)]["kind"] == "combine" else len(v["value"])
                                        for k, v in clean.items() if v["status"] == "succeeded")
