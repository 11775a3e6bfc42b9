"""Raw bytes, stored as they are."""

from __future__ import annotations

from typing import Any, BinaryIO


class BytesMaterializer:
    name = "bytes"
    version = "1"
    trusted_only = False

    def handles(self, value: Any) -> bool:
        return True

    def save(self, value: Any, out: BinaryIO) -> dict[str, Any]:
        out.write(bytes(value))
        return {"kind": type(value).__name__}

    def load(self, data: bytes, meta: dict[str, Any]) -> Any:
        return bytearray(data) if meta.get("kind") == "bytearray" else bytes(data)
