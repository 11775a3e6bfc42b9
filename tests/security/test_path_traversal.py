"""Artifact export and loading write only below their destination, whatever a planted artifact says."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from conveyor.errors import ArtifactIntegrityError
from conveyor.store.artifacts.hashing import digest
from conveyor.store.artifacts.materializers.path_value import cache_dir, safe_name
from conveyor.store.artifacts.store import ArtifactStore, StoredArtifact
from conveyor.store.metadata import NewArtifact, StepOutcome
from tests.conftest import REPO


def _tar(members: dict[str, bytes], link: tuple[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tar.addfile(info)
    return buf.getvalue()


def _plant(store: ArtifactStore, data: bytes, meta: dict[str, Any]) -> StoredArtifact:
    """Bytes written straight into the store with a matching hash, as someone with write access could."""
    h = digest(data)
    path = Path(store._object_path(h))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return StoredArtifact(content_hash=h, materializer="path", materializer_version="1", type_name="pathlib.PosixPath",
                          size=len(data), uri=store.uri_of(str(path)), meta=meta)


ESCAPES = {"dotdot": ({"../escaped.txt": b"x"}, None), "absolute": ({"/tmp/conveyor-abs-escape.txt": b"x"}, None),
           "link": ({}, ("innocent", "../../../../etc"))}


@pytest.mark.parametrize("kind", sorted(ESCAPES))
def test_a_folder_artifact_that_escapes_is_refused_on_export_and_load(tmp_path: Path, kind: str) -> None:
    members, link = ESCAPES[kind]
    store = ArtifactStore(str(tmp_path / "artifacts"))
    stored = _plant(store, _tar({"ok.txt": b"fine", **members}, link), {"kind": "folder", "name": "data"})
    dest = tmp_path / "out" / "data"
    with pytest.raises(ArtifactIntegrityError, match="would land outside it or is unsafe"):
        store.export(stored, dest)
    with pytest.raises(ArtifactIntegrityError, match="would land outside it or is unsafe"):
        store.get(stored)
    assert not (tmp_path / "out" / "escaped.txt").exists() and not Path("/tmp/conveyor-abs-escape.txt").exists()
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))
    assert not (dest / "ok.txt").exists()              # nothing half-unpacked


def test_a_planted_name_cannot_move_a_loaded_file_out_of_the_cache(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "artifacts"))
    payload = os.urandom(16)
    stored = _plant(store, payload, {"kind": "file", "name": "../../../../tmp/conveyor-planted"})
    loaded = store.get(stored)
    assert loaded.read_bytes() == payload
    assert cache_dir() in loaded.parents and loaded.name == "conveyor-planted"
    assert [safe_name(n) for n in ("..", "", "a/../b", "/etc/passwd", "x\\..\\y")] == \
        ["artifact", "artifact", "b", "passwd", "x_.._y"]


@pytest.mark.slow
def test_conveyor_artifacts_export_refuses_an_escaping_archive(client, tmp_path: Path) -> None:
    store = client.artifacts
    stored = _plant(store, _tar({"../../escaped-by-cli.txt": b"x"}), {"kind": "folder", "name": "data"})
    run_id = client.metadata.runs.create(kind="tracking", name="planted")
    art = NewArtifact(name="data", content_hash=stored.content_hash, materializer="path", materializer_version="1",
                      type_name=stored.type_name, size=stored.size, uri=stored.uri, inline=None, meta=stored.meta)
    client.metadata.steps.record(run_id, "plant", "plant", StepOutcome(status="succeeded", new_outputs=[art]))
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(CONVEYOR_HOME=str(client.settings.home),
               PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    (tmp_path / "work").mkdir()
    proc = subprocess.run([sys.executable, "-m", "conveyor.cli.main", "artifacts", "export", art.id, "-o", "out"],
                          cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 4, proc.stderr
    assert "would land outside it" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "escaped-by-cli.txt").exists() and not (tmp_path / "work" / "escaped-by-cli.txt").exists()
