"""Runs one firing's pipeline in its own process and records the outcome on the firing.

``python -m conveyor.automation.launch FIRING_ID FILE:PIPELINE PARAMS_JSON``
"""

from __future__ import annotations

import json
import sys


def main(argv: list[str] | None = None) -> int:
    from conveyor.runtime.client import Client
    from conveyor.runtime.loader import load_pipeline

    firing_id, target, params_json = (argv or sys.argv[1:])[:3]
    client = Client()
    store = client.metadata.automation
    store.set_firing(firing_id, "running")
    try:
        pipeline = load_pipeline(target)
        run = client.run_pipeline(pipeline, json.loads(params_json), from_text=True, tags={"firing": firing_id},
                                  raise_on_failure=False)
    except Exception as exc:
        store.set_firing(firing_id, "failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    status = "succeeded" if run.status == "succeeded" else "failed"
    store.set_firing(firing_id, status, run_id=run.id,
                     error=None if status == "succeeded" else f"run {run.id} ended {run.status}")
    return 0 if status == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
