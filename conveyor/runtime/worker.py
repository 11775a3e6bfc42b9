"""Running one step call: resolve arguments, attempt with retries, capture output, store results.

This code runs wherever the executor puts it (a thread, a child process, a Ray worker), so a
task carries only picklable descriptions and the worker opens the artifact store itself.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import importlib
import importlib.util
import io
import os
import pickle
import sys
import threading
import time
import traceback as tb_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conveyor.errors import PipelineDefinitionError, RunCancelled, StepPreempted, StepTimeout
from conveyor.runtime.capture import captured, clip
from conveyor.runtime.context import StepContext, set_current_step
from conveyor.runtime.usage import AttemptUsage, Measures, ProcessMeter, ThreadMeter, status_of, stopped_child_usage
from conveyor.store.artifacts.tally import Tally, begin, end, tallying


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
    resources: dict[str, Any] = field(default_factory=dict)   # the step's requests (StepSpec.requests)
    accounting: bool = True                      # measure each attempt (CONVEYOR_ACCOUNTING)
    preempt_grace_s: float = 30.0                # after the worker's SIGTERM, then the attempt is stopped
    attempt_offset: int = 0                      # attempts of this call before this task (preempted ones)


@dataclass(slots=True)
class StepResult:
    """What came of a task."""

    status: str                                   # succeeded | failed | preempted (the engine runs it again)
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
    usage: list[Any] = field(default_factory=list)               # one AttemptUsage per attempt (runtime.usage)


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


@dataclass(slots=True)
class _Stored:
    """What one successful attempt left: stored outputs, the values (same process only), logged files."""

    outputs: dict[str, Any]
    values: dict[str, Any] | None
    logged: list[tuple[str, Any]]


class _AfterCall(Exception):
    """The function returned, but splitting or storing its outputs failed: never retried."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


class _ChildFailure(Exception):
    """An attempt failed in a child process; the exception itself stayed there (it may not pickle)."""

    def __init__(self, error: str, text: str, retryable: bool, logged: list[tuple[str, Any]] | None = None,
                 preempted: bool = False) -> None:
        super().__init__(error)
        self.error, self.text, self.retryable = error, text, retryable
        self.logged = logged or []     # the files the attempt logged, stored by the child
        self.attempt_status = "preempted" if preempted else "failed"


class _GraceOver(BaseException):
    """The grace period after a preemption ended while the body still ran (raised in its thread)."""

    attempt_status = "preempted"


def _grace_over_message(task: StepTask) -> str:
    return (f"Step '{task.node_name}' was preempted: its worker was told to stop and the step was still running "
            f"{task.preempt_grace_s:g}s later (save progress with cv.checkpoint to continue from it).")


_attempt_children: dict[int, float] = {}   # pid -> grace of the children running attempts in this process


def preempt_running_attempt() -> bool:
    """Tell the attempt this worker runs in a child that the worker is being stopped (SIGTERM from
    outside: a spot instance taken back); False when none runs. Called from the worker's signal handler.

    The child gets SIGUSR1: ``cv.preempted()`` turns True and after the grace period the attempt
    ends ``preempted``. Should the child not end a few seconds after that, it is stopped.
    """
    import signal

    told = False
    for pid, grace in list(_attempt_children.items()):
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            continue
        told = True
        backstop = threading.Timer(grace + 5.0, _kill_quietly, args=(pid, signal.SIGTERM))
        backstop.daemon = True
        backstop.start()
    return told


@contextlib.contextmanager
def preemptible_process(grace: float) -> Iterator[None]:
    """While a task runs in this process's main thread (a cluster worker's), SIGTERM preempts it
    instead of ending the process: the attempt in a child is told (``preempt_running_attempt``), an
    attempt in this thread sees ``cv.preempted()`` and its grace period. The previous handler is
    put back afterwards. Nothing happens outside the main thread (signals cannot be handled there).
    """
    import signal

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from conveyor.runtime import checkpoint

    def grace_over(_signum: int, _frame: Any) -> None:
        raise _GraceOver

    def on_term(_signum: int, _frame: Any) -> None:
        if preempt_running_attempt() or checkpoint.preempted():
            return
        checkpoint.mark_preempted()
        signal.signal(signal.SIGALRM, grace_over)
        signal.setitimer(signal.ITIMER_REAL, grace)

    checkpoint.clear_preempted()
    previous = signal.signal(signal.SIGTERM, on_term)
    alarm = signal.getsignal(signal.SIGALRM)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, alarm)
        signal.signal(signal.SIGTERM, previous)
        checkpoint.clear_preempted()


def _kill_quietly(pid: int, signum: int) -> None:
    if pid in _attempt_children:   # not reaped yet: the pid is still the attempt's
        with contextlib.suppress(OSError):
            os.kill(pid, signum)


def _store_logged(task: StepTask, ctx: StepContext) -> list[tuple[str, Any]]:
    """The files a failed attempt logged (a validation report, a plot of what went wrong), stored
    best effort: a failed step keeps what it produced, and a store error must not hide its failure."""
    if not ctx.logged_files:
        return []
    try:
        store = artifact_store(task.artifact_root, task.inline_max_bytes)
        return [(name, store.put_file(path)) for name, path in ctx.logged_files]
    except Exception as exc:
        print(f"[conveyor] the files this attempt logged could not be stored: {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return []


def _store(task: StepTask, value: Any, ctx: StepContext) -> _Stored:
    try:
        values = _split_outputs(task, value)
        store = artifact_store(task.artifact_root, task.inline_max_bytes)
        outputs = {name: store.put(v) for name, v in values.items()}
        logged = [(name, store.put_file(path)) for name, path in ctx.logged_files]
    except Exception as exc:
        raise _AfterCall(exc) from exc
    return _Stored(outputs, values, logged)


@contextlib.contextmanager
def _settled(ctx: StepContext) -> Iterator[None]:
    """Acknowledge what the attempt read from streams and queues once its outputs are stored; give it
    back when the attempt failed, so the next attempt (or run) reads the same messages again.

    A failed ``ack`` fails the step (its messages come back: at-least-once, never lost); a failed
    ``nack`` is only printed, since unacknowledged messages come back anyway. What a timed-out
    attempt's thread read after its attempt ended is given back before the next attempt starts.
    """
    _give_back(ctx)
    try:
        yield
    except BaseException:
        _give_back(ctx)
        raise
    held, ctx.acknowledging[:] = list(ctx.acknowledging), []
    try:
        for source in held:
            source.ack()
    except Exception as exc:
        raise _AfterCall(exc) from exc


def _give_back(ctx: StepContext) -> None:
    held, ctx.acknowledging[:] = list(ctx.acknowledging), []
    for source in held:
        try:
            source.nack()
        except Exception as exc:
            print(f"[conveyor] giving back what {source.describe()} delivered failed: {exc}; "
                  "it is delivered again once it times out", file=sys.stderr)


class _ThreadAttempts:
    """Attempts in a thread of this process. A thread cannot be stopped, so after a timeout the
    attempt goes on in the background and a retry waits for it to finish before it starts."""

    def __init__(self, own_process: bool = False) -> None:
        self._late: threading.Thread | None = None
        self.measures: Measures | None = None   # what the last attempt used (with accounting on)
        self.own_process = own_process          # nothing else runs in this process: measure all of it

    def attempt(self, task: StepTask, fn: Callable[..., Any], args: dict[str, Any], ctx: StepContext,
                buffer: io.StringIO) -> _Stored:
        if not task.accounting:
            with _settled(ctx):
                return _store(task, self._call(lambda: fn(**args), task.timeout, task.node_name, {}), ctx)
        box: dict[str, Any] = {}
        if self.own_process:   # the threads the body starts (BLAS, pools) count too
            tally = Tally()
            opened, whole = begin(tally), ProcessMeter(tally)
            try:
                with _settled(ctx):
                    stored = _store(task, self._call(lambda: fn(**args), task.timeout, task.node_name, box), ctx)
            finally:
                end(opened)
                self.measures = whole.stop()
            return stored
        meter = ThreadMeter()
        try:
            with _settled(ctx):
                stored = _store(task, self._call(lambda: fn(**args), task.timeout, task.node_name, box), ctx)
        finally:
            self.measures = meter.stop(box.get("cpu", 0.0))
        return stored

    def _call(self, fn: Callable[[], Any], timeout: float | None, name: str, box: dict[str, Any]) -> Any:
        if timeout is None:
            return fn()
        context = contextvars.copy_context()
        from conveyor.runtime import capture

        parent_buffer = getattr(capture._local, "buffer", None)

        def target() -> None:
            capture._local.buffer = parent_buffer   # the attempt's prints still go to the step's log
            cpu0 = time.thread_time()
            try:
                box["value"] = context.run(fn)
            except BaseException as exc:  # handed to the caller below
                box["error"] = exc
            finally:
                box["cpu"] = time.thread_time() - cpu0

        thread = threading.Thread(target=target, name=f"conveyor-step-{name}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            self._late = thread
            raise StepTimeout(
                f"Step '{name}' ran longer than its timeout of {timeout:g}s. It runs in a thread, which cannot be "
                "stopped: the attempt goes on in the background and a retry waits for it to finish. Use "
                "`--executor process` to have timed-out attempts stopped.")
        if "error" in box:
            raise box["error"]
        return box["value"]

    def before_retry(self, attempt: int) -> None:
        late, self._late = self._late, None
        if late is not None and late.is_alive():
            print(f"[conveyor] attempt {attempt} timed out and its thread cannot be stopped; "
                  "the retry waits for it to finish", file=sys.stderr)
            late.join()


class Cancellation:
    """Stops a task that ``run_task_isolated`` runs, from another thread of the same process.

    For executors whose scheduler cancels tasks (a Dask worker told that the run's driver cancelled
    or disconnected): ``cancel`` stops the running attempt as a timeout would, with every process it
    started, and no further attempt starts. The task then returns a failed result.
    """

    def __init__(self) -> None:
        self._read, self._write = os.pipe()
        self._set = threading.Event()

    @property
    def cancelled(self) -> bool:
        return self._set.is_set()

    def fileno(self) -> int:
        """Readable once cancelled (so an attempt waiting for its child wakes up)."""
        return self._read

    def cancel(self) -> None:
        if not self._set.is_set():
            self._set.set()
            os.write(self._write, b"x")

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)


class _ChildAttempts:
    """Attempts in a forked child process leading its own session. The child stores the outputs
    itself; on a timeout it is stopped with everything it started before any retry, and after
    every attempt whatever it left (loky or multiprocessing pools, processes) is shut down."""

    grace = 5.0          # seconds a stopped attempt gets to run its cleanup before SIGKILL
    exit_wait = 30.0     # seconds a finished attempt gets to release the pools it left

    def __init__(self, cancellation: Cancellation | None = None) -> None:
        self.cancellation = cancellation
        self.measures: Measures | None = None   # what the last attempt used (with accounting on)

    def attempt(self, task: StepTask, fn: Callable[..., Any], args: dict[str, Any], ctx: StepContext,
                buffer: io.StringIO) -> _Stored:
        from conveyor.runtime.processes import stop_tree, wait_exit

        self.measures = None
        if self.cancellation is not None and self.cancellation.cancelled:
            raise RunCancelled(f"Step '{task.node_name}' was cancelled with its run before attempt {ctx.attempt} "
                               "started.")

        # open a local artifact store here, once per worker: children inherit it instead of paying for
        # it. A remote one is opened in each child (its client may rely on a thread a fork does not copy).
        if _is_local(task.artifact_root):
            artifact_store(task.artifact_root, task.inline_max_bytes)
        mark = len(buffer.getvalue())
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:   # the child: never returns
            os.close(read_end)
            _child_attempt(task, fn, args, ctx, buffer, mark, write_end)
        _attempt_children[pid] = task.preempt_grace_s
        os.close(write_end)
        try:
            payload = _read_frame(read_end, task.timeout, pid, self.cancellation)
        finally:
            _attempt_children.pop(pid, None)
            os.close(read_end)
        if payload is _CANCELLED or payload is _TIMED_OUT:
            self.measures = stopped_child_usage(pid) if task.accounting else None
        if payload is _CANCELLED:
            stop_tree(pid, grace=self.grace)
            raise RunCancelled(f"Step '{task.node_name}' was cancelled with its run; its process and every "
                               "process it started were stopped.")
        if payload is _TIMED_OUT:
            stop_tree(pid, grace=self.grace)
            raise StepTimeout(f"Step '{task.node_name}' ran longer than its timeout of {task.timeout:g}s; its "
                              "process and every process it started were stopped.")
        if payload is None:
            wait_exit(pid, 1.0)
            status = _exit_status(pid)
            stop_tree(pid, grace=0)
            raise ChildProcessError(f"The process running step '{task.node_name}' ended ({status}) before it "
                                    "returned a result: a crash in native code, the out-of-memory killer or an "
                                    "os._exit in the step (what it printed in this attempt is lost).")
        wait_exit(pid, self.exit_wait)
        stop_tree(pid, grace=1.0)
        outcome = pickle.loads(payload)
        self.measures = outcome.get("usage")
        buffer.write(outcome["logs"])
        ctx.metrics[:] = outcome["metrics"]
        ctx.params.clear()
        ctx.params.update(outcome["params"])
        if "error" in outcome:
            raise _ChildFailure(outcome["error"], outcome["text"], outcome["retryable"], outcome.get("logged"),
                                outcome.get("preempted", False))
        return _Stored(outcome["outputs"], None, outcome["logged"])

    def before_retry(self, attempt: int) -> None:
        pass


_TIMED_OUT = object()
_CANCELLED = object()


def _is_local(root: str) -> bool:
    return "://" not in root or root.startswith("file://")


def _exit_status(pid: int) -> str:
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return "exit status unknown"
    if info is None:
        return "still running"
    return f"signal {info.si_status}" if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else f"exit code {info.si_status}"


def _read_frame(fd: int, timeout: float | None, pid: int, cancellation: Cancellation | None = None) -> Any:
    """A length-prefixed message from child ``pid``, ``_TIMED_OUT``, ``_CANCELLED``, or None when the
    child died first.

    Read by length, not to end-of-file: processes the step started inherit the pipe and may keep
    it open long after the child has written its result (or died). The child's exit is watched
    too (a pidfd where the kernel has them), so a crash is seen even while they hold the pipe."""
    import select

    from conveyor.runtime.processes import exited

    try:
        watch = [os.pidfd_open(pid)] if hasattr(os, "pidfd_open") else []
    except OSError:
        watch = []
    deadline = None if timeout is None else time.monotonic() + timeout
    data = b""
    need = 8
    stop = [cancellation.fileno()] if cancellation is not None else []
    try:
        while len(data) < need:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return _TIMED_OUT
            slice_ = remaining if watch else min(0.5, remaining if remaining is not None else 0.5)
            ready, _, _ = select.select([fd, *watch, *stop], [], [], slice_)
            if stop and stop[0] in ready:
                return _CANCELLED
            if fd in ready:
                chunk = os.read(fd, max(65536, need - len(data)))
                if not chunk:
                    return None
                data += chunk
                if need == 8 and len(data) >= 8:
                    need = 8 + int.from_bytes(data[:8], "big")
            elif (ready or not watch) and exited(pid):
                # gone: take what it wrote before it went, else it died without an outcome
                ready, _, _ = select.select([fd], [], [], 0)
                if not ready:
                    return None
    finally:
        for wfd in watch:
            os.close(wfd)
    return data[8:need]


def _child_attempt(task: StepTask, fn: Callable[..., Any], args: dict[str, Any], ctx: StepContext,
                   buffer: io.StringIO, mark: int, fd: int) -> None:
    """Run one attempt in the forked child, send its outcome, release what it left, and exit."""
    import signal

    from conveyor.runtime.processes import release_worker_pools, tie_to_parent

    from conveyor.runtime import checkpoint

    class _Stopped(BaseException):
        pass

    def stop(_signum: int, _frame: Any) -> None:
        raise _Stopped

    def grace_over(_signum: int, _frame: Any) -> None:
        raise _GraceOver

    def preempt(_signum: int, _frame: Any) -> None:   # the worker was told to stop: a grace period
        if not checkpoint.preempted():
            checkpoint.mark_preempted()
            signal.signal(signal.SIGALRM, grace_over)
            signal.setitimer(signal.ITIMER_REAL, task.preempt_grace_s)

    try:
        for key in [k for k in _stores if not _is_local(k[0])]:
            del _stores[key]   # a remote store's client may rely on an event-loop thread a fork does not copy
        os.setsid()
        # SIGTERM when the worker dies: the body unwinds and what it started is stopped below
        tie_to_parent(os.getppid(), signum=signal.SIGTERM)
        # Exit handlers registered before the fork belong to the worker; the ones the body registers
        # (joblib's temporary folders, loky) run below, as they would at a normal exit.
        atexit._clear()
        signal.signal(signal.SIGTERM, stop)   # a timeout: unwind the body, then release its pools below
        checkpoint.clear_preempted()
        signal.signal(signal.SIGUSR1, preempt)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        outcome: dict[str, Any]
        stopped = False
        tally = Tally()
        meter = ProcessMeter(tally) if task.accounting else None
        try:
            with tallying(tally), _settled(ctx):
                stored = _store(task, fn(**args), ctx)
            outcome = {"outputs": stored.outputs, "logged": stored.logged}
        except _Stopped:
            outcome, stopped = {}, True
        except (StepPreempted, _GraceOver) as exc:
            signal.setitimer(signal.ITIMER_REAL, 0)
            error = str(exc) if isinstance(exc, StepPreempted) else _grace_over_message(task)
            outcome = {"error": f"StepPreempted: {error}", "text": f"StepPreempted: {error}\n", "retryable": False,
                       "preempted": True, "logged": _store_logged(task, ctx)}
        except BaseException as exc:
            cause = exc.cause if isinstance(exc, _AfterCall) else exc
            text = "".join(tb_module.format_exception(type(cause), cause, _user_frames(cause.__traceback__)))
            retryable = not isinstance(exc, _AfterCall | KeyboardInterrupt | SystemExit) and isinstance(
                exc, task.retry_on)
            outcome = {"error": f"{type(cause).__name__}: {cause}", "text": text, "retryable": retryable,
                       "logged": _store_logged(task, ctx)}
        signal.signal(signal.SIGTERM, lambda *_: os.killpg(0, signal.SIGKILL))
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.setitimer(signal.ITIMER_REAL, 0)
        if outcome:
            outcome.update(logs=buffer.getvalue()[mark:], metrics=list(ctx.metrics), params=dict(ctx.params),
                           usage=meter.stop() if meter is not None else None)
            try:
                data = pickle.dumps(outcome)
            except Exception as exc:
                data = pickle.dumps({**outcome, "outputs": {}, "error": f"{type(exc).__name__}: {exc}",
                                     "text": f"The step's outcome cannot be sent back: {exc}\n", "retryable": False})
            frame = len(data).to_bytes(8, "big") + data
            view = memoryview(frame)
            while view:
                view = view[os.write(fd, view):]
        os.close(fd)
        release_worker_pools()
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if stopped:   # nobody may be left to clean up after us (the worker may be gone): take the group along
            os.killpg(0, signal.SIGKILL)
    finally:
        os._exit(0)


def _prepare(task: StepTask) -> tuple[Callable[..., Any], dict[str, Any]]:
    fn = task.fn or resolve_function(task.fn_ref)  # type: ignore[arg-type]
    return fn, _materialize_args(task)


def run_task(task: StepTask, *, own_process: bool = False) -> StepResult:
    """Execute a task in this process: the function with retries, then store its outputs. Never raises.

    ``own_process``: the task is all this process runs (a cluster worker's task), so its attempts
    are measured as the whole process's CPU rather than their thread's.

    With a ``timeout``, each attempt runs in a thread. A thread cannot be stopped: a timed-out
    attempt goes on in the background, and a retry (if ``retry_on`` allows one) waits for it to
    finish first, so two attempts of one step never overlap.
    """
    return _run(task, _ThreadAttempts(own_process))


def run_task_isolated(task: StepTask, cancellation: Cancellation | None = None) -> StepResult:
    """Execute a task with every attempt in a child process of its own (its own session).

    A timed-out attempt is stopped, with every process it started, before a retry starts; after
    each attempt, pools and processes the body left behind are shut down, so the worker returns as
    soon as the step is done. ``cancellation`` lets another thread stop the task (never retried).
    Falls back to ``run_task`` where ``os.fork`` does not exist.
    """
    if not hasattr(os, "fork"):
        return run_task(task)
    return _run(task, _ChildAttempts(cancellation))


def _run(task: StepTask, attempts: _ThreadAttempts | _ChildAttempts) -> StepResult:
    started = time.time()
    buffer = io.StringIO()
    ctx = StepContext(run_id=task.run_id, step_name=task.step_name, node_name=task.node_name,
                      step_run_id=task.step_run_id, map_index=task.map_index, artifact_root=task.artifact_root,
                      metadata_url=task.metadata_url, actor=task.actor, inline_max_bytes=task.inline_max_bytes)
    token = set_current_step(ctx)
    attempt = task.attempt_offset
    usage: list[AttemptUsage] = []
    loaded = Tally()   # the inputs loaded before the first attempt are counted in its reads
    try:
        with captured(buffer):
            opened = begin(loaded)
            try:
                fn, args = _prepare(task)
            except Exception as exc:
                end(opened)
                return _failed(task, started, 1, exc, buffer, ctx, _noted(task, usage, 1, started, None, exc, loaded))
            end(opened)
            while True:
                attempt += 1
                ctx.attempt = attempt
                began = time.time()
                try:
                    stored = attempts.attempt(task, fn, args, ctx, buffer)
                    _noted(task, usage, attempt, began, attempts.measures, None, loaded)
                    break
                except _AfterCall as exc:
                    return _failed(task, started, attempt - task.attempt_offset, exc.cause, buffer, ctx,
                                   _noted(task, usage, attempt, began, attempts.measures, exc.cause, loaded))
                except BaseException as exc:
                    if isinstance(exc, _GraceOver):   # in this thread (a cluster worker's): say it plainly
                        exc = StepPreempted(_grace_over_message(task))
                    _noted(task, usage, attempt, began, attempts.measures, exc, loaded)
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    if isinstance(exc, StepPreempted) or getattr(exc, "attempt_status", None) == "preempted":
                        # the engine runs the call again, maybe elsewhere: this worker is being stopped
                        result = _failed(task, started, attempt - task.attempt_offset, exc, buffer, ctx, usage)
                        result.status = "preempted"
                        return result
                    # retry_on decides, for timeouts too: StepTimeout is retried only if retry_on names it
                    # (or a base class of it, like the default Exception)
                    retryable = exc.retryable if isinstance(exc, _ChildFailure) else isinstance(exc, task.retry_on)
                    if attempt - task.attempt_offset > task.retries or not retryable or isinstance(exc, RunCancelled):
                        return _failed(task, started, attempt - task.attempt_offset, exc, buffer, ctx, usage)
                    delay = min(task.backoff_max, task.backoff * (2 ** (attempt - 1)))
                    error = exc.error if isinstance(exc, _ChildFailure) else f"{type(exc).__name__}: {exc}"
                    print(f"[conveyor] attempt {attempt} of {task.retries + 1} failed: {error}; "
                          f"retrying in {delay:.2f}s", file=sys.stderr)
                    attempts.before_retry(attempt)
                    time.sleep(delay)
    finally:
        set_current_step(None) if token is None else _reset(token)
    return StepResult(status="succeeded", attempts=attempt - task.attempt_offset, started_at=started,
                      ended_at=time.time(),
                      outputs=stored.outputs, values=stored.values if task.keep_values else None,
                      logged=stored.logged, logs=clip(buffer.getvalue()), metrics=ctx.metrics, params=ctx.params,
                      usage=usage)


_host: str | None = None


def _noted(task: StepTask, usage: list[AttemptUsage], attempt: int, began: float, measures: Measures | None,
           exc: BaseException | None, loaded: Tally) -> list[AttemptUsage]:
    """Add the attempt's row to ``usage`` (with accounting on) and return the list."""
    global _host
    if not task.accounting:
        return usage
    if _host is None:
        import socket

        _host = socket.gethostname()
    m = measures or Measures()
    read = m.bytes_read + (loaded.read if attempt == task.attempt_offset + 1 else 0)
    error = None
    if exc is not None:
        error = exc.error if isinstance(exc, _ChildFailure) else f"{type(exc).__name__}: {exc}"
    usage.append(AttemptUsage(attempt, status_of(exc), began, time.time(), m.cpu_s, m.peak_rss_bytes, read,
                              m.bytes_written, m.gpu_s, m.gpu_peak_bytes, error, _host))
    return usage


def _reset(token: Any) -> None:
    from conveyor.runtime.context import _current

    _current.reset(token)


def _failed(task: StepTask, started: float, attempts: int, exc: BaseException, buffer: io.StringIO,
            ctx: StepContext, usage: list[AttemptUsage] | None = None) -> StepResult:
    if isinstance(exc, _ChildFailure):
        text, error, logged = exc.text, exc.error, exc.logged
    else:
        text = "".join(tb_module.format_exception(type(exc), exc, _user_frames(exc.__traceback__)))
        error = f"{type(exc).__name__}: {exc}"
        logged = _store_logged(task, ctx)
    buffer.write(text)
    return StepResult(status="failed", attempts=attempts, started_at=started, ended_at=time.time(),
                      error=error, traceback=text, logs=clip(buffer.getvalue()), logged=logged,
                      metrics=ctx.metrics, params=ctx.params, usage=usage or [])


def _user_frames(tb: Any) -> Any:
    """Drop the engine's own frames from the top of a traceback, so it starts in the user's code."""
    here = str(Path(__file__).parent)
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename.startswith(here):
        tb = tb.tb_next
    return tb
