"""NumPy arrays and scalars as ``.npy`` (never with pickled objects)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO


class NumpyMaterializer:
    name = "numpy.npy"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return not value.dtype.hasobject

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        import numpy as np

        scalar = isinstance(value, np.generic)      # numpy.float64 and friends come back as themselves
        np.save(out, np.asarray(value), allow_pickle=False)
        return {"shape": list(np.shape(value)), "dtype": str(value.dtype), **({"scalar": True} if scalar else {})}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import numpy as np

        array = np.load(io.BytesIO(data), allow_pickle=False)
        return array[()] if meta.get("scalar") else array
