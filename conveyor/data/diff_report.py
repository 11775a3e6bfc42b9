"""A dataset diff as one self-contained HTML page: no scripts, no fonts, no files beside it."""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:72rem;color:#1d2330;padding:0 1rem}
h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #dde;padding:.25rem .6rem;text-align:left;
vertical-align:top}th{background:#f3f4f8}.num{text-align:right;font-variant-numeric:tabular-nums}
.add{color:#11772d}.rem{color:#b3261e}.chg{color:#8a5a00}.muted{color:#667}.drift{font-weight:600;color:#b3261e}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #dde;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.3rem}code{background:#f3f4f8;padding:0 .2rem}
"""


def _cell(value: Any) -> str:
    return escape("∅" if value is None else str(value))


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int] | None = None) -> str:
    numeric = numeric or set()
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class='num'>{_cell(v)}</td>" if i in numeric else f"<td>{_cell(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(plot: dict[str, Any]) -> str:
    """Before (grey) and after (blue) shares as a small inline SVG."""
    ref, cur = plot.get("reference") or [], plot.get("current") or []
    if not ref and not cur:
        return ""
    n = max(len(ref), len(cur))
    top = max([*ref, *cur, 1e-12])
    w, h = 240, 48
    bw = w / max(n, 1)
    parts = []
    for i in range(n):
        for share, colour, off in ((ref[i] if i < len(ref) else 0, "#b8bcc8", 0.0),
                                   (cur[i] if i < len(cur) else 0, "#3b6fd8", 0.5)):
            bh = h * share / top
            parts.append(f"<rect x='{i * bw + off * bw:.1f}' y='{h - bh:.1f}' width='{bw / 2:.1f}' "
                         f"height='{bh:.1f}' fill='{colour}'/>")
    return f"<svg width='{w}' height='{h}' viewBox='0 0 {w} {h}' role='img'>{''.join(parts)}</svg>"


def render_html(diff: Any) -> str:
    """The page for a ``DatasetDiff``."""
    a, b = diff.names
    cards = [("rows before", diff.rows[0], ""), ("rows after", diff.rows[1], ""), ("added", diff.added, "add"),
             ("removed", diff.removed, "rem")]
    if diff.changed is not None:
        cards.append(("changed", diff.changed, "chg"))
    matched = f"rows matched by key {', '.join(diff.key)}" if diff.key else "no key: whole rows compared"
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(a)} → {escape(b)}</title>"
           f"<style>{_STYLE}</style></head><body><h1>Dataset diff <code>{escape(a)}</code> → <code>{escape(b)}"
           "</code></h1>",
           f"<p class='muted'>{escape(matched)}</p>",
           "<div class='cards'>" + "".join(f"<div class='card {c}'><b>{v:,}</b>{escape(t)}</div>" for t, v, c in cards)
           + "</div>", "<h2>Schema</h2>"]
    if not diff.schema_changed:
        out.append("<p>No schema change.</p>")
    else:
        rows = [[c["name"], "added", "", c["type"]] for c in diff.columns_added]
        rows += [[c["name"], "removed", c["type"], ""] for c in diff.columns_removed]
        rows += [[c["name"], "type changed", c["before"], c["after"]] for c in diff.type_changes]
        out.append(_table(["column", "change", "before", "after"], rows))
    if diff.changed_by_column or diff.not_compared:
        out.append("<h2>Changed values by column</h2>")
        rows = [[c, n] for c, n in sorted(diff.changed_by_column.items(), key=lambda x: -x[1])]
        rows += [[c, f"not compared: {why}"] for c, why in diff.not_compared.items()]
        out.append(_table(["column", "rows changed"], rows, {1}))
    for kind, title in (("added", "Rows added (examples)"), ("removed", "Rows removed (examples)")):
        sample = diff.examples.get(kind) or []
        if sample:
            out.append(f"<h2>{title}</h2>")
            cols = list(sample[0])
            out.append(_table(cols, [[r.get(c) for c in cols] for r in sample]))
    if diff.examples.get("changed"):
        out.append("<h2>Rows changed (examples)</h2>")
        rows = [[", ".join(f"{k}={v}" for k, v in e["key"].items()), col, old, new]
                for e in diff.examples["changed"] for col, (old, new) in e["changes"].items()]
        out.append(_table(["key", "column", "before", "after"], rows))
    if diff.distributions:
        out.append("<h2>Distributions</h2><p class='muted'>grey: before, blue: after</p>")
        rows = []
        for d in diff.distributions:
            st = d["statistics"]
            main = (f"KS D={st['ks_statistic']:.4f}, PSI={st['psi']:.4f}" if "ks_statistic" in st else
                    f"JS={st['js_distance']:.4f}, PSI={st['psi']:.4f}" if "js_distance" in st else "")
            verdict = "<span class='drift'>changed</span>" if d["drifted"] else "same"
            rows.append(f"<tr><td>{escape(d['column'])}</td><td>{escape(d['kind'])}</td><td>{verdict}</td>"
                        f"<td>{escape(main)}</td><td class='muted'>{escape(d['reason'])}</td>"
                        f"<td>{_bars(d['plot'])}</td></tr>")
        out.append("<table><tr><th>column</th><th>kind</th><th>distribution</th><th>statistics</th><th>rule</th>"
                   f"<th>shares</th></tr>{''.join(rows)}</table>")
    out.append("</body></html>")
    return "".join(out)
