"""One contender of the drift benchmark in a fresh process: reads the two tables, times the whole drift
computation, measures the peak memory it added, prints which columns it flagged (JSON).

Usage: python drift_runner.py conveyor|floor|scipy|evidently|nannyml REF.parquet CUR.parquet
Runs under the project's Python (conveyor, floor, scipy) or a peer's own virtualenv (evidently, nannyml).
"""

from __future__ import annotations

import json
import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

warnings.filterwarnings("ignore")


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def floor(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    """KS and chi-square by hand: one sort per column, CDFs by searchsorted, asymptotic p-values;
    category counts by hashing (pandas.factorize) and np.bincount."""
    from scipy import special, stats

    flagged = []
    for name in ref.columns:
        a, b = ref[name].to_numpy(), cur[name].to_numpy()
        if a.dtype.kind in "fiu":
            a, b = np.sort(a), np.sort(b)
            both = np.concatenate([a, b])
            d = np.max(np.abs(np.searchsorted(a, both, "right") / len(a) - np.searchsorted(b, both, "right") / len(b)))
            en = len(a) * len(b) / (len(a) + len(b))
            p = special.kolmogorov(np.sqrt(en) * d)
        else:
            inv, cats = pd.factorize(np.concatenate([a, b]))      # a hash count, as one writes it by hand
            table = np.vstack([np.bincount(inv[: len(a)], minlength=len(cats)),
                               np.bincount(inv[len(a):], minlength=len(cats))]).astype(float)
            expected = np.outer(table.sum(1), table.sum(0)) / table.sum()
            p = stats.chi2.sf(((table - expected) ** 2 / expected).sum(), len(cats) - 1)
        if p < 0.01:
            flagged.append(name)
    return flagged


def scipy_functions(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    from scipy import stats

    flagged = []
    for name in ref.columns:
        if ref[name].dtype.kind in "fiu":
            p = stats.ks_2samp(ref[name].to_numpy(), cur[name].to_numpy()).pvalue
        else:
            counts = pd.concat([ref[name].value_counts(), cur[name].value_counts()], axis=1).fillna(0).T
            p = stats.chi2_contingency(counts.to_numpy()).pvalue
        if p < 0.01:
            flagged.append(name)
    return flagged


def conveyor(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    from conveyor.monitoring.drift import compare
    from conveyor.monitoring.profile import Profile

    return compare(Profile.from_data(ref), cur).drifted_columns


def evidently(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snap = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    flagged = []
    for m in snap.dict()["metrics"]:
        cfg = m["config"]
        if cfg.get("type", "").endswith("ValueDrift"):
            is_pvalue = "p_value" in cfg["method"] or "test" in cfg["method"].lower()
            drifted = m["value"] < cfg["threshold"] if is_pvalue else m["value"] >= cfg["threshold"]
            if drifted:
                flagged.append(cfg["column"])
    return flagged


def nannyml(ref: pd.DataFrame, cur: pd.DataFrame) -> list[str]:
    import nannyml as nml

    calc = nml.UnivariateDriftCalculator(column_names=list(ref.columns), chunk_number=10)
    calc.fit(ref)
    df = calc.calculate(cur).filter(period="analysis").to_df()
    return [c for c in ref.columns if any(bool(v) for v in df[(c, "jensen_shannon", "alert")])]


CONTENDERS = {"conveyor": conveyor, "floor": floor, "scipy": scipy_functions, "evidently": evidently,
              "nannyml": nannyml}


def main() -> None:
    name, ref_path, cur_path = sys.argv[1:4]
    ref, cur = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    before = rss_mb()
    start = time.perf_counter()
    flagged = CONTENDERS[name](ref, cur)
    seconds = time.perf_counter() - start
    print(json.dumps({"contender": name, "seconds": round(seconds, 3), "peak_mb": round(max(rss_mb() - before, 0), 1),
                      "flagged": sorted(flagged)}))


if __name__ == "__main__":
    main()
