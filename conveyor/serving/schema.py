"""Turning request bodies into validated columns, vectorised; a bad field is named, nothing reaches the model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest
from conveyor.serving.catalog import Signature

NUMERIC = {"float64", "float32", "int64", "int32", "int16", "int8", "uint8", "uint16", "uint32", "uint64"}


class Batch:
    """Validated input of equal-length columns, in the model's order when a signature is known.

    Built either from columns or, on the fast path for all-numeric signatures, from one float64
    matrix whose columns are materialised only when someone asks (the prediction log, a DataFrame).
    """

    __slots__ = ("_columns", "matrix", "names", "dtypes", "rows")

    def __init__(self, columns: dict[str, np.ndarray] | None, rows: int, *, matrix: np.ndarray | None = None,
                 names: Sequence[str] = (), dtypes: Sequence[str] = ()) -> None:
        self._columns = columns
        self.rows = rows
        self.matrix = matrix
        self.names = tuple(names) if matrix is not None else tuple(columns or ())
        self.dtypes = tuple(dtypes)

    @property
    def columns(self) -> dict[str, np.ndarray]:
        if self._columns is None:
            m = self.matrix
            self._columns = {n: (m[:, j] if d == "float64" else m[:, j].astype(d))
                             for j, (n, d) in enumerate(zip(self.names, self.dtypes, strict=True))}
        return self._columns

    def to_model_input(self, model: Any) -> Any:
        """A DataFrame for models fitted on named columns, else a 2-D array."""
        if self.matrix is not None and getattr(model, "feature_names_in_", None) is None:
            return self.matrix
        if getattr(model, "feature_names_in_", None) is not None or any(
                a.dtype.kind in "OUS" for a in self.columns.values()):
            import pandas as pd

            return pd.DataFrame(self.columns, copy=False)
        return np.column_stack(list(self.columns.values())) if self.columns else np.empty((self.rows, 0))


class RowBlock:
    """Rows as a client sent them (``[[1, 2], [3, 4]]`` or a 2-D array) with their column names.

    ``validate`` turns an all-numeric block into one matrix in a single NumPy call; anything else
    (text, booleans, ragged rows) takes the column-by-column path that names the offending field.
    """

    __slots__ = ("rows", "names", "field")

    def __init__(self, rows: Any, names: Sequence[str], field: str) -> None:
        self.rows, self.names, self.field = rows, list(names), field

    def __len__(self) -> int:
        return len(self.rows)

    def to_columns(self) -> dict[str, list[Any]]:
        rows, names, field = self.rows, self.names, self.field
        if isinstance(rows, np.ndarray):
            return {n: rows[:, j].tolist() for j, n in enumerate(names)}
        width = len(names)
        for i, r in enumerate(rows):
            if len(r) != width:
                raise InvalidRequest(f"Row {i} of '{field}' has {len(r)} values; expected {width} "
                                     f"({', '.join(names)}).", field=f"{field}[{i}]")
        cols = list(zip(*rows, strict=True))
        return {n: list(c) for n, c in zip(names, cols, strict=True)}

    def matrix(self, signature: Signature) -> np.ndarray | None:
        """The float64 matrix when the block is plain numbers in the signature's order, else None."""
        plan = _plan(signature)
        if not plan.numeric or plan.names != self.names:
            return None
        rows = self.rows
        if isinstance(rows, np.ndarray):
            if rows.dtype.kind not in "iuf" or rows.ndim != 2:
                return None
            m = rows.astype(np.float64, copy=False)
        else:
            try:
                m = np.array(rows, dtype=np.float64)
            except (ValueError, TypeError):     # ragged rows, text, nested values: the careful path
                return None
            if m.ndim != 2:
                return None
            # A JSON true/false converts silently to 1.0/0.0. Small requests: look at every value's
            # type (cheapest there); large ones: only at cells holding exactly 0 or 1.
            if m.size <= 256:
                if bool in set(map(type, chain.from_iterable(rows))):
                    return None
            else:
                for i, j in np.argwhere((m == 0.0) | (m == 1.0)):
                    if type(rows[i][j]) is bool:
                        return None
        if m.shape[1] != len(plan.names) or not np.isfinite(m).all():   # a null became NaN: the careful path names it
            return None
        ints = plan.ints
        if ints:
            sub = m[:, ints]
            if not np.all(sub == np.floor(sub)):     # also False for NaN
                return None
        return m



class _Plan:
    """What the matrix path needs to know of a signature, worked out once per signature."""

    __slots__ = ("inputs", "names", "dtypes", "numeric", "ints")

    def __init__(self, inputs: tuple[Any, ...]) -> None:
        self.inputs = inputs     # kept so the id it is cached under cannot be reused while cached
        self.names = [s.name for s in inputs]
        self.dtypes = tuple(s.dtype for s in inputs)
        self.numeric = all(d in NUMERIC for d in self.dtypes)
        self.ints = [j for j, d in enumerate(self.dtypes) if d.startswith(("int", "uint"))]


_PLANS: dict[int, _Plan] = {}


def _plan(signature: Signature) -> _Plan:
    inputs = signature.inputs
    plan = _PLANS.get(id(inputs))
    if plan is None or plan.inputs is not inputs:
        if len(_PLANS) > 1000:
            _PLANS.clear()
        plan = _PLANS[id(inputs)] = _Plan(inputs)
    return plan


def from_records(records: Any, field: str = "records") -> dict[str, list[Any]]:
    """``[{"a": 1, "b": 2}, …]`` → columns."""
    if not isinstance(records, list) or not records:
        raise InvalidRequest(f"'{field}' must be a non-empty list of objects.", field=field)
    if not all(isinstance(r, dict) for r in records):
        raise InvalidRequest(f"'{field}' must hold objects mapping column names to values.", field=field)
    names = list(records[0])
    for i, r in enumerate(records):
        if r.keys() != records[0].keys():
            missing = set(names) - set(r)
            raise InvalidRequest(f"Row {i} of '{field}' has different columns"
                                 + (f" (missing {sorted(missing)})" if missing else "") + ".", field=field)
    return {n: [r[n] for r in records] for n in names}


def from_rows(rows: Any, names: Sequence[str] | None, field: str = "data") -> RowBlock:
    """``[[1, 2], [3, 4]]`` with column names (or the signature's order) → columns."""
    if not isinstance(rows, list) or not rows:
        raise InvalidRequest(f"'{field}' must be a non-empty list of rows.", field=field)
    if not all(isinstance(r, list) for r in rows):
        rows = [rows] if names and len(rows) == len(names) else rows
        if not all(isinstance(r, list) for r in rows):
            raise InvalidRequest(f"'{field}' must be a list of rows (lists of values).", field=field)
    if names is None:
        raise InvalidRequest(f"'{field}' gives rows without column names and the model has no signature; "
                             "send named columns (records or dataframe_split).", field=field)
    return RowBlock(rows, names, field)


def from_columns(data: Any, field: str = "inputs") -> dict[str, list[Any]]:
    """``{"a": [1, 2], "b": [3, 4]}`` → columns."""
    if not isinstance(data, dict) or not data:
        raise InvalidRequest(f"'{field}' must be an object of column name → list of values.", field=field)
    out = {}
    for k, v in data.items():
        out[k] = v if isinstance(v, list) else [v]
    return out


def _convert(name: str, values: list[Any], dtype: str) -> np.ndarray:
    if dtype in NUMERIC:
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):          # ragged nested lists
            raise InvalidRequest(f"Column '{name}' must hold one value per row, not nested lists.",
                                 field=name) from None
        if arr.dtype.kind in "iuf" and arr.ndim == 1:      # true/false mixed with numbers became 1/0
            for i in np.flatnonzero((arr == 0) | (arr == 1)):
                if type(values[i]) is bool:
                    raise InvalidRequest(f"Column '{name}' expects {dtype}, got bool {values[i]!r}.", field=name)
        if arr.dtype.kind == "b" or arr.dtype.kind in "OUS":
            try:
                if arr.dtype.kind == "b":
                    raise ValueError
                arr = np.asarray(values, dtype="float64")
            except (ValueError, TypeError):
                bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, int | float)), None)
                what = "null" if bad is None else f"{type(bad).__name__} {bad!r}"[:80]
                raise InvalidRequest(f"Column '{name}' expects {dtype}, got {what}.", field=name) from None
        if arr.ndim != 1:
            raise InvalidRequest(f"Column '{name}' must hold one value per row, not nested lists.", field=name)
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise InvalidRequest(f"Column '{name}' has a missing value or an infinite one (null/NaN/Infinity) in row "
                                 f"{int(np.flatnonzero(~np.isfinite(arr))[0])}; {dtype} columns need a finite number "
                                 "in every row.", field=name)
        if dtype.startswith(("int", "uint")) and arr.dtype.kind == "f":
            if not np.all(arr == np.floor(arr)):
                raise InvalidRequest(f"Column '{name}' expects whole numbers ({dtype}).", field=name)
            return arr.astype(dtype)
        return arr.astype(dtype, copy=False) if dtype.startswith("float") else arr.astype(dtype)
    if dtype == "bool":
        arr = np.asarray(values)
        if arr.dtype.kind != "b":
            raise InvalidRequest(f"Column '{name}' expects true/false values.", field=name)
        return arr
    if dtype in ("string", "category"):
        if not all(isinstance(v, str) for v in values):
            bad = next(v for v in values if not isinstance(v, str))
            raise InvalidRequest(f"Column '{name}' expects text, got {type(bad).__name__} {bad!r}.", field=name)
        return np.asarray(values, dtype=object)
    return np.asarray(values)


def validate(columns: Mapping[str, list[Any]] | RowBlock, signature: Signature | None) -> Batch:
    """Check columns against the signature (missing, type, length) and order them."""
    if isinstance(columns, RowBlock):
        if signature is not None and len(columns):
            m = columns.matrix(signature)
            if m is not None:
                return Batch(None, m.shape[0], matrix=m, names=columns.names, dtypes=_plan(signature).dtypes)
        columns = columns.to_columns()
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise InvalidRequest(f"Columns have different lengths: "
                             f"{ {k: len(v) for k, v in columns.items()} }.", field="inputs")
    rows = lengths.pop() if lengths else 0
    if rows == 0:
        raise InvalidRequest("The request holds no rows.", field="inputs")
    if signature is None:
        return Batch({k: np.asarray(v) for k, v in columns.items()}, rows)
    out: dict[str, np.ndarray] = {}
    for spec in signature.inputs:
        if spec.name not in columns:
            raise InvalidRequest(f"Missing column '{spec.name}' ({spec.dtype}). The model expects: "
                                 f"{', '.join(c.name for c in signature.inputs)}.", field=spec.name)
        out[spec.name] = _convert(spec.name, columns[spec.name], spec.dtype)
    return Batch(out, rows)
