"""The last resort: pickle, with a warning that says how to do better."""

from __future__ import annotations

import pickle
import warnings
from typing import Any, BinaryIO

from conveyor.errors import MaterializerNotFound


class PickleMaterializer:
    name = "pickle"
    version = "1"
    trusted_only = True

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise MaterializerNotFound(
                f"No materializer can store a {kind}, and pickle cannot either ({exc}). Return plain data, or "
                f"register a materializer: conveyor.store.artifacts.materializers.registry.register("
                f"'my.kind', 'my_module:MyMaterializer', ['{kind}'], first=True)."
            ) from None
        warnings.warn(
            f"{kind} has no materializer and was pickled; loading it runs code, so only trusted stores can read it. "
            f"Register one with conveyor.store.artifacts.materializers.registry.register('my.kind', "
            f"'my_module:MyMaterializer', ['{kind}'], first=True).", UserWarning, stacklevel=2)
        out.write(data)
        return {"type": kind, "trusted_only": True}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        return pickle.loads(data)  # noqa: S301 - only after the content hash matched the metadata
