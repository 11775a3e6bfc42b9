"""The cache key covers the user's code a step reaches, and nothing else.

Each test builds a small project in tmp_path (a pipeline file plus modules it imports), runs it the
way ``conveyor run flow.py:pipe`` loads it, edits a file and runs it again against the same SQLite
store.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import pytest

from tests.runtime.project import Project


@pytest.fixture
def project(tmp_path: Path, client, monkeypatch: pytest.MonkeyPatch) -> Project:
    monkeypatch.setattr(sys, "dont_write_bytecode", True)   # an edit within one second must not load a stale .pyc
    src = tmp_path / "proj"
    src.mkdir()
    return Project(src, client)


FLOW_DEEP = '''
import conveyor as cv

@cv.step
def load(n: int) -> list:
    return list(range(n))

@cv.step
def train(xs: list) -> float:
    return prepare(xs)

@cv.pipeline
def pipe(n: int = 4):
    train(load(n))

def prepare(xs):
    return sum(scale(x) for x in xs)

def scale(x):
    # a helper two calls below the step, defined after it in the file
    return x * 2
'''


def test_helper_two_calls_deep_below_the_step_misses(project: Project) -> None:
    project.write("flow.py", FLOW_DEEP)
    first = project.run()
    assert first.output("train") == 12
    project.edit("flow.py", "return x * 2", "return x * 3")
    second = project.run()
    assert second.output("train") == 18
    assert project.hits(second) == {"load": True, "train": False}
    assert project.reasons(second) == {"train": "code changed: flow.scale"}


def test_comments_docstrings_and_unreached_code_keep_hits(project: Project) -> None:
    project.write("flow.py", FLOW_DEEP + '''
def unused():
    return "not reached by any step"
''')
    project.write("other.py", "VALUE = 1\n")
    project.edit("flow.py", "import conveyor as cv\n", "import conveyor as cv\nimport other\n")
    project.run()
    project.edit("flow.py", '"not reached by any step"', '"still not reached"')
    project.edit("flow.py", "    return x * 2", '    """Double."""\n    return (x *\n            2)  # same code')
    project.write("other.py", "VALUE = 2\n")
    second = project.run()
    assert project.hits(second) == {"load": True, "train": True}
    project.edit("flow.py", "2)  # same code", "4)")      # the reached helper itself: now a miss
    third = project.run()
    assert project.hits(third) == {"load": True, "train": False}
    assert third.output("train") == 24


def test_helper_in_an_imported_module_misses(project: Project) -> None:
    project.write("helpers.py", '''
        THRESHOLD = 10

        def clean(xs):
            return [x for x in xs if x < THRESHOLD]

        def norm(xs):
            return [x / 2 for x in xs]
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import helpers
        from helpers import norm

        @cv.step
        def cleaned(n: int) -> list:
            return helpers.clean(list(range(n)))

        @cv.step
        def normed(n: int) -> list:
            return norm(list(range(n)))

        @cv.pipeline
        def pipe(n: int = 12):
            cleaned(n)
            normed(n)
    ''')
    project.run()
    project.edit("helpers.py", "x < THRESHOLD]", "x <= THRESHOLD]")
    run = project.run()
    assert project.hits(run) == {"cleaned": False, "normed": True}
    assert project.reasons(run) == {"cleaned": "code changed: helpers.clean"}
    assert run.output("cleaned") == list(range(11))

    project.edit("helpers.py", "THRESHOLD = 10", "THRESHOLD = 5")
    run = project.run()
    assert project.hits(run) == {"cleaned": False, "normed": True}
    assert project.reasons(run) == {"cleaned": "code changed: helpers.THRESHOLD"}

    project.edit("helpers.py", "x / 2", "x / 4")
    run = project.run()
    assert project.hits(run) == {"cleaned": True, "normed": False}
    assert project.reasons(run) == {"normed": "code changed: helpers.norm"}


def test_class_method_change_misses(project: Project) -> None:
    project.write("model.py", '''
        class Base:
            def offset(self):
                return 1

        class Scaler(Base):
            def __init__(self, k):
                self.k = k

            def apply(self, xs):
                return [x * self.k + self.offset() for x in xs]
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        from model import Scaler

        @cv.step
        def scaled(n: int) -> list:
            return Scaler(2).apply(list(range(n)))

        @cv.pipeline
        def pipe(n: int = 3):
            scaled(n)
    ''')
    assert project.run().output("scaled") == [1, 3, 5]
    project.edit("model.py", "return 1", "return 0")        # a method of a base class, reached through Scaler
    run = project.run()
    assert run.output("scaled") == [0, 2, 4]
    assert project.reasons(run) == {"scaled": "code changed: model.Base"}
    project.edit("model.py", "x * self.k", "x * self.k * 10")
    run = project.run()
    assert project.reasons(run) == {"scaled": "code changed: model.Scaler"}


def test_mutual_recursion_terminates_and_is_covered(project: Project) -> None:
    project.write("flow.py", '''
        import conveyor as cv

        def is_even(n):
            return True if n == 0 else is_odd(n - 1)

        def is_odd(n):
            return False if n == 0 else is_even(n - 1)

        @cv.step
        def parity(n: int) -> bool:
            return is_even(n)

        @cv.pipeline
        def pipe(n: int = 4):
            parity(n)
    ''')
    project.run()
    assert project.hits(project.run()) == {"parity": True}
    project.edit("flow.py", "return False if n == 0", "return (n < 0) if n == 0")
    run = project.run()
    assert project.reasons(run) == {"parity": "code changed: flow.is_odd"}


def test_decorators_closures_and_default_arguments_are_followed(project: Project) -> None:
    project.write("helpers.py", '''
        import functools

        def logged(fn):
            @functools.wraps(fn)
            def wrapper(*args):
                return fn(*args)
            return wrapper

        @logged
        def double(x):
            return x * 2

        def make_adder(k):
            def add(x):
                return x + offset(k)
            return add

        def offset(k):
            return k

        def triple(x):
            return x * 3
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import helpers

        ADD = helpers.make_adder(1)

        @cv.step
        def wrapped(x: int) -> int:
            return helpers.double(x)

        @cv.step
        def closed(x: int) -> int:
            return ADD(x)

        @cv.step
        def defaulted(x: int, fn=helpers.triple) -> int:
            return fn(x)

        @cv.pipeline
        def pipe(x: int = 2):
            wrapped(x)
            closed(x)
            defaulted(x)
    ''')
    project.run()
    project.edit("helpers.py", "return x * 2", "return x * 20")      # inside a decorated function
    project.edit("helpers.py", "return k\n", "return k + 1\n")        # reached through a closure cell
    project.edit("helpers.py", "return x * 3", "return x * 30")      # a default argument
    run = project.run()
    assert project.hits(run) == {"wrapped": False, "closed": False, "defaulted": False}
    reasons = project.reasons(run)
    assert reasons["wrapped"] == "code changed: helpers.double"
    assert reasons["closed"] == "code changed: helpers.offset"
    assert reasons["defaulted"] == "code changed: helpers.triple"
    assert (run.output("wrapped"), run.output("closed"), run.output("defaulted")) == (40, 4, 60)


def test_third_party_and_conveyor_code_are_not_part_of_the_key(project: Project) -> None:
    from conveyor.runtime.code_hash import is_user_file, reached_code

    project.write("flow.py", '''
        import json
        import logging
        import conveyor as cv
        import numpy as np

        log = logging.getLogger("flow")

        @cv.step
        def stats(n: int) -> str:
            log.info("stats")
            cv.log_metric("n", n)
            return json.dumps({"mean": float(np.mean(list(range(n))))})

        @cv.pipeline
        def pipe(n: int = 3):
            stats(n)
    ''')
    from conveyor.runtime.loader import load_pipeline

    pipe = load_pipeline(f"{project.root / 'flow.py'}:pipe")
    fn = next(iter(pipe.build(n=3).nodes.values())).spec.fn
    assert set(reached_code(fn).parts) == {"flow.stats", "flow.log"}
    assert is_user_file(str(project.root / "flow.py"))
    assert not is_user_file(json.__file__)
    import numpy
    import conveyor

    assert not is_user_file(numpy.__file__)
    assert not is_user_file(conveyor.__file__)
    assert not is_user_file("/somewhere/venv/lib/python3.12/site-packages/pkg/mod.py")
    assert not is_user_file("/usr/lib/python3/dist-packages/pkg/mod.py")
    project.forget()


def test_a_value_that_cannot_be_fingerprinted_is_logged(project: Project,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    project.write("flow.py", '''
        import threading
        import conveyor as cv

        GUARD = threading.Lock()

        @cv.step
        def guarded(n: int) -> int:
            with GUARD:
                return n

        @cv.pipeline
        def pipe(n: int = 3):
            guarded(n)
    ''')
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        project.run()
    messages = [r.getMessage() for r in caplog.records if r.name == "conveyor.cache"]
    assert any("step 'guarded'" in m and "flow.GUARD" in m and "cannot be fingerprinted" in m for m in messages)


@pytest.mark.slow
def test_cli_explains_each_miss(tmp_path: Path) -> None:
    """`conveyor run --explain-cache`, `runs show` and their --json name the changed function."""
    import os
    import subprocess

    from tests.conftest import REPO

    (tmp_path / "helpers.py").write_text("def clean(xs):\n    return [x for x in xs if x > 0]\n")
    (tmp_path / "flow.py").write_text('''
import conveyor as cv
import helpers

@cv.step
def load(n: int) -> list:
    return list(range(-n, n))

@cv.step
def train(xs: list) -> int:
    return len(helpers.clean(xs))

@cv.pipeline
def pipe(n: int = 3):
    train(load(n))
''')
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"), COLUMNS="200", PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", *args], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    first = json.loads(cli("run", "flow.py:pipe", "--json"))
    assert {s["name"]: s["cache_miss"] for s in first["steps"]} == {
        "load": "no earlier run of this step", "train": "no earlier run of this step"}
    (tmp_path / "helpers.py").write_text("def clean(xs):\n    return [x for x in xs if x >= 0]\n")
    out = cli("run", "flow.py:pipe", "--explain-cache")
    assert "train: code changed: helpers.clean" in out
    assert "load:" not in out                      # load hit the cache: nothing to explain
    run_id = json.loads(cli("runs", "list", "--json"))[0]["id"]
    assert "train: code changed: helpers.clean" in cli("runs", "show", run_id)
    shown = json.loads(cli("runs", "show", run_id, "--json"))
    assert {s["name"]: s["cache_miss"] for s in shown["steps"]} == {"load": None,
                                                                   "train": "code changed: helpers.clean"}
    assert {s["name"]: s["cache_hit"] for s in shown["steps"]} == {"load": True, "train": False}


def test_imports_inside_the_step_and_array_constants_are_covered(project: Project) -> None:
    project.write("pkg/__init__.py", "")
    project.write("pkg/features.py", '''
        import numpy as np

        WEIGHTS = np.array([1.0, 2.0])

        def weigh(xs):
            return float(np.dot(xs, WEIGHTS))
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import pkg.features

        @cv.step
        def scored(a: float, b: float) -> float:
            from pkg.features import weigh
            return weigh([a, b])

        @cv.step
        def direct(a: float) -> float:
            return float(pkg.features.WEIGHTS[0] * a)

        @cv.pipeline
        def pipe(a: float = 1.0, b: float = 1.0):
            scored(a, b)
            direct(a)
    ''')
    assert project.run().output("scored") == 3.0
    project.edit("pkg/features.py", "np.array([1.0, 2.0])", "np.array([1.0, 3.0])")
    run = project.run()
    assert run.output("scored") == 4.0
    assert project.reasons(run) == {"scored": "code changed: pkg.features.WEIGHTS",
                                    "direct": "code changed: pkg.features.WEIGHTS"}
    project.edit("pkg/features.py", "np.dot(xs, WEIGHTS)", "np.dot(WEIGHTS, xs)")
    run = project.run()
    assert project.hits(run) == {"scored": False, "direct": True}
    assert project.reasons(run) == {"scored": "code changed: pkg.features.weigh"}


def test_code_without_source_is_hashed_by_bytecode_and_said_so(project: Project,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    project.write("flow.py", '''
        import conveyor as cv

        namespace = {}
        exec("def generated(x):\\n    return x + 1\\n", globals())

        @cv.step
        def uses_generated(x: int) -> int:
            return generated(x)

        @cv.pipeline
        def pipe(x: int = 1):
            uses_generated(x)
    ''')
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        project.run()
    assert any("flow.generated" in r.getMessage() and "bytecode" in r.getMessage() for r in caplog.records)
    assert project.hits(project.run()) == {"uses_generated": True}
    project.edit("flow.py", "return x + 1", "return x + 2")
    run = project.run()
    assert run.output("uses_generated") == 3
    assert project.reasons(run) == {"uses_generated": "code changed: flow.generated"}


def test_two_closures_and_two_lambdas_of_one_name_are_both_covered(project: Project) -> None:
    project.write("flow.py", '''
        import conveyor as cv

        def make(k):
            def add(x):
                return x + k
            return add

        ADD_A, ADD_B = make(1), make(10)
        TWICE, THRICE = (lambda x: x * 2), (lambda x: x * 3)

        @cv.step
        def combined(x: int) -> int:
            return ADD_A(x) + ADD_B(x) + TWICE(x) + THRICE(x)

        @cv.pipeline
        def pipe(x: int = 1):
            combined(x)
    ''')
    assert project.run().output("combined") == 2 + 11 + 2 + 3
    project.edit("flow.py", "make(1), make(10)", "make(1), make(20)")
    run = project.run()
    assert run.output("combined") == 2 + 21 + 2 + 3
    assert project.hits(run) == {"combined": False}
    project.edit("flow.py", "x * 3)", "x * 4)")
    run = project.run()
    assert run.output("combined") == 2 + 21 + 2 + 4
    assert project.hits(run) == {"combined": False}
    assert project.hits(project.run()) == {"combined": True}


def test_a_step_outside_the_users_code_still_hashes_its_own_body() -> None:
    from conveyor.examples.quickstart import train
    from conveyor.runtime.code_hash import reached_code

    parts = reached_code(train.spec.fn, step="train").parts
    assert list(parts) == ["conveyor.examples.quickstart.train"]   # its own body; Conveyor's helpers are not followed


def test_lookups_by_computed_name_are_covered_or_said(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    project.write("ops.py", '''
        def add(x):
            return x + 1

        def sub(x):
            return x - 1
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import ops

        @cv.step
        def by_name(op: str, x: int) -> int:
            return getattr(ops, op)(x)

        @cv.step
        def by_constant(x: int) -> int:
            return getattr(ops, "sub")(x)

        @cv.step
        def evaluated(expr: str) -> int:
            return eval(expr)

        @cv.pipeline
        def pipe(op: str = "add", x: int = 1):
            by_name(op, x)
            by_constant(x)
            evaluated("1 + 1")
    ''')
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        project.run()
    assert any("step 'evaluated'" in r.getMessage() and "eval()" in r.getMessage() for r in caplog.records)
    project.edit("ops.py", "return x + 1", "return x + 2")
    run = project.run()
    assert project.hits(run) == {"by_name": False, "by_constant": True, "evaluated": True}
    assert project.reasons(run) == {"by_name": "code changed: ops (whole module), ops.add"}
    project.edit("ops.py", "return x - 1", "return x - 2")
    run = project.run()
    assert project.hits(run) == {"by_name": False, "by_constant": False, "evaluated": True}
    assert project.reasons(run)["by_constant"] == "code changed: ops.sub"


def test_a_class_named_only_in_a_parameter_annotation_is_covered(project: Project) -> None:
    project.write("model.py", '''
        class Doubler:
            def predict(self, x):
                return x * 2
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import model

        @cv.step
        def build() -> "model.Doubler":
            return model.Doubler()

        @cv.step
        def score(m: "model.Doubler") -> int:
            return m.predict(1)

        @cv.pipeline
        def pipe():
            score(build())
    ''')
    assert project.run().output("score") == 2
    project.edit("model.py", "x * 2", "x * 3")
    run = project.run()
    # the new Doubler pickles to the same bytes; only the annotation tells the cache that score runs its code
    assert run.output("score") == 3
    assert project.reasons(run) == {"build": "code changed: model.Doubler", "score": "code changed: model.Doubler"}


def test_code_too_deep_to_analyse_is_never_reused(project: Project, caplog: pytest.LogCaptureFixture) -> None:
    chain = "\n".join(f"def f{i}(x):\n    return f{i + 1}(x)\n" for i in range(600)) + "\ndef f600(x):\n    return x\n"
    project.write("flow.py", "import conveyor as cv\n\n" + chain + '''
@cv.step
def deep(x: int) -> int:
    return f0(x)

@cv.pipeline
def pipe(x: int = 1):
    deep(x)
''')
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        assert project.run().output("deep") == 1
    assert any("nested too deeply" in r.getMessage() for r in caplog.records)
    assert project.hits(project.run()) == {"deep": False}


def test_a_file_edited_after_import_hashes_the_loaded_code(project: Project,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """A long-lived process (a notebook) runs the code it imported: the key must be that code's, not the file's."""
    from conveyor.runtime.code_hash import reached_code
    from conveyor.runtime.loader import load_pipeline

    project.write("helpers.py", '''
        from __future__ import annotations

        def clean(xs: list[int]) -> list[int]:
            def keep(x: int) -> bool:
                return x > 0
            return [x for x in xs if keep(x)]

        class Box:
            def size(self, xs):
                return len(xs)
    ''')
    project.write("flow.py", '''
        import conveyor as cv
        import helpers

        @cv.step
        def cleaned(xs: list) -> int:
            return helpers.Box().size(helpers.clean(xs))

        @cv.pipeline
        def pipe():
            cleaned([1, -1])
    ''')
    project.forget()
    pipe = load_pipeline(f"{project.root / 'flow.py'}:pipe")
    fn = next(iter(pipe.build().nodes.values())).spec.fn
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        fresh = reached_code(fn, step="fresh-check")
    assert not [r for r in caplog.records if r.name == "conveyor.cache"]    # unedited: read from source, quietly
    project.edit("helpers.py", "x > 0", "x >= 0")
    project.edit("helpers.py", "len(xs)", "len(xs) * 2")
    with caplog.at_level(logging.WARNING, logger="conveyor.cache"):
        stale = reached_code(fn, step="stale-check")
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "helpers.clean" in messages and "changed after it was imported" in messages
    assert "helpers.Box" in messages
    assert stale.parts["helpers.clean"] != fresh.parts["helpers.clean"]
    project.forget()
    pipe = load_pipeline(f"{project.root / 'flow.py'}:pipe")       # a new process would see the edit
    edited = reached_code(next(iter(pipe.build().nodes.values())).spec.fn, step="fresh-check")
    assert edited.parts["helpers.clean"] not in (fresh.parts["helpers.clean"], stale.parts["helpers.clean"])
    project.forget()
