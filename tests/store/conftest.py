"""Artifact roots for the object-store conformance suite: a local folder, S3, GCS and Azure Blob.

A test that takes ``artifact_root`` runs once per root. A backend opts in with one entry in
``ROOTS``: the session fixture of its emulator and its URL scheme. Emulators start only when a
test on their root runs, once per session, and always stop.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.store import emulators


# root id -> (emulator fixture, URL scheme); the local folder needs neither.
ROOTS: dict[str, tuple[str | None, str]] = {
    "local": (None, ""),
    "s3": ("s3_emulator", "s3://"),
    "gs": ("gcs_emulator", "gs://"),
    "az": ("azure_emulator", "az://"),
}


@dataclass(frozen=True, slots=True)
class ArtifactRoot:
    """A fresh, empty place on one store: ``url`` as a user writes it, ``bucket`` its first segment.

    ``other`` is a second client of the same store that shares no cache with the code under
    test: what it writes arrives as if from another machine.
    """

    name: str
    url: str
    bucket: str
    other: Any

    def join(self, *parts: str) -> str:
        """The URL of ``parts`` under this root."""
        return "/".join([self.url.rstrip("/"), *parts])

    def path(self, *parts: str) -> str:
        """The same place as the other client names it (no scheme)."""
        return "/".join([self.bucket, *parts])

    def keys(self) -> list[str]:
        """Every object under the root, relative to it."""
        return sorted(p[len(self.bucket) + 1:] for p in self.other.find(self.bucket))


def open_root(name: str, request: pytest.FixtureRequest, tmp_path: Path,
              monkeypatch: pytest.MonkeyPatch) -> ArtifactRoot:
    """A new empty root on store ``name`` (a key of ``ROOTS``), its emulator started and its
    environment set; a test may open several, on one store or on several."""
    import fsspec

    fixture, scheme = ROOTS[name]
    if fixture is None:
        folder = tmp_path / f"store-{uuid.uuid4().hex[:8]}"
        folder.mkdir()
        other = fsspec.filesystem("file", auto_mkdir=True, skip_instance_cache=True)
        return ArtifactRoot("local", str(folder), str(folder), other)
    emulator: emulators.Emulator = request.getfixturevalue(fixture)
    for key, value in emulator.environment.items():
        monkeypatch.setenv(key, value)
    other = fsspec.filesystem(scheme[:-3], skip_instance_cache=True)
    bucket = f"cv-{uuid.uuid4().hex[:12]}"      # valid on all three: lowercase, 3-63 characters
    other.mkdir(bucket)
    return ArtifactRoot(name, scheme + bucket, bucket, other)


@pytest.fixture(params=list(ROOTS))
def artifact_root(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ArtifactRoot:
    """An empty artifact root on each store in turn, the environment set as a user sets it."""
    return open_root(request.param, request, tmp_path, monkeypatch)
