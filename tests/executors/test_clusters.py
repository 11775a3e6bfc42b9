"""The test clusters themselves: two Ray nodes that both run work, and a Dask cluster."""

from __future__ import annotations

import pytest

from tests.clusters import LOOPBACK, RayCluster


@pytest.mark.slow
def test_ray_cluster_schedules_on_both_nodes(ray_cluster: RayCluster) -> None:
    ray = pytest.importorskip("ray")
    from conveyor.executors.ray_connect import disconnect

    disconnect()   # a connection an earlier test left open (executors keep theirs between runs)
    ray.init(address=ray_cluster.address, _node_ip_address=LOOPBACK, logging_level="ERROR")
    try:
        @ray.remote
        def where() -> str:
            return ray.get_runtime_context().get_node_id()

        head = ray.get(where.remote())
        second = ray.get(where.options(resources={ray_cluster.second_node_resource: 1}).remote())
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        assert head and second and isinstance(second, str)
    finally:
        disconnect()


@pytest.mark.slow
def test_dask_cluster_runs_work(dask_cluster: str) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.Client(dask_cluster) as c:
        assert c.submit(sum, [1, 2, 3]).result(timeout=60) == 6
        assert len(c.scheduler_info()["workers"]) == 2
