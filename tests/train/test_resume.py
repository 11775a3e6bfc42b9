"""A study killed with SIGKILL mid-way resumes from the metadata database: no finished trial lost or repeated."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = Path(__file__).with_name("study_script.py")
N_TRIALS = 10


def _complete_trials(url: str) -> list[object]:
    import optuna
    from optuna.trial import TrialState

    from conveyor.train.storage import study_storage

    try:
        study = optuna.load_study(study_name="killed", storage=study_storage(url))
    except KeyError:
        return []
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


@pytest.mark.slow
@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_killed_study_resumes_without_losing_or_repeating_trials(database: str, settings: object,
                                                                  request: pytest.FixtureRequest,
                                                                  tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    from conveyor.runtime.client import Client
    from conveyor.store.metadata import MetadataStore
    from conveyor.train.storage import study_storage

    url = settings.metadata_url if database == "sqlite" else request.getfixturevalue("postgres_url")  # type: ignore[attr-defined]
    env = {**os.environ, "CONVEYOR_METADATA_URL": url, "PYTHONPATH": str(REPO)}
    log = tmp_path / "evaluations.txt"
    cmd = [sys.executable, str(SCRIPT), str(log), str(N_TRIALS)]
    MetadataStore(url).close()   # migrated before the study starts, so the child does not race the test
    study_storage(url)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while len(_complete_trials(url)) < 4:
        assert proc.poll() is None, proc.communicate()[0].decode()[-3000:]
        assert time.monotonic() < deadline, "the study did not finish 4 trials in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = {t.number: dict(t.params) for t in _complete_trials(url)}
    assert 4 <= len(before) < N_TRIALS

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    study = optuna.load_study(study_name="killed", storage=study_storage(url))
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == N_TRIALS                                  # the total is n_trials
    assert {t.number: dict(t.params) for t in complete if t.number in before} == before   # none lost
    evaluated = Counter(int(line.split()[0]) for line in log.read_text().splitlines())
    assert all(evaluated[t.number] == 1 for t in complete)           # none evaluated twice
    # the sampler's state survived the kill: a seeded sampler restarted from scratch would draw
    # the first session's values again
    xs = [t.params["x"] for t in complete]
    assert len(set(xs)) == len(xs)
    # trials the kill left RUNNING were failed, marked, and their parameters evaluated again
    interrupted = [t for t in trials if t.system_attrs.get("conveyor:interrupted")]
    assert all(t.state == TrialState.FAIL for t in interrupted)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    retried = {t.user_attrs["conveyor:retry_of"]: t for t in trials if "conveyor:retry_of" in t.user_attrs}
    assert sorted(retried) == sorted(t.number for t in interrupted)
    for t in interrupted:   # (one killed before its parameters were drawn has none to repeat)
        assert retried[t.number].state == TrialState.COMPLETE
        assert retried[t.number].params == t.params or not t.params
    # each trial is a child run: the finished ones succeeded, the interrupted ones failed
    client = Client(settings, metadata=MetadataStore(url))  # type: ignore[arg-type]
    runs = client.metadata.trials.find("killed")
    statuses = {n: client.metadata.runs.get(r[0]).status for n, r in runs.items()}
    assert all(statuses[t.number] == "succeeded" for t in complete)
    # (a trial killed between being asked for and having its run opened has no run to fail)
    assert all(statuses[t.number] == "failed" for t in interrupted if t.number in statuses)
    client.close()
