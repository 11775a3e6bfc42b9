"""Where a node's outputs are during a run: the stored artifact and, in-process, the value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

MISSING: Any = object()


@dataclass(slots=True)
class Slot:
    """One output artifact of a finished step call."""

    artifact_id: str
    stored: Any                      # conveyor.store.artifacts.StoredArtifact
    value: Any = MISSING

    def fingerprint(self, path: tuple[Any, ...] = ()) -> dict[str, Any]:
        """What the cache key sees of this input: content, format version and the index path."""
        s = self.stored
        fp: dict[str, Any] = {"h": s.content_hash, "m": f"{s.materializer}@{s.materializer_version}"}
        if path:
            fp["p"] = [repr(p) for p in path]
        return fp


def stored_from_record(record: Any) -> Any:
    """Turn a metadata ``ArtifactRecord`` into the artifact store's ``StoredArtifact``."""
    from conveyor.store.artifacts import StoredArtifact

    return StoredArtifact(content_hash=record.content_hash, materializer=record.materializer,
                          materializer_version=record.materializer_version, type_name=record.type_name or "",
                          size=record.size or 0, uri=record.uri, inline=record.inline, meta=record.meta or {})


def const_fingerprint(value: Any, artifacts: Any) -> dict[str, Any]:
    """Fingerprint a literal: canonical JSON when it is JSON-able, else its stored content hash."""
    try:
        from conveyor.store.artifacts import hash_json

        if _plain_json(value):
            return {"c": hash_json(value)}
    except (TypeError, orjson.JSONEncodeError):
        pass
    stored = artifacts.put(value)
    return {"h": stored.content_hash, "m": f"{stored.materializer}@{stored.materializer_version}"}


def _plain_json(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_plain_json(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_json(v) for k, v in value.items())
    return False


def json_param(value: Any) -> Any:
    """A JSON-able rendering of a literal for the params table (repr for anything else)."""
    return value if _plain_json(value) else repr(value)[:500]
