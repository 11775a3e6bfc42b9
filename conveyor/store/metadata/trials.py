"""Tuning trials as child runs: one transaction to open a trial's run, one to close it.

A trial's run is an ordinary run (kind ``trial``) named ``<study>#<number>``, tagged with its
study, number and parent run; ``pid``/``host`` say which process runs it, and ``options``
carries the study's sampler as it was after this trial was asked (restored on resume).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import insert, select, update

from conveyor.store.metadata import tables as t
from conveyor.store.metadata.base import Repository, new_id, now
from conveyor.store.metadata.records import StepOutcome
from conveyor.store.metadata.runs import TERMINAL
from conveyor.store.metadata.steps import write_finish


def trial_run_name(study: str, number: int) -> str:
    """The run name of a study's trial."""
    return f"{study}#{number}"


class Trials(Repository):
    """Writes and finds the runs of tuning trials."""

    def open(self, *, study: str, number: int, parent_run_id: str, parent_step_run_id: str | None,
             parameters: dict[str, Any], pid: int, host: str, sampler: str | None,
             sampler_at: float | None = None) -> str:
        """Insert a running trial run with its ``started`` event; its id."""
        run_id = new_id()
        ts = now()
        tags = {"study": study, "trial": str(number), "parent_run": parent_run_id}
        if parent_step_run_id:
            tags["parent_step_run"] = parent_step_run_id
        with self.write() as conn:
            conn.execute(insert(t.runs).values(
                id=run_id, name=trial_run_name(study, number), kind="trial", status="running",
                parameters=parameters, tags=tags, options={"sampler": sampler, "sampler_at": sampler_at} if sampler else {}, pid=pid,
                host=host, created_at=ts, started_at=ts))
            conn.execute(insert(t.run_events).values(run_id=run_id, at=ts, kind="started", detail=None))
        return run_id

    def close(self, run_id: str, outcome: StepOutcome, *, status: str, error: str | None = None,
              event: str | None = None) -> None:
        """Record the trial's step run (values, curve, model) and end its run, atomically."""
        ts = now()
        sid = new_id()
        with self.write() as conn:
            conn.execute(insert(t.step_runs).values(id=sid, run_id=run_id, name="trial", step="trial",
                                                    status="running", attempts=0, cache_hit=False, started_at=ts))
            write_finish(conn, sid, run_id, outcome)
            values: dict[str, Any] = {"status": status, "ended_at": ts if status in TERMINAL else None, "error": error}
            conn.execute(update(t.runs).where(t.runs.c.id == run_id).values(**values))
            conn.execute(insert(t.run_events).values(run_id=run_id, at=ts, kind=event or status, detail=error))

    def find(self, study: str, numbers: list[int] | None = None) -> dict[int, tuple[str, int | None, str | None]]:
        """The runs of a study's trials: number -> (run id, pid, host); the latest run when a number has several."""
        q = select(t.runs.c.id, t.runs.c.name, t.runs.c.pid, t.runs.c.host).where(
            t.runs.c.kind == "trial", t.runs.c.name.like(f"{_escaped(study)}#%", escape="\\")).order_by(
            t.runs.c.created_at)
        if numbers is not None:
            q = q.where(t.runs.c.name.in_([trial_run_name(study, n) for n in numbers]))
        out: dict[int, tuple[str, int | None, str | None]] = {}
        with self.read() as conn:
            for row in conn.execute(q):
                tail = row.name[len(study) + 1:]
                if tail.isdigit():
                    out[int(tail)] = (row.id, row.pid, row.host)
        return out

    def unfinished(self, study: str) -> list[tuple[int, str, int | None, str | None]]:
        """Trial runs of a study still marked running: (number, run id, pid, host)."""
        with self.read() as conn:
            rows = conn.execute(select(t.runs.c.id, t.runs.c.name, t.runs.c.pid, t.runs.c.host).where(
                t.runs.c.kind == "trial", t.runs.c.status == "running",
                t.runs.c.name.like(f"{_escaped(study)}#%", escape="\\"))).all()
        tails = [(r, r.name[len(study) + 1:]) for r in rows]
        return [(int(tail), r.id, r.pid, r.host) for r, tail in tails if tail.isdigit()]

    def latest_sampler(self, study: str) -> str | None:
        """The sampler saved last (by when it was pickled, not when its run was written) for the study."""
        with self.read() as conn:
            rows = conn.execute(select(t.runs.c.options).where(
                t.runs.c.kind == "trial", t.runs.c.name.like(f"{_escaped(study)}#%", escape="\\"))).all()
        saved = [(o.get("sampler_at") or 0.0, o["sampler"]) for o in (r.options or {} for r in rows) if o.get("sampler")]
        return max(saved, key=lambda item: item[0])[1] if saved else None


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
