"""Which platform the serving container is on, told from the variables each cloud sets."""

from __future__ import annotations

import pytest

from conveyor.config import load_container_settings
from conveyor.errors import ConfigurationError
from conveyor.serving.platforms import detect


def _detect(env: dict[str, str], **kw):
    return detect(load_container_settings(env), **kw)


def test_sagemaker_is_the_serve_argument_on_8080_or_its_bound_port() -> None:
    p = _detect({}, mode="serve")
    assert (p.name, p.port, p.model_location) == ("sagemaker", 8080, "/opt/ml/model")
    p = _detect({"SAGEMAKER_BIND_TO_PORT": "9001", "SAGEMAKER_SAFE_PORT_RANGE": "9000-9999"})
    assert (p.name, p.port) == ("sagemaker", 9001)


def test_vertex_takes_its_port_routes_and_storage_uri() -> None:
    p = _detect({"AIP_MODE": "PREDICTION", "AIP_HTTP_PORT": "7080",
                 "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2", "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict", "AIP_STORAGE_URI": "gs://b/m"})
    assert (p.name, p.port, p.model_location) == ("vertex", 7080, "gs://b/m")
    assert (p.predict_route, p.health_route) == ("/v1/endpoints/1/deployedModels/2:predict",
                                                 "/v1/endpoints/1/deployedModels/2")


def test_azureml_listens_where_its_inference_server_does() -> None:
    p = _detect({"AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/churn/3"})
    assert (p.name, p.port, p.model_location) == ("azureml", 5001, "/var/azureml-app/azureml-models/churn/3")


def test_anything_else_is_kubernetes_on_port_or_8080() -> None:
    assert (_detect({}).name, _detect({}).port) == ("kubernetes", 8080)
    assert _detect({"PORT": "9090"}).port == 9090
    assert _detect({"AZUREML_MODEL_DIR": "/m"}, platform="kubernetes").name == "kubernetes"


def test_bad_arguments_and_ports_are_refused_by_name() -> None:
    with pytest.raises(ConfigurationError, match="takes only 'serve'"):
        _detect({}, mode="train")
    with pytest.raises(ConfigurationError, match="--platform 'lambda' is not known"):
        _detect({}, platform="lambda")
    with pytest.raises(ConfigurationError, match="AIP_HTTP_PORT='99999' is not a TCP port"):
        _detect({"AIP_HTTP_PORT": "99999"})
