"""``Client``: the one entry point to a Conveyor home — run, resume, and read what happened."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.config import Settings, load_settings
from conveyor.errors import Conflict, StepFailed
from conveyor.runtime.engine import Engine, Execution, Observer
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
        return registry.create(name, max_workers=self.settings.max_workers)

    def _engine(self, executor: Any, observer: Observer | None) -> Engine:
        return Engine(self.metadata, self.artifacts, executor, inline_max_bytes=self.settings.inline_max_bytes,
                      observer=observer, actor=self.settings.actor)

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
        folder = str(Path(ref.rpartition(":")[0]).parent) if ref and ref.rpartition(":")[0].endswith(".py") else os.getcwd()
        commit, dirty = git_state(folder)
        executor_obj = self._executor(executor)
        run_id = md.runs.create(
            kind="pipeline", name=run_name, pipeline_id=pid, pipeline_name=pipeline.name, pipeline_ref=ref,
            parameters=_jsonable(values), tags=dict(tags or {}), environment_hash=env_hash, git_commit=commit,
            git_dirty=dirty, options={"cache": cache, "executor": executor_obj.name}, pid=os.getpid(),
            host=socket.gethostname())
        return self._execute(graph, run_id, executor_obj, cache=cache, prior=None, observer=observer,
                             raise_on_failure=raise_on_failure)

    def resume(self, run_id: str, *, executor: str | None = None, observer: Observer | None = None,
               raise_on_failure: bool = True) -> Run:
        """Finish an interrupted or failed run; steps that completed are not executed again."""
        md = self.metadata
        record = md.runs.get(run_id)
        if record.kind != "pipeline" or not record.pipeline_ref:
            raise Conflict(f"Run {record.id} is not a pipeline run that can be resumed.")
        if record.status == "succeeded":
            raise Conflict(f"Run {record.id} already succeeded; there is nothing to resume.")
        pipeline = load_pipeline(record.pipeline_ref)
        graph = pipeline.build(**pipeline.resolve(record.parameters))
        record = md.runs.claim_for_resume(record.id, os.getpid())
        md.steps.mark_unfinished(record.id, "interrupted", "the run stopped while this step ran")
        finished = [s for s in md.steps.for_run(record.id) if s.status in ("succeeded", "cached")]
        outputs = md.steps.outputs([s.id for s in finished])
        prior = {s.name: (s, outputs[s.id]) for s in finished}
        executor_obj = self._executor(executor or record.options.get("executor"))
        return self._execute(graph, record.id, executor_obj, cache=record.options.get("cache", True), prior=prior,
                             observer=observer, raise_on_failure=raise_on_failure)

    def _execute(self, graph: Any, run_id: str, executor: Any, *, cache: bool, prior: Any,
                 observer: Observer | None, raise_on_failure: bool) -> Run:
        md = self.metadata
        engine = self._engine(executor, observer)
        try:
            execution: Execution = engine.execute(graph, run_id, cache=cache, prior=prior)
        except BaseException as exc:
            executor.shutdown(cancel=True)     # never wait for step bodies on Ctrl-C
            md.runs.set_status(run_id, "cancelled", error=str(exc) or type(exc).__name__)
            raise
        executor.shutdown()
        if execution.first_failure:
            node, error, tb = execution.first_failure
            message = (f"Step '{node}' failed in run {run_id}: {error}\n\n{tb.rstrip()}\n\n"
                       f"Fix the step, then resume with `conveyor runs resume {run_id}` "
                       "(finished steps are not run again).")
            md.runs.set_status(run_id, "failed", error=f"Step '{node}' failed: {error}")
            run = Run(self, md.runs.get(run_id), execution)
            if raise_on_failure:
                err = StepFailed(message, run_id=run_id, step=node, traceback=tb)
                err.run = run  # type: ignore[attr-defined]
                raise err
            return run
        md.runs.set_status(run_id, "succeeded")
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


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    from conveyor.runtime.slots import json_param

    return {k: json_param(v) for k, v in values.items()}
