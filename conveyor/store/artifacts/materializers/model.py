"""scikit-learn, XGBoost and LightGBM models: skops where it can, else joblib (trusted stores only).

Loading a skops file builds only the types it lists; each must be on ``ALLOWED_MODULES`` (checked
against the bytes at load time, never against what the metadata claims), so loading a registered
scikit-learn model runs no code from the artifact. A joblib file, or a skops file that needs another
type, is code: the artifact store loads it only where ``CONVEYOR_ALLOW_PICKLE`` allows.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any, BinaryIO

log = logging.getLogger("conveyor.artifacts")

# Modules whose types skops may build without asking: estimators and the arrays inside them.
ALLOWED_MODULES = ("sklearn.", "numpy.", "scipy.sparse.", "scipy.special.", "collections.",
                   "xgboost.", "lightgbm.")
# builtins that are plain data (``builtins.eval`` and friends never are)
ALLOWED_BUILTINS = frozenset({"builtins.slice", "builtins.frozenset", "builtins.set", "builtins.tuple",
                              "builtins.complex", "builtins.bytearray", "builtins.range", "builtins.type"})


def disallowed_types(types: list[str]) -> list[str]:
    """The types of ``types`` that are not on the allow-list."""
    return [t for t in types if not (t.startswith(ALLOWED_MODULES) or t in ALLOWED_BUILTINS)]


class ModelMaterializer:
    name = "model"
    version = "1"
    trusted_only = True      # a joblib fallback runs code; ``runs_code`` tells per artifact

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        kind = f"{type(value).__module__}.{type(value).__qualname__}"
        meta: dict[str, Any] = {"type": kind}
        try:
            import skops.io as sio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data = sio.dumps(value)
                needed = sio.get_untrusted_types(data=data)
                sio.loads(data, trusted=needed)      # proves it round-trips before we rely on it
        except Exception as exc:   # not every model survives skops; say so, then store it the trusted-only way
            log.warning("%s could not be stored with skops (%s: %s); stored with joblib instead, which only a "
                        "store CONVEYOR_ALLOW_PICKLE trusts can load.", kind, type(exc).__name__, exc)
            import joblib

            buf = io.BytesIO()
            joblib.dump(value, buf)
            out.write(buf.getbuffer())
            return {**meta, "format": "joblib", "trusted_only": True}
        outside = disallowed_types(needed)
        if outside:
            log.warning("%s needs types outside the skops allow-list (%s); loading it will need "
                        "CONVEYOR_ALLOW_PICKLE to allow it.", kind, ", ".join(outside))
        out.write(data)
        return {**meta, "format": "skops", "trusted_types": needed}

    def runs_code(self, data: bytes, meta: dict[str, Any]) -> str | None:
        """Why loading these bytes would run code from them, or None when it would not."""
        if meta.get("format") != "skops":
            return "a joblib pickle"
        import skops.io as sio

        try:
            outside = disallowed_types(sio.get_untrusted_types(data=data))
        except Exception as exc:   # not a readable skops file: treat it as the unknown it is
            return f"an unreadable skops file ({type(exc).__name__}: {exc})"
        return f"skops types outside the allow-list: {', '.join(outside)}" if outside else None

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        # The artifact store calls this only after the hash matched and ``runs_code`` was either None or
        # allowed by the settings, so the types skops finds in the bytes are the ones to trust.
        if meta.get("format") == "skops":
            import skops.io as sio

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return sio.loads(data, trusted=sio.get_untrusted_types(data=data))
        import joblib

        return joblib.load(io.BytesIO(data))
