"""A minimal orchestrator for tests: runs a plan's tasks as an exported definition would.

It schedules exactly what a target's definition says — tasks in dependency order, a gated task
only when every gate its decider emitted is true, one task per fan-out element from the emitted
list — and starts each task as its own ``python -m conveyor step exec`` process with only the
plan's environment, as a container would. It stands in for no target; it tests the entry point.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from conveyor.export.plan import Plan


@dataclass
class Execution:
    """What the orchestrator did: every task's exit code, emitted values and output."""

    codes: dict[str, int] = field(default_factory=dict)
    emits: dict[str, dict] = field(default_factory=dict)
    output: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c == 0 for c in self.codes.values())


def run_plan(plan: Plan, run_id: str, env: dict[str, str], workdir: Path, *, params: dict[str, str] | None = None,
             resume_from: str = "", stop_on_failure: bool = True) -> Execution:
    """Run every task of ``plan`` once (as its target would) and return what happened."""
    ex = Execution()
    base = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    base.update(plan.env)
    base.update(env)
    for task in plan:
        if any(not ex.emits.get(g.decider, {}).get(g.output, False) for g in task.gates) \
                or any(up in ex.skipped for up in task.upstream):
            ex.skipped.append(task.name)
            continue
        if any(ex.codes.get(up, ex.codes.get(f"{up}[0]", 0)) != 0 for up in task.upstream) and stop_on_failure:
            ex.skipped.append(task.name)
            continue
        if task.fan_out is None:
            indices: list[int | None] = [None]
        elif task.fan_out.static is not None:
            indices = list(task.fan_out.static)
        else:
            indices = list(ex.emits[task.fan_out.source][task.fan_out.output])
        for i in indices:
            key = task.name if i is None else f"{task.name}[{i}]"
            out = workdir / f"emit-{run_id}-{key}.json"
            argv = plan.command(task, run_id=run_id, params=params, map_index=None if i is None else str(i),
                                resume_from=resume_from, emit_json=str(out))
            done = subprocess.run([sys.executable, *argv[1:]], env=base, cwd=workdir, capture_output=True,
                                  text=True, timeout=300)
            ex.codes[key] = done.returncode
            ex.output[key] = done.stdout + done.stderr
            ex.emits[task.name] = json.loads(out.read_text()) if out.exists() else {}
    return ex
