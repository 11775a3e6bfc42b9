"""Files and folders (``pathlib.Path`` values). A folder is a deterministic tar: sorted names, zeroed times."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 1 << 20


def cache_dir() -> Path:
    """Where loaded files and folders are materialised on this machine."""
    return Path(tempfile.gettempdir()) / "conveyor-artifact-cache"


def safe_name(name: str | None, default: str = "artifact") -> str:
    """One plain file name from a name read out of a store: no folders, no ``..``, no leading dot-dirs."""
    base = Path(str(name or "")).name.replace("\\", "_")
    return base if base not in ("", ".", "..") else default


def extract_folder(data: bytes, dest: Path) -> None:
    """Unpack a folder artifact below ``dest``; an archive member that would land outside is refused."""
    from conveyor.errors import ArtifactIntegrityError

    dest.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for member in tar.getmembers():     # check all first: nothing half-unpacked on refusal
                _strict(member, str(dest))
            tar.extractall(dest, filter=_strict)
    except tarfile.FilterError as exc:
        raise ArtifactIntegrityError(
            f"The folder artifact was not unpacked into {dest}: it holds a member that would land outside it or is "
            f"unsafe ({exc}). Conveyor never writes such archives; the artifact was altered.") from None


def _strict(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """tarfile's ``data`` filter, and no absolute or ``..`` names at all (``data`` would quietly re-root them)."""
    parts = Path(member.name.replace("\\", "/")).parts
    if member.name.startswith(("/", "\\")) or ".." in parts:
        raise tarfile.OutsideDestinationError(member, str(Path(dest) / member.name))
    return tarfile.data_filter(member, dest)


def _normalised(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


class PathMaterializer:
    name = "path"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return Path(value).exists()

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        path = Path(value)
        if path.is_file():
            with open(path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    out.write(chunk)
            return {"kind": "file", "name": path.name}
        files = sorted(p for p in path.rglob("*") if p.is_file() or p.is_dir())
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
            for p in files:
                tar.add(p, arcname=str(p.relative_to(path)), recursive=False, filter=_normalised)
        return {"kind": "folder", "name": path.name, "n_files": sum(1 for p in files if p.is_file())}

    def load(self, data: bytes, meta: dict[str, Any]) -> Path:
        key = hashlib.sha256(data).hexdigest()[:32]
        target = cache_dir() / key / safe_name(meta.get("name"))
        if target.exists():
            return target
        staging = Path(tempfile.mkdtemp(dir=_ensure(cache_dir())))
        dest = staging / target.name
        if meta.get("kind") == "file":
            dest.write_bytes(data)
        else:
            extract_folder(data, dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging / target.name, target)
        except OSError:   # another thread got there first
            pass
        return target


def _ensure(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p
