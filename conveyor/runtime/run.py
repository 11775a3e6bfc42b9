"""``Run``: what ``pipeline.run()`` returns and what ``Client.get_run()`` reads back."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from conveyor.errors import NotFound, StepFailed
from conveyor.runtime.slots import MISSING, Slot, stored_from_record
from conveyor.store.metadata import RunRecord, StepRunRecord

if TYPE_CHECKING:
    from conveyor.runtime.client import Client
    from conveyor.runtime.engine import Execution


def iso(ts: float | None) -> str | None:
    """Epoch seconds as an ISO 8601 UTC string."""
    return None if ts is None else dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="milliseconds")


class Run:
    """A pipeline or tracking run: status, parameters, steps, metrics and outputs."""

    def __init__(self, client: Client, record: RunRecord, execution: Execution | None = None) -> None:
        self._client = client
        self.record = record
        self._execution = execution

    def __repr__(self) -> str:
        return f"<Run {self.id} {self.pipeline} {self.status}>"

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def status(self) -> str:
        return self.record.status

    @property
    def pipeline(self) -> str | None:
        return self.record.pipeline_name or self.record.name

    @property
    def parameters(self) -> dict[str, Any]:
        return self.record.parameters

    @property
    def error(self) -> str | None:
        return self.record.error

    @property
    def steps(self) -> dict[str, StepRunRecord]:
        """The latest step run of each node, by node name.

        A fanned-out node is its elements (``train[0]``…) or, when skipped or empty, one record under
        its own name; whichever was recorded last wins, so a resume that runs a once-skipped fan-out
        (or skips a once-run one) shows its current state.
        """
        latest: dict[str, StepRunRecord] = {}
        for s in self._client.metadata.steps.for_run(self.id):
            if s.map_index is not None:
                latest.pop(s.name.partition("[")[0], None)
            else:
                for stale in [k for k in latest if k.startswith(f"{s.name}[")]:
                    del latest[stale]
            latest[s.name] = s
        return latest

    @property
    def metrics(self) -> dict[str, float]:
        """The last value of each metric logged in this run."""
        return self._client.metadata.tracking.latest_metrics(self.id)

    @property
    def params(self) -> dict[str, Any]:
        """Parameters logged with ``cv.log_params`` and the literal inputs of steps."""
        return self._client.metadata.tracking.params(self.id)

    def refresh(self) -> Run:
        self.record = self._client.metadata.runs.get(self.id)
        return self

    def output(self, step: str, name: str | None = None) -> Any:
        """The value a step produced (a mapped step gives the list); ``name`` picks one of several outputs."""
        ex = self._execution
        held = ex.slots.get(step) if ex else None
        if held is None:
            return self._load_output(step, name)
        if isinstance(held, list):
            return [self._client.load(s) for s in held]
        key = self._output_name(step, held, name)
        slot: Slot = held[key]
        if slot.value is MISSING:
            slot.value = self._client.load(slot)
        return slot.value

    def _output_name(self, step: str, outputs: dict[str, Any], name: str | None) -> str:
        if name is None:
            if len(outputs) == 1:
                return next(iter(outputs))
            raise NotFound(f"Step '{step}' has several outputs ({', '.join(outputs)}); name one: "
                           f"run.output('{step}', '{next(iter(outputs))}').")
        if name not in outputs:
            raise NotFound(f"Step '{step}' has no output '{name}'. Its outputs are: {', '.join(outputs)}.")
        return name

    def _load_output(self, step: str, name: str | None) -> Any:
        steps = self.steps
        md = self._client.metadata
        children = sorted((s for s in steps.values() if s.name.startswith(f"{step}[")), key=lambda s: s.map_index or 0)
        if step not in steps and children:
            outs = md.steps.outputs([c.id for c in children])
            return [self._client.load(next(iter(outs[c.id].values()))) for c in children]
        if step not in steps:
            raise NotFound(f"Run {self.id} has no step '{step}'. Its steps are: {', '.join(steps)}.")
        outs = {k: v for k, v in md.steps.outputs([steps[step].id])[steps[step].id].items()
                if not k.startswith("logged/")}
        if not outs and steps[step].status == "succeeded":
            return []   # a fan-out over an empty list: its list of outputs is empty
        if not outs:
            raise NotFound(f"Step '{step}' of run {self.id} has no stored output (status {steps[step].status}).")
        record = outs[self._output_name(step, outs, name)]
        return self._client.load(Slot(record.id, stored_from_record(record)))

    def resume(self, **params: Any) -> Run:
        """Resume this failed or interrupted run, optionally with new parameter values.

        Steps whose inputs change (directly or through a changed upstream output) run again; the
        others are reused. Returns the finished run (raises StepFailed if it fails again).
        """
        return self._client.resume(self.id, params=params or None)

    def raise_for_status(self) -> Run:
        """Raise StepFailed when the run failed; return the run otherwise."""
        if self.status == "failed":
            raise StepFailed(self.error or f"Run {self.id} failed.", run_id=self.id)
        return self

    def to_dict(self, *, steps: bool = True) -> dict[str, Any]:
        """The run as JSON-able data (what ``--json`` prints)."""
        r = self.record
        data: dict[str, Any] = {
            "id": r.id, "name": r.name, "kind": r.kind, "pipeline": self.pipeline, "pipeline_ref": r.pipeline_ref,
            "status": r.status, "created": iso(r.created_at), "started": iso(r.started_at), "ended": iso(r.ended_at),
            "duration_s": None if r.ended_at is None or r.started_at is None else round(r.ended_at - r.started_at, 6),
            "parameters": r.parameters, "tags": r.tags, "error": r.error,
            "git": {"commit": r.git_commit, "dirty": r.git_dirty},
        }
        if steps:
            data["metrics"] = self.metrics
            data["steps"] = [{
                "id": s.id, "name": s.name, "step": s.step, "status": s.status, "attempts": s.attempts,
                "cache_hit": s.cache_hit, "started": iso(s.started_at), "ended": iso(s.ended_at),
                "duration_s": None if s.duration is None else round(s.duration, 6), "error": s.error,
                "reason": s.reason, "map_index": s.map_index,
            } for s in self._client.metadata.steps.for_run(self.id)]
        return data
