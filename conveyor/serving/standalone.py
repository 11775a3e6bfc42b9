"""The serving container: one model bundle, no metadata database, the contract of the cloud it runs on.

``conveyor serve-container`` (the image's ENTRYPOINT) finds its platform (``platforms.py``), loads
the bundle (hash verified before anything is deserialised), and serves it with the same app,
protocols and edge as ``conveyor serve``, behind one endpoint named after the model. A model that
is missing or refused stops the process before it listens, with the path and the fix on stderr:
the platform then reports a failed start instead of a container that answers 503 for ever.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conveyor.config import ContainerSettings, Settings, load_container_settings, load_settings
from conveyor.errors import NotFound
from conveyor.serving.bundle import ModelBundle, load_bundle, locate_bundle, store_io
from conveyor.serving.catalog import ApiKey, EndpointSpec, LoadedModel, ModelKey, WeightedRoute
from conveyor.serving.platforms import Platform, detect

log = logging.getLogger("conveyor.serving")

LIVENESS_ROUTE = "/"          # Azure ML's liveness (and readiness) probe: GET / on the scoring port


class BundleCatalog:
    """A catalog of one loaded model: one endpoint named after it, no keys (the cloud's gateway authenticates)."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.name = loaded.key.name

    def revision(self) -> str:
        return "bundle"

    def endpoints(self) -> Mapping[str, EndpointSpec]:
        return {self.name: EndpointSpec(self.name, (WeightedRoute(self.loaded.key, 100.0),))}

    def load_model(self, key: ModelKey) -> LoadedModel:
        if key != self.loaded.key:
            raise NotFound(f"This container serves {self.loaded.key} only, not {key}.")
        return self.loaded

    def keys(self) -> Mapping[str, tuple[str, ApiKey]]:
        return {}

    def auth_required(self) -> bool:
        return False


def _present(location: str | None) -> bool:
    """Whether the platform put anything at ``location`` (an empty /opt/ml/model is SageMaker without a model)."""
    if not location:
        return False
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(location)
    except (ImportError, ValueError) as exc:
        raise NotFound(f"Cannot open the model location {location!r}: {exc}. gs:// needs gcsfs, s3:// s3fs and "
                       "az:// adlfs in the image.") from None
    remote = "://" in location and not location.startswith("file://")
    return store_io(lambda: fs.exists(path) and (fs.isfile(path) or bool(fs.ls(path))),
                    "looking for the model", location, remote)


def find_bundle(platform: Platform, container: ContainerSettings, scratch: Path) -> ModelBundle:
    """The bundle this container serves: the platform's model, else the image's own (``CONVEYOR_MODEL_URI``)."""
    if _present(platform.model_location):
        return locate_bundle(str(platform.model_location), scratch=scratch, fix=platform.fix)
    if container.model_uri:
        if platform.model_location:
            log.warning("%s provides no model at %s; serving the image's bundle %s", platform.name,
                     platform.model_location, container.model_uri)
        return locate_bundle(container.model_uri, scratch=scratch, fix=platform.fix)
    where = platform.model_location or "CONVEYOR_MODEL_URI (unset)"
    what = {"vertex": "AIP_STORAGE_URI is not set, and the image has no bundle of its own (CONVEYOR_MODEL_URI)",
            "azureml": f"{where} is empty, and the image has no bundle of its own (CONVEYOR_MODEL_URI)",
            "sagemaker": f"{where} is empty or missing, and the image has no bundle of its own (CONVEYOR_MODEL_URI)",
            }.get(platform.name, "no model location is set")
    raise NotFound(f"No model to serve on {platform.name}: {what}. {platform.fix}")


def container_app(loaded: LoadedModel, platform: Platform, settings: Settings, *, access_log: bool = True) -> Any:
    """The ASGI app serving ``loaded`` with every protocol, the platform's routes and the liveness route."""
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from conveyor.serving.app import create_app
    from conveyor.serving.protocols.base import json_response
    from conveyor.serving.service import ServingService

    catalog = BundleCatalog(loaded)
    cap = max(settings.serve_memory_mb << 20, loaded.size_bytes * 2)
    service = ServingService(catalog, memory_cap_bytes=cap, default_endpoint=catalog.name, auth="off", poll_s=3600)
    if access_log:
        from conveyor.serving.access_log import AccessLog

        service.access_log = AccessLog(sys.stderr)

    async def live(request: Request) -> Response:
        return json_response({"live": True, "model": str(loaded.key)})

    routed = settings.with_overrides(aip_predict_route=platform.predict_route, aip_health_route=platform.health_route)
    return create_app(service, routed, extra_routes=[Route(LIVENESS_ROUTE, live, methods=["GET"])])


def serve_container(mode: str | None = None, *, platform: str | None = None, host: str = "0.0.0.0",
                    port: int | None = None, model_dir: str | None = None, access_log: bool = True,
                    env: Mapping[str, str] | None = None) -> None:
    """Detect the platform, load and verify the bundle, then serve until SIGTERM.

    ``model_dir`` replaces SageMaker's ``/opt/ml/model`` (for ``docker run -v`` and tests).
    """
    import uvicorn

    from conveyor.observability.logs import configure

    configure(logging.INFO, text_format="%(levelname)s %(name)s: %(message)s")
    container = load_container_settings(env)
    settings = load_settings(env)
    kwargs = {"sagemaker_model_dir": model_dir} if model_dir else {}
    found = detect(container, mode=mode, platform=platform, **kwargs)
    with tempfile.TemporaryDirectory(prefix="conveyor-model-") as scratch:
        bundle = find_bundle(found, container, Path(scratch))
        loaded = load_bundle(bundle, allow_pickle=settings.allow_pickle)
    app = container_app(loaded, found, settings, access_log=access_log)
    listen = port or found.port
    log.info("serving %s (%s, %s) from %s as a %s container on %s:%d", loaded.key,
             bundle.manifest["artifact"]["content_hash"], bundle.manifest.get("flavor"), bundle.origin or bundle.root,
             found.name, host, listen)
    uvicorn.run(app, host=host, port=listen, log_level="warning", access_log=False)
