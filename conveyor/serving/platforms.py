"""Which cloud runs the serving container, told from the environment exactly as each one sets it.

=========== ============================================ ============ ==========================================
platform    how it is recognised                         port         where the model is
=========== ============================================ ============ ==========================================
SageMaker   ``docker run IMAGE serve``, SAGEMAKER_*      8080, or     ``/opt/ml/model`` (ModelDataUrl unpacked;
            variables                                    SAGEMAKER_   a ``model.tar.gz`` there is unpacked too)
                                                         BIND_TO_PORT
Vertex AI   ``AIP_MODE=PREDICTION`` or ``AIP_HTTP_PORT``  AIP_HTTP_    ``AIP_STORAGE_URI`` (``gs://``, read
                                                         PORT         through gcsfs)
Azure ML    ``AZUREML_MODEL_DIR``                        5001, as     under ``AZUREML_MODEL_DIR`` (often one
                                                         Azure's      folder down)
                                                         inference
                                                         server
Kubernetes  none of the above (KServe, a Deployment)     PORT or 8080 ``CONVEYOR_MODEL_URI``
=========== ============================================ ============ ==========================================

Where the platform names no model (no ModelDataUrl, no artifactUri), the bundle baked into the
image (``CONVEYOR_MODEL_URI``) is served.
"""

from __future__ import annotations

from dataclasses import dataclass

from conveyor.config import ContainerSettings
from conveyor.errors import ConfigurationError

PLATFORMS = ("sagemaker", "vertex", "azureml", "kubernetes")
SAGEMAKER_MODEL_DIR = "/opt/ml/model"
AZUREML_PORT = 5001          # azureml-inference-server-http's default; declare the same in the environment
DEFAULT_PORT = 8080


@dataclass(frozen=True, slots=True)
class Platform:
    """How this container must answer: its port, its model's location, the routes its platform calls."""

    name: str
    port: int
    model_location: str | None      # what the platform provides (None: nothing; the image's own bundle serves)
    fix: str                        # how to give this platform a model, ending every "no model" message
    predict_route: str = "/predict"
    health_route: str = "/health"


def detect(container: ContainerSettings, *, mode: str | None = None, platform: str | None = None,
           sagemaker_model_dir: str = SAGEMAKER_MODEL_DIR) -> Platform:
    """The platform this process runs on; ``platform`` forces one, ``mode == "serve"`` is SageMaker's argument."""
    if mode not in (None, "serve"):
        raise ConfigurationError(f"Unknown argument {mode!r}: the serving container takes only 'serve' (as SageMaker "
                                 "passes it) or no argument.")
    if platform is not None and platform not in PLATFORMS:
        raise ConfigurationError(f"--platform {platform!r} is not known. Use one of: {', '.join(PLATFORMS)}.")
    name = platform or _recognise(container, mode)
    if name == "sagemaker":
        return Platform("sagemaker", container.sagemaker_bind_to_port or DEFAULT_PORT, sagemaker_model_dir,
                        "SageMaker unpacks the model's ModelDataUrl there: export the bundle as a tarball "
                        "(`conveyor models export MODEL_REF s3://BUCKET/PREFIX/model.tar.gz`) and create the model "
                        "with that ModelDataUrl.")
    if name == "vertex":
        return Platform("vertex", container.aip_http_port or DEFAULT_PORT, container.aip_storage_uri,
                        "Vertex AI copies the model's artifactUri to AIP_STORAGE_URI: export the bundle to a gs:// "
                        "folder (`conveyor models export MODEL_REF gs://BUCKET/PREFIX`) and upload the model with "
                        "--artifact-uri set to it.",
                        predict_route=container.aip_predict_route or "/predict",
                        health_route=container.aip_health_route or "/health")
    if name == "azureml":
        return Platform("azureml", AZUREML_PORT, container.azureml_model_dir,
                        "Azure ML mounts the deployment's model under AZUREML_MODEL_DIR: register the exported "
                        "bundle folder (`conveyor models export MODEL_REF ./bundle`, then `az ml model create --path "
                        "./bundle`) and name it in the deployment's model.")
    return Platform("kubernetes", container.port or DEFAULT_PORT, None,
                    "Set CONVEYOR_MODEL_URI to the bundle (a folder in the image or a gs://, s3://, az:// URL), as the "
                    "image from `conveyor build-image` does.")


def _recognise(container: ContainerSettings, mode: str | None) -> str:
    if container.aip_mode == "PREDICTION" or container.aip_http_port is not None or container.aip_predict_route:
        return "vertex"
    if container.azureml_model_dir:
        return "azureml"
    if mode == "serve" or container.sagemaker_env:
        return "sagemaker"
    return "kubernetes"
