"""Validation of 1,000,000 rows x 25 columns against 40 constraints: Conveyor, pandera, Great Expectations, NumPy.

The constraints (one neutral list, ``spec()``, that each contender turns into its own form):
10 ranges and 5 not-nulls on floats, 5 ranges, 2 not-nulls and a uniqueness on integers,
5 category sets and 2 not-nulls on text, 3 full-match patterns, 2 text lengths and a uniqueness
on text, 3 cross-column rules (``a <= b``) and the row count: 40. About 0.01% of the rows break a
constraint here and there, so every contender also has failures to count.

  conveyor     ``cv.data.validate(table, schema)`` on the Arrow table (policy warn: report only)
  numpy        the same checks written by hand over whole columns: NumPy for numbers; for text,
               pyarrow.compute (NumPy has no vectorised regex or hashed set membership for strings)
  pandera      ``DataFrameSchema.validate(df, lazy=True)`` on the pandas frame, in its own venv
  great_expectations  a 1.x suite validated on a pandas batch (result_format BASIC), in its own venv

Only validation is timed, from data already in memory (each reads the same Parquet file first);
Conveyor and the floor take the best of BENCH_REPEATS (default 5), the peers of BENCH_PEER_REPEATS
(default 1). Every contender's failing-row counts per constraint are compared. Prints one JSON object.
Targets: at least 5x faster than the faster peer, within 1.5x of the NumPy floor.

Run from the repository root: ``python benchmarks/validation.py`` (``--no-peers`` skips the venvs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
PEER_REPEATS = int(os.environ.get("BENCH_PEER_REPEATS", "1"))
PANDERA = ["pandera[io]>=0.20", "pandas>=2.1", "pyarrow>=15"]
GREAT_EXPECTATIONS = ["great-expectations>=1.3", "pyarrow>=15"]
CATEGORIES = [["a", "b", "c", "d"], ["x", "y", "z"], ["red", "green", "blue", "black", "white"],
              ["FR", "DE", "US", "GB", "ES", "IT"], ["low", "mid", "high"]]
PATTERNS = {"s0": r"[a-z0-9.]+@example\.com", "s1": r"[A-Z]{2}-\d{4}", "s2": r"[0-9a-f]{16}"}


def spec() -> list[dict[str, Any]]:
    """The 40 constraints, in a neutral form."""
    out: list[dict[str, Any]] = []
    for j in range(10):
        out.append({"kind": "range", "column": f"f{j}", "min": -10.0, "max": 10.0})
    for j in range(5):
        out.append({"kind": "not_null", "column": f"f{j}"})
    for j in range(5):
        out.append({"kind": "range", "column": f"i{j}", "min": 0, "max": 2_000_000})
    out += [{"kind": "not_null", "column": "i1"}, {"kind": "not_null", "column": "i2"},
            {"kind": "unique", "column": "i0"}]
    for j, values in enumerate(CATEGORIES):
        out.append({"kind": "in_set", "column": f"c{j}", "values": values})
    out += [{"kind": "not_null", "column": "c0"}, {"kind": "not_null", "column": "c1"}]
    for column, pattern in PATTERNS.items():
        out.append({"kind": "regex", "column": column, "pattern": pattern})
    out += [{"kind": "length", "column": "s1", "min": 7, "max": 7},
            {"kind": "length", "column": "s2", "min": 16, "max": 16},
            {"kind": "unique", "column": "s0"}]
    out += [{"kind": "pair_le", "a": "r0", "b": "r1"}, {"kind": "pair_le", "a": "f5", "b": "f6"},
            {"kind": "pair_le", "a": "i1", "b": "i2"}, {"kind": "rows", "min": 1, "max": 10_000_000}]
    assert len(out) == 40
    return out


def make_data(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(13)
    cols: dict[str, Any] = {}
    bad = max(rows // 10_000, 1)

    def some() -> np.ndarray:
        return rng.choice(rows, bad, replace=False)

    for j in range(10):
        v = rng.normal(0, 2, rows)
        v[some()] = 50.0
        cols[f"f{j}"] = v
    cols["f6"] = cols["f5"] + np.abs(rng.normal(0, 1, rows)) + 0.1   # no NaN: NaN in a rule is missing for us
    for j in range(5):
        cols[f"f{j}"][some()] = np.nan
    ids = np.arange(rows, dtype=np.int64)
    ids[some()] = 0
    cols["i0"] = ids
    for j in range(1, 5):
        cols[f"i{j}"] = rng.integers(0, 1_000_000, rows)
    cols["i2"] = cols["i1"] + rng.integers(0, 1000, rows)
    cols["i3"][some()] = -1
    for j, values in enumerate(CATEGORIES):
        v = np.asarray(values, dtype=object)[rng.integers(0, len(values), rows)]
        v[some()] = "??"
        mask = np.zeros(rows, dtype=bool)
        if j < 2:
            mask[some()] = True
        cols[f"c{j}"] = pa.array(v, pa.string(), mask=mask)
    emails = np.array([f"user{i}@example.com" for i in range(rows)], dtype=object)
    emails[some()] = "user1@example.com"
    cols["s0"] = pa.array(emails, pa.string())
    codes = np.array([f"AB-{i % 10_000:04d}" for i in range(rows)], dtype=object)
    codes[some()] = "ab-12"
    cols["s1"] = pa.array(codes, pa.string())
    cols["s2"] = pa.array([f"{x:016x}" for x in rng.integers(0, 2 ** 62, rows)], pa.string())
    cols["r0"] = rng.uniform(0, 1, rows)
    cols["r1"] = cols["r0"] + rng.uniform(0, 1, rows)
    cols["r1"][some()] = -1.0
    table = pa.table({k: cols[k] for k in sorted(cols, key=lambda k: (k[0], int(k[1:])))})
    assert table.num_columns == 25, table.column_names
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


def label(c: dict[str, Any]) -> str:
    return f"{c['kind']}:{c.get('column') or (c.get('a', '') + '<=' + c.get('b', ''))}"


# ---- Conveyor -------------------------------------------------------------------------------------------------

def conveyor_schema(constraints: list[dict[str, Any]]) -> tuple[Any, dict[str, str]]:
    """Our schema for the spec, and the name of our constraint for each spec label."""
    from conveyor.data.validation.loading import schema_from_dict

    columns: dict[str, dict[str, Any]] = {}
    names: dict[str, str] = {}
    rules, rows = [], None
    for c in constraints:
        col = c.get("column")
        spec_col = columns.setdefault(col, {"required": False}) if col else None
        kind = c["kind"]
        if kind == "range":
            spec_col["range"] = {"min": c["min"], "max": c["max"]}
            names[label(c)] = f"{col}.range"
        elif kind == "not_null":
            spec_col["nullable"] = False
            names[label(c)] = f"{col}.nullable"
        elif kind == "unique":
            spec_col["unique"] = True
            names[label(c)] = f"{col}.unique"
        elif kind == "in_set":
            spec_col["categories"] = c["values"]
            names[label(c)] = f"{col}.categories"
        elif kind == "regex":
            spec_col["pattern"] = c["pattern"]
            names[label(c)] = f"{col}.pattern"
        elif kind == "length":
            spec_col["length"] = {"min": c["min"], "max": c["max"]}
            names[label(c)] = f"{col}.length"
        elif kind == "pair_le":
            rules.append({"name": f"{c['a']}_le_{c['b']}", "check": f"{c['a']} <= {c['b']}"})
            names[label(c)] = rules[-1]["name"]
        elif kind == "rows":
            rows = {"min": c["min"], "max": c["max"]}
            names[label(c)] = "rows"
    return schema_from_dict({"on_fail": "warn", "columns": columns, "rules": rules, "rows": rows}), names


def run_conveyor(table: Any, constraints: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    from conveyor.data.validation import validate

    schema, names = conveyor_schema(constraints)
    validate(table.slice(0, 1000), schema)   # warm-up: imports, compiled regexes
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = validate(table, schema)
        best = min(best, time.perf_counter() - t0)
    report = result.report
    return best, {lab: report.get(name).failed for lab, name in names.items()}


# ---- the NumPy floor ------------------------------------------------------------------------------------------

def run_floor(table: Any, constraints: list[dict[str, Any]]) -> tuple[float, dict[str, int]]:
    best, counts = float("inf"), {}
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        counts = floor_checks(table, constraints)
        best = min(best, time.perf_counter() - t0)
    return best, counts


def floor_checks(table: Any, constraints: list[dict[str, Any]]) -> dict[str, int]:
    """The same checks by hand, over whole columns: NumPy for numbers, pyarrow.compute for text."""
    import numpy as np
    import pyarrow.compute as pc

    arrays = {n: table.column(n).combine_chunks() for n in table.column_names}
    num: dict[str, np.ndarray] = {}

    def values(n: str) -> np.ndarray:
        if n not in num:
            num[n] = arrays[n].to_numpy(zero_copy_only=False)
        return num[n]

    counts: dict[str, int] = {}
    for c in constraints:
        kind, col = c["kind"], c.get("column")
        if kind == "range":
            v = values(col)
            n = int(np.count_nonzero((v < c["min"]) | (v > c["max"])))
        elif kind == "not_null":
            v = arrays[col]
            n = int(np.count_nonzero(np.isnan(values(col)))) if v.type == "double" else v.null_count
        elif kind == "unique":
            # sort, then a value equal to a sorted neighbour repeats (text sorted by Arrow, faster than hashing)
            if arrays[col].type == "int64":
                same = np.diff(np.sort(values(col))) == 0
            else:
                ranked = arrays[col].take(pc.sort_indices(arrays[col]))
                same = pc.equal(ranked.slice(1), ranked.slice(0, len(ranked) - 1)).fill_null(False)
                same = same.to_numpy(zero_copy_only=False)
            repeated = np.zeros(len(same) + 1, dtype=bool)
            repeated[1:] |= same
            repeated[:-1] |= same
            n = int(np.count_nonzero(repeated))
        elif kind == "in_set":
            a = arrays[col]
            inside = pc.is_in(a, value_set=__import__("pyarrow").array(c["values"]))
            n = int(np.count_nonzero(~inside.to_numpy(zero_copy_only=False))) - a.null_count
        elif kind == "regex":
            m = pc.match_substring_regex(arrays[col], pattern=f"^(?:{c['pattern']})$")
            n = len(m) - int(pc.sum(m).as_py() or 0) - m.null_count
        elif kind == "length":
            length = pc.utf8_length(arrays[col]).to_numpy(zero_copy_only=False)
            n = int(np.count_nonzero((length < c["min"]) | (length > c["max"])))
        elif kind == "pair_le":
            n = int(np.count_nonzero(values(c["a"]) > values(c["b"])))
        else:
            n = int(not c["min"] <= table.num_rows <= c["max"])
        counts[label(c)] = n
    return counts


# ---- peers (run in their own venvs: this file is their script, with stdlib imports only at the top) -----------

def peer_pandera(data: str, constraints: list[dict[str, Any]]) -> dict[str, Any]:
    import pandas as pd
    import pandera.pandas as pa

    df = pd.read_parquet(data)
    per_col: dict[str, dict[str, Any]] = {}
    frame_checks = []
    for c in constraints:
        kind, col = c["kind"], c.get("column")
        if col:
            entry = per_col.setdefault(col, {"checks": [], "nullable": True, "unique": False})
        if kind == "range":
            entry["checks"].append(pa.Check.in_range(c["min"], c["max"], name=label(c)))
        elif kind == "not_null":
            entry["nullable"] = False
        elif kind == "unique":
            entry["unique"] = True
        elif kind == "in_set":
            entry["checks"].append(pa.Check.isin(c["values"], name=label(c)))
        elif kind == "regex":
            entry["checks"].append(pa.Check.str_matches(f"(?:{c['pattern']})$", name=label(c)))
        elif kind == "length":
            entry["checks"].append(pa.Check.str_length(c["min"], c["max"], name=label(c)))
        elif kind == "pair_le":
            frame_checks.append(pa.Check(lambda d, a=c["a"], b=c["b"]: d[a] <= d[b], name=label(c)))
        else:
            frame_checks.append(pa.Check(lambda d, lo=c["min"], hi=c["max"]: lo <= len(d) <= hi, name=label(c)))
    schema = pa.DataFrameSchema({k: pa.Column(None, v["checks"], nullable=v["nullable"], unique=v["unique"])
                                 for k, v in per_col.items()}, checks=frame_checks)
    best, cases = float("inf"), None
    for _ in range(PEER_REPEATS):
        t0 = time.perf_counter()
        try:
            schema.validate(df, lazy=True)
            cases = None
        except pa.errors.SchemaErrors as exc:
            cases = exc.failure_cases
        best = min(best, time.perf_counter() - t0)
    rows_by_check: dict[str, set[int]] = {}
    if cases is not None:
        # a data-frame check reports each column of a failing row: count the distinct rows of each check
        for (column, check), group in cases.groupby(["column", "check"], dropna=False):
            # pandera names its built-in checks by themselves (``in_range(-10, 10)``), whatever name= says
            builtin = {"not_nullable": "not_null", "field_uniqueness": "unique", "in_range": "range",
                       "isin": "in_set", "str_matches": "regex", "str_length": "length"}
            kind = builtin.get(str(check).partition("(")[0])
            key = f"{kind}:{column}" if kind else str(check)
            rows_by_check.setdefault(key, set()).update(group["index"].dropna().astype(int).tolist())
    counts = {k: len(v) for k, v in rows_by_check.items()}
    if cases is not None and os.environ.get("BENCH_DEBUG"):
        print(cases.groupby(["column", "check"], dropna=False).size().head(60), file=sys.stderr)
    return {"seconds": best, "counts": counts, "version": pa.__version__ if hasattr(pa, "__version__")
            else __import__("pandera").__version__, "pandas": pd.__version__}


def peer_great_expectations(data: str, constraints: list[dict[str, Any]]) -> dict[str, Any]:
    import great_expectations as gx
    import pandas as pd

    df = pd.read_parquet(data)
    context = gx.get_context(mode="ephemeral")
    E = gx.expectations
    suite = context.suites.add(gx.ExpectationSuite(name="bench"))
    for c in constraints:
        kind, col = c["kind"], c.get("column")
        if kind == "range":
            e = E.ExpectColumnValuesToBeBetween(column=col, min_value=c["min"], max_value=c["max"])
        elif kind == "not_null":
            e = E.ExpectColumnValuesToNotBeNull(column=col)
        elif kind == "unique":
            e = E.ExpectColumnValuesToBeUnique(column=col)
        elif kind == "in_set":
            e = E.ExpectColumnValuesToBeInSet(column=col, value_set=c["values"])
        elif kind == "regex":
            e = E.ExpectColumnValuesToMatchRegex(column=col, regex=f"^(?:{c['pattern']})$")
        elif kind == "length":
            e = E.ExpectColumnValueLengthsToBeBetween(column=col, min_value=c["min"], max_value=c["max"])
        elif kind == "pair_le":
            e = E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=c["b"], column_B=c["a"], or_equal=True)
        else:
            e = E.ExpectTableRowCountToBeBetween(min_value=c["min"], max_value=c["max"])
        suite.add_expectation(e)
    source = context.data_sources.add_pandas("bench")
    batch_definition = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe("whole")
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    best, result = float("inf"), None
    for _ in range(PEER_REPEATS):
        t0 = time.perf_counter()
        result = batch.validate(suite, result_format="BASIC")
        best = min(best, time.perf_counter() - t0)
    kinds = {"expect_column_values_to_be_between": "range", "expect_column_values_to_not_be_null": "not_null",
             "expect_column_values_to_be_unique": "unique", "expect_column_values_to_be_in_set": "in_set",
             "expect_column_values_to_match_regex": "regex", "expect_column_value_lengths_to_be_between": "length",
             "expect_column_pair_values_a_to_be_greater_than_b": "pair_le", "expect_table_row_count_to_be_between":
             "rows"}
    counts: dict[str, int] = {}
    for r in result.results:   # in GE's own order: matched back to the spec by type and columns
        config = r.expectation_config
        kw = config.kwargs
        kind = kinds[config.type]
        lab = label({"kind": kind, "column": kw.get("column"), "a": kw.get("column_B", ""), "b": kw.get("column_A", "")})
        res = r.result or {}
        counts[lab] = int(res.get("unexpected_count") or 0) if "unexpected_count" in res else int(not r.success)
    return {"seconds": best, "counts": counts, "version": gx.__version__, "pandas": pd.__version__}


def run_peer(name: str, requirements: list[str], data: Path, spec_path: Path) -> dict[str, Any]:
    """A peer's timing and counts, measured in its venv; kept beside the data (BENCH_FRESH_PEERS=1 measures again)."""
    sys.path.insert(0, str(REPO))
    from tests.export.venvs import target_venv

    kept = data.with_name(f"{data.stem}-{name}.json")
    if kept.exists() and not os.environ.get("BENCH_FRESH_PEERS") and kept.stat().st_mtime > data.stat().st_mtime:
        return json.loads(kept.read_text())
    venv = target_venv(name, requirements)
    done = subprocess.run([str(venv / "bin" / "python"), __file__, "--peer", name, str(data), str(spec_path)],
                          capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    result = json.loads(done.stdout.strip().splitlines()[-1])
    kept.write_text(json.dumps(result))
    return result


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--peer":
        name, data, spec_path = sys.argv[2:5]
        constraints = json.loads(Path(spec_path).read_text())
        fn = peer_pandera if name == "pandera" else peer_great_expectations
        print(json.dumps(fn(data, constraints)))
        return
    sys.path.insert(0, str(REPO))
    import pyarrow.parquet as pq

    cache = REPO / ".cache" / "bench"
    data = cache / f"validation-{ROWS}.parquet"
    if not data.exists():
        make_data(data, ROWS)
    constraints = spec()
    spec_path = cache / "validation-spec.json"
    spec_path.write_text(json.dumps(constraints))
    if "--peers-only" in sys.argv:
        for name, requirements in (("pandera", PANDERA), ("great-expectations", GREAT_EXPECTATIONS)):
            print(name, json.dumps(run_peer(name, requirements, data, spec_path))[:300])
        return
    table = pq.read_table(data)
    ours, our_counts = run_conveyor(table, constraints)
    floor, floor_counts = run_floor(table, constraints)
    out: dict[str, Any] = {"benchmark": "validation", "rows": table.num_rows, "columns": table.num_columns,
                           "constraints": len(constraints), "conveyor_s": round(ours, 4),
                           "numpy_floor_s": round(floor, 4), "conveyor_vs_floor": round(ours / floor, 3),
                           "failing_rows_total": sum(our_counts.values()),
                           "agrees_with_floor": our_counts == floor_counts}
    if our_counts != floor_counts:
        out["differs_from_floor"] = {k: (our_counts[k], floor_counts.get(k)) for k in our_counts
                                     if our_counts[k] != floor_counts.get(k)}
    if "--no-peers" not in sys.argv:
        peers = {}
        for name, requirements in (("pandera", PANDERA), ("great_expectations", GREAT_EXPECTATIONS)):
            result = run_peer(name.replace("_", "-"), requirements, data, spec_path)
            if "error" in result:
                out[f"{name}_error"] = result["error"]
                continue
            peers[name] = result["seconds"]
            out[f"{name}_s"] = round(result["seconds"], 3)
            out[f"{name}_version"] = result["version"]
            theirs = result["counts"]
            # a peer lists only what failed: a constraint it does not name had no failure
            out[f"{name}_counts_differ"] = {k: (v, theirs.get(k, 0)) for k, v in our_counts.items()
                                            if theirs.get(k, 0) != v}
        if peers:
            best = min(peers, key=peers.get)
            out["faster_peer"] = best
            out["speedup_vs_faster_peer"] = round(peers[best] / ours, 2)
            out["target_speedup_met"] = peers[best] / ours >= 5
    out["target_floor_met"] = ours / floor <= 1.5
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
