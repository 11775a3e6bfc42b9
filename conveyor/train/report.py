"""A study as one self-contained HTML page: optimisation history, parameter importances, parallel coordinates.

Plots are inline SVG (no scripts, no network), as the drift reports are. Parameter importances
come from ``optuna.importance.get_param_importances`` (fANOVA) over the completed trials.
"""

from __future__ import annotations

import html
import math
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0} h2{font-size:1.15rem;margin-top:1.6rem}
.cards{display:flex;gap:1rem;margin:1rem 0} .card{border:1px solid #ddd;border-radius:8px;padding:.8rem 1rem}
.card b{display:block;font-size:1.4rem} .note{color:#666;font-size:.85rem}
table{border-collapse:collapse;width:100%;margin:1rem 0} td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;
text-align:left;font-size:.85rem} th{background:#fafafa}
"""
POINT, BEST, LOW, HIGH = "#4e79a7", "#e15759", (78, 121, 167), (225, 87, 89)


def importances(study: Any) -> dict[str, float]:
    """Each parameter's share of the objective's variance (first objective); empty when too few trials."""
    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2 or not complete[0].params:
        return {}
    target = None if len(study.directions) == 1 else (lambda t: t.values[0])
    try:
        return {k: float(v) for k, v in optuna.importance.get_param_importances(study, target=target).items()}
    except (ValueError, RuntimeError):   # a single distinct value per parameter: nothing to apportion
        return {}


def study_html(study: Any, runs: dict[int, str] | None = None) -> str:
    """The study as one HTML page; ``runs`` maps trial numbers to their child run ids."""
    from optuna.trial import TrialState

    runs = runs or {}
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    dirs = [d.name.lower() for d in study.directions]
    counts = {s: sum(1 for t in trials if t.state.name.lower() == s) for s in ("complete", "pruned", "fail", "running")}
    best = _best_line(complete, dirs[0])
    cards = [("Trials", len(trials)), ("Complete", counts["complete"]), ("Pruned", counts["pruned"]),
             ("Failed", counts["fail"]), ("Best", f"{best[-1][1]:.6g}" if best else "–")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>Study {html.escape(study.study_name)}</title>"
             f"<style>{CSS}</style></head><body><h1>Study {html.escape(study.study_name)}</h1>"
             f"<p class='sub'>directions: {', '.join(dirs)}</p>",
             '<div class="cards">' + "".join(f'<div class="card">{k}<b>{v}</b></div>' for k, v in cards) + "</div>",
             "<h2>Optimisation history</h2>", _history_svg(complete, best),
             f"<p class='note'>dots: each completed trial's {'first ' if len(dirs) > 1 else ''}objective; "
             "line: best so far.</p>", "<h2>Parameter importances</h2>", _importance_svg(importances(study)),
             "<h2>Parallel coordinates</h2>", _parallel_svg(complete),
             "<p class='note'>one line per completed trial; colour from low (blue) to high (red) objective.</p>",
             "<h2>Trials</h2>", _table(trials, runs), "</body></html>"]
    return "".join(parts)


def _best_line(complete: list[Any], direction: str) -> list[tuple[int, float]]:
    out: list[tuple[int, float]] = []
    for t in sorted(complete, key=lambda t: t.number):
        v = t.values[0]
        if not out or (v > out[-1][1] if direction == "maximize" else v < out[-1][1]):
            out.append((t.number, v))
        else:
            out.append((t.number, out[-1][1]))
    return out


def _scale(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    return (lo, hi) if hi > lo else (lo - 0.5, hi + 0.5)


def _history_svg(complete: list[Any], best: list[tuple[int, float]], width: int = 640, height: int = 220) -> str:
    if not complete:
        return "<p>(no completed trial)</p>"
    xs = [t.number for t in complete]
    ys = [t.values[0] for t in complete]
    x0, x1 = _scale([float(x) for x in xs])
    y0, y1 = _scale(ys)

    def px(x: float) -> float:
        return 50 + (x - x0) / (x1 - x0) * (width - 70)

    def py(y: float) -> float:
        return 10 + (1 - (y - y0) / (y1 - y0)) * (height - 40)

    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="optimisation history">']
    parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{POINT}" opacity=".7"/>' for x, y in zip(xs, ys)]
    path = " ".join(f"{px(n):.1f},{py(v):.1f}" for n, v in best)
    parts.append(f'<polyline points="{path}" fill="none" stroke="{BEST}" stroke-width="2"/>')
    parts.append(f'<line x1="50" y1="{height - 30}" x2="{width - 20}" y2="{height - 30}" stroke="#999"/>')
    parts.append(f'<text x="50" y="{height - 12}" font-size="11">trial {int(x0)}</text>')
    parts.append(f'<text x="{width - 20}" y="{height - 12}" font-size="11" text-anchor="end">trial {int(x1)}</text>')
    parts.append(f'<text x="4" y="16" font-size="11">{y1:.4g}</text>')
    parts.append(f'<text x="4" y="{height - 32}" font-size="11">{y0:.4g}</text></svg>')
    return "".join(parts)


def _importance_svg(values: dict[str, float], width: int = 640) -> str:
    if not values:
        return "<p>(needs at least two completed trials that differ)</p>"
    row, label_w = 20, 160
    parts = [f'<svg width="{width}" height="{row * len(values) + 6}" role="img" aria-label="importances">']
    for i, (name, v) in enumerate(sorted(values.items(), key=lambda kv: -kv[1])):
        y = i * row + 3
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" font-size="12" text-anchor="end">'
                     f'{html.escape(name[:24])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{v * (width - label_w - 70):.1f}" height="14" '
                     f'fill="{POINT}"/>')
        parts.append(f'<text x="{label_w + v * (width - label_w - 70) + 4:.1f}" y="{y + 12}" font-size="11">'
                     f'{v:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _axis_value(t: Any, name: str, categories: dict[str, list[Any]], dists: dict[str, Any]) -> float:
    value = t.params[name]
    if name in categories:
        return float(categories[name].index(value))
    dist = dists.get(name)
    if dist is not None and getattr(dist, "log", False) and value > 0:
        return math.log10(value)
    return float(value)


def _parallel_svg(complete: list[Any], width: int = 760, height: int = 260) -> str:
    if not complete:
        return "<p>(no completed trial)</p>"
    names = sorted({k for t in complete for k in t.params})
    dists: dict[str, Any] = {}
    categories: dict[str, list[Any]] = {}
    for t in complete:
        for k, d in t.distributions.items():
            dists.setdefault(k, d)
            if hasattr(d, "choices"):
                categories[k] = list(d.choices)
    axes = names + ["objective"]
    columns: dict[str, list[float]] = {a: [] for a in axes}
    rows = [t for t in complete if all(n in t.params for n in names)]
    for t in rows:
        for n in names:
            columns[n].append(_axis_value(t, n, categories, dists))
        columns["objective"].append(t.values[0])
    if not rows:
        return "<p>(the trials have no common parameters)</p>"
    bounds = {a: _scale(columns[a]) for a in axes}
    step = (width - 100) / max(1, len(axes) - 1)
    obj_lo, obj_hi = bounds["objective"]
    parts = [f'<svg width="{width}" height="{height}" role="img" aria-label="parallel coordinates">']
    for i in range(len(rows)):
        share = (columns["objective"][i] - obj_lo) / (obj_hi - obj_lo)
        colour = "#%02x%02x%02x" % tuple(int(lo + (hi - lo) * share) for lo, hi in zip(LOW, HIGH))
        pts = []
        for j, a in enumerate(axes):
            lo, hi = bounds[a]
            pts.append(f"{50 + j * step:.1f},{20 + (1 - (columns[a][i] - lo) / (hi - lo)) * (height - 60):.1f}")
        parts.append(f'<polyline points="{" ".join(pts)}" fill="none" stroke="{colour}" opacity=".6"/>')
    for j, a in enumerate(axes):
        x = 50 + j * step
        lo, hi = bounds[a]
        label = a + (" (log)" if getattr(dists.get(a), "log", False) else "")
        top, bottom = ((categories[a][-1], categories[a][0]) if a in categories else (f"{hi:.3g}", f"{lo:.3g}"))
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 40}" stroke="#777"/>')
        parts.append(f'<text x="{x:.1f}" y="{height - 22}" font-size="11" text-anchor="middle">'
                     f'{html.escape(label[:20])}</text>')
        parts.append(f'<text x="{x + 3:.1f}" y="16" font-size="10">{html.escape(str(top))}</text>')
        parts.append(f'<text x="{x + 3:.1f}" y="{height - 32}" font-size="10">{html.escape(str(bottom))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _table(trials: list[Any], runs: dict[int, str]) -> str:
    head = "<table><tr><th>#</th><th>state</th><th>values</th><th>params</th><th>run</th></tr>"
    body = "".join(
        f"<tr><td>{t.number}</td><td>{t.state.name.lower()}</td>"
        f"<td>{', '.join(f'{v:.6g}' for v in t.values) if t.values else ''}</td>"
        f"<td>{html.escape(', '.join(f'{k}={v!r}' for k, v in t.params.items()))}</td>"
        f"<td>{html.escape(runs.get(t.number, ''))}</td></tr>" for t in trials)
    return head + body + "</table>"
