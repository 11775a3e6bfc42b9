"""The model as bytes, for scoring on a cluster: shipped once per worker, verified before it is loaded.

A bundle holds the stored bytes of a model, their content hash, the materializer that rebuilds the
model and the version label written into every scored row. The driver builds it (from a registered
version: the registry's own bytes and recorded hash, after the store's trust check; or from any
loader: its model pickled), puts it once into the cluster's object store, and each worker process
rebuilds the model once, only after the bytes hash to what was recorded.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from typing import Any

from conveyor.errors import ArtifactIntegrityError


@dataclass(frozen=True)
class ModelBundle:
    """A model's bytes with their hash, the materializer that loads them and the version label."""

    data: bytes
    content_hash: str
    materializer: str
    version: str
    meta: dict[str, Any] = field(default_factory=dict)

    def load(self) -> tuple[Any, str]:
        """The model and its version label; refuses bytes that do not hash to ``content_hash``."""
        from conveyor.store.artifacts.hashing import digest
        from conveyor.store.artifacts.materializers import registry

        actual = digest(self.data)
        if actual != self.content_hash:
            raise ArtifactIntegrityError(
                f"The bytes of model {self.version} that reached this worker hash to {actual}, not to the recorded "
                f"{self.content_hash}; they were not loaded. Re-run the command; if it happens again, check the "
                "cluster's object store and the artifact store for damaged copies.")
        return registry.get(self.materializer).load(self.data, self.meta), self.version

    def __call__(self) -> tuple[Any, str]:
        """A bundle is also a model loader (local worker processes call it once each)."""
        return self.load()


def bundle_from_loader(loader: Any) -> ModelBundle:
    """Call ``loader`` (returns ``(model, version)``) here and pickle its model: any loader can score on a cluster.

    The model's class must be importable on the workers (a class defined in ``__main__`` is not).
    """
    from conveyor.store.artifacts.hashing import digest

    model, version = loader()
    data = pickle.dumps(model, protocol=5)
    return ModelBundle(data=data, content_hash=digest(data), materializer="pickle", version=version)


def bundle_from_registry(registry: Any, ref: str) -> ModelBundle:
    """The stored bytes of a registered version (hash verified, trust checked as ``registry.load`` does)."""
    from conveyor.runtime.slots import stored_from_record

    version = registry.resolve(ref)
    stored = stored_from_record(registry.metadata.artifacts.get(version.artifact_id))
    data = registry.artifacts.read_loadable(stored)
    return ModelBundle(data=data, content_hash=stored.content_hash, materializer=stored.materializer,
                       version=f"{version.model}:{version.version}", meta=dict(stored.meta or {}))
