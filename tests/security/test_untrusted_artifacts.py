"""Loading never runs code from an artifact unasked: hashes first, skops with an allow-list, pickles only
where CONVEYOR_ALLOW_PICKLE allows, and every fallback said out loud."""

from __future__ import annotations

import fractions
import logging
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from conveyor.errors import ArtifactIntegrityError, ArtifactUntrusted
from conveyor.registry import ModelRegistry
from conveyor.runtime.slots import stored_from_record
from conveyor.store.artifacts.store import ArtifactStore


class Payload:
    """Unpickling this creates ``marker``: proof that code from the artifact ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (str(self.marker), "w"))


class Opaque:
    """A value no materializer knows: it goes to pickle."""

    def __init__(self, n: int) -> None:
        self.n = n


def _fit() -> tuple[LogisticRegression, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    return LogisticRegression().fit(X, X[:, 0] > 0), X


def _object_file(store: ArtifactStore, content_hash: str) -> Path:
    return Path(store._object_path(content_hash))


def _registry(client: Any, policy: str) -> ModelRegistry:
    store = ArtifactStore(client.settings.artifact_root, allow_pickle=policy)
    return ModelRegistry(client.metadata, store, "alice")


def test_a_registered_sklearn_model_loads_with_pickles_refused(client) -> None:
    model, X = _fit()
    reg = _registry(client, "false")
    v = reg.register("churn", model, data=X)
    record = client.metadata.artifacts.get(v.artifact_id)
    assert record.materializer == "model" and record.meta["format"] == "skops"
    np.testing.assert_array_equal(reg.load("churn:1").predict(X), model.predict(X))


def test_a_tampered_model_file_is_never_deserialised_on_any_load_path(client, tmp_path: Path) -> None:
    model, X = _fit()
    reg = _registry(client, "true")                 # even where pickles are allowed, the hash comes first
    v = reg.register("churn", model, data=X)
    stored = stored_from_record(client.metadata.artifacts.get(v.artifact_id))
    marker = tmp_path / "pwned"
    _object_file(reg.artifacts, stored.content_hash).write_bytes(pickle.dumps(Payload(marker)))
    loads = {"registry.load": lambda: reg.load("churn:1"), "store.get": lambda: reg.artifacts.get(stored),
             "export": lambda: reg.artifacts.export(stored, tmp_path / "out.bin"),
             "serving": lambda: _serving_load(client, reg)}
    for name, load in loads.items():
        with pytest.raises(ArtifactIntegrityError, match="corrupted or was changed"):
            load()
        assert not marker.exists(), name
    assert not (tmp_path / "out.bin").exists()


def _serving_load(client: Any, reg: ModelRegistry) -> Any:
    from conveyor.serving.catalog import ModelKey
    from conveyor.serving.registry_catalog import RegistryCatalog

    return RegistryCatalog(client.metadata, reg.artifacts, reg).load_model(ModelKey("churn", 1))


def _forged_joblib(reg: ModelRegistry, marker: Path) -> Any:
    """What someone who can write both the store and the metadata plants: a pickle with a matching hash,
    recorded as the model materializer's joblib format."""
    import dataclasses

    with pytest.warns(UserWarning, match="was pickled"):
        real = reg.artifacts.put(Payload(marker))      # pickled, hashed, recorded like any artifact
    return dataclasses.replace(real, materializer="model", meta={"format": "joblib"})


@pytest.mark.parametrize("policy", ["false", "local-on-a-remote-root"])
def test_a_pickle_with_a_matching_hash_is_refused_unless_allowed(client, tmp_path: Path, policy: str) -> None:
    marker = tmp_path / "pwned"
    if policy == "false":
        store = ArtifactStore(str(tmp_path / "artifacts"), allow_pickle="false")
    else:   # a root that is not on this machine's disk; the moto-free way: pretend the protocol is remote
        store = ArtifactStore(str(tmp_path / "artifacts"), allow_pickle="local")
        store._on_this_machine = lambda: False  # type: ignore[method-assign]
    with pytest.warns(UserWarning, match="was pickled"):
        opaque = store.put(Opaque(7))
    forged = _forged_joblib(ModelRegistry(client.metadata, store, "x"), marker)
    for stored, why in ((opaque, "it was stored with pickle"), (forged, "a joblib pickle")):
        with pytest.raises(ArtifactUntrusted, match=f"would run code from the artifact \\({why}\\).*"
                                                     "CONVEYOR_ALLOW_PICKLE"):
            store.get(stored)
    assert not marker.exists()


def test_pickles_load_where_the_setting_allows_them(client, tmp_path: Path, monkeypatch, caplog) -> None:
    monkeypatch.setenv("CONVEYOR_ALLOW_PICKLE", "true")
    store = ArtifactStore(str(tmp_path / "artifacts"))          # policy read from the settings
    with pytest.warns(UserWarning):
        stored = store.put(Opaque(7))
    assert store.get(stored).n == 7
    monkeypatch.setenv("CONVEYOR_ALLOW_PICKLE", "false")
    with pytest.raises(ArtifactUntrusted):
        ArtifactStore(str(tmp_path / "artifacts")).get(stored)
    monkeypatch.setenv("CONVEYOR_ALLOW_PICKLE", "maybe")
    from conveyor.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="CONVEYOR_ALLOW_PICKLE='maybe' is not known"):
        ArtifactStore(str(tmp_path / "artifacts")).get(stored)


def test_skops_types_outside_the_allow_list_need_the_setting(tmp_path: Path, caplog) -> None:
    model, X = _fit()
    model.note = fractions.Fraction(1, 3)         # skops stores it, but as a type nobody vetted
    store = ArtifactStore(str(tmp_path / "artifacts"), allow_pickle="false")
    with caplog.at_level(logging.WARNING, logger="conveyor.artifacts"):
        stored = store.put(model)
    assert stored.meta["format"] == "skops" and "fractions.Fraction" in caplog.text
    with pytest.raises(ArtifactUntrusted, match="skops types outside the allow-list: fractions.Fraction"):
        store.get(stored)
    # the metadata's list of trusted types is not believed: claiming none changes nothing
    import dataclasses

    with pytest.raises(ArtifactUntrusted):
        store.get(dataclasses.replace(stored, meta={**stored.meta, "trusted_types": []}))
    allowed = ArtifactStore(str(tmp_path / "artifacts"), allow_pickle="true")
    assert allowed.get(stored).note == fractions.Fraction(1, 3)


def test_a_skops_failure_falls_back_to_joblib_with_a_warning(tmp_path: Path, monkeypatch, caplog) -> None:
    import skops.io

    def refuse(*_a: Any, **_k: Any) -> bytes:
        raise TypeError("cannot persist this estimator")

    monkeypatch.setattr(skops.io, "dumps", refuse)
    model, X = _fit()
    store = ArtifactStore(str(tmp_path / "artifacts"), allow_pickle="false")
    with caplog.at_level(logging.WARNING, logger="conveyor.artifacts"):
        stored = store.put(model)
    assert stored.meta["format"] == "joblib"
    assert "could not be stored with skops (TypeError: cannot persist this estimator); stored with joblib" \
        in caplog.text
    with pytest.raises(ArtifactUntrusted, match="a joblib pickle"):
        store.get(stored)
