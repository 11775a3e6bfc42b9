"""Right-sizing: what each step asks for, what it used over its last runs, and what to ask for instead.

Used is read from the steps' attempts (``usage.step_usage``): CPU cores are CPU seconds per wall
second, averaged over the attempts (``mean``) and at their highest (``peak``); memory is the 95th
percentile of the attempts' peak resident set. The recommendation adds ``headroom`` (default 25 %)
above the peak cores and the p95 memory, rounded up to half a core and 256 MiB, and names the
cheapest instance type per cloud in the price table that holds it. A step whose runs carry no
measures (recorded before they existed, or by an executor that does not measure) keeps its
request, and says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from conveyor.cost.prices import PriceTable, round_up
from conveyor.cost.usage import AttemptUsage, last_runs, percentile, step_usage

if TYPE_CHECKING:
    from conveyor.store.metadata import MetadataStore

GIB = 1 << 30
MEMORY_STEP = 256 << 20
CPU_STEP = 0.5


@dataclass(frozen=True, slots=True)
class Resources:
    """CPUs, memory in bytes and GPUs; None where not said."""

    cpus: float | None = None
    memory_bytes: int | None = None
    gpus: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "memory_bytes": self.memory_bytes, "gpus": self.gpus}


@dataclass(frozen=True, slots=True)
class StepRecommendation:
    """One step: asked, used over its last runs, recommended, and the smallest instance per cloud."""

    step: str
    runs: int
    attempts: int
    measured: int                       # attempts with resource measures
    requested: Resources
    mean_cores: float | None
    peak_cores: float | None
    p95_memory_bytes: int | None
    peak_memory_bytes: int | None
    p95_wall_s: float | None
    recommended: Resources
    instances: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    note: str = ""
    in_pipeline: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "runs": self.runs, "attempts": self.attempts, "measured": self.measured,
                "requested": self.requested.to_dict(),
                "used": {"mean_cores": self.mean_cores, "peak_cores": self.peak_cores,
                         "p95_memory_bytes": self.p95_memory_bytes, "peak_memory_bytes": self.peak_memory_bytes,
                         "p95_wall_s": self.p95_wall_s},
                "recommended": self.recommended.to_dict(), "instances": self.instances, "note": self.note,
                "in_pipeline": self.in_pipeline}


def requested_resources(spec: Any) -> Resources:
    """What ``@step(cpus=, memory=, gpus=)`` asks for."""
    from conveyor.errors import ExportError
    from conveyor.export.plan import parse_memory

    memory = None
    if spec.memory is not None:
        try:
            memory = parse_memory(spec.memory, spec.name)
        except ExportError:
            memory = None
    return Resources(float(spec.cpus) if spec.cpus is not None else None, memory,
                     int(spec.gpus) if spec.gpus is not None else None)


def pipeline_steps(pipeline: Any) -> dict[str, Any]:
    """Declared step name -> spec, for the steps a pipeline calls (its graph with default parameters,
    or, when some parameter has no default, every step its module defines)."""
    from conveyor.dsl.step import Step
    from conveyor.errors import ConveyorError

    try:
        graph = pipeline.build()
        return {node.spec.name: node.spec for node in graph.nodes.values()}
    except ConveyorError:
        found = [v.spec for v in pipeline.fn.__globals__.values() if isinstance(v, Step)]
        return {spec.name: spec for spec in found}


def recommend_step(name: str, requested: Resources, attempts: Sequence[AttemptUsage], prices: PriceTable,
                   *, headroom: float = 0.25) -> StepRecommendation:
    """The recommendation for one step from its attempts."""
    measured = [a for a in attempts if a.measured]
    cores = [c for a in measured if (c := a.cores) is not None]
    rss = [float(a.peak_rss_bytes) for a in measured if a.peak_rss_bytes is not None]
    gpu = [a.gpu_s / a.wall_s for a in measured if a.gpu_s is not None and a.wall_s]
    walls = [a.wall_s for a in attempts]
    cpu_total = sum(a.cpu_s or 0.0 for a in measured if a.cpu_s is not None)
    wall_total = sum(a.wall_s for a in measured if a.cpu_s is not None)
    mean_cores = cpu_total / wall_total if wall_total else None
    peak_cores = max(cores) if cores else None
    p95_rss = percentile(rss, 95)
    notes: list[str] = []
    if not attempts:
        notes.append("no runs of this step yet")
    elif not measured:
        notes.append("durations only (no resource measures recorded): keep the request")
    cpus = round_up(peak_cores * (1 + headroom), CPU_STEP) if peak_cores is not None else requested.cpus
    memory = int(round_up(p95_rss * (1 + headroom), MEMORY_STEP)) if p95_rss is not None else requested.memory_bytes
    gpus = math.ceil(max(gpu) - 1e-9) if gpu and max(gpu) > 0 else requested.gpus
    rec = Resources(cpus, memory, gpus)
    if requested.cpus is not None and cpus is not None and measured:
        if requested.cpus >= 2 * cpus:
            notes.append(f"over-provisioned CPU: asks {requested.cpus:g}, peak use {peak_cores or 0:.2f}")
        elif peak_cores is not None and peak_cores > requested.cpus * 1.05:
            notes.append(f"under-provisioned CPU: asks {requested.cpus:g}, peak use {peak_cores:.2f}")
    if requested.memory_bytes is not None and memory is not None and p95_rss is not None:
        if requested.memory_bytes >= 2 * memory:
            notes.append(f"over-provisioned memory: asks {requested.memory_bytes / GIB:.1f} GiB, "
                         f"p95 use {p95_rss / GIB:.2f} GiB")
        elif p95_rss > requested.memory_bytes:
            notes.append(f"under-provisioned memory: asks {requested.memory_bytes / GIB:.1f} GiB, "
                         f"p95 use {p95_rss / GIB:.2f} GiB")
    fit_cpus, fit_mem, fit_gpus = cpus or 1.0, (memory or 0) / GIB, gpus or 0
    instances: dict[str, dict[str, Any] | None] = {}
    for cloud, table in prices.clouds.items():
        best = table.smallest_fit(fit_cpus, fit_mem, fit_gpus)
        instances[cloud] = None if best is None else {"name": best.name, "vcpus": best.vcpus,
                                                      "memory_gib": best.memory_gib, "gpus": best.gpus,
                                                      "on_demand": best.on_demand, "spot": best.spot}
    return StepRecommendation(
        step=name, runs=len({a.run_id for a in attempts}), attempts=len(attempts), measured=len(measured),
        requested=requested, mean_cores=mean_cores, peak_cores=peak_cores,
        p95_memory_bytes=int(p95_rss) if p95_rss is not None else None,
        peak_memory_bytes=int(max(rss)) if rss else None, p95_wall_s=percentile(walls, 95),
        recommended=rec, instances=instances, note="; ".join(notes))


def recommend(pipeline: Any, metadata: MetadataStore, prices: PriceTable, *, last: int = 20,
              headroom: float = 0.25) -> tuple[list[StepRecommendation], list[str]]:
    """Per step of ``pipeline``: the recommendation over its last ``last`` runs; and those run ids."""
    specs = pipeline_steps(pipeline)
    run_ids = last_runs(metadata, pipeline.name, last)
    by_step: dict[str, list[AttemptUsage]] = {}
    for attempt in step_usage(metadata, run_ids=run_ids) if run_ids else []:
        by_step.setdefault(attempt.step, []).append(attempt)
    out = [recommend_step(name, requested_resources(spec), by_step.get(name, []), prices, headroom=headroom)
           for name, spec in specs.items()]
    for name in sorted(set(by_step) - set(specs)):   # ran before, no longer in the pipeline's code
        rec = recommend_step(name, Resources(), by_step[name], prices, headroom=headroom)
        out.append(replace(rec, in_pipeline=False,
                           note="; ".join(x for x in (rec.note, "not in the pipeline now") if x)))
    return out, run_ids
