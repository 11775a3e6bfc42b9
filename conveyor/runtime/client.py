"""``Client``: the one entry point to a Conveyor home — run, resume, and read what happened."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.config import Settings, load_settings
from conveyor.errors import Conflict, StepFailed
from conveyor.dsl.parameters import coerce_text_parameters
from conveyor.runtime.engine import Engine, Execution, Observer
from conveyor.runtime.hooks import HookContext, call_hook
from conveyor.runtime.environment import git_state, python_environment
from conveyor.runtime.loader import load_pipeline, pipeline_ref
from conveyor.runtime.run import Run
from conveyor.runtime.slots import MISSING, Slot, stored_from_record


class Client:
    """Reads and runs against the stores named by ``settings`` (default: environment and conveyor.toml)."""

    def __init__(self, settings: Settings | None = None, *, metadata: Any = None, artifacts: Any = None) -> None:
        self.settings = settings or load_settings()
        self._metadata = metadata
        self._artifacts = artifacts

    @property
    def metadata(self) -> Any:
        """The metadata store (opened and migrated on first use)."""
        if self._metadata is None:
            from conveyor.store.metadata import MetadataStore, Reconnect

            reconnect = Reconnect(retries=self.settings.metadata_retries, backoff_s=self.settings.metadata_backoff_s)
            self._metadata = MetadataStore(self.settings.metadata_url, reconnect=reconnect)
        return self._metadata

    @property
    def artifacts(self) -> Any:
        """The artifact store."""
        if self._artifacts is None:
            from conveyor.runtime.worker import artifact_store

            self._artifacts = artifact_store(self.settings.artifact_root, self.settings.inline_max_bytes)
        return self._artifacts

    @property
    def registry(self) -> Any:
        """The model registry, acting as ``settings.actor``."""
        from conveyor.registry import ModelRegistry

        return ModelRegistry(self.metadata, self.artifacts, self.settings.actor)

    def close(self) -> None:
        if self._metadata is not None:
            self._metadata.close()

    # --- running ------------------------------------------------------------------------------

    def _executor(self, name: str | None) -> Any:
        from conveyor.executors import registry

        name = name or self.settings.executor
        name = "thread" if name == "local" else name
        return registry.create(name, max_workers=self.settings.max_workers, settings=self.settings)

    def _engine(self, executor: Any, observer: Observer | None) -> Engine:
        # keep the cache index beside the artifacts too, so runs elsewhere on this root (exported tasks
        # without a database) hit what ran here, and the other way round
        from conveyor.runtime.records import SharedCache

        shared = None if self.settings.artifact_root.startswith("memory://") else SharedCache(self.artifacts)
        return Engine(self.metadata, self.artifacts, executor, inline_max_bytes=self.settings.inline_max_bytes,
                      observer=observer, actor=self.settings.actor, shared_cache=shared,
                      accounting=self.settings.accounting,
                      preempt_grace_s=self.settings.preempt_grace_s,
                      preemption_retries=self.settings.preemption_retries)

    def run_pipeline(self, pipeline: Any, params: Mapping[str, Any] | None = None, *, cache: bool = True,
                     executor: str | None = None, run_name: str | None = None,
                     tags: Mapping[str, str] | None = None, from_text: bool = False,
                     observer: Observer | None = None, raise_on_failure: bool = True) -> Run:
        """Check parameters, build the graph, record a run and execute it."""
        values = pipeline.resolve(params, from_text=from_text)
        graph = pipeline.build(**values)
        ref = pipeline_ref(pipeline)
        md = self.metadata
        pid, _version = md.runs.ensure_pipeline(pipeline.name, pipeline.code_hash(graph), ref)
        env_hash = md.runs.save_environment(python_environment())
        commit, dirty = git_state(_source_folder(pipeline, ref))
        executor_obj = self._executor(executor)
        run_id = md.runs.create(
            kind="pipeline", name=run_name, pipeline_id=pid, pipeline_name=pipeline.name, pipeline_ref=ref,
            parameters=_jsonable(values), tags=dict(tags or {}), environment_hash=env_hash, git_commit=commit,
            git_dirty=dirty, options={"cache": cache, "executor": executor_obj.name}, pid=os.getpid(),
            host=socket.gethostname())
        return self._execute(graph, run_id, executor_obj, cache=cache, prior=None, observer=observer,
                             raise_on_failure=raise_on_failure, pipeline=pipeline)

    def resume(self, run_id: str, *, params: Mapping[str, Any] | None = None, from_text: bool = False,
               executor: str | None = None, observer: Observer | None = None,
               raise_on_failure: bool = True) -> Run:
        """Finish an interrupted or failed run; steps that completed are not executed again.

        ``params`` changes some parameters (``from_text``: values are ``-p`` text to coerce). Steps
        whose inputs change, directly or through an upstream output that changes, run again; the
        others are reused. The run records the new parameters and a ``parameters`` event.
        """
        md = self.metadata
        record = md.runs.get(run_id)
        if record.kind != "pipeline" or not record.pipeline_ref:
            raise Conflict(f"Run {record.id} is not a pipeline run that can be resumed.")
        if record.status == "succeeded":
            raise Conflict(f"Run {record.id} already succeeded; there is nothing to resume. "
                           "Start a new run with the new parameters instead (`conveyor run ... -p key=value`).")
        pipeline = load_pipeline(record.pipeline_ref)
        changes: dict[str, Any] = {}
        if params:
            changes = (coerce_text_parameters(pipeline.name, pipeline.parameters, params) if from_text
                       else dict(params))
        values = pipeline.resolve({**record.parameters, **changes})
        graph = pipeline.build(**values)
        new_params = _jsonable(values)
        record = md.runs.claim_for_resume(record.id, os.getpid())
        if new_params != record.parameters:
            changed = {k: v for k, v in new_params.items() if record.parameters.get(k, _UNSET) != v}
            md.runs.set_parameters(record.id, new_params, detail=", ".join(
                f"{k}: {record.parameters.get(k)!r} -> {v!r}" for k, v in changed.items()))
        md.steps.mark_unfinished(record.id, "interrupted", "the run stopped while this step ran")
        finished = [s for s in md.steps.for_run(record.id) if s.status in ("succeeded", "cached")]
        outputs = md.steps.outputs([s.id for s in finished])
        prior = {s.name: (s, outputs[s.id]) for s in finished}
        executor_obj = self._executor(executor or record.options.get("executor"))
        return self._execute(graph, record.id, executor_obj, cache=record.options.get("cache", True), prior=prior,
                             observer=observer, raise_on_failure=raise_on_failure, pipeline=pipeline)

    def _execute(self, graph: Any, run_id: str, executor: Any, **options: Any) -> Run:
        from conveyor.observability.logs import current_run
        from conveyor.observability.tracing import run_span

        token = current_run.set(run_id)     # the engine's own log lines name their run
        try:
            with run_span(run_id, graph.name, getattr(executor, "name", type(executor).__name__)) as steps:
                return self._walk(graph, run_id, executor, steps=steps, **options)
        finally:
            current_run.reset(token)

    def _walk(self, graph: Any, run_id: str, executor: Any, *, cache: bool, prior: Any,
              observer: Observer | None, raise_on_failure: bool, pipeline: Any = None, steps: Any = None) -> Run:
        from conveyor.observability.tracing import chain

        md = self.metadata
        engine = self._engine(executor, chain(observer, steps))
        md.runs.set_plan(run_id, plan_of(graph))   # the steps to come, for the dashboard's live graph
        try:
            execution: Execution = engine.execute(graph, run_id, cache=cache, prior=prior)
        except BaseException as exc:
            executor.shutdown(cancel=True)     # never wait for step bodies on Ctrl-C
            md.runs.set_status(run_id, "cancelled", error=str(exc) or type(exc).__name__)
            raise
        executor.shutdown()
        if execution.first_failure:
            node, error, tb = execution.first_failure
            record = md.runs.get(run_id)
            message = failure_message(run_id, node, error, tb, record.parameters)
            md.runs.set_status(run_id, "failed", error=f"Step '{node}' failed: {error}")
            run = Run(self, md.runs.get(run_id), execution)
            if pipeline is not None:
                call_hook(pipeline.on_failure, HookContext(run_id, graph.name, None, "failed",
                                                           f"Step '{node}' failed: {error}"),
                          kind="on_failure", metadata=md)
            if raise_on_failure:
                err = StepFailed(message, run_id=run_id, step=node, traceback=tb)
                err.run = run  # type: ignore[attr-defined]
                raise err
            return run
        md.runs.set_status(run_id, "succeeded")
        if pipeline is not None:
            call_hook(pipeline.on_success, HookContext(run_id, graph.name, None, "succeeded"), kind="on_success",
                      metadata=md)
        return Run(self, md.runs.get(run_id), execution)

    # --- reading ------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Run:
        return Run(self, self.metadata.runs.get(run_id))

    def list_runs(self, *, limit: int = 50, pipeline: str | None = None, status: str | None = None) -> list[Run]:
        return [Run(self, r) for r in self.metadata.runs.list(limit=limit, pipeline=pipeline, status=status)]

    def delete_run(self, run_id: str) -> None:
        self.metadata.runs.delete(run_id)

    def load(self, slot: Slot) -> Any:
        """The value of an output slot (read and verified from the artifact store when needed)."""
        if slot.value is MISSING:
            slot.value = self.artifacts.get(slot.stored)
        return slot.value

    def load_artifact(self, artifact_id: str) -> Any:
        """Read an artifact's value by id, verifying its hash first."""
        record = self.metadata.artifacts.get(artifact_id)
        return self.artifacts.get(stored_from_record(record))


_UNSET = object()


def failure_cause(error: str) -> str:
    """What made a step fail, from its error text: ``parameter``, ``gate`` or ``step``."""
    kind = error.partition(":")[0].strip()
    if kind == "ParameterError":
        return "parameter"
    if kind == "QualityGateFailed":
        return "gate"
    return "step"


def failure_message(run_id: str, node: str, error: str, tb: str, parameters: Mapping[str, Any]) -> str:
    """The message of a failed run: what failed and what to do, by the actual cause."""
    shown = ", ".join(f"{k} (now {v!r})" for k, v in parameters.items()) or "(none)"
    resume_with = f"`conveyor runs resume {run_id} -p KEY=VALUE`"
    cause = failure_cause(error)
    if cause == "parameter":
        return (f"Step '{node}' rejected a parameter in run {run_id}: {error}\n\n"
                f"Resume with a different value: {resume_with} (in Python: client.resume('{run_id}', "
                f"params={{...}})). Parameters: {shown}. Steps whose inputs change run again; the rest are reused.")
    if cause == "gate":
        return (f"Quality gate in step '{node}' failed in run {run_id}: {error}\n\n"
                f"The steps ran, but a result did not pass. To accept it with other thresholds or to train with "
                f"other settings, resume with {resume_with}. Parameters: {shown}. Steps whose inputs change run "
                f"again; the rest are reused. If the check itself is wrong, fix the step, then "
                f"`conveyor runs resume {run_id}`.")
    return (f"Step '{node}' failed in run {run_id}: {error}\n\n{tb.rstrip()}\n\n"
            f"Fix the step, then resume with `conveyor runs resume {run_id}` "
            "(finished steps are not run again).")


def _source_folder(pipeline: Any, ref: str | None) -> str:
    """The folder holding the pipeline's code (where its git checkout is), else the working directory."""
    target = (ref or "").rpartition(":")[0]
    if target.endswith(".py"):
        return str(Path(target).resolve().parent)
    module = sys.modules.get(getattr(pipeline.fn, "__module__", ""))
    file = getattr(module, "__file__", None)
    return str(Path(file).resolve().parent) if file else os.getcwd()


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    from conveyor.runtime.slots import json_param

    return {k: json_param(v) for k, v in values.items()}


def plan_of(graph: Any) -> str:
    """The graph a run is about to walk, as JSON: step names in order and who waits for whom."""
    import orjson

    return orjson.dumps({"steps": list(graph.nodes),
                         "edges": [[up, name] for name, node in graph.nodes.items()
                                   for up in sorted(node.upstream())]}).decode()
