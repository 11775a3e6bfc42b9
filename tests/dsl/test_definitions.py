"""Mistakes are caught when the graph is built, with messages that name the step and the fix."""

from __future__ import annotations

from typing import Literal, Optional

import pytest

import conveyor as cv
from conveyor.dsl.graph import Const, Ref
from conveyor.errors import ParameterError, PipelineDefinitionError


@cv.step
def load(rows: int) -> list:
    return list(range(rows))


@cv.step
def train(df: list, C: float = 1.0) -> dict:
    return {"auc": 0.5 + C / 10}


@cv.step(outputs=["left", "right"])
def halves(xs: list) -> tuple[list, list]:
    return xs[: len(xs) // 2], xs[len(xs) // 2:]


def test_calling_steps_builds_nodes_and_runs_nothing() -> None:
    calls = []

    @cv.step
    def spy(x: int) -> int:
        calls.append(x)
        return x

    @cv.pipeline
    def p(n: int = 3):
        spy(load(n))

    graph = p.build()
    assert list(graph.nodes) == ["load", "spy"]
    assert graph.nodes["load"].inputs == {"rows": Const(3)}
    assert graph.nodes["spy"].inputs == {"x": Ref("load", "output")}
    assert calls == []


def test_repeated_step_calls_get_suffixed_names() -> None:
    @cv.pipeline
    def p():
        a = load(1)
        train(a)
        train(a, C=2.0)
        train(a, C=3.0)

    assert list(p.build().nodes) == ["load", "train", "train_2", "train_3"]


def test_unknown_input_names_the_step_and_suggests_a_fix() -> None:
    @cv.pipeline
    def p():
        train(load(1), c=0.5)

    with pytest.raises(PipelineDefinitionError) as err:
        p.build()
    msg = str(err.value)
    assert "Step 'train' has no input named 'c'" in msg
    assert "Its inputs are: df, C" in msg
    assert "Did you mean 'C'?" in msg


def test_wrong_arity_is_a_definition_error() -> None:
    @cv.pipeline
    def p():
        train()

    with pytest.raises(PipelineDefinitionError, match="Step 'train' was called with the wrong arguments"):
        p.build()


@pytest.mark.parametrize("misuse", [
    lambda out: bool(out), lambda out: out + 1, lambda out: f"{out}", lambda out: range(out), lambda out: list(out),
])
def test_step_output_used_as_plain_value_is_rejected(misuse) -> None:
    @cv.pipeline
    def p():
        misuse(load(2))

    with pytest.raises(PipelineDefinitionError, match="output of step 'load' is used as a plain value"):
        p.build()


def test_when_records_condition_on_output_item() -> None:
    @cv.pipeline
    def p():
        report = train(load(1))
        with cv.when(report["auc"] >= 0.9):
            train(load(2))

    graph = p.build()
    assert graph.nodes["load"].conditions == ()
    (cond,) = graph.nodes["train_2"].conditions
    assert cond.left == Ref("train", "output", ("auc",))
    assert cond.op == ">=" and cond.right == Const(0.9)
    assert graph.nodes["load_2"].conditions == (cond,)


def test_when_needs_a_runtime_condition() -> None:
    @cv.pipeline
    def p(flag: bool = True):
        with cv.when(flag):
            load(1)

    with pytest.raises(PipelineDefinitionError, match="needs a comparison on a step output"):
        p.build()


def test_multiple_outputs_unpack_and_index_by_name() -> None:
    @cv.pipeline
    def p():
        left, right = halves(load(4))
        train(left)
        train(halves(load(2))["right"])

    g = p.build()
    assert g.nodes["train"].inputs["df"] == Ref("halves", "left")
    assert g.nodes["train_2"].inputs["df"] == Ref("halves_2", "right")


def test_map_marks_mapped_inputs_and_rejects_scalars() -> None:
    @cv.pipeline
    def p():
        data = load(3)
        train.map(C=[0.1, 1.0], df=cv.unmapped(data))

    node = p.build().nodes["train"]
    assert node.map_over == ("C",)
    assert node.inputs["C"] == Const([0.1, 1.0]) and node.inputs["df"] == Ref("load", "output")

    @cv.pipeline
    def bad():
        train.map(df=load(3), C=0.5)

    with pytest.raises(PipelineDefinitionError, match=r"cv.unmapped"):
        bad.build()


def test_parameters_are_checked_and_coerced() -> None:
    @cv.pipeline
    def p(rows: int, C: float = 1.0, fast: bool = False, name: str = "x"):
        load(rows)

    assert p.resolve({"rows": "10", "C": "0.5", "fast": "true"}, from_text=True) == \
        {"rows": 10, "C": 0.5, "fast": True, "name": "x"}
    assert p.resolve({"rows": 3, "C": 2})["C"] == 2.0
    with pytest.raises(ParameterError, match="needs parameter 'rows'"):
        p.resolve({})
    with pytest.raises(ParameterError, match="has no parameter 'row'.*Did you mean 'rows'"):
        p.resolve({"row": 3})
    with pytest.raises(ParameterError, match="'rows' expects int, got 'ten'"):
        p.resolve({"rows": "ten"}, from_text=True)
    with pytest.raises(ParameterError, match="'rows' expects int, got str"):
        p.resolve({"rows": "5"})


def test_step_declaration_errors() -> None:
    with pytest.raises(PipelineDefinitionError, match="retries must be >= 0"):
        cv.step(retries=-1)(lambda: 1)
    with pytest.raises(PipelineDefinitionError, match="retry_on takes exception classes"):
        cv.step(retry_on=["ValueError"])(lambda: 1)


def test_code_hash_ignores_comments_and_docstrings_but_not_logic() -> None:
    from conveyor.dsl.step import normalised_source_hash

    def a(x):
        """Doc."""
        return x + 1  # comment

    def b(x):
        return x + 1

    def c(x):
        return x + 2

    assert normalised_source_hash(a) == normalised_source_hash(b)
    assert normalised_source_hash(b) != normalised_source_hash(c)


def test_step_called_outside_a_pipeline_runs_the_function() -> None:
    assert load(3) == [0, 1, 2]


# --- parameters are checked by their real type ------------------------------------------------------

def _typed_pipeline():
    @cv.step
    def use(x: object) -> object:
        return x

    @cv.pipeline
    def typed(flag: Optional[bool] = None, limit: int | None = None, ids: list[int] = [1],  # noqa: B006, UP007
              weights: dict[str, float] = {}, mode: Literal["fast", "slow"] = "fast",  # noqa: B006
              pair: tuple[int, ...] = ()):
        use(flag)

    return typed


@pytest.mark.parametrize(("given", "expected"), [
    ({"flag": "true"}, {"flag": True}), ({"flag": "none"}, {"flag": None}), ({"flag": "off"}, {"flag": False}),
    ({"limit": "7"}, {"limit": 7}), ({"limit": "null"}, {"limit": None}),
    ({"ids": "[1, 2, 3]"}, {"ids": [1, 2, 3]}), ({"weights": '{"a": 1}'}, {"weights": {"a": 1.0}}),
    ({"mode": "slow"}, {"mode": "slow"}), ({"pair": "[1, 2]"}, {"pair": (1, 2)}),
])
def test_text_parameters_are_coerced_by_their_real_type(given, expected) -> None:
    values = _typed_pipeline().resolve(given, from_text=True)
    assert {k: values[k] for k in expected} == expected
    assert type(values[next(iter(expected))]) is type(next(iter(expected.values())))


@pytest.mark.parametrize(("given", "message"), [
    ({"flag": "maybe"}, "Parameter 'flag' expects bool or None, got 'maybe'. Pass e.g. -p flag=true."),
    ({"limit": "many"}, "Parameter 'limit' expects int or None, got 'many'. Pass e.g. -p limit=10."),
    ({"ids": '["a"]'}, "Parameter 'ids' expects list[int], got '[\"a\"]'. Pass e.g. -p ids=[10,10]."),
    ({"weights": '{"a": "x"}'}, "Parameter 'weights' expects dict[str, float]"),
    ({"mode": "medium"}, "Parameter 'mode' expects one of 'fast', 'slow', got 'medium'"),
])
def test_text_parameters_of_the_wrong_type_name_the_real_type(given, message) -> None:
    with pytest.raises(ParameterError) as err:
        _typed_pipeline().resolve(given, from_text=True)
    assert message in str(err.value)
    assert "Optional" not in str(err.value)


@pytest.mark.parametrize(("given", "message"), [
    ({"flag": 1}, "'flag' expects bool or None, got int 1"),
    ({"limit": True}, "'limit' expects int or None, got bool True"),
    ({"ids": [1, "2"]}, "'ids' expects list[int], got list [1, '2']"),
    ({"ids": (1, 2.5)}, "'ids' expects list[int]"),
])
def test_python_parameters_of_the_wrong_type_are_refused(given, message) -> None:
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace("]", r"\]")):
        _typed_pipeline().resolve(given)


def test_python_parameters_of_the_right_type_pass() -> None:
    values = _typed_pipeline().resolve({"flag": False, "limit": None, "ids": (4, 5), "weights": {"a": 2}})
    assert values["flag"] is False and values["limit"] is None and values["ids"] == [4, 5]
    assert values["weights"] == {"a": 2.0}


# --- after=, hooks and element names are checked when declared ------------------------------------

def test_after_takes_only_step_outputs_and_adds_an_edge() -> None:
    @cv.step
    def ping() -> None:
        return None

    @cv.pipeline
    def ordered():
        a = load(3)
        b = train(a)
        ping(after=[a, b])

    graph = ordered.build()
    assert graph.nodes["ping"].after == ("load", "train") and graph.nodes["ping"].inputs == {}
    assert graph.nodes["ping"].upstream() == {"load", "train"}
    assert "ping" in graph.downstream("train")

    @cv.pipeline
    def wrong():
        ping(after="load")

    with pytest.raises(PipelineDefinitionError, match="after= takes outputs of earlier step calls"):
        wrong.build()


def test_hooks_must_be_callable() -> None:
    with pytest.raises(PipelineDefinitionError, match="on_failure takes a function"):
        cv.step(on_failure="page me")(lambda: None)
    with pytest.raises(PipelineDefinitionError, match="on_success takes a function"):
        cv.pipeline(on_success=42)(lambda: None)


def test_name_by_must_be_a_function_or_a_key() -> None:
    @cv.pipeline
    def bad():
        train.map(df=[[1], [2]], name_by=3)

    with pytest.raises(PipelineDefinitionError, match=r"name_by takes a function of the element"):
        bad.build()


def test_map_takes_after_and_names_zipped_elements_by_a_dict_of_the_mapped_keywords() -> None:
    from conveyor.dsl.fanout import element_labels

    @cv.pipeline
    def sweep():
        data = load(3)
        return train.map(df=[[1], [2]], C=[0.1, 1.0], name_by=lambda e: f"C={e['C']}", after=data)

    node = sweep.build().nodes["train"]
    assert node.after == ("load",) and node.upstream() == {"load"}
    assert element_labels("train", node.name_by, {"df": [[1], [2]], "C": [0.1, 1.0]}) == ["C=0.1", "C=1.0"]
    assert element_labels("train", "C", {"df": [[1], [2]], "C": [0.1, 1.0]}) == ["0.1", "1.0"]
    assert element_labels("train", "name", {"cfg": [{"name": "a"}, {"name": "b"}]}) == ["a", "b"]


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "2"])
def test_max_parallel_must_be_a_whole_number_of_at_least_one(bad: object) -> None:
    @cv.pipeline
    def sweep():
        train.map(df=[[1], [2]], max_parallel=bad)

    with pytest.raises(PipelineDefinitionError, match=r"train\.map\(max_parallel=.*a whole number of 1 or more"):
        sweep.build()


def test_max_parallel_is_kept_on_the_mapped_node() -> None:
    @cv.pipeline
    def sweep():
        train.map(df=[[1], [2], [3]], max_parallel=2)
        train.map(df=[[4]])

    graph = sweep.build()
    assert graph.nodes["train"].max_parallel == 2 and graph.nodes["train_2"].max_parallel is None


def test_preemptible_is_recorded_in_the_spec_and_the_export_plan() -> None:
    from conveyor.export.plan import lower_graph

    @cv.step(preemptible=True)
    def fit(n: int) -> int:
        return n

    @cv.step
    def report(n: int) -> int:
        return n

    @cv.pipeline
    def spot(n: int = 1):
        report(fit(n))

    assert fit.spec.preemptible is True and report.spec.preemptible is False
    tasks = lower_graph(spot.build(n=1), {})
    assert tasks["fit"].preemptible is True and tasks["report"].preemptible is False
    with pytest.raises(PipelineDefinitionError, match="preemptible takes True or False, got str 'yes'"):
        cv.step(preemptible="yes")(lambda: 1)   # type: ignore[arg-type]
