"""A full disk: the Conveyor home on a small tmpfs, filled until a step's output cannot fit.

The home (SQLite metadata and the artifact folder) lives on a 16 MB tmpfs mounted for the test;
a ballast file leaves about 1.5 MB free, and step ``big`` returns 3 MB. Checked: the step fails
with a clear "No space left on device" error that says what to do, the partial object is removed,
the SQLite file passes ``PRAGMA integrity_check`` and the CLI still opens the store, and after the
ballast is deleted (space freed) ``conveyor runs resume`` completes with every artifact whole.
A second test fills the disk to the last block, so that recording the step's failure in SQLite
meets the full disk too: the error says the disk is full (not "check that the server is running"),
the database is intact, and the run resumes once space is freed.

Mounting needs root (CAP_SYS_ADMIN) or password-less sudo (as on CI runners); without either the
tests are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault.harness import (Home, check_artifacts, conveyor, final_outputs, only_run, query, spawn_run,
                                 wait_for)

pytestmark = pytest.mark.slow

BIG = 3 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    # As root, mount directly; elsewhere (a CI runner) through password-less sudo if there is one.
    as_root = [] if os.geteuid() == 0 else ["sudo", "-n"] if shutil.which("sudo") else None
    if as_root is None:
        pytest.fail("The full-disk suite mounts a small tmpfs: run it as root (as CI does) or with "
                    "password-less sudo.")
    done = subprocess.run([*as_root, "mount", "-t", "tmpfs", "-o", "size=16m,mode=1777", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"Cannot mount a tmpfs for the full-disk suite: {done.stderr.strip()}. Run it as root "
                    "on a machine that allows mounts (as CI does).")
    try:
        yield mnt
    finally:
        subprocess.run([*as_root, "umount", "-l", str(mnt)], check=False)


def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_a_full_disk_fails_clearly_keeps_the_store_and_resumes(small_disk: Path) -> None:
    home = Home(small_disk)
    env = home.env(CVFAULT_GATE=str(small_disk / "gate"))
    init = conveyor(home, "init", env=env)
    assert init.returncode == 0, init.stderr
    ballast = small_disk / "ballast"
    with open(ballast, "wb") as fh:                   # leave about 1.5 MB: the run fits, big's output does not
        fh.write(b"\0" * (_free(small_disk) - 1536 * 1024))
    assert 1024 * 1024 < _free(small_disk) < BIG

    proc = spawn_run(home, f"big_size={BIG}", env=env)
    # Let every other output land first, so the one that meets the full disk is big's.
    wait_for(lambda: {"big", "fingerprint"} <= set(home.ledger_counts()) and only_run(home.db) is not None
             and query(home.db, "SELECT 1 FROM step_runs WHERE name='fingerprint' AND status='succeeded'"),
             "the steps before big to finish", proc)
    (small_disk / "gate").write_text("go")
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err                         # the step failed; nothing crashed
    assert "No space left on device while writing an artifact" in err
    assert "Free space there, or set CONVEYOR_ARTIFACT_ROOT" in err and "conveyor runs resume" in err
    assert not list((small_disk / "home" / "artifacts" / "tmp").iterdir())    # the partial object was removed

    conn = sqlite3.connect(home.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    listed = conveyor(home, "runs", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    run = only_run(home.db)
    assert run is not None and run["status"] == "failed"

    ballast.unlink()                                         # free space
    result = conveyor(home, "runs", "resume", run["id"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    after = only_run(home.db)
    assert after is not None and after["status"] == "succeeded"
    ledger = home.ledger_counts()
    assert ledger["big"] == 2 and ledger["summary"] == 1
    assert all(ledger[n] == 1 for n in ("source", "chunk[0]", "join", "fingerprint"))   # not run again
    assert check_artifacts(home.db) == 8            # every output but the inline list of source
    assert len(final_outputs(home.db, run["id"])) == 9


def test_a_disk_too_full_for_the_metadata_fails_clearly_and_resumes(small_disk: Path) -> None:
    home = Home(small_disk)
    env = home.env(CVFAULT_GATE=str(small_disk / "gate"))
    assert conveyor(home, "init", env=env).returncode == 0
    proc = spawn_run(home, env=env)
    wait_for(lambda: {"big", "fingerprint"} <= set(home.ledger_counts()) and only_run(home.db) is not None
             and query(home.db, "SELECT 1 FROM step_runs WHERE name='fingerprint' AND status='succeeded'"),
             "the steps before big to finish", proc)
    ballast = small_disk / "ballast"
    with open(ballast, "wb", buffering=0) as fh:   # every last block: neither big's output nor SQLite fits
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError:
            pass
    (small_disk / "gate").touch()                  # an empty file needs no block
    _out, err = proc.communicate(timeout=120)
    if proc.returncode == 5:     # recording big's failure met the full disk too: the usual case
        assert "could not be written: its disk is full. Free space there" in err, err
        assert "Check that the server is running" not in err
    else:                        # SQLite found room in pages it already had
        assert proc.returncode == 3, err
        assert "No space left on device while writing an artifact" in err, err
    conn = sqlite3.connect(f"file:{home.db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    ballast.unlink()
    run = only_run(home.db)
    assert run is not None and run["status"] != "succeeded"
    result = conveyor(home, "runs", "resume", run["id"], env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert check_artifacts(home.db) == 8
