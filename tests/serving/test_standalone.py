"""Which bundle the serving container picks: the platform's model first, the image's own otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.config import load_container_settings
from conveyor.errors import NotFound
from conveyor.serving.bundle import export_bundle
from conveyor.serving.platforms import detect
from conveyor.serving.standalone import BundleCatalog, find_bundle
from tests.serving.conftest import fitted_pipeline


@pytest.fixture
def two_bundles(client, tmp_path: Path):
    model, X = fitted_pipeline()
    client.registry.register("churn", model, data=X)
    client.registry.register("churn", model, data=X, tags={"second": True})
    export_bundle(client, "churn:1", str(tmp_path / "image-bundle"))
    export_bundle(client, "churn:2", str(tmp_path / "opt-ml-model" / "model.tar.gz"))
    return tmp_path


def test_the_platforms_model_wins_over_the_images_own(two_bundles: Path) -> None:
    container = load_container_settings({"CONVEYOR_MODEL_URI": str(two_bundles / "image-bundle")})
    platform = detect(container, mode="serve", sagemaker_model_dir=str(two_bundles / "opt-ml-model"))
    bundle = find_bundle(platform, container, two_bundles / "scratch")
    assert str(bundle.key) == "churn:2" and bundle.origin.endswith("model.tar.gz")


def test_an_empty_model_folder_serves_the_images_bundle(two_bundles: Path) -> None:
    empty = two_bundles / "empty"
    empty.mkdir()
    container = load_container_settings({"CONVEYOR_MODEL_URI": str(two_bundles / "image-bundle")})
    bundle = find_bundle(detect(container, mode="serve", sagemaker_model_dir=str(empty)), container,
                         two_bundles / "scratch")
    assert str(bundle.key) == "churn:1"
    container = load_container_settings({})
    with pytest.raises(NotFound, match=rf"{empty} is empty or missing, and the image has no bundle of its own"):
        find_bundle(detect(container, mode="serve", sagemaker_model_dir=str(empty)), container, two_bundles / "s")
    with pytest.raises(NotFound, match="AIP_STORAGE_URI is not set.*--artifact-uri"):
        find_bundle(detect(container, platform="vertex"), container, two_bundles / "s")


def test_the_catalog_serves_one_version_without_keys(two_bundles: Path) -> None:
    from conveyor.serving.bundle import load_bundle, locate_bundle

    loaded = load_bundle(locate_bundle(str(two_bundles / "image-bundle"), scratch=two_bundles / "s", fix=""),
                         allow_pickle="local")
    catalog = BundleCatalog(loaded)
    (spec,) = catalog.endpoints().values()
    assert spec.name == "churn" and [str(r.model) for r in spec.routes] == ["churn:1"]
    assert catalog.load_model(loaded.key) is loaded and not catalog.auth_required() and catalog.keys() == {}
    with pytest.raises(NotFound, match="serves churn:1 only"):
        catalog.load_model(type(loaded.key)("churn", 2))
