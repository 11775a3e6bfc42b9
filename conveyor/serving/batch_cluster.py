"""Batch scoring on a cluster: one Ray (or Dask) task per chunk, the ledger kept by the driver.

Plain tasks rather than Ray Data: each task scores exactly one chunk of the local path (the same
rows, read by row group from the shared input, written as the same ``part-<chunk>.parquet``), so
the output and the resume ledger are byte for byte those of ``executor="process"`` and a run may
resume on either. Ray Data would plan its own blocks, ordering and output files, and its progress
lives in its executor, not in a ledger a rerun can read.

The model travels once: the driver puts its bundle (bytes + content hash) into the object store,
each task carries only a reference, and a worker process fetches and loads it on its first chunk
(``batch.install_model``), after checking the hash. Input and output must be on a root every node
reaches (a shared folder, ``s3://``, ``gs://``, ``az://``); workers use their own credentials for it.

Failures: a task whose worker or node dies is retried by Ray (``max_retries``; by Dask's scheduler
up to its ``allowed-failures``) and its chunk rewritten whole (parts are written to a temporary name
and moved into place). A driver killed mid-run leaves the ledger of the chunks finished; the same
command again scores only the others.
"""

from __future__ import annotations

from typing import Any

from conveyor.errors import ConfigurationError
from conveyor.serving import batch
from conveyor.serving.batch_bundle import ModelBundle, bundle_from_loader

RAY_MAX_RETRIES = 3     # attempts after a worker death before the run stops (and can be resumed)
WARM_WAIT_S = 10.0      # the first chunk waits at most this long for the workers started ahead of it


def _bundle(load_model: Any) -> ModelBundle:
    return load_model if isinstance(load_model, ModelBundle) else bundle_from_loader(load_model)


# --- worker side --------------------------------------------------------------------------------

def _ray_score(box: list[Any], content_hash: str, task: tuple[Any, ...]) -> tuple[int, int]:
    """A Ray task: ``box`` holds the bundle's reference (boxed, so Ray does not fetch it for every chunk)."""
    import ray

    batch.install_model(content_hash, lambda: ray.get(box[0]))
    return batch._score(task)


def _ray_warm() -> None:
    """A Ray task run while the driver loads the model: the worker process starts and imports what scoring needs."""
    import fsspec  # noqa: F401
    import pyarrow.parquet  # noqa: F401


def _dask_score(bundle: ModelBundle, content_hash: str, task: tuple[Any, ...]) -> tuple[int, int]:
    """A Dask task: the scattered bundle stays in the worker's memory; the model is loaded once per process."""
    batch.install_model(content_hash, lambda: bundle)
    return batch._score(task)


# --- driver side --------------------------------------------------------------------------------

class RayPool:
    """Chunks as Ray tasks (one CPU each) on the connected cluster."""

    def __init__(self, load_model: Any, workers: int | None, address: str | None) -> None:
        from conveyor.config import load_settings
        from conveyor.executors.ray_connect import connect

        connect(address or load_settings().ray_address, start_local=True, num_cpus=workers)
        import ray

        self._ray = ray
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if cpus < 1:
            raise ConfigurationError("The Ray cluster has no CPU to score on; add a worker node or check `ray status`.")
        # a new driver gets new worker processes: start them now (one task per CPU), so that they start
        # and import while this process loads the model, rather than after it
        warm = ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")(_ray_warm)
        self._warming = [warm.remote() for _ in range(workers or cpus)]
        bundle = _bundle(load_model)
        self.slots = 2 * (workers or cpus)
        self._hash = bundle.content_hash
        self._box = [ray.put(bundle)]
        # SPREAD: chunks go round the nodes instead of filling the driver's node first
        self._task = ray.remote(num_cpus=1, max_retries=RAY_MAX_RETRIES, scheduling_strategy="SPREAD")(_ray_score)
        self._pending: set[Any] = set()

    def submit(self, task: tuple[Any, ...]) -> Any:
        if self._warming:
            # chunks go out once every node's CPUs are free again, so that they spread over all nodes
            # (one submitted while a node's worker is still starting would go to another node)
            self._ray.wait(self._warming, num_returns=len(self._warming), timeout=WARM_WAIT_S)
            self._warming.clear()
        ref = self._task.remote(self._box, self._hash, task)
        self._pending.add(ref)
        return ref

    def wait(self, handles: list[Any]) -> list[tuple[Any, tuple[int, int]]]:
        from ray import exceptions as rex

        ready, _ = self._ray.wait(handles, num_returns=1)
        out = []
        for ref in ready:
            self._pending.discard(ref)
            try:
                out.append((ref, self._ray.get(ref)))
            except rex.RayTaskError as exc:   # the model or the data failed: the same error as locally
                raise (exc.cause if isinstance(getattr(exc, "cause", None), Exception) else exc) from None
            except rex.RayError as exc:       # worker, node or object lost past every retry
                raise batch.WorkerLost(f" ({type(exc).__name__} after {RAY_MAX_RETRIES} retries)") from None
        return out

    def close(self) -> None:
        for ref in self._pending:   # after an error: stop the rest instead of letting them run on
            try:
                self._ray.cancel(ref)
            except Exception:       # already finished, or the cluster went away: nothing to stop
                pass
        self._pending.clear()
        self._box.clear()
        self._warming.clear()


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
