"""The code-package check: a package this process pinned recently is not asked for again."""

from __future__ import annotations

import pytest

from conveyor.executors import ray_code


class Cluster:
    def __init__(self, has: bool) -> None:
        self.has = has
        self.asked: list[str] = []
        self.pinned: list[str] = []

    def exists(self, uri: str) -> bool:
        self.asked.append(uri)
        return self.has

    def pin(self, uri: str) -> None:
        self.pinned.append(uri)


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_code, "_seen_at", {})


def test_a_package_checked_once_is_trusted_for_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ray_code.time, "monotonic", lambda: clock[0])
    cluster = Cluster(has=True)
    assert ray_code._still_there("gcs://pkg.zip", cluster.exists, cluster.pin)
    clock[0] += ray_code.TRUST_S / 2
    assert ray_code._still_there("gcs://pkg.zip", cluster.exists, cluster.pin)
    assert cluster.asked == ["gcs://pkg.zip"] and cluster.pinned == ["gcs://pkg.zip"]
    clock[0] += ray_code.TRUST_S
    assert ray_code._still_there("gcs://pkg.zip", cluster.exists, cluster.pin)
    assert len(cluster.asked) == 2 and len(cluster.pinned) == 2   # asked again, and pinned again


def test_a_package_the_cluster_lost_is_not_trusted() -> None:
    cluster = Cluster(has=False)
    assert not ray_code._still_there("gcs://gone.zip", cluster.exists, cluster.pin)
    assert not ray_code._still_there("gcs://gone.zip", cluster.exists, cluster.pin)
    assert cluster.asked == ["gcs://gone.zip", "gcs://gone.zip"]
