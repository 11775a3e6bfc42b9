"""Plain records read from the metadata store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


def new_artifact_id() -> str:
    """A new random identifier, as the store makes them (16 hex characters)."""
    return _new_id()


def _new_id() -> str:
    import uuid

    return uuid.uuid4().hex[:16]


@dataclass(frozen=True, slots=True)
class StepRunRecord:
    """One execution of one node of a run."""

    id: str
    run_id: str
    name: str
    step: str
    status: str
    attempts: int
    cache_hit: bool
    cache_key: str | None
    started_at: float | None
    ended_at: float | None
    map_index: int | None = None
    cached_from: str | None = None
    error: str | None = None
    traceback: str | None = None
    reason: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return self.ended_at - self.started_at


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run as stored."""

    id: str
    name: str | None
    kind: str
    pipeline_name: str | None
    pipeline_ref: str | None
    status: str
    parameters: dict[str, Any]
    tags: dict[str, Any]
    created_at: float
    started_at: float | None
    ended_at: float | None
    error: str | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    environment_hash: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    pipeline_id: str | None = None


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """An artifact as stored, with where it came from."""

    id: str
    content_hash: str
    materializer: str
    materializer_version: str
    type_name: str | None
    size: int | None
    uri: str | None
    inline: Any
    meta: dict[str, Any]
    name: str | None
    run_id: str | None
    step_run_id: str | None
    created_at: float


@dataclass(frozen=True, slots=True)
class MetricRecord:
    """One logged metric value."""

    key: str
    value: float
    step: int | None
    at: float
    step_run_id: str | None = None


@dataclass(slots=True)
class NewArtifact:
    """An artifact to insert: the store's description plus its output name."""

    name: str
    content_hash: str
    materializer: str
    materializer_version: str
    type_name: str | None
    size: int | None
    uri: str | None
    inline: Any
    meta: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=_new_id)


@dataclass(slots=True)
class StepOutcome:
    """Everything a finished step run writes, in one transaction."""

    status: str
    attempts: int = 1
    cache_hit: bool = False
    cached_from: str | None = None
    error: str | None = None
    traceback: str | None = None
    logs: str | None = None
    reason: str | None = None
    new_outputs: Sequence[NewArtifact] = ()
    reused_outputs: Sequence[tuple[str, str]] = ()        # (output name, existing artifact id)
    inputs: Sequence[tuple[str, str, int | None]] = ()    # (input name, artifact id, list position)
    metrics: Sequence[tuple[str, float, int | None, float]] = ()
    params: Sequence[tuple[str, Any]] = ()
    started_at: float | None = None
    ended_at: float | None = None
    attempt_rows: Sequence[dict[str, Any]] = ()           # step_attempts rows (without ids), one per attempt
    preemptions: int | None = None
