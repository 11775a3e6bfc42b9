"""``cv.endpoints``: endpoints from Python with the CLI's checks."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import conveyor as cv
from conveyor.errors import Conflict, InvalidRequest, NotFound
from conveyor.serving.endpoints import Endpoints


@pytest.fixture
def endpoints(client) -> Endpoints:
    X = np.random.default_rng(0).normal(size=(40, 2))
    for _ in range(2):
        client.registry.register("churn", LogisticRegression().fit(X, X[:, 0] > 0))
    client.registry.set_alias("churn", "champion", 1)
    return Endpoints(client)


def test_create_get_list_update_delete(endpoints: Endpoints) -> None:
    rec = endpoints.create("api", model="churn@champion", canary={"churn:2": 10}, shadow="churn:2")
    assert rec.spec == {"routes": [{"model": "churn@champion", "weight": 90.0}, {"model": "churn:2", "weight": 10.0}],
                        "shadows": ["churn:2"], "sticky_header": None}
    assert endpoints.get("api").spec == rec.spec and [e.name for e in endpoints.list()] == ["api"]
    updated = endpoints.update("api", model="churn:2", canary=["churn:1=25"], sticky_header="X-User")
    assert updated.spec["routes"] == [{"model": "churn:2", "weight": 75.0}, {"model": "churn:1", "weight": 25.0}]
    assert updated.spec["sticky_header"] == "X-User"
    endpoints.delete("api")
    assert endpoints.list() == []
    with pytest.raises(NotFound, match="No endpoint 'api'"):
        endpoints.get("api")


def test_the_same_checks_as_the_cli(endpoints: Endpoints) -> None:
    with pytest.raises(NotFound, match="has no alias 'nope'"):
        endpoints.create("api", model="churn@nope")
    with pytest.raises(NotFound, match="has no version 9"):
        endpoints.create("api", model="churn:1", shadow=["churn:9"])
    with pytest.raises(InvalidRequest, match="0 < PERCENT < 100"):
        endpoints.create("api", model="churn:1", canary={"churn:2": 100})
    with pytest.raises(InvalidRequest, match="add up to 100%"):
        endpoints.create("api", model="churn:1", canary={"churn:2": 60, "churn@champion": 40})
    with pytest.raises(InvalidRequest, match="Endpoint name '../x' is not valid"):
        endpoints.create("../x", model="churn:1")
    assert endpoints.list() == []
    endpoints.create("api", model="churn:1")
    with pytest.raises(Conflict, match="Endpoint 'api' already exists"):
        endpoints.create("api", model="churn:2")
    with pytest.raises(NotFound, match="No endpoint 'other'"):
        endpoints.update("other", model="churn:2")


def test_cv_endpoints_uses_the_settings_store(endpoints: Endpoints, client) -> None:
    cv.endpoints.create("from-settings", model="churn:2")
    assert endpoints.get("from-settings").spec["routes"] == [{"model": "churn:2", "weight": 100.0}]
    assert "endpoints" in cv.__all__
