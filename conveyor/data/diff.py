"""What changed between two versions of a table: schema, rows added / removed / changed, distributions.

Rows are matched by a key with one Arrow hash join over the key columns and two row-number
columns; every common column is then compared for all matched rows at once (Arrow compute), so
the work is a handful of vectorised passes and no Python loop over rows. Without a key, whole rows
are compared by the stable row hash (``keyhash.py``): rows added and removed, nothing "changed".
Distribution changes come from the monitoring statistics (``conveyor.monitoring.drift``) applied
to the two versions' stored profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest

_A, _B = "__conveyor_row_a", "__conveyor_row_b"


@dataclass
class DatasetDiff:
    """The difference between version ``names[0]`` (before) and ``names[1]`` (after)."""

    names: tuple[str, str]
    rows: tuple[int, int]
    key: list[str] | None
    columns_added: list[dict[str, str]]
    columns_removed: list[dict[str, str]]
    type_changes: list[dict[str, str]]
    added: int
    removed: int
    changed: int | None                       # None without a key
    unchanged: int | None
    changed_by_column: dict[str, int]
    not_compared: dict[str, str]
    examples: dict[str, list[dict[str, Any]]]
    distributions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def schema_changed(self) -> bool:
        return bool(self.columns_added or self.columns_removed or self.type_changes)

    @property
    def identical(self) -> bool:
        return not (self.schema_changed or self.added or self.removed or self.changed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"schema_changed": self.schema_changed, "identical": self.identical}

    def to_html(self) -> str:
        """A self-contained HTML page of this diff."""
        from conveyor.data.diff_report import render_html

        return render_html(self)


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex() if len(value) > 64 else value.decode("utf-8", "replace")
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _rows(table: Any, idx: np.ndarray, limit: int) -> list[dict[str, Any]]:
    picked = table.take(np.sort(idx)[:limit]) if len(idx) else table.slice(0, 0)
    return [{k: _plain(v) for k, v in r.items()} for r in picked.to_pylist()]


def _comparable(x: Any, y: Any) -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.compute as pc

    x = x.combine_chunks() if isinstance(x, pa.ChunkedArray) else x
    y = y.combine_chunks() if isinstance(y, pa.ChunkedArray) else y
    if pa.types.is_dictionary(x.type):
        x = x.dictionary_decode()
    if pa.types.is_dictionary(y.type):
        y = y.dictionary_decode()
    if x.type != y.type:
        x = pc.cast(x, y.type)            # raises when the old values do not fit the new type
    if pa.types.is_nested(y.type):
        raise TypeError(f"values of type {y.type} are not compared")
    return x, y


def differs(x: Any, y: Any) -> np.ndarray:
    """Per position: are the two values different? Two missing values, or two NaNs, are equal."""
    import pyarrow as pa
    import pyarrow.compute as pc

    x, y = _comparable(x, y)
    eq = pc.fill_null(pc.equal(x, y), False)
    both_missing = pc.and_(pc.is_null(x), pc.is_null(y))
    same = pc.or_(eq, both_missing)
    if pa.types.is_floating(y.type):
        same = pc.or_(same, pc.fill_null(pc.and_(pc.is_nan(x), pc.is_nan(y)), False))
    return ~np.asarray(same, dtype=bool)


def _differs_numeric(x: Any, y: Any, ix: np.ndarray, iy: np.ndarray) -> np.ndarray | None:
    """``differs`` for numbers without missing values, in NumPy (None when the column is not such)."""
    import pyarrow as pa

    numeric = (pa.types.is_integer(x.type) or pa.types.is_floating(x.type)) and x.type == y.type
    if not numeric or x.null_count or y.null_count:
        return None
    xv, yv = np.asarray(x)[ix], np.asarray(y)[iy]
    d = xv != yv
    if pa.types.is_floating(x.type):
        d &= ~(np.isnan(xv) & np.isnan(yv))
    return d


def column_changes(a: Any, b: Any, columns: list[str], ma: np.ndarray, mb: np.ndarray) -> dict[str, Any]:
    """For each column: which matched rows (``a`` rows ``ma`` against ``b`` rows ``mb``) differ, or why
    the column was not compared. Columns are compared in parallel (NumPy and Arrow release the GIL)."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa

    def one(col: str) -> Any:
        x, y = a.column(col), b.column(col)
        try:
            d = _differs_numeric(x, y, ma, mb)
            if d is None:
                d = differs(x.combine_chunks().take(ma), y.combine_chunks().take(mb))
            return d
        except (TypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            return str(exc).splitlines()[0]

    workers = min(len(columns), os.cpu_count() or 1, 8)
    if workers <= 1:
        return {c: one(c) for c in columns}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(columns, pool.map(one, columns), strict=True))


def _check_unique(table: Any, key: list[str], name: str) -> None:
    import pyarrow.compute as pc

    counts = table.select(key).group_by(key).aggregate([([], "count_all")])
    if counts.num_rows == table.num_rows:
        return
    dup = counts.filter(pc.greater(counts.column("count_all"), 1)).slice(0, 3).select(key).to_pylist()
    raise InvalidRequest(f"Key {', '.join(key)} is not unique in {name}: {table.num_rows - counts.num_rows} rows "
                         f"repeat a key (e.g. {dup}). Diff by a key that names one row, or add columns to it "
                         "(--key a --key b).", field="key")


def _key_codes(table: Any, keys: list[str]) -> tuple[np.ndarray, bool]:
    """One integer per row standing for its key: the value itself for a single integer key without
    missing values, else the stable 64-bit hash of the key columns (matches are checked afterwards)."""
    import pyarrow as pa

    from conveyor.data.keyhash import hash_columns

    if len(keys) == 1:
        col = table.column(keys[0])
        if (pa.types.is_integer(col.type) or pa.types.is_temporal(col.type)) and col.null_count == 0 \
                and not pa.types.is_uint64(col.type):
            values = col.combine_chunks()
            if pa.types.is_temporal(col.type):
                values = values.view(pa.int64() if col.type.bit_width == 64 else pa.int32())
            return np.asarray(values, dtype=np.int64), True
    return hash_columns(table, keys).view(np.int64), False


def match_rows(a: Any, b: Any, keys: list[str], names: tuple[str, str]) -> tuple[np.ndarray, ...]:
    from conveyor.data.keyhash import hash_columns

    """Row numbers of ``a`` and ``b`` with equal keys (``ma``, ``mb``), and the rows only in ``b``
    (added) or only in ``a`` (removed), by sorting one side's key codes and binary-searching the other's.

    A key repeated on either side is an error. If two different keys ever shared a hash, the answer
    comes from an Arrow hash join instead (checked on every match, so it is never wrong).
    """
    (ca, exact_a), (cb, exact_b) = _key_codes(a, keys), _key_codes(b, keys)
    if exact_a != exact_b:    # one side's key is integers, the other's not (or has missing values): hash both
        ca, cb = hash_columns(a, keys).view(np.int64), hash_columns(b, keys).view(np.int64)
    hashed = not (exact_a and exact_b)
    if not hashed and len(ca) and len(cb):
        lo, hi = min(int(ca.min()), int(cb.min())), max(int(ca.max()), int(cb.max()))
        if hi - lo <= 8 * (len(ca) + len(cb)):     # dense integer ids: a lookup table, no sort, no search
            return _dense_rows(a, b, keys, names, ca - lo, cb - lo, hi - lo + 1)
    order = np.argsort(ca, kind="stable")          # near-linear when the key is already in order
    sa = ca[order]
    for codes, sorted_codes, t, n in ((ca, sa, a, names[0]), (cb, None, b, names[1])):
        s = sorted_codes if sorted_codes is not None else np.sort(codes, kind="stable")
        if len(s) > 1 and bool(np.any(s[1:] == s[:-1])):
            _check_unique(t, keys, n)              # a real repeat raises; a hash collision falls through
            return _join_rows(a, b, keys)
    pos = np.minimum(np.searchsorted(sa, cb), max(len(sa) - 1, 0))
    found = sa[pos] == cb if len(sa) else np.zeros(len(cb), dtype=bool)
    ma, mb = order[pos[found]], np.flatnonzero(found)
    if hashed and len(ma):
        same = np.ones(len(ma), dtype=bool)
        for k in keys:
            same &= ~differs(a.column(k).take(ma), b.column(k).take(mb))
        if not same.all():
            return _join_rows(a, b, keys)
    in_b = np.zeros(len(ca), dtype=bool)
    in_b[ma] = True
    return ma, mb, np.flatnonzero(~found), np.flatnonzero(~in_b)


def _dense_rows(a: Any, b: Any, keys: list[str], names: tuple[str, str], ca: np.ndarray, cb: np.ndarray,
                span: int) -> tuple[np.ndarray, ...]:
    for codes, t, n in ((ca, a, names[0]), (cb, b, names[1])):
        if len(codes) > 1 and int(np.bincount(codes, minlength=span).max()) > 1:
            _check_unique(t, keys, n)
    row_of_a = np.full(span, -1, dtype=np.int64)
    row_of_a[ca] = np.arange(len(ca))
    at = row_of_a[cb]
    found = at >= 0
    ma, mb = at[found], np.flatnonzero(found)
    in_b = np.zeros(len(ca), dtype=bool)
    in_b[ma] = True
    return ma, mb, np.flatnonzero(~found), np.flatnonzero(~in_b)


def _join_rows(a: Any, b: Any, keys: list[str]) -> tuple[np.ndarray, ...]:
    """``match_rows`` by an Arrow hash join (the fallback; slower, exact for any key type)."""
    import pyarrow as pa

    ka = a.select(keys).append_column(_A, pa.array(np.arange(a.num_rows, dtype=np.int64)))
    kb = b.select(keys)
    if kb.schema != a.select(keys).schema:
        kb = kb.cast(pa.schema([pa.field(k, ka.schema.field(k).type) for k in keys]))
    kb = kb.append_column(_B, pa.array(np.arange(b.num_rows, dtype=np.int64)))
    joined = ka.join(kb, keys=keys, join_type="full outer")
    ia = np.asarray(joined.column(_A).fill_null(-1), dtype=np.int64)
    ib = np.asarray(joined.column(_B).fill_null(-1), dtype=np.int64)
    both = (ia >= 0) & (ib >= 0)
    return ia[both], ib[both], ib[ia < 0], ia[ib < 0]


def _schema_changes(a: Any, b: Any) -> tuple[list[dict[str, str]], list[dict[str, str]], list[dict[str, str]]]:
    fa = {f.name: str(f.type) for f in a.schema}
    fb = {f.name: str(f.type) for f in b.schema}
    added = [{"name": n, "type": t} for n, t in fb.items() if n not in fa]
    removed = [{"name": n, "type": t} for n, t in fa.items() if n not in fb]
    changed = [{"name": n, "before": fa[n], "after": fb[n]} for n in fa if n in fb and fa[n] != fb[n]]
    return added, removed, changed


def diff_tables(a: Any, b: Any, *, key: str | Sequence[str] | None = None, examples: int = 5,
                names: tuple[str, str] = ("before", "after"), profiles: tuple[Any, Any] = (None, None),
                ignore: Sequence[str] = ()) -> DatasetDiff:
    """Compare table ``a`` (before) with ``b`` (after); ``key`` names the columns that identify a row."""
    import pyarrow as pa

    from conveyor.monitoring.profile import to_arrow

    a, b = to_arrow(a), to_arrow(b)
    keys = [key] if isinstance(key, str) else list(key) if key else None
    added_cols, removed_cols, type_changes = _schema_changes(a, b)
    common = [c for c in a.column_names if c in b.column_names and c not in ignore and c not in (keys or [])]
    not_compared: dict[str, str] = {}
    by_column: dict[str, int] = {}
    ex: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": []}
    if keys:
        for side, t, n in (("before", a, names[0]), ("after", b, names[1])):
            missing = [k for k in keys if k not in t.column_names]
            if missing:
                raise InvalidRequest(f"Key column {', '.join(missing)} is not in {n} ({side}). Its columns: "
                                     f"{', '.join(t.column_names)}.", field="key")
        ma, mb, added_idx, removed_idx = match_rows(a, b, keys, names)
        order = np.argsort(mb, kind="stable")      # examples in the after version's row order
        ma, mb = ma[order], mb[order]
        changed_mask = np.zeros(len(ma), dtype=bool)
        masks: dict[str, np.ndarray] = {}
        for col, d in column_changes(a, b, common, ma, mb).items():
            if isinstance(d, str):
                not_compared[col] = d
                continue
            masks[col] = d
            by_column[col] = int(d.sum())
            changed_mask |= d
        changed = int(changed_mask.sum())
        pick = np.flatnonzero(changed_mask)[:examples]
        if len(pick):
            keys_rows = b.select(keys).take(mb[pick]).to_pylist()
            for j, row_key in zip(pick, keys_rows, strict=True):
                cols = [c for c, m in masks.items() if m[j]]
                before = a.select(cols).take([ma[j]]).to_pylist()[0]
                after = b.select(cols).take([mb[j]]).to_pylist()[0]
                ex["changed"].append({"key": {k: _plain(v) for k, v in row_key.items()},
                                      "changes": {c: [_plain(before[c]), _plain(after[c])] for c in cols}})
        unchanged: int | None = int(len(ma) - changed)
    else:
        from conveyor.data.keyhash import hash_columns, hashable

        shared = [c for c in a.column_names if c in b.column_names and c not in ignore]
        for c in shared:
            if not (hashable(a.schema.field(c).type) and hashable(b.schema.field(c).type)):
                not_compared[c] = f"values of type {b.schema.field(c).type} are not compared"
        shared = [c for c in shared if c not in not_compared]
        ha, hb = hash_columns(a, shared), hash_columns(b, shared)
        added_idx = np.flatnonzero(~np.isin(hb, ha))
        removed_idx = np.flatnonzero(~np.isin(ha, hb))
        changed, unchanged = None, None
    ex["added"] = _rows(b, added_idx, examples)
    ex["removed"] = _rows(a, removed_idx, examples)
    dist = distribution_changes(*profiles) if profiles[0] is not None and profiles[1] is not None else []
    dist = [c for c in dist if c["column"] not in (keys or [])]      # a key's distribution says nothing
    return DatasetDiff(names=names, rows=(a.num_rows, b.num_rows), key=keys, columns_added=added_cols,
                       columns_removed=removed_cols, type_changes=type_changes, added=int(len(added_idx)),
                       removed=int(len(removed_idx)), changed=changed, unchanged=unchanged,
                       changed_by_column=by_column, not_compared=not_compared, examples=ex, distributions=dist)


def distribution_changes(before: Any, after: Any) -> list[dict[str, Any]]:
    """Per column in both profiles: the monitoring drift statistics, verdict and plot data."""
    from conveyor.monitoring.drift import compare

    report = compare(before, after).to_dict()
    return [{"column": c["name"], "kind": c["kind"], "drifted": c["drifted"], "reason": c["reason"],
             "statistics": c["statistics"], "plot": c["plot"]} for c in report["columns"]]
