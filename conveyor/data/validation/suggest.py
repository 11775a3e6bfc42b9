"""A schema suggested from a reference sample: the sample's profile, with slack, as commented YAML to review.

What is suggested, per column (from :mod:`conveyor.monitoring.profile`):

- ``type``: the family of the column's Arrow type (``integer``, ``float``, ``string``…), so a
  reader that picks int32 over int64 does not break it;
- ``nullable: false`` only when the sample had no missing value;
- ``range`` for numbers: the observed min and max widened by ``margin`` of their span and rounded
  outward to a round number (a non-negative column stays non-negative; a column inside [0, 1]
  gets [0, 1]); an identifier (distinct whole numbers) gets only its floor, since new ones grow;
- ``categories`` for text with at most ``max_categories`` distinct values, when the sample has at
  least five rows per distinct value (so a column of names is not mistaken for one of codes);
- ``unique`` only when evident: every value distinct over at least ``MIN_UNIQUE_ROWS`` rows of
  integers or text;
- ``pattern`` when every value has one obvious shape (a UUID, an e-mail address, an ISO date,
  digits, or one fixed mix of letters and digits such as ``AB-1234``);
- ``rows: {min: 1}`` (the sample's own size is a comment, not a rule).

Every suggestion carries a comment with what was observed, so the user knows what to edit.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

import numpy as np

MARGIN = 0.1
MAX_CATEGORIES = 20
MIN_UNIQUE_ROWS = 50
#: Shapes worth naming, tried in order; the first every value matches in full wins.
KNOWN_PATTERNS = (
    ("a UUID", r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"),
    ("an ISO date", r"\d{4}-\d{2}-\d{2}"),
    ("an ISO date and time", r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?"),
    ("an e-mail address", r"[^@\s]+@[^@\s]+\.[^@\s]+"),
    ("a web address", r"https?://\S+"),
)


def suggest_schema(data: Any, *, name: str | None = None, source: str | None = None, margin: float = MARGIN,
                   max_categories: int = MAX_CATEGORIES) -> str:
    """A commented YAML schema for ``data`` (Arrow table, DataFrame, dict of columns), to review and commit."""
    import pyarrow as pa

    from conveyor.monitoring.profile import to_arrow

    table = to_arrow(data)
    lines = [f"# Schema suggested by `conveyor data suggest` from {source or 'a reference sample'} "
             f"({table.num_rows:,} rows, {dt.date.today().isoformat()}).",
             "# Review it before committing: bounds are the sample's, widened; they are not rules anyone decided yet.",
             "# Each constraint fails the run unless its column says otherwise, e.g. `on_fail: warn`, or",
             "# `on_fail: {default: quarantine, range: warn}` (quarantine sets the offending rows aside).",
             "version: 1"]
    if name:
        lines.append(f"name: {_q(name)}")
    lines += ["on_fail: fail", "rows:", f"  min: 1            # the sample had {table.num_rows:,} rows", "columns:"]
    for col_name in table.column_names:
        column = table.column(col_name)
        if isinstance(column, pa.ChunkedArray) and column.num_chunks != 1:
            column = column.combine_chunks()
        elif isinstance(column, pa.ChunkedArray):
            column = column.chunk(0)
        lines.append(f"  {_q(col_name)}:")
        lines.extend(f"    {line}" for line in _column(column, table.num_rows, margin, max_categories))
    lines += ["# Cross-column rules: Python expressions over whole columns, true on every row.",
              "# rules:",
              "#   - name: discount_below_price",
              "#     check: discount <= price",
              "#     on_fail: warn", ""]
    return "\n".join(lines)


def _column(arr: Any, rows: int, margin: float, max_categories: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    t = arr.type.value_type if pa.types.is_dictionary(arr.type) else arr.type
    family = _family(t)
    out = [f"type: {family}" + (f"   # {arr.type} in the sample" if str(arr.type) != family else "")]
    missing = arr.null_count + (int(pc.sum(pc.is_nan(arr)).as_py() or 0) if pa.types.is_floating(t) else 0)
    if missing:
        out.append(f"nullable: true    # {missing / max(rows, 1):.1%} missing in the sample")
    else:
        out.append("nullable: false   # no missing value in the sample")
    present = rows - missing
    if present == 0:
        return out
    if family in ("integer", "float"):
        out.extend(_numeric(arr, family, margin, present))
    elif family == "string":
        out.extend(_text(arr, present, max_categories))
    elif family in ("timestamp", "date"):
        lo, hi = pc.min_max(arr).values()
        out.append(f"# observed {lo.as_py()} .. {hi.as_py()}; add a range (ISO text) if it matters")
    return out


def _family(t: Any) -> str:
    import pyarrow as pa

    for family, test in (("boolean", pa.types.is_boolean), ("integer", pa.types.is_integer),
                         ("float", pa.types.is_floating), ("float", pa.types.is_decimal),
                         ("timestamp", pa.types.is_timestamp), ("date", pa.types.is_date)):
        if test(t):
            return family
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    return str(t)


def _numeric(arr: Any, family: str, margin: float, present: int) -> list[str]:
    from conveyor.monitoring.profile import profile_column

    prof = profile_column("x", arr, "numeric")
    v = prof.values if prof.values is not None else np.empty(0)
    v = v[np.isfinite(v)]
    if not len(v):
        return []
    lo, hi = float(v[0]), float(v[-1])
    a, b = widen(lo, hi, integer=family == "integer", margin=margin)
    p1, p99 = float(np.quantile(v, 0.01)), float(np.quantile(v, 0.99))
    if family == "integer" and present >= MIN_UNIQUE_ROWS and len(v) == present and np.all(np.diff(v) > 0):
        # an identifier: new ones grow past the sample's largest, so only its floor is a bound
        return [f"range: {{min: {_num(a)}}}   # observed {_num(lo)} .. {_num(hi)}; an identifier, no upper bound",
                f"unique: true      # all {present:,} values distinct"]
    return [f"range: {{min: {_num(a)}, max: {_num(b)}}}   # observed {_num(lo)} .. {_num(hi)} "
            f"(1%-99%: {_num(p1)} .. {_num(p99)}), widened"]


def widen(lo: float, hi: float, *, integer: bool = False, margin: float = MARGIN) -> tuple[float, float]:
    """``[lo, hi]`` widened by ``margin`` of its span and rounded outward; keeps the sign and the unit interval."""
    if 0.0 <= lo and hi <= 1.0 and not integer and hi > lo:
        return 0.0, 1.0   # a share or a probability
    span = hi - lo if hi > lo else (abs(hi) or 1.0)
    pad = span * margin
    a, b = lo - pad, hi + pad
    step = 10.0 ** math.floor(math.log10(pad)) if pad > 0 else 1.0
    if integer:
        step = max(step, 1.0)
    a, b = math.floor(a / step) * step, math.ceil(b / step) * step
    if lo >= 0 > a:
        a = 0.0
    if hi < 0 < b:
        b = 0.0
    return float(f"{a:.12g}"), float(f"{b:.12g}")


def _text(arr: Any, present: int, max_categories: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    counts = pc.value_counts(arr.drop_null())
    distinct = len(counts)
    values = counts.field("values").to_pylist()
    freq = np.asarray(counts.field("counts").to_numpy(zero_copy_only=False))
    out: list[str] = []
    if distinct <= max_categories and present >= 5 * distinct:
        order = np.argsort(-freq, kind="stable")
        top = ", ".join(f"{values[i]} {freq[i] / present:.0%}" for i in order[:5])
        out.append(f"categories: [{', '.join(_q(v) for v in sorted(values))}]   # {distinct} seen ({top}"
                   f"{', …' if distinct > 5 else ''}); a new one fails")
        return out
    if present >= MIN_UNIQUE_ROWS and distinct == present:
        out.append(f"unique: true      # all {present:,} values distinct")
    shape = _shape(arr)
    if shape is not None:
        out.append(f"pattern: {_q(shape[1])}   # every value looks like {shape[0]}")
    lengths = pc.min_max(pc.utf8_length(arr))
    lo, hi = lengths["min"].as_py(), lengths["max"].as_py()
    if lo is not None and lo >= 1 and shape is None:
        out.append(f"length: {{min: 1}}   # no empty text in the sample; lengths {lo} .. {hi}")
    return out


def _shape(arr: Any) -> tuple[str, str] | None:
    """The one obvious shape of every value, as (what it is, a full-match pattern), or None."""
    import pyarrow.compute as pc

    values = arr.drop_null()
    for label, pattern in KNOWN_PATTERNS:
        if pc.all(pc.match_substring_regex(values, pattern=f"^(?:{pattern})$")).as_py():
            return label, pattern
    # one fixed mix of upper-case letters, lower-case letters and digits (AB-1234, x9y9): its shape is the pattern
    shapes = pc.replace_substring_regex(pc.replace_substring_regex(pc.replace_substring_regex(
        values, pattern="[A-Z]", replacement="A"), pattern="[a-z]", replacement="a"), pattern="[0-9]", replacement="9")
    distinct = pc.unique(shapes)
    if len(distinct) != 1:
        return None
    shape = distinct[0].as_py()
    if not shape or len(shape) > 40 or not any(ch in shape for ch in "A9") or shape.strip("a") == "":
        return None
    return f"the shape {shape}", _shape_pattern(shape)


def _shape_pattern(shape: str) -> str:
    import itertools

    classes = {"A": "[A-Z]", "a": "[a-z]", "9": r"\d"}
    parts = []
    for ch, run in itertools.groupby(shape):
        n = len(list(run))
        token = classes.get(ch, "\\" + ch if ch in r".^$*+?{}[]\|()" else ch)
        parts.append(token + (f"{{{n}}}" if n > 1 else ""))
    return "".join(parts)


def _q(value: Any) -> str:
    """A YAML scalar: JSON's quoting is valid YAML, so text is quoted that way."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value)


def _num(x: float) -> str:
    if float(x).is_integer() and abs(x) < 2 ** 53:
        return str(int(x))
    return f"{x:.6g}"
