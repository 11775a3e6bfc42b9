"""A stable 64-bit hash of column values, vectorised: the same key hashes the same forever.

Splits assign rows by it (a row keeps its split across versions and machines) and diffs compare
whole rows by it. Python's ``hash`` changes per process and pandas' is not promised to stay, so
the function is defined here: integers, dates and times by their integer value, floats by their
bits (``-0.0`` as ``0.0``, one NaN), strings and binary by their bytes read eight at a time, each
mixed with SplitMix64's finaliser. Every operation is a NumPy operation over whole columns; the
only loops are over columns and over 8-byte words of the longest string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_NULL = np.uint64(0x6A09E667F3BCC908)   # what a missing value contributes
_BLOCK_ROWS = 65536                     # strings are padded block by block, so one long value costs little


def mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        z = x + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def _strings(arr: Any) -> np.ndarray:
    """Hash of each string/binary value: its bytes as zero-padded 64-bit words, then its length."""
    import pyarrow as pa

    large = pa.types.is_large_string(arr.type) or pa.types.is_large_binary(arr.type)
    buffers = arr.buffers()
    offsets = np.frombuffer(buffers[1], dtype=np.int64 if large else np.int32)[arr.offset: arr.offset + len(arr) + 1]
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.empty(0, np.uint8)
    out = np.empty(len(arr), dtype=np.uint64)
    for lo in range(0, len(arr), _BLOCK_ROWS):
        off = offsets[lo: lo + _BLOCK_ROWS + 1].astype(np.int64)
        starts, lengths = off[:-1], np.diff(off)
        n = len(lengths)
        width = max(int(-(-int(lengths.max(initial=0)) // 8)), 1) * 8
        padded = np.zeros((n, width), dtype=np.uint8)
        total = int(lengths.sum())
        if total:
            rows = np.repeat(np.arange(n), lengths)
            cols = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
            padded[rows, cols] = data[np.repeat(starts, lengths) + cols]
        words = padded.view("<u8")
        h = mix(lengths.astype(np.uint64))
        for k in range(words.shape[1]):
            h = mix(h ^ words[:, k])
        out[lo: lo + n] = h
    return out


def hashable(arrow_type: Any) -> bool:
    """Whether :func:`column_hash` takes columns of this type."""
    import pyarrow as pa

    t = arrow_type.value_type if pa.types.is_dictionary(arrow_type) else arrow_type
    return (pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_temporal(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t)
            or pa.types.is_large_binary(t) or pa.types.is_decimal(t))


def column_hash(column: Any) -> np.ndarray:
    """The stable hash of every value of one Arrow column (missing values hash alike)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    typ = arr.type
    if pa.types.is_dictionary(typ):
        arr = arr.dictionary_decode()
        typ = arr.type
    valid = None if arr.null_count == 0 else np.asarray(arr.is_valid())
    if pa.types.is_floating(typ):
        values = np.asarray(pc.fill_null(pc.cast(arr, pa.float64()), 0.0), dtype=np.float64) + 0.0   # -0.0 -> 0.0
        values = np.where(np.isnan(values), np.nan, values)
        h = mix(values.view(np.uint64))
    elif (pa.types.is_integer(typ) or pa.types.is_boolean(typ) or pa.types.is_temporal(typ)):
        if pa.types.is_uint64(typ):
            as_int = arr.view(pa.int64())            # the same 64 bits (values past 2**63 would not cast)
        elif pa.types.is_temporal(typ):
            as_int = arr.view(pa.int64() if typ.bit_width == 64 else pa.int32()).cast(pa.int64())
        else:
            as_int = pc.cast(arr, pa.int64())
        h = mix(np.asarray(pc.fill_null(as_int, 0), dtype=np.int64).view(np.uint64))
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ) \
            or pa.types.is_large_binary(typ):
        h = _strings(arr)
    elif pa.types.is_decimal(typ):
        h = _strings(pc.cast(arr, pa.string()))
    else:
        raise InvalidRequest(f"A column of type {typ} cannot be hashed as a key: use columns of numbers, strings, "
                             "dates or times (or cast this one to a string first).", field="by")
    if valid is not None:
        h = np.where(valid, h, _NULL)
    return h


def hash_columns(table: Any, columns: Sequence[str], *, seed: int = 0) -> np.ndarray:
    """One stable uint64 per row from the values of ``columns`` (in that order) and ``seed``."""
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InvalidRequest(f"No column {', '.join(repr(c) for c in missing)} in the data. Its columns: "
                             f"{', '.join(table.column_names)}.", field="by")
    h = np.full(table.num_rows, mix(np.array([seed & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0], dtype=np.uint64)
    for name in columns:
        h = mix(h ^ column_hash(table.column(name)))
    return h


def unit_interval(h: np.ndarray) -> np.ndarray:
    """Hashes as floats in [0, 1): their top 53 bits."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))
