"""Pipelines the Ray executor tests run; module-level, so the workers import them from the package
the executor ships to the cluster. Files under ``CVTEST_RAY`` let a test watch and steer a step
running on a Ray worker (its pid, whether it may finish)."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import conveyor as cv
from tests.clusters import SECOND_NODE_RESOURCE


def _folder() -> Path:
    folder = Path(os.environ["CVTEST_RAY"])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _note(name: str, text: str) -> None:
    path = _folder() / name
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)   # whole or not at all: the test reads it while the step runs


def _count(name: str) -> int:
    with open(_folder() / f"count-{name}", "a") as fh:
        fh.write("x")
    return len((_folder() / f"count-{name}").read_text())


def where() -> dict[str, object]:
    import ray

    return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}


# --- placement, the object store, code shipping, logs ------------------------------------------

@cv.step
def make_array(n: int):
    import numpy as np

    return np.arange(n, dtype="float64")


@cv.step(resources={SECOND_NODE_RESOURCE: 1})
def on_second_node(x) -> dict:
    """Runs where only the second node can: says where, and whether ``x`` came from the object store."""
    print("summing on the second node")
    logging.getLogger("cvtest").warning("a warning from the worker")
    # values from Ray's object store are zero-copy, read-only views; a read from the artifact store is not
    return {**where(), "total": float(x.sum()), "read_only": not x.flags.writeable, "module_file": __file__}


@cv.step
def square(x: int) -> int:
    return x * x


@cv.step
def total(xs: list) -> int:
    print(f"joining {len(xs)} values")
    return sum(xs)


@cv.pipeline
def spread(n: int = 100_000):
    on_second_node(make_array(n))
    total(square.map(x=list(range(8))))


# --- refused at submission ---------------------------------------------------------------------

@cv.step(gpus=1)
def needs_gpu() -> int:
    return 1


@cv.step(resources={"tpu_pod": 4})
def needs_tpu() -> int:
    return 1


@cv.pipeline
def impossible():
    needs_gpu()
    needs_tpu()
    square(3)


# --- failures: a worker killed, a driver killed, a cancelled run -------------------------------

@cv.step(retries=1, backoff=0.01, cache=False)
def killed_once(tag: str) -> dict:
    """First attempt: writes its pid and waits to be killed; the retry returns."""
    if _count(f"killed-{tag}") == 1:
        _note(f"pid-{tag}", str(os.getpid()))
        time.sleep(600)
    return where()


@cv.pipeline
def worker_dies(tag: str = "a"):
    killed_once(tag)


@cv.step
def first(tag: str) -> str:
    _count(f"first-{tag}")
    return tag + "-first"


@cv.step
def blocks_until_released(value: str) -> str:
    """Writes its pid, then waits for the ``release`` file; counts its executions."""
    _count(f"blocks-{value}")
    _note(f"pid-{value}", str(os.getpid()))
    while not (_folder() / "release").exists():
        time.sleep(0.05)
    return value + "-done"


@cv.pipeline
def long_run(tag: str = "a"):
    blocks_until_released(first(tag))
