"""The ``conveyor`` command, run as a user runs it: a real process in a fresh folder.

The processes start from a warm interpreter (``tests/warm_cli.py``); ``TESTS_COLD_CLI=1`` starts
each one cold, as a shell does. Ctrl-C is sent to a cold ``python -m conveyor.cli.main``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PIPELINE = '''
import conveyor as cv

@cv.step
def make(rows: int, scale: float) -> list:
    print(f"making {rows} rows")
    return [i * scale for i in range(rows)]

@cv.step
def total(xs: list) -> float:
    cv.log_metric("total", sum(xs))
    return sum(xs)

@cv.step
def explode(x: float, fail: bool) -> float:
    if fail:
        raise RuntimeError("exploded on purpose")
    return x

@cv.pipeline
def demo(rows: int = 5, scale: float = 1.0, fail: bool = False):
    explode(total(make(rows, scale)), fail)
'''


@pytest.fixture
def cli(tmp_path: Path, warm_cli):
    """``conveyor ARGS`` in a real process (forked warm: ``tests/warm_cli.py``), on a home of its own."""
    (tmp_path / "flow.py").write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"), COLUMNS="200",
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))

    def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = warm_cli.run(args, cwd=tmp_path, env=env, timeout=120)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    return run


def test_run_coerces_parameters_and_prints_json(cli) -> None:
    out = cli("run", "flow.py:demo", "-p", "rows=4", "-p", "scale=0.5", "--json")
    run = json.loads(out.stdout)
    assert run["status"] == "succeeded" and run["pipeline"] == "demo"
    assert run["parameters"] == {"rows": 4, "scale": 0.5, "fail": False}
    assert {"id", "started", "ended", "steps"} <= set(run)
    assert [s["name"] for s in run["steps"]] == ["make", "total", "explode"]
    assert run["metrics"] == {"total": 3.0}


def test_list_show_logs_compare_delete(cli) -> None:
    first = json.loads(cli("run", "flow.py:demo", "--json").stdout)["id"]
    second = json.loads(cli("run", "flow.py:demo", "-p", "rows=6", "--json").stdout)["id"]
    listed = json.loads(cli("runs", "list", "--json").stdout)
    assert [r["id"] for r in listed] == [second, first]
    shown = json.loads(cli("runs", "show", first, "--json").stdout)
    assert [e["kind"] for e in shown["events"]] == ["started", "succeeded"]
    assert {o["step"] for o in shown["outputs"]} == {"make", "total", "explode"}
    logs = cli("runs", "logs", first, "--step", "make").stdout
    assert "making 5 rows" in logs
    attempts = {a["name"]: a for a in shown["attempts"]}          # what each step attempt used
    assert set(attempts) == {"make", "total", "explode"} and attempts["make"]["status"] == "completed"
    assert attempts["make"]["cpu_s"] is not None and attempts["make"]["bytes_written"] > 0
    text = cli("runs", "show", first).stdout
    assert "Resources per attempt (thread)" in text and "peak RSS" in text and "MiB" in text
    compared = json.loads(cli("runs", "compare", first, second, "--json").stdout)
    assert [c["metrics"]["total"] for c in compared] == [10.0, 15.0]
    assert compared[0]["resources"]["make"]["attempts"] == 1 and compared[1]["resources"]["make"]["peak_rss_bytes"] > 0
    table = cli("runs", "compare", first, second).stdout
    assert "param  rows" in table and "step   make CPU" in table and "step   make peak RSS" in table
    cli("runs", "delete", first, "--yes")
    assert [r["id"] for r in json.loads(cli("runs", "list", "--json").stdout)] == [second]


def test_second_run_is_cached_and_no_cache_reruns(cli) -> None:
    cli("run", "flow.py:demo")
    again = json.loads(cli("run", "flow.py:demo", "--json").stdout)
    assert all(s["cache_hit"] for s in again["steps"])
    fresh = json.loads(cli("run", "flow.py:demo", "--no-cache", "--json").stdout)
    assert not any(s["cache_hit"] for s in fresh["steps"])


def test_failed_step_exits_nonzero_with_resume_hint_and_no_engine_traceback(cli) -> None:
    proc = cli("run", "flow.py:demo", "-p", "fail=true", ok=False)
    assert proc.returncode == 3
    assert "Step 'explode' failed" in proc.stderr and "exploded on purpose" in proc.stderr
    assert "conveyor runs resume" in proc.stderr
    assert "conveyor/runtime" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["-p", "rows=ten"], "Parameter 'rows' expects int, got 'ten'"),
    (["-p", "row=3"], "Did you mean 'rows'?"),
    (["-p", "rows"], "is not key=value"),
])
def test_bad_parameters_are_clear_errors(cli, args: list[str], message: str) -> None:
    proc = cli("run", "flow.py:demo", *args, ok=False)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_unknown_pipeline_and_run(cli) -> None:
    proc = cli("run", "flow.py:nope", ok=False)
    assert "Pipelines there: demo" in proc.stderr
    proc = cli("runs", "show", "deadbeef", ok=False)
    assert proc.returncode == 6 and "No run 'deadbeef'" in proc.stderr


def test_artifacts_show_get_and_lineage(cli, tmp_path: Path) -> None:
    run_id = json.loads(cli("run", "flow.py:demo", "-p", "rows=3", "--json").stdout)["id"]
    outputs = {o["step"]: o["artifact"] for o in json.loads(cli("runs", "show", run_id, "--json").stdout)["outputs"]}
    shown = json.loads(cli("artifacts", "show", outputs["total"], "--json").stdout)
    assert shown["materializer"].startswith("json") and shown["run_id"] == run_id
    cli("artifacts", "get", outputs["make"], "-o", str(tmp_path / "make.json"))
    assert json.loads((tmp_path / "make.json").read_text()) == [0.0, 1.0, 2.0]
    tree = json.loads(cli("lineage", outputs["total"], "--json").stdout)
    assert tree["upstream"][0]["step"] == "total"
    assert tree["upstream"][0]["artifacts"][0]["steps"][0]["step"] == "make"
    assert tree["downstream"][0]["step"] == "explode"
    assert "made by" in cli("lineage", outputs["total"]).stdout


def test_init_creates_the_home(cli, tmp_path: Path) -> None:
    out = cli("init").stdout
    assert "Ready." in out and (tmp_path / "home" / "metadata.db").exists()


@pytest.mark.slow
def test_quickstart_runs_then_reruns_cached(cli) -> None:
    first = cli("quickstart")
    assert "succeeded" in first.stdout and "publish" in first.stdout
    second = cli("quickstart")
    assert "Cached re-run" in second.stdout


SLOW = '''
import time
from pathlib import Path
import conveyor as cv

@cv.step
def first(marker: str) -> int:
    return 1

@cv.step
def hang(x: int, marker: str) -> int:
    Path(marker).write_text("in")
    time.sleep(60)
    return x

@cv.pipeline
def slow(marker: str):
    hang(first(marker), marker)
'''


def test_ctrl_c_cancels_the_run(cli, tmp_path: Path) -> None:
    import signal
    import time

    (tmp_path / "slow.py").write_text(SLOW)
    marker = tmp_path / "in"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-m", "conveyor.cli.main", "run", "slow.py:slow", "-p",
                             f"marker={marker}"], cwd=tmp_path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "cancelled" in err
    (run,) = json.loads(cli("runs", "list", "--json").stdout)
    assert run["status"] == "cancelled"
    steps = {s["name"]: s["status"] for s in json.loads(cli("runs", "show", run["id"], "--json").stdout)["steps"]}
    assert steps == {"first": "succeeded", "hang": "cancelled"}


# --- usage errors through the installed entry point: one message, exit 2, no traceback -------------

ENTRY = Path(sys.executable).parent / "conveyor"


@pytest.fixture
def entry(tmp_path: Path, warm_cli):
    """The installed entry point's script, run in a real process forked warm, with no terminal on stdin."""
    assert ENTRY.exists(), f"the installed entry point {ENTRY} is missing; run `make dev`"
    (tmp_path / "flow.py").write_text(PIPELINE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(tmp_path / "home"), COLUMNS="200")

    def run(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return warm_cli.run(args, cwd=tmp_path, env={**env, **(extra_env or {})}, script=ENTRY, timeout=120)

    return run


@pytest.mark.parametrize(("args", "message"), [
    (["runs", "resume", "abc123", "-p"], "Option '-p' requires an argument"),
    (["runs", "resume", "abc123", "--bogus"], "No such option: --bogus"),
    (["frobnicate"], "No such command 'frobnicate'"),
    (["serve", "--port", "abc"], "Invalid value for '--port'"),
    (["keys", "create", "--rate-limit", "abc"], "Invalid value for '--rate-limit'"),
    (["endpoints", "create", "api"], "Missing option '--model'"),
    (["runs", "show"], "Missing argument 'run_id'"),
])
def test_usage_errors_are_one_message_with_a_usage_hint_and_exit_2(entry, args, message) -> None:
    proc = entry(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    assert message in proc.stderr
    assert "Usage: conveyor" in proc.stderr and "--help" in proc.stderr


def test_a_confirmation_without_a_terminal_aborts_with_the_fix(entry) -> None:
    proc = entry("models", "delete", "churn:1")          # stdin is not a terminal: the prompt reads EOF
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "Unexpected error" not in proc.stderr
    assert "Aborted; nothing was changed. There is no terminal to confirm on: pass --yes" in proc.stderr


@pytest.mark.parametrize(("source", "expected"), [
    ("import conveyor as cv\n\ndef broken(:\n    pass\n", ["bad.py, line 3", "SyntaxError", "def broken(:"]),
    ("import conveyor as cv\nimport not_a_real_module_xyz\n",
     ["bad.py, line 2", "No module named 'not_a_real_module_xyz'", "Install 'not_a_real_module_xyz'"]),
    ("import conveyor as cv\nVALUE = 1 / 0\n", ["bad.py, line 2", "ZeroDivisionError: division by zero"]),
    ("import json\njson.loads('{')\n", ["bad.py, line 2", "JSONDecodeError"]),   # raised in a library: the user's line
    ("import conveyor as cv\n\n@cv.step(retries=-1)\ndef a() -> int:\n    return 1\n",
     ["bad.py, line 3", "Step 'a': retries must be >= 0"]),
])
def test_a_pipeline_file_that_does_not_import_names_file_line_and_error(entry, tmp_path, source, expected) -> None:
    (tmp_path / "bad.py").write_text(source)
    proc = entry("run", "bad.py:flow")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for text in expected:
        assert text in proc.stderr


def test_debug_flag_and_setting_show_the_traceback(entry, tmp_path) -> None:
    (tmp_path / "bad.py").write_text("import conveyor as cv\nVALUE = 1 / 0\n")
    for args, extra in ((["--debug", "run", "bad.py:flow"], None), (["run", "bad.py:flow"], {"CONVEYOR_DEBUG": "1"})):
        proc = entry(*args, extra_env=extra)
        assert proc.returncode == 2
        assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
    proc = entry("--debug", "runs", "resume", "abc123", "--bogus")
    assert proc.returncode == 2 and "No such option: --bogus" in proc.stderr


def test_only_installed_executors_are_advertised_and_unknown_ones_are_clear(entry) -> None:
    from conveyor.executors import registry

    names = registry.available()     # thread, process, and the distributed ones installed here
    help_text = entry("run", "--help").stdout
    assert " or ".join(names) in " ".join(help_text.replace("│", " ").split())
    proc = entry("run", "flow.py:demo", "--executor", "nosuch")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert f"Executor 'nosuch' is not known. Use one of: {', '.join(names)}." in proc.stderr


def test_resume_takes_new_parameters_on_the_command_line(entry) -> None:
    proc = entry("run", "flow.py:demo", "-p", "fail=true", "--json")
    assert proc.returncode == 3
    run_id = json.loads(proc.stdout)["id"]
    proc = entry("runs", "resume", run_id, "-p", "fail=false")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shown = json.loads(entry("runs", "show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["parameters"]["fail"] is False
    ran = {s["name"]: s["status"] for s in shown["steps"]}
    assert ran["explode"] == "succeeded"
    assert [s["status"] for s in shown["steps"] if s["name"] == "make"] == ["succeeded"]   # reused, not re-run


def test_skipped_reason_is_shown_by_runs_show(entry, tmp_path) -> None:
    (tmp_path / "cond.py").write_text(
        "import conveyor as cv\n\n@cv.step\ndef score() -> float:\n    return 0.5\n\n"
        "@cv.step\ndef publish(s: float) -> str:\n    return 'published'\n\n"
        "@cv.pipeline\ndef gated():\n    s = score()\n    with cv.when(s >= 0.9):\n        publish(s)\n")
    proc = entry("run", "cond.py:gated")
    assert proc.returncode == 0, proc.stderr
    assert "condition not met: score.output >= 0.9 (value 0.5)" in proc.stdout
    run_id = json.loads(entry("runs", "list", "--json").stdout)[0]["id"]
    shown = entry("runs", "show", run_id).stdout
    assert "skipped" in shown and "condition not met: score.output >= 0.9 (value 0.5)" in shown
