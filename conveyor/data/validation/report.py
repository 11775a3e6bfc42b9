"""A validation report: per constraint, its outcome, the failing count and share, and sample failing rows.

Row numbers are positions in the validated table, counted from 0. As JSON (``to_dict``) and as one
self-contained HTML page (``to_html``: inline SVG, no scripts, no network).
"""

from __future__ import annotations

import html
from dataclasses import asdict, dataclass, field
from typing import Any

#: What happened to a constraint: it held, or it failed and its policy decided what followed.
OUTCOMES = ("passed", "warned", "quarantined", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class ConstraintResult:
    """One constraint's outcome; ``failed`` counts offending rows (1 for a table constraint that failed)."""

    name: str
    kind: str
    scope: str
    column: str | None
    policy: str
    description: str
    outcome: str
    failed: int
    share: float
    detail: str = ""
    sample: list[dict[str, Any]] = field(default_factory=list)   # {"row": n, column: value, ...}
    columns: list[str] = field(default_factory=list)              # the columns it reads


@dataclass(frozen=True, slots=True)
class ValidationReport:
    """Every constraint's outcome for one table."""

    schema: str | None
    rows: int
    constraints: list[ConstraintResult]
    quarantined_rows: int
    valid_rows: int

    @property
    def passed(self) -> bool:
        """True when no constraint with the ``fail`` policy failed."""
        return not self.failures

    @property
    def failures(self) -> list[ConstraintResult]:
        return [c for c in self.constraints if c.outcome == "failed"]

    @property
    def warnings(self) -> list[ConstraintResult]:
        return [c for c in self.constraints if c.outcome == "warned"]

    def get(self, name: str) -> ConstraintResult:
        """The result of the constraint named ``name`` (``age.range``, a rule's name); KeyError if none."""
        for c in self.constraints:
            if c.name == name:
                return c
        raise KeyError(f"no constraint named {name!r}; constraints: {', '.join(c.name for c in self.constraints)}")

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "rows": self.rows, "passed": self.passed,
                "quarantined_rows": self.quarantined_rows, "valid_rows": self.valid_rows,
                "summary": {o: sum(c.outcome == o for c in self.constraints) for o in OUTCOMES},
                "constraints": [asdict(c) for c in self.constraints]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ValidationReport:
        return cls(data.get("schema"), int(data["rows"]), [ConstraintResult(**c) for c in data["constraints"]],
                   int(data["quarantined_rows"]), int(data["valid_rows"]))

    def summary(self, limit: int = 10) -> str:
        """One line per failing or warned constraint: name, count, share, first row numbers."""
        lines = []
        for c in [*self.failures, *self.warnings, *[c for c in self.constraints if c.outcome == "quarantined"]][:limit]:
            rows = ", ".join(str(s["row"]) for s in c.sample[:5])
            count = (f"{c.failed:,} of {self.rows:,} rows ({c.share:.2%})" if c.scope == "rows" and c.failed
                     else "the table")
            lines.append(f"{c.name} ({c.outcome}; {c.description}): {count}"
                         + (f"; rows {rows}" if rows else "") + (f"; {c.detail}" if c.detail else ""))
        return "\n".join(lines)

    def to_html(self, title: str | None = None) -> str:
        return to_html(self, title)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem;color:#222;max-width:1100px}
h1{font-size:1.5rem;margin-bottom:.2rem} .sub{color:#666;margin-top:0}
.cards{display:flex;gap:1rem;margin:1rem 0;flex-wrap:wrap} .card{border:1px solid #ddd;border-radius:8px;padding:.8rem 1rem}
.card b{display:block;font-size:1.4rem} .failed{color:#c0392b} .passed{color:#27ae60} .warned{color:#d68910}
.quarantined{color:#8e44ad} .skipped{color:#7f8c8d}
table{border-collapse:collapse;width:100%;margin:.6rem 0} td,th{border-bottom:1px solid #eee;padding:.3rem .5rem;
text-align:left;font-size:.88rem;vertical-align:top} th{background:#fafafa}
.mono{font-family:ui-monospace,monospace;font-size:.82rem;color:#444}
.c{border:1px solid #e5e5e5;border-radius:8px;padding:.5rem 1rem;margin:.8rem 0}
"""
_COLORS = {"passed": "#27ae60", "warned": "#d68910", "quarantined": "#8e44ad", "failed": "#c0392b",
           "skipped": "#7f8c8d"}


def _bars(report: ValidationReport, width: int = 640) -> str:
    """Failing share per row constraint that failed (a horizontal bar each), as inline SVG."""
    rows = [c for c in report.constraints if c.scope == "rows" and c.failed]
    if not rows:
        return ""
    row_h, label_w = 18, 220
    scale = (width - label_w - 70) / max(max(c.share for c in rows), 1e-12)
    parts = [f'<svg width="{width}" height="{row_h * len(rows) + 6}" role="img" aria-label="failing share">']
    for i, c in enumerate(rows):
        y = i * row_h + 3
        parts.append(f'<text x="{label_w - 6}" y="{y + 11}" font-size="11" text-anchor="end">'
                     f'{html.escape(c.name[:34])}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{max(c.share * scale, 1):.1f}" height="12" '
                     f'fill="{_COLORS[c.outcome]}"/>')
        parts.append(f'<text x="{label_w + c.share * scale + 5:.1f}" y="{y + 11}" font-size="10">{c.share:.2%}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _sample_table(c: ConstraintResult) -> str:
    if not c.sample:
        return ""
    keys = list(c.sample[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td class='mono'>{html.escape(_text(r.get(k)))}</td>" for k in keys) + "</tr>"
                   for r in c.sample)
    return f"<table><tr>{head}</tr>{body}</table>"


def _text(value: Any) -> str:
    text = "∅" if value is None else str(value)
    return text if len(text) <= 60 else text[:57] + "…"


def to_html(report: ValidationReport, title: str | None = None) -> str:
    """The report as one HTML page."""
    title = title or f"Validation report — {report.schema or 'schema'}"
    counts = report.to_dict()["summary"]
    verdict = '<b class="passed">passed</b>' if report.passed else '<b class="failed">failed</b>'
    cards = [("Verdict", verdict), ("Rows", f"<b>{report.rows:,}</b>"),
             ("Quarantined rows", f"<b class='quarantined'>{report.quarantined_rows:,}</b>"),
             ("Valid rows", f"<b>{report.valid_rows:,}</b>")]
    cards += [(o.capitalize(), f"<b class='{o}'>{counts[o]}</b>") for o in OUTCOMES if counts[o]]
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
             f"<p class='sub'>{len(report.constraints)} constraints over {report.rows:,} rows; row numbers count "
             "from 0 in the validated table.</p>",
             '<div class="cards">' + "".join(f'<div class="card">{k}{v}</div>' for k, v in cards) + "</div>",
             _bars(report),
             "<table><tr><th>constraint</th><th>checks</th><th>policy</th><th>outcome</th><th>failing</th>"
             "<th>share</th><th>detail</th></tr>"]
    order = {o: i for i, o in enumerate(("failed", "quarantined", "warned", "skipped", "passed"))}
    ordered = sorted(report.constraints, key=lambda c: order[c.outcome])
    for c in ordered:
        failing = f"{c.failed:,}" if c.scope == "rows" else ("table" if c.failed else "")
        parts.append(f"<tr><td><a href='#c-{html.escape(c.name)}'>{html.escape(c.name)}</a></td>"
                     f"<td class='mono'>{html.escape(c.description)}</td><td>{c.policy}</td>"
                     f"<td class='{c.outcome}'>{c.outcome}</td><td>{failing}</td>"
                     f"<td>{f'{c.share:.2%}' if c.scope == 'rows' else ''}</td>"
                     f"<td class='mono'>{html.escape(c.detail)}</td></tr>")
    parts.append("</table>")
    for c in ordered:
        if c.outcome in ("passed", "skipped") or not (c.sample or c.detail):
            continue
        parts.append(f"<div class='c' id='c-{html.escape(c.name)}'><h3>{html.escape(c.name)} — "
                     f"<span class='{c.outcome}'>{c.outcome}</span></h3><div class='mono'>"
                     f"{html.escape(c.description)}{' · ' + html.escape(c.detail) if c.detail else ''}</div>"
                     f"{_sample_table(c)}</div>")
    parts.append("</body></html>")
    return "".join(parts)
