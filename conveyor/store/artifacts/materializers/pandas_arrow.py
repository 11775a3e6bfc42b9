"""pandas DataFrames as an Arrow IPC stream (uncompressed: the fastest to write and to map back)."""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

log = logging.getLogger("conveyor.artifacts")


class PandasArrowMaterializer:
    name = "pandas.arrow"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        try:
            import pyarrow as pa

            pa.Schema.from_pandas(value, preserve_index=None)
        except Exception as exc:   # mixed-type object columns: fall back to pickle
            log.warning("This DataFrame cannot be stored as Arrow (%s: %s); it falls back to pickle, which only "
                        "a store CONVEYOR_ALLOW_PICKLE trusts can load. Give its columns one type each.",
                        type(exc).__name__, exc)
            return False
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        import pyarrow as pa

        table = pa.Table.from_pandas(value, preserve_index=None)
        with pa.ipc.new_stream(pa.PythonFile(out, mode="w"), table.schema) as writer:
            writer.write_table(table, max_chunksize=1 << 20)
        return {"shape": list(value.shape), "columns": [str(c) for c in value.columns[:50]],
                "dtypes": {str(c): str(t) for c, t in list(value.dtypes.items())[:50]}}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        import pyarrow as pa

        return pa.ipc.open_stream(pa.py_buffer(data)).read_all().to_pandas()
