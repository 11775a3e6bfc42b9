"""Make every foreign library's venv ahead of the tests that need them: ``python -m tests.export.prewarm``.

``make test`` starts this in the background, so the venvs (minutes of pip on a fresh machine)
are built while other tests run; a test needing one waits on its lock (see ``venvs.py``). Airflow's
migrated template database is made here too (``validate_airflow.airflow_home``).
"""

from __future__ import annotations

import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.data.validation.make_fixtures import PANDERA
from tests.export import (
    validate_airflow,
    validate_argo,
    validate_azureml,
    validate_kfp,
    validate_sagemaker,
    validate_stepfunctions,
)
from tests.export.test_serving_image import KSERVE
from tests.export.venvs import target_venv

VENVS = [  # pandera's first (its test runs early in the suite), then the largest: they take longest
    ("pandera", PANDERA), ("airflow", validate_airflow.VERSIONS["2"]), ("azureml", validate_azureml.REQUIREMENTS),
    ("sagemaker", validate_sagemaker.SDK), ("airflow3", validate_airflow.VERSIONS["3"]),
    ("kfp", validate_kfp.KFP_REQUIREMENTS), ("kserve", KSERVE), ("hera", validate_argo.HERA),
    ("statelint", validate_stepfunctions.STATELINT), ("awscli", ["awscli==1.46.3"]),
]


def main() -> None:
    started = time.monotonic()

    def build(item: tuple[str, list[str]]) -> str:
        name, requirements = item
        try:
            target_venv(name, requirements)
            if name == "airflow":
                with tempfile.TemporaryDirectory(prefix="airflow-prewarm-") as tmp:
                    validate_airflow.airflow_home(Path(tmp) / "home", Path(tmp))
            return f"{name}: ready"
        except Exception as exc:   # the test that needs it makes it again and shows the error
            return f"{name}: failed: {exc}"

    with ThreadPoolExecutor(max_workers=3) as pool:
        for line in pool.map(build, VENVS):
            print(f"[{time.monotonic() - started:6.1f}s] {line}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
