"""Batch scoring on a cluster: chunks scored by Ray actors (or Dask tasks), the ledger kept by the driver.

Each call scores exactly one chunk of the local path (the same rows, read by row group from the
shared input, written as the same ``part-<chunk>.parquet``), so the output and the resume ledger
are byte for byte those of ``executor="process"`` and a run may resume on either. Ray Data would
plan its own blocks, ordering and output files, and its progress lives in its executor, not in a
ledger a rerun can read.

On Ray the chunks go to *scorers*: one actor per CPU of the cluster, pinned to its node, that
outlive the command (``CONVEYOR_RAY_BATCH_IDLE_S``, 10 minutes by default, after their last
chunk; 0 ends them with the command). A new command finds them by name and they already hold the
imports (pyarrow, the model's library) and, for the same model bytes, the model itself: Ray gives
every new driver new worker processes, and importing scikit-learn in each cost a one-shot command
about as much as scoring a million rows. A scorer holds no CPU in Ray's accounting while it waits
(``num_cpus=0``; it scores one chunk at a time), so idle scorers never hold back other work. One
pool serves one code context: the Python and Conveyor versions, the job's runtime environment and
the folders Ray puts on workers' ``sys.path`` (the driver's script folder and working directory)
name it. A scorer whose imported source files changed since it imported them exits before its
next chunk, and Ray starts it afresh (that chunk is retried there), so edited code is never scored
with the old modules.

The model travels once: the driver puts its bundle (bytes + content hash) into the object store,
each call carries only a reference, and a scorer fetches and loads it when it has not loaded that
hash yet (``batch.install_model``), after checking the hash. Input and output must be on a root
every node reaches (a shared folder, ``s3://``, ``gs://``, ``az://``); workers use their own
credentials for it.

Failures: a scorer that dies mid-chunk is restarted by Ray and the chunk retried (``max_task_retries``;
on Dask by the scheduler up to its ``allowed-failures``) and its chunk rewritten whole (parts are
written to a temporary name and moved into place). A driver killed mid-run leaves the ledger of the
chunks finished; the same command again scores only the others.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import sysconfig
import threading
import time
from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.serving import batch
from conveyor.serving.batch_bundle import ModelBundle, bundle_from_loader

RAY_MAX_RETRIES = 3     # attempts after a scorer death before the run stops (and can be resumed)
NAMESPACE = "conveyor"  # the Ray namespace of the scorers' names
STALE_CODE_EXIT = 75    # a scorer's exit status when its imported code changed (Ray restarts it)


def _bundle(load_model: Any) -> ModelBundle:
    return load_model if isinstance(load_model, ModelBundle) else bundle_from_loader(load_model)


# --- worker side --------------------------------------------------------------------------------

_installed_roots: tuple[str, ...] | None = None


def _installed() -> tuple[str, ...]:
    """The folders of the standard library and installed packages: code there changes only with a new version."""
    global _installed_roots
    if _installed_roots is None:
        paths = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
        _installed_roots = tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)
    return _installed_roots


class CodeStamps:
    """The (mtime, size) of every loaded module's source file outside the installed folders, to see edits.

    ``note`` looks only at modules it has not classified yet (a scorer calls it after every chunk, with
    thousands of modules loaded); ``changed`` stats only the project's own files.
    """

    def __init__(self) -> None:
        self.stamps: dict[str, tuple[int, int]] = {}
        self._seen: set[str] = set()
        self._modules = 0

    def note(self) -> None:
        """Stamp the source files of modules loaded since the last call."""
        if len(sys.modules) == self._modules:
            return
        roots = _installed()
        for module in list(sys.modules.values()):
            path = getattr(module, "__file__", None)
            if not path or path in self._seen:
                continue
            self._seen.add(path)
            real = os.path.realpath(path)
            if real.startswith(roots):
                continue
            with contextlib.suppress(OSError):
                st = os.stat(real)
                self.stamps[path] = (st.st_mtime_ns, st.st_size)
        self._modules = len(sys.modules)

    def changed(self) -> str | None:
        """The first stamped source file that changed (or went) since it was stamped, or None."""
        for path, stamp in self.stamps.items():
            try:
                st = os.stat(path)
            except OSError:
                return path
            if (st.st_mtime_ns, st.st_size) != stamp:
                return path
        return None


class Scorer:
    """A Ray actor that scores chunks on one node, keeps its imports and last model, and retires when idle."""

    def __init__(self, idle_s: float) -> None:
        import fsspec  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        self._idle_s = idle_s
        self._busy = False
        self._last = time.monotonic()
        self._code = CodeStamps()
        self._code.note()
        if idle_s > 0:
            threading.Thread(target=self._watch, name="conveyor-scorer-idle", daemon=True).start()

    def score(self, box: list[Any], content_hash: str, task: tuple[Any, ...]) -> tuple[int, int]:
        """Score one chunk; ``box`` holds the bundle's reference (boxed, so Ray does not fetch it for every chunk)."""
        import ray

        self._busy = True
        try:
            if self._code.changed() is not None:
                # a source file this process imported was edited: a new process imports the new code, and Ray
                # retries this chunk there
                os._exit(STALE_CODE_EXIT)
            batch.install_model(content_hash, lambda: ray.get(box[0]))
            out = batch._score(task)
            self._code.note()   # the modules the model's unpickling imported
            return out
        finally:
            self._busy = False
            self._last = time.monotonic()

    def describe(self) -> dict[str, Any]:
        """This scorer's process, node, loaded model and idle time.

        For a look from any driver: ``ray.get(ray.get_actor(name, namespace="conveyor").describe.remote())``.
        """
        import ray

        return {"pid": os.getpid(), "node": ray.get_runtime_context().get_node_id(), "model": batch._digest,
                "idle_s": self._idle_s}

    def _watch(self) -> None:
        import ray

        period = min(30.0, max(0.2, self._idle_s / 4))
        while True:
            time.sleep(period)
            if not self._busy and time.monotonic() - self._last >= self._idle_s:
                # ended by Ray, never restarted; a chunk sent in this instant fails over to a new scorer
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return


def _dask_score(bundle: ModelBundle, content_hash: str, task: tuple[Any, ...]) -> tuple[int, int]:
    """A Dask task: the scattered bundle stays in the worker's memory; the model is loaded once per process."""
    batch.install_model(content_hash, lambda: bundle)
    return batch._score(task)


# --- driver side --------------------------------------------------------------------------------

_scorer_class: Any = None


def _scorer_actor() -> Any:
    global _scorer_class
    if _scorer_class is None:
        import ray

        _scorer_class = ray.remote(Scorer)
    return _scorer_class


def pool_key(idle_s: float) -> str:
    """The name of the code context scorers serve: what decides which code a Ray worker of this driver imports."""
    import ray

    import conveyor

    script = os.path.dirname(os.path.realpath(sys.argv[0])) if sys.argv and sys.argv[0] else ""
    paths = [script if script in sys.path else "", os.path.abspath(os.curdir)]
    try:
        env = dict(ray.get_runtime_context().runtime_env or {})
    except Exception:   # a Ray Client connection without it: the paths and versions still decide
        env = {}
    text = json.dumps([conveyor.__version__, sys.version, paths, env, float(idle_s)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def scoring_nodes() -> list[tuple[str, int]]:
    """(node id, whole CPUs) of the connected cluster's alive nodes that have a CPU, in a fixed order."""
    import ray

    nodes = sorted((str(n["NodeID"]), int(n.get("Resources", {}).get("CPU", 0))) for n in ray.nodes() if n.get("Alive"))
    return [(node, cpus) for node, cpus in nodes if cpus >= 1]


def placements(nodes: list[tuple[str, int]], workers: int | None) -> list[tuple[str, int]]:
    """(node, slot) of each scorer: every CPU of every node, taken round the nodes, the first ``workers`` of them."""
    slots = [(node, j) for j in range(max((c for _, c in nodes), default=0)) for node, c in nodes if j < c]
    return slots[:workers] if workers else slots


def scorer_names(key: str, nodes: list[tuple[str, int]], workers: int | None) -> list[str]:
    return [f"scorer-{key}-{node[:12]}-{j}" for node, j in placements(nodes, workers)]


class RayPool:
    """Chunks scored by the cluster's scorers (one per CPU, pinned to its node); see the module's notes.

    A handle is this pool's number for a chunk, not a Ray reference: a chunk whose scorer ended
    for good (its node died, or it retired as the chunk was sent) is sent again to a new scorer at
    the same place, under the same number, up to ``RAY_MAX_RETRIES`` times.
    """

    def __init__(self, load_model: Any, workers: int | None, address: str | None) -> None:
        from conveyor.config import load_settings
        from conveyor.executors.ray_connect import connect

        settings = load_settings()
        connect(address or settings.ray_address, start_local=True, num_cpus=workers)
        import ray

        self._ray = ray
        nodes = scoring_nodes()
        if not nodes:
            raise ConfigurationError("The Ray cluster has no CPU to score on; add a worker node or check `ray status`.")
        self._idle_s = settings.ray_batch_idle_s
        key = pool_key(self._idle_s)
        self._places = list(zip(placements(nodes, workers), scorer_names(key, nodes, workers)))
        # made first, so that new scorers start (and import) while this process loads the model
        self._scorers = [self._scorer(i) for i in range(len(self._places))]
        bundle = _bundle(load_model)
        self.slots = 2 * len(self._scorers)
        self._hash = bundle.content_hash
        self._box = [ray.put(bundle)]
        self._load = [0] * len(self._scorers)
        self._chunks: dict[int, tuple[tuple[Any, ...], int, int]] = {}   # handle -> (task, scorer, attempts)
        self._refs: dict[int, Any] = {}                                    # handle -> its call's reference
        self._next = 0

    def _scorer(self, index: int) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        (node, _), name = self._places[index]
        options: dict[str, Any] = {
            "num_cpus": 0, "max_concurrency": 1, "max_restarts": -1, "max_task_retries": RAY_MAX_RETRIES,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}
        if self._idle_s > 0:   # kept for the next command, found by name
            options.update(name=name, namespace=NAMESPACE, lifetime="detached", get_if_exists=True)
        return _scorer_actor().options(**options).remote(self._idle_s)

    def submit(self, task: tuple[Any, ...]) -> Any:
        handle = self._next
        self._next += 1
        self._send(handle, task, min(range(len(self._scorers)), key=self._load.__getitem__), 0)
        return handle

    def _send(self, handle: int, task: tuple[Any, ...], index: int, attempts: int) -> None:
        self._refs[handle] = self._scorers[index].score.remote(self._box, self._hash, task)
        self._chunks[handle] = (task, index, attempts)
        self._load[index] += 1

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[int, int]]]:
        while True:
            # an error is raised here, outside the frame that held Ray's references: a traceback kept by the
            # caller must not keep references alive past the connection (Ray ends a process that frees one then)
            out, error = self._collect(handles)
            if error is not None:
                raise error
            if out:
                return out

    def _collect(self, handles: list[Any]) -> tuple[list[tuple[Any, tuple[int, int]]], BaseException | None]:
        """The chunks finished now, or the error that stops the run; chunks of scorers that ended are sent again."""
        from ray import exceptions as rex

        by_ref = {self._refs[h]: h for h in handles}
        ready, _ = self._ray.wait(list(by_ref), num_returns=1)
        out = []
        for ref in ready:
            handle = by_ref[ref]
            task, index, attempts = self._chunks[handle]
            self._load[index] -= 1
            try:
                value = self._ray.get(ref)
            except rex.RayTaskError as exc:   # the model or the data failed: the same error as locally
                return out, (exc.cause if isinstance(getattr(exc, "cause", None), Exception)
                             else exc.with_traceback(None))
            except rex.ActorDiedError as exc:
                if attempts >= RAY_MAX_RETRIES:
                    return out, batch.WorkerLost(f" (ActorDiedError after {RAY_MAX_RETRIES} retries)")
                # the scorer ended for good: a new one at the same place scores the chunk
                if _same_actor(self._scorers[index], exc):
                    self._scorers[index] = self._scorer(index)
                self._send(handle, task, index, attempts + 1)
                continue
            except rex.RayError as exc:       # a node or an object lost past every retry
                return out, batch.WorkerLost(f" ({type(exc).__name__} after {RAY_MAX_RETRIES} retries)")
            del self._refs[handle], self._chunks[handle]
            out.append((handle, value))
        return out, None

    def close(self) -> None:
        for ref in self._refs.values():   # after an error: stop the rest instead of letting them run on
            try:
                self._ray.cancel(ref)
            except Exception:       # already finished, or the cluster went away: nothing to stop
                pass
        self._refs.clear()
        self._chunks.clear()
        self._box.clear()
        if self._idle_s <= 0:       # scorers of this command only
            for scorer in self._scorers:
                with contextlib.suppress(Exception):
                    self._ray.kill(scorer, no_restart=True)
        self._scorers.clear()


def _same_actor(scorer: Any, exc: BaseException) -> bool:
    """Whether ``exc`` reports the death of ``scorer`` (not of one already replaced)."""
    actor_id = getattr(exc, "actor_id", None)
    return actor_id is None or actor_id == scorer._actor_id.hex()


class DaskPool:
    """Chunks as Dask tasks on the scheduler at the address, else on a local cluster of ``workers`` processes."""

    def __init__(self, load_model: Any, workers: int | None, address: str | None) -> None:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigurationError("Dask is not installed. Install the extra: pip install 'conveyor[dask]'.") from None
        from conveyor.config import load_settings

        target = address or load_settings().dask_scheduler_address
        self._cluster = None
        if target is None:
            self._cluster = LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                                         host="127.0.0.1", dashboard_address=None)
            target = self._cluster.scheduler_address
        try:
            self._client = Client(target, timeout=30, set_as_default=False)
        except OSError as exc:
            raise ConfigurationError(f"Cannot reach the Dask scheduler at {target}: {exc}. Check "
                                     "DASK_SCHEDULER_ADDRESS.") from None
        bundle = _bundle(load_model)
        threads = sum(self._client.nthreads().values()) or 1
        self.slots = 2 * (workers or threads)
        self._hash = bundle.content_hash
        self._bundle = self._client.scatter(bundle, broadcast=True, hash=False)
        self._pending: set[Any] = set()

    def submit(self, task: tuple[Any, ...]) -> Any:
        fut = self._client.submit(_dask_score, self._bundle, self._hash, task, pure=False)
        self._pending.add(fut)
        return fut

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[int, int]]]:
        from distributed import wait
        from distributed.scheduler import KilledWorker

        with self._client.as_current():
            done, _ = wait(handles, return_when="FIRST_COMPLETED")
        out = []
        for fut in done:
            self._pending.discard(fut)
            try:
                out.append((fut, fut.result()))
            except KilledWorker as exc:
                raise batch.WorkerLost(f" ({exc})") from None
        return out

    def close(self) -> None:
        try:
            if self._pending:
                self._client.cancel(list(self._pending))
            self._client.close()
        finally:
            if self._cluster is not None:
                self._cluster.close()


def cluster_pool(executor: str, load_model: Any, workers: int | None, address: str | None) -> Any:
    """The pool of ``executor`` (``ray`` or ``dask``)."""
    return RayPool(load_model, workers, address) if executor == "ray" else DaskPool(load_model, workers, address)
