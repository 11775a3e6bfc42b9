"""Stored bytes by pipeline, model and dataset: each object once per group."""

from __future__ import annotations

import pyarrow as pa

from conveyor.cost.storage import storage_usage
from tests.cost import pipelines as p


def test_bytes_by_pipeline_model_and_dataset(client) -> None:
    from conveyor.data.datasets import DatasetCatalog

    first = p.chain.run(client=client, seed=1)
    p.chain.run(client=client, seed=1, fail=False)           # a cache hit: the same objects, counted once
    outputs = client.metadata.artifacts.for_run(first.id)
    sizes = {a.content_hash: a.size for _s, _n, a in outputs if a.uri}
    rows, objects, total = storage_usage(client.metadata, "pipeline")
    assert [(r.name, r.objects, r.bytes) for r in rows] == [("chain", len(sizes), sum(sizes.values()))]
    model_art = next(a for s, _n, a in outputs if s == "fit")
    client.registry.register("m", artifact_id=model_art.id, run_id=first.id)
    client.registry.register("m", artifact_id=model_art.id, run_id=first.id)    # same bytes, second version
    models = storage_usage(client.metadata, "model")[0]
    assert [(r.name, r.versions, r.objects, r.bytes) for r in models] == [("m", 2, 1, model_art.size)]
    catalog = DatasetCatalog(client.metadata, client.artifacts, "tester")
    catalog.register("d", pa.table({"x": list(range(10_000))}), profile=False)
    datasets = storage_usage(client.metadata, "dataset")[0]
    assert datasets[0].name == "d" and datasets[0].versions == 1 and datasets[0].bytes > 40_000
    _rows, objects, total = storage_usage(client.metadata, "pipeline")
    assert objects == len(sizes) + 1 and total == sum(sizes.values()) + datasets[0].bytes
