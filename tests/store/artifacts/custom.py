"""A user-defined materializer used by the tests (CSV for DataFrames)."""

from __future__ import annotations

import io
from typing import Any, BinaryIO


class CsvFrame:
    name = "csv"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        out.write(value.to_csv(index=False).encode())
        return {}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import pandas as pd

        return pd.read_csv(io.BytesIO(data))
