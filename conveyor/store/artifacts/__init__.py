"""The artifact store: content-addressed values on any fsspec filesystem, read back only when verified."""

from conveyor.store.artifacts.hashing import hash_json
from conveyor.store.artifacts.materializers import Materializer, MaterializerRegistry, default_registry
from conveyor.store.artifacts.store import ArtifactStore, StoredArtifact

__all__ = ["ArtifactStore", "Materializer", "MaterializerRegistry", "StoredArtifact", "default_registry", "hash_json"]
