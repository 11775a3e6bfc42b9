"""Column profiles: what a reference data set looked like, compact enough to store with a model version.

A profile holds, per column, its kind (numeric or categorical), row and missing counts, and either
its sorted values (numeric) or its category counts (categorical). Built from data in memory the
values are kept whole, so comparisons are exact; stored, a numeric column keeps at most
``SKETCH_POINTS`` evenly spaced order statistics (its CDF to within 1/``SKETCH_POINTS``) and a
categorical one its ``MAX_CATEGORIES`` most frequent categories, the rest summed as ``OTHER``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

SKETCH_POINTS = 2001
MAX_CATEGORIES = 1000
OTHER = "__other__"
PREDICTION = "prediction"
TARGET = "target"
PROFILE_FORMAT = 1
#: Whole-number predictions or targets with at most this many distinct values are class labels.
MAX_LABEL_CLASSES = 20
TASKS = {"classification": "categorical", "regression": "numeric"}


@dataclass
class ColumnProfile:
    name: str
    kind: str                         # "numeric" | "categorical"
    rows: int
    missing: int
    values: np.ndarray | None = None  # numeric: sorted non-missing values (or a sketch of them)
    n: int = 0                        # numeric: how many values ``values`` stands for
    categories: list[str] = field(default_factory=list)
    counts: np.ndarray | None = None  # categorical: counts aligned with ``categories``
    dtype: str = ""

    @property
    def missing_rate(self) -> float:
        return self.missing / self.rows if self.rows else 0.0

    @property
    def exact(self) -> bool:
        return self.kind != "numeric" or self.values is None or len(self.values) == self.n

    def stats(self) -> dict[str, float]:
        if self.kind == "numeric" and self.values is not None and len(self.values):
            v = self.values
            return {"min": float(v[0]), "max": float(v[-1]), "mean": float(v.mean()), "std": float(v.std()),
                    "p50": float(v[len(v) // 2])}
        return {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kind": self.kind, "rows": self.rows, "missing": self.missing,
                               "dtype": self.dtype}
        if self.kind == "numeric":
            v = self.values if self.values is not None else np.empty(0)
            out["n"] = self.n
            out["values"] = sketch(v).tolist()
        else:
            cats, counts = self.categories, self.counts if self.counts is not None else np.empty(0, np.int64)
            if len(cats) > MAX_CATEGORIES:
                top = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
                rest = int(counts.sum() - counts[top].sum())
                cats = [cats[i] for i in top] + [OTHER]
                counts = np.append(counts[top], rest)
            out["categories"] = list(cats)
            out["counts"] = [int(c) for c in counts]
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ColumnProfile:
        if d["kind"] == "numeric":
            return cls(d["name"], "numeric", d["rows"], d["missing"], np.asarray(d["values"], dtype=np.float64),
                       int(d["n"]), dtype=d.get("dtype", ""))
        return cls(d["name"], "categorical", d["rows"], d["missing"], categories=list(d["categories"]),
                   counts=np.asarray(d["counts"], dtype=np.int64), dtype=d.get("dtype", ""))


def sketch(sorted_values: np.ndarray, points: int = SKETCH_POINTS) -> np.ndarray:
    """At most ``points`` evenly spaced order statistics (all values when there are fewer)."""
    n = len(sorted_values)
    if n <= points:
        return sorted_values
    idx = np.round(np.linspace(0, n - 1, points)).astype(np.int64)
    return sorted_values[idx]


@dataclass
class Profile:
    """Profiles of a table's columns; ``prediction`` and ``target`` are ordinary columns by name."""

    columns: dict[str, ColumnProfile]
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"format": PROFILE_FORMAT, "rows": self.rows, "columns": [c.to_dict() for c in self.columns.values()]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Profile:
        cols = [ColumnProfile.from_dict(c) for c in d["columns"]]
        return cls({c.name: c for c in cols}, int(d["rows"]))

    @classmethod
    def from_data(cls, data: Any, *, kinds: dict[str, str] | None = None, predictions: Any = None,
                  target: Any = None, task: str | None = None) -> Profile:
        """Profile a DataFrame, Arrow table, dict of columns or 2-D array (columns named ``x0``, ``x1``…).

        ``prediction`` and ``target`` columns (in ``data`` or given apart) get their kind from
        :func:`label_kinds`; ``task`` (``classification`` / ``regression``, see :func:`task_of`)
        settles it when the caller knows the model.
        """
        import pyarrow as pa

        kinds = dict(kinds or {})
        table = to_arrow(data)
        extras = {}
        for name, extra in ((PREDICTION, predictions), (TARGET, target)):
            if extra is not None:
                arr = np.asarray(extra)
                if arr.ndim > 1:
                    arr = arr[:, -1] if arr.shape[1] > 1 else arr[:, 0]
                extras[name] = pa.chunked_array([pa.array(arr)])
        columns = {n: table.column(n) for n in table.column_names} | extras
        for name, kind in label_kinds(columns.get(PREDICTION), columns.get(TARGET), task).items():
            kinds.setdefault(name, kind)
        cols = {name: profile_column(name, col, kinds.get(name)) for name, col in columns.items()}
        return cls(cols, table.num_rows)


def task_of(model: Any) -> str | None:
    """``classification`` or ``regression`` when the model says so (scikit-learn's estimator type, or
    ``classes_`` / ``predict_proba``), else None. Scikit-learn is imported only for its own models."""
    if hasattr(model, "__sklearn_tags__") or hasattr(model, "_estimator_type"):
        from sklearn.base import is_classifier, is_regressor

        if is_classifier(model):
            return "classification"
        if is_regressor(model):
            return "regression"
    if hasattr(model, "classes_") or hasattr(model, "predict_proba"):
        return "classification"
    return None


def looks_like_labels(values: np.ndarray) -> bool:
    """Whole numbers with at most ``MAX_LABEL_CLASSES`` distinct values (missing ones ignored)."""
    values = values[~np.isnan(values)] if values.dtype.kind == "f" else values
    if len(values) == 0 or values.dtype.kind not in "iuf":
        return False
    if values.dtype.kind == "f" and not np.all(np.isfinite(values) & (values == np.round(values))):
        return False
    return len(np.unique(values)) <= MAX_LABEL_CLASSES


def label_kinds(prediction: Any, target: Any, task: str | None = None) -> dict[str, str]:
    """The kinds of the prediction and target columns (Arrow columns, either may be None).

    The rule, in order: a known ``task`` decides both; a column that is not numeric (text,
    booleans) is categorical; a numeric prediction is categorical when it looks like class labels
    (:func:`looks_like_labels`: whole numbers, few distinct values) and numeric otherwise; the
    target takes the prediction's kind (they share one label space), or the same rule when there
    is no prediction.
    """
    present = {n: c for n, c in ((PREDICTION, prediction), (TARGET, target)) if c is not None}
    if task is not None:
        if task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
        return {n: TASKS[task] for n in present}

    def own(column: Any) -> str:
        if kind_of(column.type) != "numeric":
            return "categorical"
        values, _missing = numeric_values(column)
        return "categorical" if looks_like_labels(values) else "numeric"

    kinds = {}
    if prediction is not None:
        kinds[PREDICTION] = own(prediction)
    if target is not None:
        kinds[TARGET] = kinds.get(PREDICTION) or own(target)
        if kind_of(target.type) != "numeric":
            kinds[TARGET] = "categorical"
    return kinds


def as_labels(column: ColumnProfile) -> ColumnProfile:
    """A numeric profile of class labels (stored before labels were told apart) as a categorical one;
    a sketch's counts are its share of the order statistics times the values it stands for."""
    values = column.values if column.values is not None else np.empty(0)
    cats, counts = np.unique(values, return_counts=True)
    if len(values) and column.n and column.n != len(values):
        counts = np.round(counts * (column.n / len(values))).astype(np.int64)
    return ColumnProfile(column.name, "categorical", column.rows, column.missing,
                         categories=[_label_text(c) for c in cats], counts=counts.astype(np.int64),
                         dtype=column.dtype)


def _label_text(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def to_arrow(data: Any) -> Any:
    """A pyarrow Table from the shapes users hold data in."""
    import pyarrow as pa

    if isinstance(data, pa.Table):
        return data
    if hasattr(data, "__dataframe__") or type(data).__name__ == "DataFrame":
        return pa.Table.from_pandas(data, preserve_index=False)
    if isinstance(data, dict):
        return pa.table({k: np.asarray(v) if not isinstance(v, pa.Array | pa.ChunkedArray) else v
                         for k, v in data.items()})
    arr = np.asarray(data)
    if arr.ndim == 1:
        arr = arr[:, None]
    return pa.table({f"x{j}": arr[:, j] for j in range(arr.shape[1])})


def kind_of(arrow_type: Any) -> str:
    import pyarrow.types as t

    if t.is_integer(arrow_type) or t.is_floating(arrow_type) or t.is_decimal(arrow_type):
        return "numeric"
    return "categorical"


def numeric_values(column: Any) -> tuple[np.ndarray, int]:
    """Sorted non-missing float64 values of an Arrow column and how many were missing (NaN included)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    col = column if column.type == pa.float64() else pc.cast(column, pa.float64())
    values = np.asarray(col.to_numpy(), dtype=np.float64)     # nulls arrive as NaN
    missing_mask = np.isnan(values)
    n_missing = int(missing_mask.sum())
    if n_missing:
        values = values[~missing_mask]
    return np.sort(values), n_missing


def category_counts(column: Any) -> tuple[list[str], np.ndarray, int]:
    """Categories (as text), their counts and the missing count of an Arrow column."""
    import pyarrow.compute as pc

    col = column
    if not (str(col.type) in ("string", "large_string") or str(col.type).startswith("dictionary")):
        col = pc.cast(col, "string")
    vc = pc.value_counts(col)
    values = vc.field("values")
    counts = np.asarray(vc.field("counts").to_numpy(zero_copy_only=False), dtype=np.int64)
    if str(values.type).startswith("dictionary"):
        values = values.cast("string")
    names = values.to_pylist()
    keep = [i for i, v in enumerate(names) if v is not None]
    missing = int(counts.sum() - counts[keep].sum()) if len(keep) != len(names) else 0
    return [str(names[i]) for i in keep], counts[keep], missing


def profile_column(name: str, column: Any, kind: str | None = None) -> ColumnProfile:
    import pyarrow as pa

    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    kind = kind or kind_of(column.type)
    rows = len(column)
    if kind == "numeric":
        values, missing = numeric_values(column)
        return ColumnProfile(name, "numeric", rows, missing, values, len(values), dtype=str(column.type))
    if pa.types.is_floating(column.type):
        values = np.asarray(column.to_numpy(), dtype=np.float64)
        finite = values[~np.isnan(values)]
        if np.all(finite == np.round(finite)) and (not len(finite) or np.abs(finite).max() < 2.0 ** 53):
            # whole-number floats as labels: 1.0 and 1 are one class ("1"), whichever side sent floats
            column = pa.chunked_array([pa.array(values, mask=np.isnan(values)).cast(pa.int64())])
    cats, counts, missing = category_counts(column)
    return ColumnProfile(name, "categorical", rows, missing, categories=cats, counts=counts, dtype=str(column.type))
