"""NumPy arrays as ``.npy`` (never with pickled objects)."""

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

        np.save(out, value, allow_pickle=False)
        return {"shape": list(value.shape), "dtype": str(value.dtype)}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
