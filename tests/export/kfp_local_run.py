"""Run inside the kfp venv: run an exported IR end to end with ``kfp.local``'s SubprocessRunner.

``python kfp_local_run.py pipeline.yaml PIPELINE_ROOT [name=JSON ...]`` loads the file with
``kfp.components.load_component_from_file``, runs it in this interpreter (no per-task venv) and
exits non-zero when a task failed.
"""

from __future__ import annotations

import json
import sys

from kfp import components, local


def main(path: str, root: str, pairs: list[str]) -> None:
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=root, raise_on_error=True)
    pipeline = components.load_component_from_file(path)
    arguments = {k: json.loads(v) for k, _, v in (p.partition("=") for p in pairs)}
    pipeline(**arguments)
    print("KFP-LOCAL-RUN-SUCCEEDED")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
