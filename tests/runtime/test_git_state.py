"""The git state a run records (commit, dirty), read from the repository's files, against real repositories."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conveyor.runtime import environment
from conveyor.runtime.environment import git_state

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c", "commit.gpgsign=false"]


def git(repo: Path, *args: str) -> str:
    return subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


def by_git(folder: Path) -> tuple[str | None, bool | None]:
    """What git itself answers (the reference)."""
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True)
    if head.returncode != 0:
        return None, None
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                            capture_output=True, text=True, check=True)
    return head.stdout.strip(), bool(status.stdout.strip())


@pytest.fixture()
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in environment._GIT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(environment, "RACY_S", 0.05)   # so that answers are reused within a test
    environment._status_cache.clear()
    root = tmp_path / "project"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "flow.py").write_text("x = 1\n")
    (root / "README").write_text("hello\n")
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def settle() -> None:
    time.sleep(0.1)   # past RACY_S, so the snapshot may be reused


class CountingRun:
    """subprocess.run, counted."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.real = subprocess.run

    def __call__(self, args, *a, **kw):
        self.calls.append(list(args))
        return self.real(args, *a, **kw)


def test_outside_any_checkout_there_is_no_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment._GIT_ENV:
        monkeypatch.delenv(name, raising=False)
    assert by_git(tmp_path) == (None, None), "pytest's temporary folder must lie outside any git checkout"
    assert git_state(str(tmp_path)) == (None, None)


def test_a_clean_checkout_names_its_commit_from_any_subfolder(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    assert git_state(str(repo)) == (head, False) == by_git(repo)
    assert git_state(str(repo / "pkg")) == (head, False)


def test_a_modified_staged_or_deleted_file_makes_it_dirty_and_a_commit_clean_again(repo: Path) -> None:
    settle()
    assert git_state(str(repo))[1] is False
    settle()
    assert git_state(str(repo))[1] is False   # reused
    (repo / "pkg" / "flow.py").write_text("x = 2\n")   # same size: only the timestamps differ
    assert git_state(str(repo)) == by_git(repo) and git_state(str(repo))[1] is True
    git(repo, "add", "pkg/flow.py")
    settle()
    assert git_state(str(repo)) == by_git(repo) and git_state(str(repo))[1] is True
    git(repo, "commit", "-q", "-m", "second")
    settle()
    head = git(repo, "rev-parse", "HEAD")
    assert git_state(str(repo)) == (head, False) == by_git(repo)
    (repo / "README").unlink()
    assert git_state(str(repo)) == (head, True) == by_git(repo)
    git(repo, "checkout", "-q", "--", "README")
    settle()
    assert git_state(str(repo)) == (head, False)


def test_a_file_changed_after_a_reused_answer_is_seen(repo: Path) -> None:
    settle()
    assert git_state(str(repo))[1] is False
    settle()
    assert git_state(str(repo))[1] is False
    flow = repo / "pkg" / "flow.py"
    stat = flow.stat()
    flow.write_text("x = 3\n")
    os.utime(flow, ns=(stat.st_atime_ns, stat.st_mtime_ns))   # the old mtime back: the change is in ctime
    settle()
    assert git_state(str(repo)) == by_git(repo) and git_state(str(repo))[1] is True


def test_untracked_files_do_not_make_it_dirty(repo: Path) -> None:
    (repo / "notes.txt").write_text("scratch\n")
    assert git_state(str(repo))[1] is False == by_git(repo)[1]


def test_a_new_file_staged_makes_it_dirty(repo: Path) -> None:
    settle()
    assert git_state(str(repo))[1] is False
    (repo / "notes.txt").write_text("scratch\n")
    git(repo, "add", "notes.txt")
    assert git_state(str(repo)) == by_git(repo) and git_state(str(repo))[1] is True


def test_a_sha256_repository_names_its_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment._GIT_ENV:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "long"
    made = subprocess.run(["git", "init", "-q", "--object-format=sha256", str(root)], capture_output=True, text=True)
    assert made.returncode == 0, f"git 2.29 or later makes sha256 repositories: {made.stderr}"
    (root / "a").write_text("a\n")
    git(root, "add", "a")
    git(root, "commit", "-q", "-m", "first")
    head = git(root, "rev-parse", "HEAD")
    assert len(head) == 64 and git_state(str(root)) == (head, False) == by_git(root)
    (root / "a").write_text("b\n")
    assert git_state(str(root)) == (head, True)


def test_git_status_runs_again_only_when_something_changed(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = time.time() - 10   # git compares whole seconds: files of this second make it rewrite the index each time
    for path in ("README", "pkg/flow.py"):
        os.utime(repo / path, (old, old))
    settle()
    counting = CountingRun()
    monkeypatch.setattr(subprocess, "run", counting)
    first = git_state(str(repo))
    assert [c for c in counting.calls if "status" in c]   # the first answer comes from git status
    settle()   # which may have refreshed the index: the next answer is taken again
    assert git_state(str(repo)) == first
    counting.calls.clear()
    for _ in range(3):
        assert git_state(str(repo)) == first
    assert counting.calls == []   # no git process while nothing changed
    (repo / "README").write_text("changed\n")
    assert git_state(str(repo))[1] is True
    assert [c for c in counting.calls if "status" in c]


def test_a_detached_head_names_its_commit(repo: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    (repo / "README").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "checkout", "-q", "--detach", first)
    assert (repo / ".git" / "HEAD").read_text().strip() == first
    assert git_state(str(repo)) == (first, False) == by_git(repo)


def test_packed_refs_are_read(repo: Path) -> None:
    head = git(repo, "rev-parse", "HEAD")
    git(repo, "pack-refs", "--all")
    assert not (repo / ".git" / "refs" / "heads" / "main").exists()
    assert git_state(str(repo)) == (head, False) == by_git(repo)
    (repo / "README").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")   # a loose ref again, newer than the packed one
    assert git_state(str(repo)) == (git(repo, "rev-parse", "HEAD"), False) == by_git(repo)


def test_a_linked_worktree_has_its_own_head_and_dirty_state(repo: Path, tmp_path: Path) -> None:
    first = git(repo, "rev-parse", "HEAD")
    other = tmp_path / "other"
    git(repo, "worktree", "add", "-q", "-b", "side", str(other))
    (other / "README").write_text("side\n")
    git(other, "commit", "-q", "-am", "on side")
    side = git(other, "rev-parse", "HEAD")
    assert (other / ".git").is_file()
    assert git_state(str(other)) == (side, False) == by_git(other)
    assert git_state(str(repo)) == (first, False)
    (other / "pkg" / "flow.py").write_text("x = 9\n")
    assert git_state(str(other)) == (side, True) == by_git(other)
    assert git_state(str(repo)) == (first, False) == by_git(repo)
    git(repo, "pack-refs", "--all")
    assert git_state(str(other)) == (side, True)


def test_a_repository_without_commits_has_no_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in environment._GIT_ENV:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "empty"
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    assert git_state(str(root)) == (None, None) == by_git(root)


def test_an_override_in_the_environment_is_left_to_git(repo: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.setenv("GIT_DIR", str(repo / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(repo))
    assert git_state(str(elsewhere)) == (git(repo, "rev-parse", "HEAD"), False)


def test_an_unreadable_folder_in_the_checkout_leaves_the_answer_to_git(repo: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def refused(path, *a, **kw):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(environment.os, "lstat", refused)
    (repo / "README").write_text("changed\n")
    assert git_state(str(repo)) == (git(repo, "rev-parse", "HEAD"), True)
