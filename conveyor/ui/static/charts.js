// Conveyor dashboard: the run graph and timeline (SVG), metric curves (uPlot), parallel coordinates (canvas).
"use strict";
(function (CV) {
  const NS = "http://www.w3.org/2000/svg";
  const COLORS = { succeeded: "#1f9d55", failed: "#d64545", running: "#2f6fed", cached: "#8a5cd1",
    skipped: "#c9a227", pending: "#a0a7b4", cancelled: "#a0a7b4" };
  const PALETTE = ["#2f6fed", "#d64545", "#1f9d55", "#c9a227", "#8a5cd1", "#e07b39", "#1aa3a3", "#6b7280",
    "#b5398c", "#4d7c0f"];
  CV.palette = (i) => PALETTE[i % PALETTE.length];
  const stateOf = (s) => (s.cache_hit && s.status === "succeeded" ? "cached" : s.status);

  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
    for (const kid of kids) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    return el;
  }

  // The run graph: nodes in columns by depth (longest path from a source), edges as curves.
  CV.runGraph = function (steps, edges) {
    const names = [...new Set(steps.map((s) => s.name))];
    const parents = new Map(names.map((n) => [n, []]));
    for (const e of edges) if (parents.has(e.to) && parents.has(e.from)) parents.get(e.to).push(e.from);
    const depth = new Map();
    const level = (n, seen = new Set()) => {
      if (depth.has(n)) return depth.get(n);
      if (seen.has(n)) return 0;
      seen.add(n);
      const d = Math.max(-1, ...parents.get(n).map((p) => level(p, seen))) + 1;
      depth.set(n, d);
      return d;
    };
    names.forEach((n) => level(n));
    const cols = [];
    names.forEach((n) => { (cols[depth.get(n)] = cols[depth.get(n)] || []).push(n); });
    const W = 150, H = 34, GX = 60, GY = 16;
    const pos = new Map();
    cols.forEach((col, x) => col.forEach((n, y) => pos.set(n, { x: 10 + x * (W + GX), y: 10 + y * (H + GY) })));
    const width = 20 + cols.length * (W + GX) - GX, height = 20 + Math.max(1, ...cols.map((c) => c.length)) * (H + GY) - GY;
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, "data-testid": "run-graph" });
    for (const e of edges) {
      const a = pos.get(e.from), b = pos.get(e.to);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      root.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, fill: "none", stroke: "#98a2b3" }));
    }
    const byName = new Map(steps.map((s) => [s.name, s]));
    for (const [n, p] of pos) {
      const s = byName.get(n);
      const g = svg("g", { "data-node": n, "data-state": stateOf(s) });
      g.append(svg("rect", { x: p.x, y: p.y, width: W, height: H, rx: 6, fill: "#fff", stroke: COLORS[stateOf(s)] || "#999", "stroke-width": 2 }));
      g.append(svg("circle", { cx: p.x + 12, cy: p.y + H / 2, r: 5, fill: COLORS[stateOf(s)] || "#999" }));
      g.append(svg("text", { x: p.x + 24, y: p.y + H / 2 + 4 }, n.length > 18 ? n.slice(0, 17) + "…" : n));
      g.append(svg("title", {}, `${n}: ${stateOf(s)}`));
      root.append(g);
    }
    return root;
  };

  // Update node colours in place (the live page polls states).
  CV.paintGraph = function (root, steps) {
    for (const s of steps) {
      const g = root.querySelector(`g[data-node="${CSS.escape(s.name)}"]`);
      if (!g) continue;
      const st = stateOf(s);
      g.setAttribute("data-state", st);
      g.querySelector("rect").setAttribute("stroke", COLORS[st] || "#999");
      g.querySelector("circle").setAttribute("fill", COLORS[st] || "#999");
    }
  };

  // The timeline: one bar per step run from its start to its end (or now, while running).
  CV.timeline = function (steps, t0, t1) {
    const rows = steps.filter((s) => s.started_at);
    const start = Math.min(t0 || Infinity, ...rows.map((s) => s.started_at));
    const end = Math.max(t1 || 0, ...rows.map((s) => s.ended_at || Date.now() / 1000));
    const span = Math.max(end - start, 1e-3), LW = 160, W = 760, RH = 20;
    const height = 24 + rows.length * RH;
    const root = svg("svg", { width: LW + W + 20, height, "data-testid": "timeline" });
    root.append(svg("text", { x: LW, y: 12, fill: "#667085" }, "0 s"));
    root.append(svg("text", { x: LW + W - 40, y: 12, fill: "#667085" }, span.toFixed(2) + " s"));
    rows.forEach((s, i) => {
      const y = 20 + i * RH, x = LW + ((s.started_at - start) / span) * W;
      const w = Math.max(2, (((s.ended_at || end) - s.started_at) / span) * W);
      root.append(svg("text", { x: 0, y: y + 13 }, s.name.length > 22 ? s.name.slice(0, 21) + "…" : s.name));
      const bar = svg("rect", { x, y: y + 2, width: w, height: RH - 6, rx: 3, fill: COLORS[stateOf(s)] || "#999" });
      bar.append(svg("title", {}, `${s.name}: ${stateOf(s)} ${CV.secs(s.duration_s)}`));
      root.append(bar);
    });
    return root;
  };

  // Curves: several series (name, x[], y[]) on one uPlot chart, aligned on the union of their x.
  CV.curves = function (container, title, series, onDrawn) {
    const xs = new Set();
    for (const s of series) for (const x of s.x) xs.add(x);
    const x = Float64Array.from(xs).sort();
    const index = new Map();
    x.forEach((v, i) => index.set(v, i));
    const data = [x];
    for (const s of series) {
      const y = new Array(x.length).fill(null);
      for (let i = 0; i < s.x.length; i++) y[index.get(s.x[i])] = s.y[i];
      data.push(y);
    }
    const opts = {
      title, width: Math.max(320, container.clientWidth - 16 || 420), height: 240,
      legend: { show: series.length <= 12 }, cursor: { drag: { x: true, y: false } },
      scales: { x: { time: false } },
      series: [{ label: "step" }, ...series.map((s, i) => ({ label: s.label, stroke: CV.palette(i), width: 1, spanGaps: true, points: { show: false } }))],
      hooks: { draw: [() => { if (onDrawn) onDrawn(); }] },
    };
    return new uPlot(opts, data, container);
  };

  // Parallel coordinates over rows of {label, values: {dim: number}}: one axis per dim, one line per row.
  CV.parallel = function (rows, dims) {
    const W = Math.max(480, dims.length * 130), H = 280, P = 30;
    const canvas = CV.h("canvas", { width: W, height: H, "data-testid": "parallel" });
    const ctx = canvas.getContext("2d");
    const ax = dims.map((d, i) => {
      const vals = rows.map((r) => r.values[d]).filter((v) => typeof v === "number");
      const lo = Math.min(...vals), hi = Math.max(...vals);
      return { d, x: P + (i * (W - 2 * P)) / Math.max(1, dims.length - 1), lo, hi: hi === lo ? lo + 1 : hi };
    });
    const yOf = (a, v) => H - P - ((v - a.lo) / (a.hi - a.lo)) * (H - 2 * P);
    ctx.lineWidth = 1;
    rows.forEach((r, i) => {
      ctx.strokeStyle = CV.palette(i) + "aa";
      ctx.beginPath();
      let open = false;
      for (const a of ax) {
        const v = r.values[a.d];
        if (typeof v !== "number") { open = false; continue; }
        if (open) ctx.lineTo(a.x, yOf(a, v)); else ctx.moveTo(a.x, yOf(a, v));
        open = true;
      }
      ctx.stroke();
    });
    ctx.fillStyle = "#1d2330"; ctx.strokeStyle = "#667085"; ctx.font = "12px system-ui";
    for (const a of ax) {
      ctx.beginPath(); ctx.moveTo(a.x, P); ctx.lineTo(a.x, H - P); ctx.stroke();
      ctx.textAlign = "center";
      ctx.fillText(a.d, a.x, 14);
      ctx.fillText(CV.num(a.hi), a.x, P - 3 + 0);
      ctx.fillText(CV.num(a.lo), a.x, H - P + 14);
    }
    return canvas;
  };
})(window.CV);
