"""SIGKILL of a real ``conveyor run`` at random moments, then ``conveyor runs resume``.

Each trial starts the fault pipeline (a fan-out, a join and two more steps, every output in the
artifact store) in a fresh SQLite home, kills the process with SIGKILL after a seeded random delay
drawn over the measured life of an uninterrupted run, and checks that nothing was lost:

- at the kill: the run is still ``running``; every step recorded as done ran exactly once; every
  recorded artifact's bytes exist and match their hash; no object under ``objects/`` is partial;
- after ``conveyor runs resume``: it exits 0, the run succeeded, no step recorded as done before
  the kill ran again, every artifact is whole, and the outputs' content hashes equal those of an
  uninterrupted run; the run's history reads started, interrupted, resumed, succeeded.

Kills that land after the run ended are counted but not among the 50. Every tenth trial goes
through the installed ``python -m conveyor.cli.main`` entry point; the others fork the same CLI
from the test's warmed-up interpreter, which makes a trial about a second cheaper.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.fault.harness import (PIPELINE, Home, check_artifacts, check_objects, child_output, completed_steps,
                                 conveyor, exit_code, final_outputs, fork_cli, only_run, query, spawn_run,
                                 wait_for)

pytestmark = pytest.mark.slow

SEED = 20261201
TRIALS = 50                 # trials whose kill landed while the run was recorded and unfinished
MAX_ATTEMPTS = 2 * TRIALS   # kills that land after the run ended do not count


def _fresh(template: Path, root: Path) -> Home:
    shutil.copytree(template, root)
    return Home(root)


def test_sigkill_at_random_points_then_resume_loses_nothing(tmp_path: Path) -> None:
    # An initialised home, copied for every trial, so a trial pays for no migration.
    template = Home(tmp_path / "template")
    template.root.mkdir()
    init = conveyor(template, "init")
    assert init.returncode == 0, init.stderr

    # The outputs every trial must end with, and the kill window: how long a run lives from the
    # moment its record appears (measured here, under the same load as the trials).
    lives, expected = [], None
    for i in range(3):
        ref_home = _fresh(template.root, tmp_path / f"reference{i}")
        pid = fork_cli(ref_home, "run", PIPELINE)
        wait_for(lambda: only_run(ref_home.db) is not None, "the run to be recorded")   # noqa: B023
        seen = time.monotonic()
        assert exit_code(pid) == 0, child_output(ref_home)
        lives.append(time.monotonic() - seen)
        ref_run = only_run(ref_home.db)
        assert ref_run is not None and ref_run["status"] == "succeeded"
        outputs = final_outputs(ref_home.db, ref_run["id"])
        assert expected is None or outputs == expected          # the pipeline is deterministic
        expected = outputs
        expected_ledger = ref_home.ledger_counts()
        assert len(expected) == 9 and set(expected_ledger.values()) == {1}     # 4 chunks + 5 steps, once each
    window = sorted(lives)[1]
    print(f"\nkill window {window:.3f}s")
    rng = random.Random(SEED)
    outcome: Counter[str] = Counter()
    completed_at_kill: Counter[int] = Counter()
    trial = leftover_tmp = 0
    while outcome["resumed"] < TRIALS:
        trial += 1
        assert trial <= MAX_ATTEMPTS, f"too few kills landed inside a run: {dict(outcome)}"
        home = _fresh(template.root, tmp_path / f"t{trial}")
        # Every tenth trial goes through the installed entry point; the others fork the same CLI
        # from this warmed-up interpreter (the same code, a real process, a real SIGKILL).
        if trial % 10 == 1:
            proc = spawn_run(home)
            wait_for(lambda: only_run(home.db) is not None, "the run to be recorded", proc)
            time.sleep(rng.uniform(0, window))     # the fault itself: a kill at a random moment
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=60) in (-signal.SIGKILL, 0)   # 0: it finished first
        else:
            pid = fork_cli(home, "run", PIPELINE)
            wait_for(lambda: only_run(home.db) is not None, "the run to be recorded")
            time.sleep(rng.uniform(0, window))
            os.kill(pid, signal.SIGKILL)
            assert exit_code(pid) in (-signal.SIGKILL, 0)

        run = only_run(home.db)
        assert run is not None
        if run["status"] == "succeeded":
            outcome["after the run ended"] += 1
            shutil.rmtree(home.root)
            continue
        assert run["status"] == "running"                      # nobody could mark it
        done_before = completed_steps(home.db, run["id"])
        ledger_before = home.ledger_counts()
        completed_at_kill[len(done_before)] += 1
        for name in done_before:
            assert ledger_before[name] == 1, f"trial {trial}: {name} recorded done but ran {ledger_before[name]}x"
        check_artifacts(home.db)
        leftover_tmp += check_objects(home.root / "home" / "artifacts")[1]

        if trial % 10 == 1:
            result = conveyor(home, "runs", "resume", run["id"])
            assert result.returncode == 0, f"trial {trial}: resume failed:\n{result.stdout}\n{result.stderr}"
        else:
            code = exit_code(fork_cli(home, "runs", "resume", run["id"]))
            assert code == 0, f"trial {trial}: resume failed:\n{child_output(home)}"
        outcome["resumed"] += 1

        after = only_run(home.db)
        assert after is not None and after["status"] == "succeeded"
        ledger_after = home.ledger_counts()
        for name in done_before:     # a step recorded as done before the kill never runs again
            assert ledger_after[name] == 1, f"trial {trial}: completed step {name} ran again"
        assert set(ledger_after) == set(expected_ledger)
        for name, n in ledger_after.items():   # at most one more run: the one the kill interrupted
            assert n <= 2, f"trial {trial}: {name} ran {n} times"
        check_artifacts(home.db)
        check_objects(home.root / "home" / "artifacts")
        assert final_outputs(home.db, run["id"]) == expected, f"trial {trial}: outputs differ"
        kinds = [r["kind"] for r in query(home.db, "SELECT kind FROM run_events WHERE run_id=? ORDER BY id",
                                          run["id"])]
        # the history, and a plan recorded by the start and by the resume (what the dashboard draws)
        assert [k for k in kinds if k != "plan"] == ["started", "interrupted", "resumed", "succeeded"]
        assert kinds.count("plan") in (1, 2)          # the killed start may not have reached its plan
        shutil.rmtree(home.root)

    print(f"\nSIGKILL: {trial} kills, {dict(outcome)}; completed step records at the kill: "
          f"{dict(sorted(completed_at_kill.items()))}; temp files left by killed writes: {leftover_tmp}")
    # The kills must have landed all across the run, not only at its start.
    assert len(completed_at_kill) >= 4, completed_at_kill
