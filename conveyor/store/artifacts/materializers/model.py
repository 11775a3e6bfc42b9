"""scikit-learn, XGBoost and LightGBM models: skops where it can, else joblib (trusted stores only).

skops records the types an artifact needs; those are saved in the metadata at write time and are
the only ones trusted at load time, so a swapped file cannot smuggle in another type (its hash is
checked before this runs anyway).
"""

from __future__ import annotations

import io
import warnings
from typing import Any, BinaryIO


class ModelMaterializer:
    name = "model"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        meta: dict[str, Any] = {"type": f"{type(value).__module__}.{type(value).__qualname__}"}
        try:
            import skops.io as sio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = sio.dumps(value)
                trusted = sio.get_untrusted_types(data=data)
                sio.loads(data, trusted=trusted)      # proves it round-trips before we rely on it
            out.write(data)
            return {**meta, "format": "skops", "trusted_types": trusted}
        except Exception:
            import joblib

            buf = io.BytesIO()
            joblib.dump(value, buf)
            out.write(buf.getbuffer())
            return {**meta, "format": "joblib", "trusted_only": True}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        if meta.get("format") == "skops":
            import skops.io as sio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sio.loads(data, trusted=list(meta.get("trusted_types", [])))
        import joblib

        return joblib.load(io.BytesIO(data))
