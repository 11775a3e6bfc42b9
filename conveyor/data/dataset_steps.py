"""A ready-made step that registers a dataset: ``cv.data.register_dataset_step(table, name="customers")``."""

from __future__ import annotations

from typing import Any

from conveyor.dsl import step


@step(name="register_dataset", cache=False)
def register_dataset_step(data: Any, name: str, alias: str | None = None) -> dict:
    """Register ``data`` (a table, DataFrame or URI of files) as a version of ``name``; returns its reference.

    The version's lineage names this step run as its producer; the same content registers no new
    version, so a re-run returns the version it made before.
    """
    from conveyor.data.datasets import register_dataset

    version = register_dataset(name, data, alias=alias)
    return {"dataset": version.dataset, "version": version.version, "ref": version.ref,
            "content_hash": version.content_hash, "rows": version.num_rows, "alias": alias}
