"""Signatures: the input columns and dtypes a model expects, and the shape of what it returns."""

from __future__ import annotations

import logging
from typing import Any

SAMPLE_ROWS = 5
log = logging.getLogger("conveyor.registry")


def dtype_name(dtype: Any) -> str:
    """A portable dtype name: float64, int64, bool, string, category, datetime64[ns]…"""
    import pandas as pd

    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    kind = getattr(dtype, "kind", "O")
    if kind == "O" or str(dtype) in ("string", "str"):
        return "string"
    if kind == "b":
        return "bool"
    return str(dtype)


def infer_signature(model: Any, data: Any) -> dict[str, Any] | None:
    """Infer a signature from training data (a DataFrame or a 2-D array) and the model's output on a few rows."""
    import numpy as np
    import pandas as pd

    if data is None:
        return None
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        arr = np.asarray(data)
        if arr.ndim != 2:
            return None
        frame = pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])
    inputs = [{"name": str(c), "dtype": dtype_name(frame[c].dtype)} for c in frame.columns]
    outputs: list[dict[str, Any]] = []
    predict = getattr(model, "predict", None)
    if predict is not None:
        try:
            sample = frame.head(SAMPLE_ROWS) if isinstance(data, pd.DataFrame) else np.asarray(data)[:SAMPLE_ROWS]
            out = np.asarray(predict(sample))
            outputs.append({"name": "prediction", "dtype": dtype_name(out.dtype), "shape": [-1, *out.shape[1:]]})
        except Exception as exc:  # a model that cannot score the sample still gets an input signature
            log.warning("The signature has no outputs: %s.predict on %d sample rows raised %s: %s. Pass "
                        "signature=... to register_model to give one.", type(model).__name__, SAMPLE_ROWS,
                        type(exc).__name__, exc)
    return {"inputs": inputs, "outputs": outputs}
