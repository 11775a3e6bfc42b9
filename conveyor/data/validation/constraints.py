"""Constraints compiled from a schema, each checked over whole columns (NumPy or Arrow compute, never a row loop).

A row constraint answers with a boolean mask of the offending rows (None when there is none, the
common case, so nothing is allocated for it); a table constraint (a missing column, a wrong type,
the row count, unexpected columns) with a verdict about the whole table. Missing values pass every
constraint except ``nullable``; a float NaN counts as missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.data.validation.schema import TABLE_KINDS, Column, Schema, arrow_type
from conveyor.errors import SchemaError

if TYPE_CHECKING:
    import pyarrow as pa


@dataclass(frozen=True, slots=True)
class TableVerdict:
    """The outcome of a table constraint, or of a row constraint that could not run: ``skipped`` when its
    column may be absent and is, failed when the column is of a kind it cannot judge (a range over text)."""

    failed: bool
    detail: str = ""
    skipped: bool = False


Outcome = np.ndarray | TableVerdict | None


@dataclass(frozen=True, slots=True)
class Constraint:
    """One named check with its policy; ``check`` maps the table's columns to its outcome."""

    name: str
    kind: str
    column: str | None
    policy: str
    description: str
    check: Callable[[Columns], Outcome]
    columns: tuple[str, ...] = ()

    @property
    def scope(self) -> str:
        return "table" if self.kind in TABLE_KINDS else "rows"


class Columns:
    """A table's columns, converted once each (to one Arrow array, to NumPy) however many constraints read them."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.rows = table.num_rows
        self._arrow: dict[str, Any] = {}
        self._numpy: dict[str, np.ndarray] = {}
        self._nulls: dict[str, np.ndarray | None] = {}

    def has(self, name: str) -> bool:
        return name in self._arrow or self.table.schema.get_field_index(name) >= 0

    def type(self, name: str) -> Any:
        return self.table.schema.field(name).type

    def arrow(self, name: str) -> Any:
        if name not in self._arrow:
            col = self.table.column(name)
            self._arrow[name] = col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
        return self._arrow[name]

    def numpy(self, name: str) -> np.ndarray:
        """The values as NumPy (zero-copy for numbers without missing values; missing ones as NaN / NaT)."""
        if name not in self._numpy:
            self._numpy[name] = self.arrow(name).to_numpy(zero_copy_only=False)
        return self._numpy[name]

    def missing_as_null(self, name: str) -> Any:
        """The Arrow array with float NaN turned into missing values (what rules read: NaN is missing there too)."""
        import pyarrow as pa

        arr = self.arrow(name)
        if pa.types.is_floating(arr.type) and self.nulls(name) is not None:
            key = f"\0nan-as-null:{name}"
            if key not in self._arrow:
                self._arrow[key] = pa.array(self.numpy(name), type=arr.type, mask=self.nulls(name))
            return self._arrow[key]
        return arr

    def nulls(self, name: str) -> np.ndarray | None:
        """Where values are missing (float NaN included), or None when none is."""
        if name not in self._nulls:
            import pyarrow as pa

            arr = self.arrow(name)
            mask: np.ndarray | None = None
            if pa.types.is_floating(arr.type):
                mask = np.isnan(self.numpy(name))
            elif arr.null_count:
                mask = to_mask(arr.is_null())
            self._nulls[name] = mask if mask is not None and mask.any() else None
        return self._nulls[name]


def to_mask(arr: Any) -> np.ndarray:
    """An Arrow boolean array as a NumPy mask, missing entries false."""
    if arr.null_count:
        arr = arr.fill_null(False)
    return np.asarray(arr.to_numpy(zero_copy_only=False), dtype=bool)


def _any(mask: np.ndarray) -> np.ndarray | None:
    return mask if mask.any() else None


def compile_schema(schema: Schema) -> list[Constraint]:
    """The schema's constraints in report order; SchemaError for a policy that cannot apply."""
    out: list[Constraint] = []
    default = schema.on_fail
    for name, col in schema.columns.items():
        out.extend(_column_constraints(schema, name, col, default))
    for key in schema.unique_together:
        label = f"unique_together({', '.join(key.columns)})"
        out.append(Constraint(label, "unique_together", None, key.on_fail or default,
                              f"no two rows share ({', '.join(key.columns)})",
                              lambda c, cols=tuple(key.columns): _unique_together(c, cols), tuple(key.columns)))
    from conveyor.data.validation.expressions import columns_of

    optional = frozenset(n for n, col in schema.columns.items() if not col.required)
    for rule in schema.rules:
        out.append(Constraint(rule.name, "rule", None, rule.on_fail or default, rule.check,
                              lambda c, r=rule.check: _rule(c, r, optional), tuple(columns_of(rule.check))))
    if schema.rows is not None:
        rows = schema.rows
        if rows.on_fail == "quarantine":
            raise SchemaError(f"{schema.where('rows', 'on_fail')}: rows.on_fail is quarantine, but a row count "
                              "judges the whole table and there are no rows to set aside; use fail or warn.")
        bounds = " and ".join(p for p in (f"at least {rows.min:,}" if rows.min is not None else "",
                                          f"at most {rows.max:,}" if rows.max is not None else "") if p)
        out.append(Constraint("rows", "rows", None, _table_policy(rows.on_fail or default), f"{bounds or 'any'} rows",
                              lambda c, lo=rows.min, hi=rows.max: _row_count(c, lo, hi)))
    if schema.strict:
        known = tuple(schema.columns)
        out.append(Constraint("columns", "columns", None, _table_policy(default), "no columns beyond the schema's",
                              lambda c: _no_extra_columns(c, known)))
    return out


def _table_policy(policy: str) -> str:
    # an inherited quarantine cannot set aside a table: the table constraints under it fail instead
    return "fail" if policy == "quarantine" else policy


def _column_constraints(schema: Schema, name: str, col: Column, default: str) -> list[Constraint]:
    out: list[Constraint] = []

    def add(kind: str, description: str, check: Callable[[Columns], Outcome]) -> None:
        policy = col.policy(kind, default)
        explicit = isinstance(col.on_fail, dict) and kind in col.on_fail
        if kind in TABLE_KINDS and policy == "quarantine":
            if explicit:
                raise SchemaError(f"{schema.where('columns', name, 'on_fail', kind)}: {name}.{kind} has policy "
                                  "quarantine, but it judges the whole column (no rows to set aside); use fail "
                                  "or warn.")
            policy = "fail"
        out.append(Constraint(f"{name}.{kind}", kind, name, policy, description, lambda c: _guarded(c, name, check),
                              (name,)))

    if col.required:
        out.append(Constraint(f"{name}.present", "present", name, _table_policy(col.policy("present", default)),
                              "the column exists", lambda c: TableVerdict(not c.has(name), "the column is missing")))
    if col.type is not None:
        add("type", f"type {col.type}", lambda c, t=col.type: _type(c, name, t))
    if not col.nullable:
        add("nullable", "no missing values", lambda c: c.nulls(name))
    if col.range is not None:
        r = col.range
        lo = f"{'>' if r.min_exclusive else '>='} {r.min}" if r.min is not None else ""
        hi = f"{'<' if r.max_exclusive else '<='} {r.max}" if r.max is not None else ""
        add("range", " and ".join(p for p in (lo, hi) if p), lambda c: _range(c, name, r))
    if col.categories is not None:
        shown = ", ".join(map(str, col.categories[:10])) + (" …" if len(col.categories) > 10 else "")
        add("categories", f"one of {shown}", lambda c, v=tuple(col.categories): _categories(c, name, v))
    if col.unique:
        add("unique", "no value repeats", lambda c: _unique(c, name))
    if col.pattern is not None:
        add("pattern", f"matches {col.pattern}", lambda c, p=col.pattern: _pattern(c, name, p))
    if col.length is not None:
        ln = col.length
        add("length", " and ".join(p for p in (f"at least {ln.min} characters" if ln.min is not None else "",
                                                 f"at most {ln.max} characters" if ln.max is not None else "") if p),
            lambda c: _length(c, name, ln.min, ln.max))
    return out


def _guarded(columns: Columns, name: str, check: Callable[[Columns], Outcome]) -> Outcome:
    if not columns.has(name):
        return TableVerdict(False, "the column is missing", skipped=True)
    return check(columns)


def _type(columns: Columns, name: str, wanted: str) -> TableVerdict:
    import pyarrow as pa

    actual = columns.type(name)
    value = actual.value_type if pa.types.is_dictionary(actual) else actual
    want = arrow_type(wanted)
    if isinstance(want, str):
        t = pa.types
        ok = {"integer": t.is_integer, "float": t.is_floating, "string": lambda x: t.is_string(x) or t.is_large_string(x),
              "number": lambda x: t.is_integer(x) or t.is_floating(x) or t.is_decimal(x), "boolean": t.is_boolean,
              "timestamp": t.is_timestamp, "date": t.is_date, "any": lambda x: True}[want](value)
    else:
        strings = (pa.string(), pa.large_string())
        ok = value == want or (value in strings and want in strings)
    return TableVerdict(not ok, "" if ok else f"the column is {actual}, the schema says {wanted}")


def _range(columns: Columns, name: str, r: Any) -> Outcome:
    import pyarrow as pa

    t = columns.type(name)
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t) or pa.types.is_temporal(t)):
        return TableVerdict(True, f"a range needs numbers, dates or times; the column is {t}")
    v = columns.numpy(name)
    lo, hi = (_bound(b, v) for b in (r.min, r.max))
    mask = None
    if lo is not None:
        mask = (v <= lo) if r.min_exclusive else (v < lo)
    if hi is not None:
        upper = (v >= hi) if r.max_exclusive else (v > hi)
        mask = upper if mask is None else (mask | upper)
    return _any(mask) if mask is not None else None


def _bound(value: Any, values: np.ndarray) -> Any:
    if value is None:
        return None
    if values.dtype.kind == "M":
        return np.datetime64(value)
    return value


def _dictionary_aware(arr: Any, fn: Callable[[Any], Any]) -> Any:
    """``fn`` (element-wise) on a dictionary array's few distinct values, spread back by its indices."""
    import pyarrow as pa

    if pa.types.is_dictionary(arr.type):
        return fn(arr.dictionary).take(arr.indices)
    return fn(arr)


def _categories(columns: Columns, name: str, allowed: tuple[Any, ...]) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = columns.arrow(name)
    value_type = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    try:
        value_set = pa.array(list(allowed)).cast(value_type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        raise SchemaError(f"{name}.categories: the values {list(allowed)[:10]} do not fit the column's type "
                          f"{value_type}; write them as {value_type} values.") from None
    inside = to_mask(_dictionary_aware(arr, lambda a: pc.is_in(a, value_set=value_set)))
    nulls = columns.nulls(name)
    mask = ~inside if nulls is None else (~inside & ~nulls)
    return _any(mask)


def _unique(columns: Columns, name: str) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = columns.arrow(name)
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_temporal(t):
        # numbers: one stable sort; a value equal to its sorted neighbour repeats (NaN / NaT never equal)
        v = columns.numpy(name)
        order = np.argsort(v, kind="stable")
        ranked = v[order]
        same = ranked[1:] == ranked[:-1]
        if not same.any():
            return None
        repeated = np.zeros(len(v), dtype=bool)
        repeated[1:] |= same
        repeated[:-1] |= same
        mask = np.empty(len(v), dtype=bool)
        mask[order] = repeated
        return _any(mask)
    # anything else (text): one sort, which Arrow does faster than hashing a million distinct strings
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
    order = pc.sort_indices(arr)
    ranked = arr.take(order)
    same = to_mask(pc.equal(ranked.slice(1), ranked.slice(0, len(ranked) - 1)))   # missing values: never equal
    if not same.any():
        return None
    repeated = np.zeros(len(arr), dtype=bool)
    repeated[1:] |= same
    repeated[:-1] |= same
    mask = np.empty(len(arr), dtype=bool)
    mask[np.asarray(order)] = repeated
    return _any(mask)


def _unique_together(columns: Columns, names: tuple[str, ...]) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = [n for n in names if not columns.has(n)]
    if missing:
        return TableVerdict(True, f"needs column(s) {', '.join(missing)}, which the data lacks")
    key = np.zeros(columns.rows, dtype=np.int64)
    span = 1
    any_null = np.zeros(columns.rows, dtype=bool)
    for n in names:
        arr = columns.arrow(n)
        encoded = arr if pa.types.is_dictionary(arr.type) else pc.dictionary_encode(arr)
        codes = np.asarray(encoded.indices.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.int64)
        nulls = columns.nulls(n)
        if nulls is not None:
            any_null |= nulls
        size = max(len(encoded.dictionary), 1)
        if span * size >= 2 ** 62:   # keep the combined key in int64: renumber what we have so far
            _, key = np.unique(key, return_inverse=True)
            span = int(key.max()) + 1 if len(key) else 1
        key = key * size + codes
        span *= size
    keys = pa.array(key)
    counts = pc.value_counts(keys)
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    if len(repeated) == 0:
        return None
    mask = to_mask(pc.is_in(keys, value_set=repeated)) & ~any_null   # a key with a missing part identifies nothing
    return _any(mask)


def _pattern(columns: Columns, name: str, pattern: str) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = columns.arrow(name)
    value_type = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        return TableVerdict(True, f"a pattern needs text; the column is {arr.type}")
    full = f"^(?:{pattern})$"
    matched = _dictionary_aware(arr, lambda a: pc.match_substring_regex(a, pattern=full))
    return _any(to_mask(pc.invert(matched)))   # a missing value gives a missing match: not an offence


def _length(columns: Columns, name: str, lo: int | None, hi: int | None) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    arr = columns.arrow(name)
    value_type = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    if not (pa.types.is_string(value_type) or pa.types.is_large_string(value_type)):
        return TableVerdict(True, f"a length needs text; the column is {arr.type}")

    def outside(a: Any) -> Any:
        n = pc.utf8_length(a)
        parts = [p for p in (pc.less(n, lo) if lo is not None else None,
                             pc.greater(n, hi) if hi is not None else None) if p is not None]
        return parts[0] if len(parts) == 1 else pc.or_(parts[0], parts[1])

    return _any(to_mask(_dictionary_aware(arr, outside)))


def _rule(columns: Columns, text: str, optional: frozenset[str]) -> Outcome:
    import pyarrow as pa
    import pyarrow.compute as pc

    from conveyor.data.validation.expressions import columns_of, evaluate

    missing = [n for n in columns_of(text) if not columns.has(n)]
    if missing and set(missing) <= optional:   # a rule about a column the schema lets be absent
        return TableVerdict(False, f"reads optional column(s) {', '.join(missing)}, absent here", skipped=True)
    if missing:
        return TableVerdict(True, f"reads column(s) {', '.join(missing)}, which the data lacks")
    try:
        value = evaluate(text, columns.missing_as_null)
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        types = ", ".join(f"{n}: {columns.type(n)}" for n in columns_of(text))
        raise SchemaError(f"Rule {text!r} cannot be computed on these columns ({types}): "
                          f"{str(exc).splitlines()[0]}. Fix the rule in the schema.") from None
    if isinstance(value, pa.Scalar):
        value = pa.array(np.full(columns.rows, value.as_py()), type=value.type) if value.is_valid \
            else pa.nulls(columns.rows, pa.bool_())
    if value.type != pa.bool_():
        raise SchemaError(f"Rule {text!r} gives {value.type} values, not true/false; write a comparison "
                          "(e.g. `total >= 0`).")
    return _any(to_mask(pc.invert(value)))


def _row_count(columns: Columns, lo: int | None, hi: int | None) -> TableVerdict:
    n = columns.rows
    if lo is not None and n < lo:
        return TableVerdict(True, f"{n:,} rows, fewer than {lo:,}")
    if hi is not None and n > hi:
        return TableVerdict(True, f"{n:,} rows, more than {hi:,}")
    return TableVerdict(False)


def _no_extra_columns(columns: Columns, known: tuple[str, ...]) -> TableVerdict:
    extra = [n for n in columns.table.column_names if n not in known]
    return TableVerdict(bool(extra), f"columns not in the schema: {', '.join(extra)}" if extra else "")
