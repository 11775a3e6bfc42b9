"""Model bundles: what an export writes, where the container finds it, and what it refuses to load."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conveyor.errors import ArtifactIntegrityError, ArtifactUntrusted, InvalidRequest, NotFound
from conveyor.serving.bundle import MANIFEST, ModelBundle, export_bundle, load_bundle, locate_bundle
from tests.serving.conftest import fitted_pipeline


class Doubler:
    """A model only pickle can store: loading it runs code from the artifact."""

    def predict(self, X):
        return np.asarray(X.iloc[:, 0]) * 2


@pytest.fixture
def churn(client):
    model, X = fitted_pipeline()
    v = client.registry.register("churn", model, metrics={"auc": 0.9}, data=X)
    return client, f"churn:{v.version}", model, X.head(5)


def test_export_writes_verified_bytes_and_a_manifest_that_loads_alone(churn, tmp_path: Path) -> None:
    client, ref, model, X = churn
    manifest = export_bundle(client, ref, str(tmp_path / "bundle"))
    assert manifest["model"]["name"] == "churn" and manifest["model"]["metrics"] == {"auc": 0.9}
    assert manifest["flavor"] == "sklearn" and manifest["artifact"]["materializer"] == "model"
    assert [c["name"] for c in manifest["signature"]["inputs"]] == list(X.columns)
    packages = manifest["environment"]["packages"]
    assert "scikit-learn" in packages and "skops" in packages and "conveyor" not in packages
    on_disk = json.loads((tmp_path / "bundle" / MANIFEST).read_text())
    assert on_disk == json.loads(json.dumps(manifest, default=str))
    client.close()
    shutil.rmtree(client.settings.home)               # no metadata database, no artifact store: the bundle alone
    bundle = locate_bundle(str(tmp_path / "bundle"), scratch=tmp_path / "scratch", fix="FIX")
    loaded = load_bundle(bundle, allow_pickle="local")
    assert str(loaded.key) == ref and [c.name for c in loaded.signature.inputs] == list(X.columns)
    np.testing.assert_array_equal(loaded.model.predict(X), model.predict(X))


def test_a_bundle_is_found_in_a_subfolder_or_a_tarball(churn, tmp_path: Path) -> None:
    client, ref, model, X = churn
    export_bundle(client, ref, str(tmp_path / "azure" / "churn-folder"))        # Azure ML nests the folder
    found = locate_bundle(str(tmp_path / "azure"), scratch=tmp_path / "s1", fix="FIX")
    assert found.root == str(tmp_path / "azure" / "churn-folder")
    export_bundle(client, ref, str(tmp_path / "sm" / "model.tar.gz"))           # a tarball left packed
    found = locate_bundle(str(tmp_path / "sm"), scratch=tmp_path / "s2", fix="FIX")
    assert found.origin.endswith("model.tar.gz") and not found.remote
    np.testing.assert_array_equal(load_bundle(found, allow_pickle="local").model.predict(X), model.predict(X))
    export_bundle(client, ref, str(tmp_path / "azure" / "second"))
    with pytest.raises(InvalidRequest, match="more than one model bundle"):
        locate_bundle(str(tmp_path / "azure"), scratch=tmp_path / "s3", fix="FIX")


def test_missing_and_foreign_locations_name_the_place_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match=r"does not exist\. FIX"):
        locate_bundle(str(tmp_path / "nothing"), scratch=tmp_path / "s", fix="FIX")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "model.pkl").write_bytes(b"x")
    with pytest.raises(NotFound, match=r"no conveyor-model\.json was found \(it holds: model\.pkl\)\. FIX"):
        locate_bundle(str(tmp_path / "other"), scratch=tmp_path / "s", fix="FIX")
    (tmp_path / "other" / MANIFEST).write_text('{"format": "something-else"}')
    with pytest.raises(ArtifactIntegrityError, match="is not a Conveyor model bundle manifest"):
        locate_bundle(str(tmp_path / "other"), scratch=tmp_path / "s", fix="FIX")


def test_the_manifest_cannot_point_outside_the_bundle(churn, tmp_path: Path) -> None:
    client, ref, _, _ = churn
    manifest = export_bundle(client, ref, str(tmp_path / "b"))
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not a model")
    manifest["artifact"]["path"] = "../secret.bin"
    (tmp_path / "b" / MANIFEST).write_text(json.dumps(manifest))
    bundle = locate_bundle(str(tmp_path / "b"), scratch=tmp_path / "s", fix="FIX")
    assert bundle.manifest["artifact"]["path"].startswith("objects/")      # the hash's own place, not the claim


def test_a_changed_object_is_refused_with_the_export_command(churn, tmp_path: Path) -> None:
    client, ref, _, _ = churn
    manifest = export_bundle(client, ref, str(tmp_path / "b"))
    obj = tmp_path / "b" / manifest["artifact"]["path"]
    data = obj.read_bytes()
    obj.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    bundle = locate_bundle(str(tmp_path / "b"), scratch=tmp_path / "s", fix="FIX")
    with pytest.raises(ArtifactIntegrityError, match=rf"refused: {obj} hashes to sha256:.*models export {ref}"):
        load_bundle(bundle, allow_pickle="true")
    obj.unlink()
    with pytest.raises(ArtifactIntegrityError, match="is incomplete"):
        load_bundle(bundle, allow_pickle="true")


def test_pickled_models_follow_allow_pickle_by_where_the_bundle_is_read(client, tmp_path: Path) -> None:
    import pandas as pd

    with pytest.warns(UserWarning, match="pickled"):
        v = client.registry.register("doubler", Doubler())
    manifest = export_bundle(client, f"doubler:{v.version}", str(tmp_path / "b"))
    assert manifest["artifact"]["materializer"] == "pickle"
    local = locate_bundle(str(tmp_path / "b"), scratch=tmp_path / "s", fix="FIX")
    frame = pd.DataFrame({"a": [1.0, 2.0]})
    assert load_bundle(local, allow_pickle="local").model.predict(frame).tolist() == [2.0, 4.0]
    with pytest.raises(ArtifactUntrusted, match="CONVEYOR_ALLOW_PICKLE"):
        load_bundle(local, allow_pickle="false")
    # read from a bucket (Vertex AI's AIP_STORAGE_URI) or unpacked from one: 'local' does not trust it
    remote = ModelBundle(local.root, local.manifest, remote=True, origin="gs://bucket/doubler")
    with pytest.raises(ArtifactUntrusted):
        load_bundle(remote, allow_pickle="local")
    assert load_bundle(remote, allow_pickle="true").model.predict(frame).tolist() == [2.0, 4.0]


def test_a_tarball_member_cannot_escape_the_scratch_folder(tmp_path: Path) -> None:
    evil = tmp_path / "up" / "model.tar.gz"
    evil.parent.mkdir()
    payload = tmp_path / "payload"
    payload.write_text("x")
    with tarfile.open(evil, "w:gz") as tar:
        tar.add(payload, arcname="../../escaped")
    with pytest.raises(ArtifactIntegrityError, match="could not be unpacked safely"):
        locate_bundle(str(evil), scratch=tmp_path / "scratch" / "deep", fix="FIX")
    assert not (tmp_path / "escaped").exists()
