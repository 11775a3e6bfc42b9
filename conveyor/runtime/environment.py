"""The environment a run executes in: Python, platform, packages and the git commit."""

from __future__ import annotations

import functools
import os
import platform
import re
import stat
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@functools.cache
def python_environment() -> dict[str, Any]:
    """Python, platform and installed distributions (computed once per process)."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": dict(sorted(installed_distributions().items())),
    }


def installed_distributions() -> dict[str, str]:
    """name -> version of every distribution on ``sys.path``, the first found winning (as imports do).

    Read from the ``<name>-<version>.dist-info`` folder names, which the wheel specification
    makes exact, so no metadata file is parsed: parsing them all cost most of an exported task's
    start-up. Only ``.egg-info`` folders, whose names may lack the version, are read.
    """
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as folder:
                names = sorted(e.name for e in folder if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:
            continue
        for name in names:
            stem, _, kind = name.rpartition(".")
            dist, sep, version = stem.partition("-")
            if kind == "egg-info":
                dist, version = _egg_info(os.path.join(entry or ".", name), dist)
            elif not sep:
                continue
            if dist and version:
                found.setdefault(dist.lower().replace("_", "-"), version)
    return found


def _egg_info(path: str, fallback: str) -> tuple[str, str]:
    from importlib.metadata import PathDistribution

    meta = PathDistribution(Path(path)).metadata
    return (meta.get("Name") or fallback), (meta.get("Version") or "")


def git_state(folder: str) -> tuple[str | None, bool | None]:
    """(commit, dirty) of the git checkout holding ``folder``, or (None, None) outside one.

    Every call reads the state as it is now (the dirty state changes while a process runs
    pipelines), but cheaply: the commit is read from the repository's files (HEAD, loose refs,
    packed-refs; linked worktrees too), and ``git status`` runs only when something it looks at
    may have changed since its last answer (see ``_dirty``). A layout this reader does not know
    (environment overrides, reftable, core.worktree, another owner, a filesystem boundary) is
    asked of ``git`` itself.
    """
    try:
        repo = _find_repo(Path(folder))
    except OSError:
        repo = None
    if repo is None:
        return _git_state_by_subprocess(folder)
    if repo is _NO_REPO:
        return None, None
    try:
        commit = _read_head(repo)
    except (OSError, UnicodeDecodeError, ValueError):
        commit = None
    if commit is None:   # an unborn branch, or refs this reader cannot follow: git decides
        return _git_state_by_subprocess(folder)
    dirty = _dirty(repo, commit, folder)
    return (commit, dirty) if dirty is not None else (None, None)


def _git_state_by_subprocess(folder: str) -> tuple[str | None, bool | None]:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=5)
        if commit.returncode != 0:
            return None, None
        dirty = _status_dirty(folder)
        return (commit.stdout.strip(), dirty) if dirty is not None else (None, None)
    except (OSError, subprocess.SubprocessError):
        return None, None


def _status_dirty(folder: str) -> bool | None:
    """Whether tracked files differ from HEAD (staged or not), by ``git status``; None if it fails."""
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(status.stdout.strip()) if status.returncode == 0 else None


# --- reading a repository's files -----------------------------------------------------------------

# Variables that move or reshape the repository git finds: with any of them set, git is asked.
_GIT_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
            "GIT_CEILING_DIRECTORIES", "GIT_DISCOVERY_ACROSS_FILESYSTEM", "GIT_CONFIG", "GIT_CONFIG_GLOBAL",
            "GIT_CONFIG_SYSTEM", "GIT_CONFIG_COUNT", "GIT_CONFIG_PARAMETERS")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class _Repo:
    root: Path       # the work tree's top folder
    git_dir: Path    # its own git folder (a linked worktree's is under the common one's worktrees/)
    common: Path     # the folder holding refs, packed-refs, objects and config


_NO_REPO = _Repo(Path(), Path(), Path())   # no .git up to the root: outside any checkout


def _find_repo(start: Path) -> _Repo | None:
    """The checkout holding ``start``, _NO_REPO outside one, or None when git must be asked."""
    if any(name in os.environ for name in _GIT_ENV):
        return None
    here = os.path.realpath(start)
    device = os.stat(here).st_dev
    while True:
        dot = os.path.join(here, ".git")
        try:
            st = os.stat(dot)
        except FileNotFoundError:
            st = None
        if st is not None:
            return _repo_at(Path(here), Path(dot), st)
        parent = os.path.dirname(here)
        if parent == here:
            return _NO_REPO
        if os.stat(parent).st_dev != device:   # git stops at a filesystem boundary
            return None
        here = parent


def _repo_at(root: Path, dot: Path, st: os.stat_result) -> _Repo | None:
    if stat.S_ISDIR(st.st_mode):
        git_dir = dot
    elif stat.S_ISREG(st.st_mode):
        text = dot.read_text().strip()
        if not text.startswith("gitdir:"):
            return None
        git_dir = (root / text[len("gitdir:"):].strip()).resolve()
    else:
        return None
    common = git_dir
    link = git_dir / "commondir"
    if link.exists():
        common = (git_dir / link.read_text().strip()).resolve()
    uid = os.geteuid() if hasattr(os, "geteuid") else None
    if (uid is not None and (os.stat(root).st_uid != uid or os.stat(git_dir).st_uid != uid)) \
            or (common / "reftable").exists() or not (git_dir / "HEAD").is_file():
        return None   # safe.directory, the reftable format, a bare or broken folder: git's to judge
    config = _read(common / "config")
    if config is None or re.search(r"^\s*(worktree|bare\s*=\s*true)", config, re.M | re.I):
        return None
    return _Repo(root, git_dir, common)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except FileNotFoundError:
        return None


def _is_hash(text: str) -> bool:
    return len(text) in (40, 64) and set(text) <= _HEX


def _read_head(repo: _Repo) -> str | None:
    """The commit HEAD names, following symbolic refs, loose refs and packed-refs; None if unknown."""
    text = (repo.git_dir / "HEAD").read_text().strip()
    for _ in range(8):   # symbolic refs may chain; git stops at 5
        if _is_hash(text):
            return text
        if not text.startswith("ref:"):
            return None
        ref = text[4:].strip()
        if not ref.startswith("refs/") or ".." in ref:
            return None
        found = _read(repo.git_dir / ref)   # per-worktree refs first, then the shared ones
        if found is None and repo.common != repo.git_dir:
            found = _read(repo.common / ref)
        if found is None:
            found = _packed_ref(repo.common, ref)
        if found is None:
            return None
        text = found.strip()
    return None


def _packed_ref(common: Path, ref: str) -> str | None:
    packed = _read(common / "packed-refs")
    if packed is None:
        return None
    for line in packed.splitlines():
        if line[:1] in ("#", "^", ""):
            continue
        value, _, name = line.partition(" ")
        if name.strip() == ref:
            return value
    return None


# --- the dirty state, by git status when what it reads may have changed ---------------------------

RACY_S = 2.0   # a file changed this close to a snapshot may change again unseen (coarse timestamps)
MAX_TRACKED = 20_000   # beyond this many tracked files, comparing them costs what git status does
_status_cache: dict[Path, tuple[tuple[Any, ...], bool]] = {}
_status_lock = threading.Lock()


def _dirty(repo: _Repo, commit: str, folder: str) -> bool | None:
    """``git status``'s answer, reused while nothing it reads has changed.

    Its answer depends on HEAD, the index and the tracked files; while the commit, the index's and
    config's stat data and every tracked file's stat data (mtime, ctime, size, inode, mode) are what
    they were around the last ``git status``, its answer stands. A snapshot holding a file changed
    within RACY_S of it is not reused (a second change within a coarse timestamp would look the
    same), nor one that changed while git status ran.
    """
    before = _safe_snapshot(repo, commit)
    if before is not None:
        with _status_lock:
            known = _status_cache.get(repo.git_dir)
        if known is not None and known[0] == before:
            return known[1]
    dirty = _status_dirty(folder)
    if dirty is None or before is None:
        return dirty
    after = _safe_snapshot(repo, commit)
    if after == before:
        with _status_lock:
            if len(_status_cache) > 64:
                _status_cache.clear()
            _status_cache[repo.git_dir] = (after, dirty)
    return dirty


def _safe_snapshot(repo: _Repo, commit: str) -> tuple[Any, ...] | None:
    try:
        return _snapshot(repo, commit)
    except (OSError, ValueError):   # an unreadable file or folder: git status answers every time
        return None


def _snapshot(repo: _Repo, commit: str) -> tuple[Any, ...] | None:
    """What git status reads, as stat data; None when it cannot be compared safely."""
    racy = time.time_ns() - int(RACY_S * 1e9)
    index = repo.git_dir / "index"
    try:
        ist = _stat_key(os.stat(index))
        paths = _tracked(repo, index, ist, len(commit) // 2)
    except FileNotFoundError:
        return None
    if paths is None or ist[0] >= racy or ist[1] >= racy:
        return None
    lstat = os.lstat
    files: list[Any] = []
    add = files.append
    for path in paths:
        try:
            st = lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            add(None)
            continue
        if st.st_mtime_ns >= racy or st.st_ctime_ns >= racy:
            return None
        add((st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode))
    return (commit, ist, _stat_of(repo.common / "config"), _stat_of(repo.git_dir / "config.worktree"), *files)


_tracked_cache: dict[Path, tuple[tuple[int, ...], list[str] | None]] = {}


def _tracked(repo: _Repo, index: Path, ist: tuple[int, ...], hash_len: int) -> list[str] | None:
    """The absolute paths of the index's entries (parsed again only when the index file changed)."""
    known = _tracked_cache.get(repo.git_dir)
    if known is not None and known[0] == ist:
        return known[1]
    with open(index, "rb") as fh:
        data = fh.read()
        if _stat_key(os.fstat(fh.fileno())) != ist:   # rewritten meanwhile: next time
            return None
    names = _index_paths(data, hash_len)
    root = str(repo.root)
    paths = None if names is None else [f"{root}/{name}" for name in names]
    if len(_tracked_cache) > 64:
        _tracked_cache.clear()
    _tracked_cache[repo.git_dir] = (ist, paths)
    return paths


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode)


def _stat_of(path: Path) -> tuple[int, int, int, int, int] | None:
    try:
        return _stat_key(os.stat(path))
    except FileNotFoundError:
        return None


def _index_paths(data: bytes, hash_len: int) -> list[str] | None:
    """The tracked paths of a version 2 or 3 index; None for other versions, a split index, a
    submodule (its own changes are not in these files) or anything unexpected."""
    if len(data) < 12 or data[:4] != b"DIRC":
        return None
    version, count = struct.unpack(">II", data[4:12])
    if version not in (2, 3) or count > MAX_TRACKED:
        return None
    paths = []
    pos = 12
    try:
        for _ in range(count):
            mode = struct.unpack_from(">I", data, pos + 24)[0]
            if mode & 0o170000 == 0o160000:   # a gitlink: a submodule
                return None
            flags_at = pos + 40 + hash_len
            flags = struct.unpack_from(">H", data, flags_at)[0]
            name_at = flags_at + 2 + (2 if flags & 0x4000 else 0)
            end = data.index(b"\0", name_at)
            paths.append(data[name_at:end].decode("utf-8", "surrogateescape"))
            pos += (end - pos + 8) & ~7   # entries are padded with 1 to 8 NULs to a multiple of 8
    except (struct.error, ValueError):
        return None
    if data[pos:pos + 4] == b"link":   # split index: the entries live in a shared file too
        return None
    return paths
