"""Wire protocols: one module each, registered by name; every module exposes ``routes(service, settings)``."""

from __future__ import annotations

import importlib
from typing import Any

PROTOCOLS: dict[str, str] = {
    "oip_v2": "conveyor.serving.protocols.oip_v2",
    "sagemaker": "conveyor.serving.protocols.sagemaker",   # also serves MLflow's /invocations
    "mlflow": "conveyor.serving.protocols.mlflow",
    "vertex": "conveyor.serving.protocols.vertex",
    "azureml": "conveyor.serving.protocols.azureml",
}


def protocol_routes(name: str, service: Any, settings: Any) -> list[Any]:
    """The routes of one protocol."""
    return importlib.import_module(PROTOCOLS[name]).routes(service, settings)
