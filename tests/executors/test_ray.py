"""The Ray executor on a real two-node local Ray cluster (the session's ``ray_cluster``): placement,
the object store, code shipped to the workers, refusals at submission, a worker killed mid-step, a
driver killed mid-run and resumed, and a cancelled run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conveyor.errors import StepFailed
from conveyor.executors.ray import Node, shared_root_problem
from tests.clusters import RayCluster
from tests.conftest import REPO
from tests.executors import ray_pipelines as rp
from tests.processes import alive, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
def on_ray(ray_cluster: RayCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """RAY_ADDRESS names the session's cluster; CVTEST_RAY is the folder the steps and the test share."""
    folder = tmp_path / "ray-notes"
    monkeypatch.setenv("RAY_ADDRESS", ray_cluster.address)
    monkeypatch.setenv("CVTEST_RAY", str(folder))
    monkeypatch.setenv("CONVEYOR_RAY_ENV_VARS", "CVTEST_*")   # Ray workers do not inherit this process's variables
    return folder


def _second_node_id(ray_cluster: RayCluster) -> str:
    import ray

    [node] = [n["NodeID"] for n in ray.nodes() if n["Alive"] and ray_cluster.second_node_resource in n["Resources"]]
    return node


def test_steps_spread_over_both_nodes_and_outputs_pass_through_the_object_store(client, on_ray, ray_cluster) -> None:
    run = rp.spread.run(n=100_000, client=client, executor="ray")
    report = run.output("on_second_node")
    assert report["node"] == _second_node_id(ray_cluster)          # the custom resource placed it
    assert report["total"] == pytest.approx(99_999 * 100_000 / 2)
    assert report["read_only"] is True          # zero-copy from Ray's object store, not re-read from the root
    # the step's module came in the package the executor shipped, not from this checkout
    assert not report["module_file"].startswith(str(REPO)) and "runtime_resources" in report["module_file"]
    # ... and every output is persisted to the artifact root all the same, with its lineage
    assert run.output("make_array").sum() == pytest.approx(99_999 * 100_000 / 2)
    assert run.output("total") == sum(x * x for x in range(8))
    assert run.steps["on_second_node"].status == "succeeded" and run.steps["total"].status == "succeeded"
    logs = {name: text for name, _a, text in client.metadata.steps.logs(run.id)}
    assert "summing on the second node" in logs["on_second_node"]
    assert "a warning from the worker" in logs["on_second_node"]
    assert "joining 8 values" in logs["total"]
    again = rp.spread.run(n=100_000, client=client, executor="ray")   # cache works as locally
    assert {s.status for s in again.steps.values()} == {"cached"}


def test_a_step_asking_for_what_no_node_has_is_refused_at_submission(client, on_ray, ray_cluster) -> None:
    with pytest.raises(StepFailed) as err:
        rp.impossible.run(client=client, executor="ray")
    steps = err.value.run.steps
    assert "Step 'needs_gpu' asks for 1 GPU" in steps["needs_gpu"].error
    assert ray_cluster.address in steps["needs_gpu"].error
    assert "Step 'needs_tpu' asks for 4 of custom resource 'tpu_pod'" in steps["needs_tpu"].error
    assert steps["square"].status == "succeeded"        # what the cluster can run still runs


def test_a_worker_killed_mid_step_is_retried_by_the_steps_policy(client, on_ray) -> None:
    pid_file = on_ray / "pid-kill"

    def kill_when_started() -> None:
        wait_until(pid_file.exists, "the first attempt to start", timeout=120)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)

    killer = threading.Thread(target=kill_when_started, daemon=True)
    killer.start()
    run = rp.worker_dies.run(tag="kill", client=client, executor="ray")
    killer.join(timeout=10)
    step = run.steps["killed_once"]
    assert step.status == "succeeded" and step.attempts == 2
    assert run.output("killed_once")["pid"] != int(pid_file.read_text())    # a new worker ran the retry
    log = client.metadata.steps.logs(run.id, "killed_once")[0][2]
    assert "attempt 1 of 2 failed: the Ray worker running step 'killed_once' died" in log


def _driver(settings, folder: Path, address: str, tag: str) -> subprocess.Popen[str]:
    """A driver process running ``long_run`` on the cluster, with this test's Conveyor home."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONVEYOR_HOME": str(settings.home), "RAY_ADDRESS": address,
           "CVTEST_RAY": str(folder), "CONVEYOR_RAY_ENV_VARS": "CVTEST_*"}
    script = (
        "import json, sys\n"
        "from conveyor.errors import RunCancelled\n"
        "from conveyor.runtime.client import Client\n"
        "from tests.executors import ray_pipelines as rp\n"
        "from tests.processes import alive, wait_until\n"
        "try:\n"
        f"    rp.long_run.run(tag={tag!r}, client=Client(), executor='ray')\n"
        "except RunCancelled:\n"
        # still alive here: the step's worker must be gone because the run cancelled it, not because we exited
        f"    pid = int(open({str(folder / ('pid-' + tag + '-first'))!r}).read())\n"
        "    wait_until(lambda: not alive(pid), 'the cancelled task to stop', timeout=60)\n"
        "    print(json.dumps({'cancelled': True, 'pid': pid}))\n"
        "    sys.exit(130)\n")
    return subprocess.Popen([sys.executable, "-c", script], cwd=str(REPO), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_a_driver_killed_mid_run_leaves_a_run_that_resume_finishes(client, settings, on_ray, ray_cluster) -> None:
    driver = _driver(settings, on_ray, ray_cluster.address, "resume")
    try:
        wait_until((on_ray / "pid-resume-first").exists, "the second step to start on the cluster", timeout=120)
        driver.kill()                        # SIGKILL: no cleanup at all on the driver
        driver.wait(timeout=30)
    finally:
        if driver.poll() is None:
            driver.kill()
    [record] = client.metadata.runs.list()
    (on_ray / "release").write_text("go")
    run = client.resume(record.id, executor="ray")
    assert run.status == "succeeded"
    assert run.output("blocks_until_released") == "resume-first-done"
    assert run.steps["first"].status == "succeeded" and (on_ray / "count-first-resume").read_text() == "x"
    assert (on_ray / "count-blocks-resume-first").read_text() == "xx"   # interrupted once, finished on resume


def test_ctrl_c_cancels_the_runs_tasks_on_the_cluster(settings, on_ray, ray_cluster) -> None:
    driver = _driver(settings, on_ray, ray_cluster.address, "cancel")
    try:
        wait_until((on_ray / "pid-cancel-first").exists, "the step to start on the cluster", timeout=120)
        step_pid = int((on_ray / "pid-cancel-first").read_text())
        driver.send_signal(signal.SIGINT)
        out, err = driver.communicate(timeout=90)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 130, err
    assert json.loads(out.strip().splitlines()[-1]) == {"cancelled": True, "pid": step_pid}
    assert not alive(step_pid)


def test_a_local_folder_root_is_refused_when_nodes_run_on_other_machines() -> None:
    here = Node("127.0.0.1", "this-host", {"CPU": 2})
    there = Node("10.1.2.3", "gpu-box-7", {"CPU": 8})
    assert shared_root_problem("/data/artifacts", [here], shared_folder=False) is None
    problem = shared_root_problem("/data/artifacts", [here, there], shared_folder=False)
    assert problem is not None and "gpu-box-7 (10.1.2.3)" in problem and "CONVEYOR_RAY_SHARED_ROOT=1" in problem
    assert shared_root_problem("/data/artifacts", [here, there], shared_folder=True) is None
    assert shared_root_problem("s3://bucket/artifacts", [here, there], shared_folder=False) is None
    assert "memory" in (shared_root_problem("memory://x", [here], shared_folder=False) or "")


def test_resources_are_checked_when_the_step_is_declared_and_become_ray_requests() -> None:
    import conveyor as cv
    from conveyor.errors import ConfigurationError, PipelineDefinitionError
    from conveyor.executors.ray import ray_requests, unmet_request

    def body() -> int:
        return 1

    spec = cv.step(resources={"gpus": 1, "a100": 2}, memory="2Gi")(body).spec
    assert (spec.gpus, spec.memory, spec.resources) == (1, "2Gi", (("a100", 2.0),))
    assert ray_requests("body", spec.requests) == {"CPU": 1.0, "GPU": 1.0, "memory": 2.0 * 2**30, "a100": 2.0}
    for bad, message in (({"gpus": 1}, "given both"), ({"GPU": 1}, "not a custom resource"),
                         ({"a100": 0}, "positive amount"), (["a100"], "dict of name")):
        with pytest.raises(PipelineDefinitionError, match=message):
            cv.step(resources=bad, gpus=1 if bad == {"gpus": 1} else None)(body)
    with pytest.raises(ConfigurationError, match="memory='lots' is not a size"):
        ray_requests("body", {"memory": "lots"})
    big = Node("127.0.0.1", "a", {"CPU": 8, "GPU": 0, "memory": 2.0**34})
    gpu = Node("127.0.0.1", "b", {"CPU": 2, "GPU": 1, "memory": 2.0**30})
    assert unmet_request("s", {"CPU": 8.0}, [big, gpu], "x:1") is None
    assert "has all of it at once" in (unmet_request("s", {"CPU": 4.0, "GPU": 1.0}, [big, gpu], "x:1") or "")
