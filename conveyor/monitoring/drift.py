"""Drift and data quality between a reference profile and current data, with an explicit verdict rule.

The default rule (``method="auto"``) calls a column drifted when a significance test says the two
samples differ *and* the difference is large enough to matter:

- numeric: Kolmogorov–Smirnov p-value < ``alpha`` and KS statistic >= ``numeric_effect``;
- categorical: chi-square homogeneity p-value < ``alpha`` and Jensen–Shannon distance >=
  ``categorical_effect``.

Either half alone fails at one end of the size range: on a million rows a test flags shifts far too
small to matter, while a distance threshold tuned to ignore sampling noise on small samples
misses real shifts on large ones. The effect floors default to 0.02 (the largest CDF gap, or the
Jensen–Shannon distance, in probability units) and ``alpha`` to 0.01. Per column, ``methods`` can
pick ``ks`` or ``chi2`` (test only), ``wasserstein`` (distance normalised by the reference's
standard deviation), ``psi`` or ``js`` (distance only), each with its own threshold. The data set
has drifted when the share of drifted columns reaches ``drift_share``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from conveyor.errors import InvalidRequest
from conveyor.monitoring import stats
from conveyor.monitoring.profile import PREDICTION, TARGET, ColumnProfile, Profile, as_labels, looks_like_labels

METHODS = {"auto", "ks", "wasserstein", "psi", "chi2", "js"}
DEFAULT_THRESHOLDS = {"wasserstein": 0.1, "psi": 0.2, "js": 0.1}


@dataclass
class ColumnRule:
    method: str = "auto"
    threshold: float | None = None


@dataclass
class DriftConfig:
    alpha: float = 0.01
    numeric_effect: float = 0.02
    categorical_effect: float = 0.02
    drift_share: float = 0.3
    methods: dict[str, ColumnRule] = field(default_factory=dict)
    missing_rate_change: float = 0.05       # quality: missing share up by this much
    out_of_range_share: float = 0.01        # quality: share of values outside the reference's range
    unseen_share: float = 0.01              # quality: share of rows with categories never seen
    finite_n_pvalues: bool = False

    def __post_init__(self) -> None:
        for name, rule in list(self.methods.items()):
            if isinstance(rule, str):
                rule = self.methods[name] = ColumnRule(rule)
            elif isinstance(rule, dict):
                rule = self.methods[name] = ColumnRule(**rule)
            if rule.method not in METHODS:
                raise InvalidRequest(f"Column '{name}': unknown drift method '{rule.method}'. "
                                     f"Choose one of {', '.join(sorted(METHODS))}.", field=name)
        if not 0 < self.alpha < 1:
            raise InvalidRequest(f"alpha must be between 0 and 1, not {self.alpha}.", field="alpha")


@dataclass
class ColumnDrift:
    name: str
    kind: str
    method: str
    drifted: bool
    reason: str
    statistics: dict[str, float]
    reference_rows: int
    current_rows: int
    plot: dict[str, Any]


@dataclass
class QualityIssue:
    column: str
    check: str
    value: float
    threshold: float
    message: str


@dataclass
class DriftReport:
    reference_rows: int
    current_rows: int
    columns: list[ColumnDrift]
    drifted_share: float
    dataset_drift: bool
    config: dict[str, Any]
    quality: list[QualityIssue]
    prediction: ColumnDrift | None = None
    target: ColumnDrift | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.drifted]

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self)) | {"drifted_columns": self.drifted_columns}


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


# --- comparing one column ---------------------------------------------------------------------

def _histogram(ref: np.ndarray, cur: np.ndarray, bins: int = 30) -> dict[str, Any]:
    if len(ref) == 0 and len(cur) == 0:
        return {"edges": [], "reference": [], "current": []}
    lo_src = ref if len(ref) else cur
    lo, hi = lo_src[int(0.005 * (len(lo_src) - 1))], lo_src[int(0.995 * (len(lo_src) - 1))]
    if len(cur):
        lo, hi = min(lo, cur[int(0.005 * (len(cur) - 1))]), max(hi, cur[int(0.995 * (len(cur) - 1))])
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)

    def shares(v: np.ndarray) -> list[float]:
        if not len(v):
            return [0.0] * bins
        cuts = np.searchsorted(v, edges[1:-1], side="right")
        counts = np.diff(np.concatenate([[0], cuts, [len(v)]]))
        return (counts / len(v)).round(6).tolist()

    return {"edges": edges.round(6).tolist(), "reference": shares(ref), "current": shares(cur)}


def _verdict(column: str, kind: str, rule: ColumnRule, cfg: DriftConfig, *, test: tuple[str, float],
             effect: tuple[str, float, float], distances: dict[str, float]) -> tuple[bool, str]:
    """Apply a column's rule: test and effect (auto), test alone (ks/chi2), or a distance threshold."""
    method = rule.method
    if method in ("auto", "ks", "chi2"):
        test_name, p = test
        significant = p < cfg.alpha
        reason = f"{test_name} p={p:.3g} {'<' if significant else '>='} {cfg.alpha:g}"
        if method != "auto":
            return significant, reason
        effect_name, value, default = effect
        floor = rule.threshold if rule.threshold is not None else default
        return significant and value >= floor, (f"{reason} and {effect_name}={value:.4f} "
                                                f"{'>=' if value >= floor else '<'} {floor:g}")
    if method not in distances:
        fits = "categorical" if kind == "numeric" else "numeric"
        raise InvalidRequest(f"Column '{column}' is {kind}; '{method}' applies to {fits} columns.", field=column)
    value = distances[method]
    threshold = rule.threshold if rule.threshold is not None else DEFAULT_THRESHOLDS[method]
    drifted = value >= threshold
    return drifted, f"{method}={value:.4f} {'>=' if drifted else '<'} {threshold:g}"


def compare_numeric_column(ref: ColumnProfile, cur: ColumnProfile, rule: ColumnRule,
                           cfg: DriftConfig) -> ColumnDrift:
    a = ref.values if ref.values is not None else np.empty(0)
    b = cur.values if cur.values is not None else np.empty(0)
    if len(a) == 0 or len(b) == 0:
        return ColumnDrift(ref.name, "numeric", rule.method, False,
                           "no values to compare" + (" in the current data" if len(b) == 0 else " in the reference"),
                           {}, ref.n, cur.n, _histogram(a, b))
    r = stats.compare_numeric(a, b, ref_n=ref.n, exact_inputs=ref.exact, finite_n=cfg.finite_n_pvalues)
    std = float(np.std(a))
    w_norm = r.wasserstein / std if std > 0 else (0.0 if r.wasserstein == 0 else float("inf"))
    st = {"ks_statistic": r.ks_statistic, "ks_pvalue": r.ks_pvalue, "wasserstein": r.wasserstein,
          "wasserstein_norm": w_norm, "psi": r.psi}
    drifted, reason = _verdict(ref.name, "numeric", rule, cfg, test=("KS", r.ks_pvalue),
                               effect=("KS D", r.ks_statistic, cfg.numeric_effect),
                               distances={"wasserstein": w_norm, "psi": r.psi})
    method = rule.method
    return ColumnDrift(ref.name, "numeric", method, bool(drifted), reason, st, ref.n, cur.n, _histogram(a, b))


def aligned_counts(ref: ColumnProfile, cur: ColumnProfile) -> tuple[list[str], np.ndarray, np.ndarray]:
    cats = list(ref.categories)
    index = {c: i for i, c in enumerate(cats)}
    extra = [c for c in cur.categories if c not in index]
    for c in extra:
        index[c] = len(cats)
        cats.append(c)
    rc = np.zeros(len(cats), dtype=np.int64)
    cc = np.zeros(len(cats), dtype=np.int64)
    rc[: len(ref.categories)] = ref.counts if ref.counts is not None else 0
    if cur.counts is not None and len(cur.categories):
        cc[[index[c] for c in cur.categories]] = cur.counts
    return cats, rc, cc


def compare_categorical_column(ref: ColumnProfile, cur: ColumnProfile, rule: ColumnRule,
                               cfg: DriftConfig) -> ColumnDrift:
    cats, rc, cc = aligned_counts(ref, cur)
    top = np.argsort(-(rc / max(rc.sum(), 1) + cc / max(cc.sum(), 1)), kind="stable")[:20]
    plot = {"categories": [cats[i] for i in top],
            "reference": (rc[top] / max(rc.sum(), 1)).round(6).tolist(),
            "current": (cc[top] / max(cc.sum(), 1)).round(6).tolist()}
    if rc.sum() == 0 or cc.sum() == 0:
        return ColumnDrift(ref.name, "categorical", rule.method, False, "no values to compare", {},
                           int(rc.sum()), int(cc.sum()), plot)
    r = stats.compare_categorical(rc, cc)
    st = {"chi2_statistic": r.chi2_statistic, "chi2_pvalue": r.chi2_pvalue, "dof": float(r.dof),
          "js_distance": r.js_distance, "psi": r.psi}
    drifted, reason = _verdict(ref.name, "categorical", rule, cfg, test=("chi2", r.chi2_pvalue),
                               effect=("JS", r.js_distance, cfg.categorical_effect),
                               distances={"js": r.js_distance, "psi": r.psi})
    method = rule.method
    return ColumnDrift(ref.name, "categorical", method, bool(drifted), reason, st, int(rc.sum()), int(cc.sum()),
                       plot)


def compare_column(ref: ColumnProfile, cur: ColumnProfile, cfg: DriftConfig) -> ColumnDrift:
    rule = cfg.methods.get(ref.name, ColumnRule())
    if ref.kind == "numeric":
        return compare_numeric_column(ref, cur, rule, cfg)
    return compare_categorical_column(ref, cur, rule, cfg)


# --- data quality -----------------------------------------------------------------------------

def quality_issues(reference: Profile, current: Profile, cfg: DriftConfig,
                   type_violations: dict[str, int] | None = None,
                   expected_rows: tuple[int, int] | None = None) -> list[QualityIssue]:
    issues: list[QualityIssue] = []
    for name, ref in reference.columns.items():
        if name in (PREDICTION, TARGET):
            continue
        cur = current.columns.get(name)
        if cur is None:
            issues.append(QualityIssue(name, "missing_column", 1.0, 0.0,
                                       f"Column '{name}' is in the reference but not in the current data."))
            continue
        change = cur.missing_rate - ref.missing_rate
        if change >= cfg.missing_rate_change:
            issues.append(QualityIssue(name, "missing_rate", change, cfg.missing_rate_change,
                                       f"Missing values in '{name}' rose from {ref.missing_rate:.1%} to "
                                       f"{cur.missing_rate:.1%}."))
        if ref.kind == "numeric" and cur.kind == "numeric" and ref.values is not None and len(ref.values) \
                and cur.values is not None and len(cur.values):
            lo, hi = ref.values[0], ref.values[-1]
            b = cur.values
            outside = np.searchsorted(b, lo, side="left") + (len(b) - np.searchsorted(b, hi, side="right"))
            share = outside / len(b)
            if share >= cfg.out_of_range_share:
                issues.append(QualityIssue(name, "out_of_range", float(share), cfg.out_of_range_share,
                                           f"{share:.1%} of '{name}' lies outside the reference range "
                                           f"[{lo:.4g}, {hi:.4g}]."))
        if ref.kind == "categorical" and cur.kind == "categorical" and cur.counts is not None:
            known = set(ref.categories)
            unseen = [(c, int(n)) for c, n in zip(cur.categories, cur.counts, strict=True) if c not in known]
            total = max(int(cur.counts.sum()), 1)
            share = sum(n for _, n in unseen) / total
            if unseen and share >= cfg.unseen_share and "__other__" not in known:
                names = ", ".join(c for c, _ in sorted(unseen, key=lambda x: -x[1])[:5])
                issues.append(QualityIssue(name, "unseen_categories", share, cfg.unseen_share,
                                           f"{share:.1%} of '{name}' has categories the reference never had: "
                                           f"{names}."))
        violations = (type_violations or {}).get(name, 0)
        if violations:
            issues.append(QualityIssue(name, "type", violations / max(cur.rows, 1), 0.0,
                                       f"{violations} values of '{name}' are not {ref.kind}."))
    for name in current.columns:
        if name not in reference.columns and name not in (PREDICTION, TARGET):
            issues.append(QualityIssue(name, "new_column", 1.0, 0.0,
                                       f"Column '{name}' is new: the reference does not have it."))
    if expected_rows is not None:
        low, high = expected_rows
        if not low <= current.rows <= high:
            issues.append(QualityIssue("*", "row_count", float(current.rows), float(low if current.rows < low else high),
                                       f"{current.rows} rows; expected between {low} and {high}."))
    return issues


# --- the whole comparison ---------------------------------------------------------------------

def labels_as_categories(profile: Profile, like: Profile | None = None) -> Profile:
    """``profile`` with a prediction (and target) of class labels profiled as numbers turned into
    categories: a profile stored before labels were told apart (see ``profile.label_kinds``), or,
    with ``like``, a current profile whose reference has them as categories."""
    def wanted(name: str) -> bool:
        col = profile.columns.get(name)
        if col is None or col.kind != "numeric" or col.values is None:
            return False
        if like is not None:
            ref = like.columns.get(name)
            return ref is not None and ref.kind == "categorical"
        pred = profile.columns.get(PREDICTION)
        return (pred is not None and pred.kind == "numeric" and pred.values is not None
                and looks_like_labels(pred.values) and looks_like_labels(col.values))

    changed = {n: as_labels(profile.columns[n]) for n in (PREDICTION, TARGET) if wanted(n)}
    return Profile(profile.columns | changed, profile.rows) if changed else profile


def coerce_like(reference: Profile, data: Any) -> tuple[Any, dict[str, int]]:
    """Cast current columns to the reference's kinds; count values that would not cast (type violations)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from conveyor.monitoring.profile import to_arrow

    table = to_arrow(data)
    violations: dict[str, int] = {}
    for name, ref in reference.columns.items():
        if ref.kind != "numeric" or name not in table.column_names:
            continue
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type) or pa.types.is_decimal(col.type):
            continue
        as_text = pc.cast(col, pa.string())
        numeric = pc.cast(pc.if_else(pc.match_substring_regex(as_text, r"^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$"),
                                     as_text, pa.scalar(None, pa.string())), pa.float64())
        violations[name] = int(numeric.null_count - col.null_count)
        table = table.set_column(table.column_names.index(name), name, numeric)
    return table, violations


def compare(reference: Profile, current: Any, config: DriftConfig | None = None, *,
            expected_rows: tuple[int, int] | None = None) -> DriftReport:
    """Compare ``current`` (a Profile, or data: DataFrame, Arrow table…) with ``reference``."""
    cfg = config or DriftConfig()
    reference = labels_as_categories(reference)
    violations: dict[str, int] = {}
    if isinstance(current, Profile):
        current = labels_as_categories(current, like=reference)
    else:
        table, violations = coerce_like(reference, current)
        kinds = {n: c.kind for n, c in reference.columns.items()}
        current = Profile.from_data(table, kinds=kinds)
    columns, prediction, target = [], None, None
    for name, ref in reference.columns.items():
        cur = current.columns.get(name)
        if cur is None:
            continue
        result = compare_column(ref, cur, cfg)
        if name == PREDICTION:
            prediction = result
        elif name == TARGET:
            target = result
        else:
            columns.append(result)
    share = sum(c.drifted for c in columns) / len(columns) if columns else 0.0
    return DriftReport(reference.rows, current.rows, columns, share, bool(columns) and share >= cfg.drift_share,
                       _plain(asdict(cfg)), quality_issues(reference, current, cfg, violations, expected_rows),
                       prediction, target)
