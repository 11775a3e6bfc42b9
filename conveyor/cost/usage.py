"""What was used: step attempts' measures, step runs' durations where none were measured, serving CPU.

The readers behind ``cost recommend`` and ``cost report``. Each is a few set-based queries.
``step_attempts`` holds one row per attempt of a step run with what it used (wall and CPU seconds,
peak memory, GPU seconds), except the one attempt of a step run that completed the first time, kept
in the step run's own ``used_*`` columns (``attempt_sources`` gives both); a step run recorded before
those measures existed, or by an executor that does not measure, has neither, and counts by its
duration alone (``measured=False``).
Cache hits and skipped steps used nothing and are left out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, false, func, select

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.serving_usage import UsageRecord
from conveyor.store.metadata.steps import attempt_sources

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

RAN = ("succeeded", "failed", "interrupted", "cancelled", "timeout")


@dataclass(frozen=True, slots=True)
class AttemptUsage:
    """What one attempt of one step used (a step run without measures counts as one attempt)."""

    run_id: str
    step_run_id: str
    pipeline: str
    step: str                     # the declared step name (a mapped node's elements share it)
    started_at: float | None
    wall_s: float
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    gpu_s: float | None = None
    status: str = ""
    measured: bool = True         # False: only the step run's duration is known
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def cores(self) -> float | None:
        """CPU cores used on average during the attempt (CPU seconds per wall second)."""
        if self.cpu_s is None or not self.wall_s:
            return None
        return self.cpu_s / self.wall_s

    @property
    def vcpu_hours(self) -> float:
        """vCPU-hours to charge: at least one core held for the wall time, more if it used more."""
        return max(self.cpu_s or 0.0, self.wall_s) / 3600.0

    @property
    def gpu_hours(self) -> float:
        return (self.gpu_s or 0.0) / 3600.0


def last_runs(metadata: MetadataStore, pipeline: str, n: int) -> list[str]:
    """Ids of the ``n`` newest runs of a pipeline."""
    r = t.runs
    q = (select(r.c.id).where(r.c.kind == "pipeline", r.c.pipeline_name == pipeline)
         .order_by(r.c.created_at.desc()).limit(n))
    with metadata.artifacts.read() as conn:
        return [row.id for row in conn.execute(q)]


def step_usage(metadata: MetadataStore, *, run_ids: Sequence[str] | None = None, since: float | None = None) -> list[AttemptUsage]:
    """Every attempt of the step runs of ``run_ids`` (or of runs started since ``since``), measured or not."""
    a, s, r = t.step_attempts, t.step_runs, t.runs
    pipeline = func.coalesce(r.c.pipeline_name, r.c.name, "")

    def scoped(q: Any) -> Any:
        if run_ids is not None:
            q = q.where(s.c.run_id.in_(list(run_ids)))
        if since is not None:
            q = q.where(func.coalesce(s.c.started_at, r.c.created_at) >= since)
        return q

    measured = [scoped(
        select(*[cols[c] for c in ("run_id", "step_run_id")], pipeline.label("pipeline"), s.c.step,
               *[cols[c] for c in ("started_at", "wall_s", "cpu_s", "peak_rss_bytes", "gpu_s", "status", "ended_at")],
               r.c.tags)
        .select_from(source.join(r, r.c.id == s.c.run_id)).where(*where))
        for cols, source, where in attempt_sources()]   # step_attempts rows, and attempts kept on their step run
    durations = scoped(
        select(s.c.run_id, s.c.id.label("step_run_id"), pipeline.label("pipeline"), s.c.step, s.c.started_at,
               s.c.ended_at, s.c.status, r.c.tags)
        .join(r, r.c.id == s.c.run_id)
        .where(s.c.status.in_(RAN), s.c.cache_hit == false(), s.c.started_at.isnot(None),
               s.c.ended_at.isnot(None), s.c.used_executor.is_(None),
               ~exists().where(a.c.step_run_id == s.c.id)))
    out: list[AttemptUsage] = []
    with metadata.artifacts.read() as conn:
        for row in (row for q in measured for row in conn.execute(q)):
            wall = row.wall_s
            if wall is None and row.started_at is not None and row.ended_at is not None:
                wall = row.ended_at - row.started_at
            out.append(AttemptUsage(row.run_id, row.step_run_id, row.pipeline, row.step, row.started_at,
                                    max(float(wall or 0.0), 0.0), row.cpu_s, row.peak_rss_bytes, row.gpu_s,
                                    row.status, True, dict(row.tags or {})))
        for row in conn.execute(durations):
            out.append(AttemptUsage(row.run_id, row.step_run_id, row.pipeline, row.step, row.started_at,
                                    max(row.ended_at - row.started_at, 0.0), status=row.status, measured=False,
                                    tags=dict(row.tags or {})))
    return out


def serving_usage(metadata: MetadataStore, *, since: float | None = None) -> list[UsageRecord]:
    """The serving periods that ended since ``since`` (all of them when None)."""
    return metadata.serving_usage.periods(since)


def models_by_run(metadata: MetadataStore) -> dict[str, list[str]]:
    """Run id -> the names of the models it registered versions of."""
    mv = t.model_versions
    with metadata.artifacts.read() as conn:
        rows = conn.execute(select(mv.c.run_id, mv.c.model).where(mv.c.run_id.isnot(None)).distinct())
        found: dict[str, list[str]] = {}
        for row in rows:
            found.setdefault(row.run_id, []).append(row.model)
    return {k: sorted(v) for k, v in found.items()}


def endpoint_tags(metadata: MetadataStore) -> dict[str, dict[str, Any]]:
    """Endpoint name -> its tags (an endpoint spec's ``tags``, when it has some)."""
    with metadata.artifacts.read() as conn:
        rows = conn.execute(select(t.endpoints.c.name, t.endpoints.c.spec))
        return {row.name: dict((row.spec or {}).get("tags") or {}) for row in rows}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) by linear interpolation, as NumPy's default; None for no values."""
    data = sorted(values)
    if not data:
        return None
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)
