"""Drift reports as one self-contained HTML page (inline SVG plots, no scripts, no network) or JSON."""

from __future__ import annotations

import html
from typing import Any

from conveyor.monitoring.drift import ColumnDrift, DriftReport

REF_COLOR, CUR_COLOR = "#4e79a7", "#e15759"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.cards{display:flex;gap:1rem;margin:1rem 0} .card{border:1px solid #ddd;border-radius:8px;padding:.8rem 1rem}
.card b{display:block;font-size:1.4rem} .bad{color:#c0392b} .ok{color:#27ae60}
table{border-collapse:collapse;width:100%;margin:1rem 0} td,th{border-bottom:1px solid #eee;padding:.35rem .5rem;
text-align:left;font-size:.9rem} th{background:#fafafa}
.col{border:1px solid #e5e5e5;border-radius:8px;padding:.6rem 1rem;margin:.8rem 0}
.col h3{margin:.2rem 0;font-size:1.05rem} .reason{font-family:ui-monospace,monospace;font-size:.85rem;color:#555}
.legend span{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 1rem;vertical-align:middle}
"""


def _svg_hist(plot: dict[str, Any], width: int = 520, height: int = 150) -> str:
    edges, ref, cur = plot.get("edges") or [], plot.get("reference") or [], plot.get("current") or []
    if not edges or not ref:
        return "<p>(no values)</p>"
    n = len(ref)
    top = max(max(ref), max(cur), 1e-12)
    bw = (width - 40) / n
    parts = [f'<svg width="{width}" height="{height + 24}" role="img" aria-label="distribution">']
    for i in range(n):
        x = 30 + i * bw
        for j, (vals, color) in enumerate(((ref, REF_COLOR), (cur, CUR_COLOR))):
            h = vals[i] / top * height
            parts.append(f'<rect x="{x + j * bw / 2:.1f}" y="{height - h:.1f}" width="{max(bw / 2 - .5, .5):.1f}" '
                         f'height="{h:.1f}" fill="{color}" opacity=".85"/>')
    parts.append(f'<line x1="30" y1="{height}" x2="{width - 10}" y2="{height}" stroke="#999"/>')
    parts.append(f'<text x="30" y="{height + 16}" font-size="11">{edges[0]:.3g}</text>')
    parts.append(f'<text x="{width - 10}" y="{height + 16}" font-size="11" text-anchor="end">{edges[-1]:.3g}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _svg_bars(plot: dict[str, Any], width: int = 520) -> str:
    cats, ref, cur = plot.get("categories") or [], plot.get("reference") or [], plot.get("current") or []
    if not cats:
        return "<p>(no values)</p>"
    row = 18
    top = max(max(ref), max(cur), 1e-12)
    label_w = 110
    scale = (width - label_w - 60) / top
    parts = [f'<svg width="{width}" height="{row * len(cats) + 6}" role="img" aria-label="categories">']
    for i, c in enumerate(cats):
        y = i * row + 3
        parts.append(f'<text x="{label_w - 6}" y="{y + 12}" font-size="11" text-anchor="end">'
                     f'{html.escape(str(c)[:18])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{ref[i] * scale:.1f}" height="7" fill="{REF_COLOR}"/>')
        parts.append(f'<rect x="{label_w}" y="{y + 8}" width="{cur[i] * scale:.1f}" height="7" fill="{CUR_COLOR}"/>')
        parts.append(f'<text x="{label_w + max(ref[i], cur[i]) * scale + 4:.1f}" y="{y + 12}" font-size="10">'
                     f'{ref[i]:.1%} → {cur[i]:.1%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _column_html(c: ColumnDrift) -> str:
    verdict = '<span class="bad">drifted</span>' if c.drifted else '<span class="ok">stable</span>'
    plot = _svg_hist(c.plot) if c.kind == "numeric" else _svg_bars(c.plot)
    stats = " · ".join(f"{k}={v:.4g}" for k, v in c.statistics.items())
    return (f'<div class="col" id="col-{html.escape(c.name)}"><h3>{html.escape(c.name)} <small>({c.kind}, '
            f'{html.escape(c.method)})</small> — {verdict}</h3><div class="reason">{html.escape(c.reason)}</div>'
            f'{plot}<div class="reason">{html.escape(stats)}</div></div>')


def to_html(report: DriftReport, title: str = "Drift report") -> str:
    """The report as one HTML page."""
    meta = report.meta
    sub = " · ".join(f"{k}: {html.escape(str(v))}" for k, v in meta.items() if v is not None)
    verdict = ('<b class="bad">drift</b>' if report.dataset_drift else '<b class="ok">no drift</b>')
    cards = [("Data set", verdict),
             ("Drifted columns", f"<b>{len(report.drifted_columns)} / {len(report.columns)}</b>"),
             ("Share (threshold)", f"<b>{report.drifted_share:.0%} ({report.config['drift_share']:.0%})</b>"),
             ("Rows", f"<b>{report.reference_rows:,} → {report.current_rows:,}</b>"),
             ("Quality issues", f"<b class=\"{'bad' if report.quality else 'ok'}\">{len(report.quality)}</b>")]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class='sub'>{sub}</p>",
             '<div class="cards">' + "".join(f'<div class="card">{k}{v}</div>' for k, v in cards) + "</div>",
             f"<p class='reason'>Rule: a column drifts when its test's p-value &lt; {report.config['alpha']:g} and its "
             f"effect reaches {report.config['numeric_effect']:g} (numeric: KS statistic) or "
             f"{report.config['categorical_effect']:g} (categorical: Jensen–Shannon distance), unless a column "
             "names its own method.</p>",
             '<p class="legend"><span style="background:%s"></span>reference<span style="background:%s"></span>'
             "current</p>" % (REF_COLOR, CUR_COLOR)]
    parts.append("<table><tr><th>column</th><th>kind</th><th>verdict</th><th>why</th></tr>" + "".join(
        f'<tr><td><a href="#col-{html.escape(c.name)}">{html.escape(c.name)}</a></td><td>{c.kind}</td>'
        f'<td>{"<span class=bad>drifted</span>" if c.drifted else "stable"}</td><td class="reason">'
        f"{html.escape(c.reason)}</td></tr>" for c in sorted(report.columns, key=lambda c: not c.drifted))
        + "</table>")
    if report.quality:
        parts.append("<h2>Data quality</h2><table><tr><th>column</th><th>check</th><th>finding</th></tr>" + "".join(
            f"<tr><td>{html.escape(q.column)}</td><td>{q.check}</td><td>{html.escape(q.message)}</td></tr>"
            for q in report.quality) + "</table>")
    for label, col in (("Prediction drift", report.prediction), ("Target drift", report.target)):
        if col is not None:
            parts.append(f"<h2>{label}</h2>" + _column_html(col))
    parts.append("<h2>Columns</h2>")
    parts.extend(_column_html(c) for c in sorted(report.columns, key=lambda c: not c.drifted))
    parts.append("</body></html>")
    return "".join(parts)
