"""Deterministic splits: each row goes to train / validation / test by a hash of its key.

A row's split depends only on its key and the seed, never on the other rows, so it keeps its split
when rows are added to a later version of the data and on every machine. With ``stratify`` each
class is cut at its own quantiles of the key hash, so class proportions match ``fractions`` to
within one row per class; the price is that adding rows can move a row whose hash lies next to a
cut (a share of about the added share, and only across the neighbouring boundary).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from conveyor.data.keyhash import hash_columns, unit_interval
from conveyor.errors import InvalidRequest

DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def _fractions(fractions: Mapping[str, float] | None) -> tuple[list[str], np.ndarray]:
    fr = dict(fractions or DEFAULT_FRACTIONS)
    if not fr or any(not isinstance(v, int | float) or v < 0 for v in fr.values()):
        raise InvalidRequest(f"fractions {fr!r} must map split names to non-negative numbers, e.g. "
                             "{'train': 0.8, 'test': 0.2}.", field="fractions")
    total = float(sum(fr.values()))
    if abs(total - 1.0) > 1e-6:
        raise InvalidRequest(f"fractions {fr!r} add up to {total:g}; they must add up to 1.", field="fractions")
    names = list(fr)
    return names, np.cumsum([fr[n] for n in names])


def assign_splits(table: Any, by: str | Sequence[str], fractions: Mapping[str, float] | None = None, *,
           stratify: str | None = None, seed: int = 0) -> np.ndarray:
    """The split index of each row (into the names of ``fractions``, in their order)."""
    from conveyor.monitoring.profile import to_arrow

    data = to_arrow(table)
    keys = [by] if isinstance(by, str) else list(by)
    names, cuts = _fractions(fractions)
    u = unit_interval(hash_columns(data, keys, seed=seed))
    cuts[-1] = np.inf                          # rounding never leaves a row without a split
    if stratify is None:
        return np.searchsorted(cuts, u, side="right").astype(np.int32)
    if stratify not in data.column_names:
        raise InvalidRequest(f"stratify={stratify!r} is not a column. Columns: {', '.join(data.column_names)}.",
                             field="stratify")
    import pyarrow.compute as pc

    classes = np.asarray(pc.dictionary_encode(data.column(stratify).combine_chunks()).indices.fill_null(-1))
    out = np.empty(data.num_rows, dtype=np.int32)
    # rank rows by hash inside each class at once: sort by (class, hash)
    order = np.lexsort((u, classes))
    sorted_classes = classes[order]
    starts = np.flatnonzero(np.r_[True, sorted_classes[1:] != sorted_classes[:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    share = (rank + 0.5) / np.repeat(sizes, sizes)
    out[order] = np.searchsorted(cuts, share, side="right")
    return out


def split(table: Any, by: str | Sequence[str], fractions: Mapping[str, float] | None = None, *,
          stratify: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Split ``table`` (Arrow table or DataFrame) into ``{name: part}`` by a hash of the key ``by``.

    ``fractions`` defaults to 80/10/10 train/validation/test; each part keeps the input's type.
    """
    from conveyor.monitoring.profile import to_arrow

    names, _ = _fractions(fractions)
    index = assign_splits(table, by, fractions, stratify=stratify, seed=seed)
    is_frame = type(table).__name__ == "DataFrame"
    if is_frame:
        return {name: table.iloc[np.flatnonzero(index == i)] for i, name in enumerate(names)}
    data = to_arrow(table)
    return {name: data.take(np.flatnonzero(index == i)) for i, name in enumerate(names)}
