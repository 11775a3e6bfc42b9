"""Running one step call: resolve arguments, attempt with retries, capture output, store results.

This code runs wherever the executor puts it (a thread, a child process, a Ray worker), so a
task carries only picklable descriptions and the worker opens the artifact store itself.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.util
import io
import sys
import threading
import time
import traceback as tb_module
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import ConveyorError, PipelineDefinitionError
from conveyor.runtime.capture import captured, clip
from conveyor.runtime.context import StepContext, set_current_step


class StepTimeout(ConveyorError):
    """An attempt of a step ran longer than its ``timeout``."""

    headline = "Step timed out"


@dataclass(frozen=True, slots=True)
class FunctionRef:
    """Where a step's function lives, so another process can import it."""

    module: str
    qualname: str
    source_file: str | None


@dataclass(frozen=True, slots=True)
class FromStore:
    """An argument to load from the artifact store (``path`` indexes into the value)."""

    stored: Any
    path: tuple[Any, ...] = ()


@dataclass(slots=True)
class StepTask:
    """One call of a step, ready to run."""

    run_id: str
    step_run_id: str
    node_name: str
    step_name: str
    args: dict[str, Any]
    outputs: tuple[str, ...]
    multiple_outputs: bool
    retries: int
    retry_on: tuple[type[BaseException], ...]
    backoff: float
    backoff_max: float
    timeout: float | None
    artifact_root: str
    inline_max_bytes: int
    metadata_url: str = ""
    actor: str = "unknown"
    map_index: int | None = None
    fn: Callable[..., Any] | None = None         # set for in-process executors
    fn_ref: FunctionRef | None = None            # set for out-of-process executors
    keep_values: bool = True                     # return in-memory values (same process only)


@dataclass(slots=True)
class StepResult:
    """What came of a task."""

    status: str                                   # succeeded | failed
    attempts: int
    started_at: float
    ended_at: float
    outputs: dict[str, Any] = field(default_factory=dict)       # name -> StoredArtifact
    values: dict[str, Any] | None = None
    logged: list[tuple[str, Any]] = field(default_factory=list)  # (name, StoredArtifact)
    error: str | None = None
    traceback: str | None = None
    logs: str = ""
    metrics: list[tuple[str, float, int | None, float]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


_stores: dict[tuple[str, int], Any] = {}


def artifact_store(root: str, inline_max_bytes: int) -> Any:
    """One artifact store object per root in this process."""
    key = (root, inline_max_bytes)
    store = _stores.get(key)
    if store is None:
        from conveyor.config import load_settings
        from conveyor.store.artifacts import ArtifactStore
        from conveyor.store.artifacts.retry import RetryPolicy

        settings = load_settings()      # the retry policy follows the settings wherever the step runs
        retry = RetryPolicy(retries=settings.artifact_retries, backoff_s=settings.artifact_backoff_s)
        store = _stores[key] = ArtifactStore(root, inline_max_bytes=inline_max_bytes, retry=retry)
    return store


def resolve_function(ref: FunctionRef) -> Callable[..., Any]:
    """Import a step function by module and qualified name, loading its file if needed."""
    module = sys.modules.get(ref.module)
    if module is None or ref.module == "__main__":
        try:
            if ref.module == "__main__":
                raise ImportError
            module = importlib.import_module(ref.module)
        except ImportError:
            if not ref.source_file:
                raise PipelineDefinitionError(f"Cannot import step function {ref.module}:{ref.qualname}.") from None
            from conveyor.runtime.loader import load_module_from_file

            module = load_module_from_file(Path(ref.source_file))
    obj: Any = module
    for part in ref.qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "spec", None).fn if hasattr(obj, "spec") else obj


def _materialize_args(task: StepTask) -> dict[str, Any]:
    store = None

    def load(value: Any) -> Any:
        nonlocal store
        if isinstance(value, FromStore):
            store = store or artifact_store(task.artifact_root, task.inline_max_bytes)
            out = store.get(value.stored)
            for key in value.path:
                out = out[key]
            return out
        if isinstance(value, list) and any(isinstance(v, FromStore) for v in value):
            return [load(v) for v in value]
        return value

    return {k: load(v) for k, v in task.args.items()}


def _call_with_timeout(fn: Callable[[], Any], timeout: float | None, name: str) -> Any:
    if timeout is None:
        return fn()
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()
    buffer = getattr(sys.stdout, "__class__", None)  # noqa: F841  (capture follows the thread below)
    from conveyor.runtime import capture

    parent_buffer = getattr(capture._local, "buffer", None)

    def target() -> None:
        capture._local.buffer = parent_buffer
        try:
            box["value"] = ctx.run(fn)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"conveyor-step-{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise StepTimeout(f"Step '{name}' ran longer than its timeout of {timeout:g}s.")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _split_outputs(task: StepTask, value: Any) -> dict[str, Any]:
    if not task.multiple_outputs:
        return {task.outputs[0]: value}
    if isinstance(value, dict):
        missing = [n for n in task.outputs if n not in value]
        if missing:
            raise PipelineDefinitionError(
                f"Step '{task.step_name}' declares outputs {list(task.outputs)} but its returned dict lacks "
                f"{missing}. Return every declared output.")
        return {n: value[n] for n in task.outputs}
    if isinstance(value, tuple | list) and len(value) == len(task.outputs):
        return dict(zip(task.outputs, value, strict=True))
    raise PipelineDefinitionError(
        f"Step '{task.step_name}' declares {len(task.outputs)} outputs {list(task.outputs)} but returned "
        f"{type(value).__name__}. Return a tuple of {len(task.outputs)} values or a dict keyed by output name.")


def run_task(task: StepTask) -> StepResult:
    """Execute a task: the function with retries, then store its outputs. Never raises."""
    started = time.time()
    buffer = io.StringIO()
    ctx = StepContext(run_id=task.run_id, step_name=task.step_name, node_name=task.node_name,
                      step_run_id=task.step_run_id, map_index=task.map_index, artifact_root=task.artifact_root,
                      metadata_url=task.metadata_url, actor=task.actor)
    token = set_current_step(ctx)
    attempt = 0
    try:
        with captured(buffer):
            try:
                fn = task.fn or resolve_function(task.fn_ref)  # type: ignore[arg-type]
                args = _materialize_args(task)
            except Exception as exc:
                return _failed(task, started, 1, exc, buffer, ctx)
            while True:
                attempt += 1
                ctx.attempt = attempt
                try:
                    value = _call_with_timeout(lambda: fn(**args), task.timeout, task.node_name)
                    break
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    retryable = isinstance(exc, task.retry_on) or isinstance(exc, StepTimeout)
                    if attempt > task.retries or not retryable:
                        return _failed(task, started, attempt, exc, buffer, ctx)
                    delay = min(task.backoff_max, task.backoff * (2 ** (attempt - 1)))
                    print(f"[conveyor] attempt {attempt} of {task.retries + 1} failed: "
                          f"{type(exc).__name__}: {exc}; retrying in {delay:.2f}s", file=sys.stderr)
                    time.sleep(delay)
            try:
                values = _split_outputs(task, value)
                store = artifact_store(task.artifact_root, task.inline_max_bytes)
                outputs = {name: store.put(v) for name, v in values.items()}
                logged = [(name, store.put_file(path)) for name, path in ctx.logged_files]
            except Exception as exc:
                return _failed(task, started, attempt, exc, buffer, ctx)
    finally:
        set_current_step(None) if token is None else _reset(token)
    return StepResult(status="succeeded", attempts=attempt, started_at=started, ended_at=time.time(),
                      outputs=outputs, values=values if task.keep_values else None, logged=logged,
                      logs=clip(buffer.getvalue()), metrics=ctx.metrics, params=ctx.params)


def _reset(token: Any) -> None:
    from conveyor.runtime.context import _current

    _current.reset(token)


def _failed(task: StepTask, started: float, attempts: int, exc: BaseException, buffer: io.StringIO,
            ctx: StepContext) -> StepResult:
    text = "".join(tb_module.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
    buffer.write(text)
    return StepResult(status="failed", attempts=attempts, started_at=started, ended_at=time.time(),
                      error=f"{type(exc).__name__}: {exc}", traceback=text, logs=clip(buffer.getvalue()),
                      metrics=ctx.metrics, params=ctx.params)


def _user_frames(tb: Any) -> Any:
    """Drop the engine's own frames from the top of a traceback, so it starts in the user's code."""
    here = str(Path(__file__).parent)
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(here):
        tb = tb.tb_next
    return tb
