// Conveyor dashboard: the runs list, one run (live while it runs), and the comparison of runs.
"use strict";
(function (CV) {
  const h = CV.h;
  const STATUSES = ["", "running", "succeeded", "failed", "cancelled"];

  // --- /runs ---------------------------------------------------------------------------------
  CV.page("/runs", "Runs", async (main) => {
    const q = new URLSearchParams(location.search);
    const base = Object.fromEntries(q.entries());
    let firstPage = CV.get("/api/runs" + CV.qs({ ...base, limit: q.get("limit") || 50 }));
    firstPage.catch(() => {});
    const pipelines = await CV.get("/api/pipelines");
    const field = (name, el) => h("label", {}, name, el);
    const pipe = h("select", { name: "pipeline" }, h("option", { value: "" }, "all"),
      pipelines.map((p) => h("option", { value: p, selected: q.get("pipeline") === p }, p)));
    const status = h("select", { name: "status" }, STATUSES.map((s) => h("option", { value: s, selected: q.get("status") === s }, s || "any")));
    const inputs = ["tag", "param", "since", "until"].map((n) => h("input", { name: n, value: q.get(n) || "", size: 14,
      placeholder: n === "tag" || n === "param" ? "key=value" : "2026-01-31T12:00" }));
    const form = h("form", { class: "filters", "data-testid": "filters" }, field("pipeline", pipe), field("status", status),
      inputs.map((el) => field(el.name, el)), h("button", { class: "primary", type: "submit" }, "Filter"));
    const compareBtn = h("button", { disabled: true, "data-testid": "compare-selected" }, "Compare selected");
    const count = h("span", { class: "muted", "data-testid": "count" });
    const body = h("tbody", {});
    const more = h("button", { "data-testid": "next-page" }, "Next page");
    const prev = h("button", { "data-testid": "prev-page" }, "Previous page");
    const pageNo = h("span", { class: "muted" });
    const selected = new Set();
    const allBox = h("input", { type: "checkbox", "aria-label": "select every run on this page", "data-testid": "select-page" });
    const showSelection = () => {
      compareBtn.disabled = selected.size < 2;
      compareBtn.textContent = `Compare selected (${selected.size})`;
    };
    allBox.addEventListener("change", () => {
      for (const box of body.querySelectorAll("input[type=checkbox]")) {
        box.checked = allBox.checked;
        const id = box.closest("tr").dataset.run;
        allBox.checked ? selected.add(id) : selected.delete(id);
      }
      showSelection();
    });
    main.append(h("h1", {}, "Runs"), form, h("div", { class: "bar" }, compareBtn, count),
      h("table", { "data-testid": "runs" }, h("thead", {}, h("tr", {}, [allBox, "run", "pipeline", "status", "started", "duration", "parameters", "metrics"].map((c) => h("th", {}, c)))), body),
      h("div", { class: "bar" }, prev, more, pageNo));
    const filters = () => ({ pipeline: pipe.value, status: status.value, tag: inputs[0].value, param: inputs[1].value,
      since: inputs[2].value, until: inputs[3].value });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      location.search = CV.qs(filters());
    });
    compareBtn.addEventListener("click", () => { location.href = "/compare?ids=" + [...selected].join(","); });
    const cursors = [null];
    let at = 0;
    async function load() {
      const t0 = performance.now();
      const page = firstPage ? await firstPage
        : await CV.get("/api/runs" + CV.qs({ ...base, limit: q.get("limit") || 50, cursor: cursors[at] || "" }));
      firstPage = null;
      body.replaceChildren(...page.runs.map((r) => {
        const box = h("input", { type: "checkbox", checked: selected.has(r.id), "aria-label": "select " + r.id });
        box.addEventListener("change", () => {
          box.checked ? selected.add(r.id) : selected.delete(r.id);
          showSelection();
        });
        const params = Object.entries(r.parameters).map(([k, v]) => `${k}=${CV.num(v)}`)
          .concat(Object.entries(r.tags).map(([k, v]) => `#${k}=${CV.num(v)}`)).join(", ");
        return h("tr", { "data-run": r.id }, h("td", {}, box), h("td", {}, CV.link("/runs/" + r.id, r.id)),
          h("td", {}, r.pipeline || ""), h("td", {}, CV.status(r.status)), h("td", {}, CV.when(r.started)),
          h("td", { class: "num" }, CV.secs(r.duration_s)), h("td", { class: "muted" }, params.slice(0, 120)),
          h("td", { class: "muted" }, Object.entries(r.metrics || {}).map(([k, v]) => `${k}=${CV.num(v)}`).join(", ").slice(0, 120)));
      }));
      cursors[at + 1] = page.next_cursor;
      more.disabled = !page.next_cursor;
      prev.disabled = at === 0;
      count.textContent = page.total === null ? "" : `${page.total} runs`;
      pageNo.textContent = `page ${at + 1}`;
      performance.mark("ui:first-rows");
      document.body.dataset.rowsMs = String(performance.now() - t0);
    }
    more.addEventListener("click", () => { at += 1; load(); });
    prev.addEventListener("click", () => { at = Math.max(0, at - 1); load(); });
    await load();
  });

  // --- /runs/{id} ----------------------------------------------------------------------------
  CV.page("/runs/([^/]+)", "Run", async (main, id) => {
    const run = await CV.get("/api/runs/" + encodeURIComponent(id) + "?explain=0");    // cache reasons come after the graph
    const statusBox = h("span", { "data-testid": "run-status" }, CV.status(run.status));
    main.append(h("h1", {}, `Run ${run.id} `, h("span", { class: "muted" }, run.pipeline || ""), " ", statusBox));
    main.append(CV.kv({ started: CV.when(run.started), ended: CV.when(run.ended), duration: CV.secs(run.duration_s),
      git: run.git.commit ? run.git.commit.slice(0, 12) + (run.git.dirty ? " (dirty)" : "") : "—",
      reference: run.pipeline_ref || "—", tags: Object.keys(run.tags).length ? JSON.stringify(run.tags) : "—" }));
    if (run.error) main.append(h("pre", { class: "error" }, run.error));
    main.append(h("h2", {}, "Parameters"), CV.kv({ ...run.parameters, ...run.params }));
    const graphBox = h("div", { class: "card" }, CV.runGraph(run.steps, run.edges));
    main.append(h("h2", {}, "Graph"), graphBox);
    // the graph is in the document: let it paint (the frame after next) before the rest of the page
    // is built, then ask why steps missed the cache (two queries a step) while that is drawn
    await new Promise((ok) => (document.hidden ? ok() : requestAnimationFrame(() => requestAnimationFrame(ok))));
    performance.mark("ui:graph-drawn");
    document.body.dataset.graph = "drawn";
    const explained = CV.get(`/api/runs/${run.id}/cache-misses`);
    explained.catch(() => {});
    const timeBox = h("div", { class: "card" }, CV.timeline(run.steps, run.started_at, run.ended_at));
    main.append(h("h2", {}, "Timeline"), timeBox);
    const stepRow = (s) => h("tr", { "data-step": s.name }, h("td", {}, s.name), h("td", { "data-testid": "step-status" }, CV.status(s.cache_hit && s.status === "succeeded" ? "cached" : s.status)),
      h("td", { class: "num" }, CV.secs(s.duration_s)), h("td", { class: "num" }, s.attempts),
      h("td", { class: "muted" }, s.cache_hit ? "served from the cache" + (s.cached_from ? ` (step run ${s.cached_from})` : "") : s.cache_miss || s.reason || ""),
      h("td", { class: "error" }, s.traceback ? h("details", {}, h("summary", {}, s.error || "error"), h("pre", {}, s.traceback)) : s.error || ""));
    const steps = h("tbody", {}, run.steps.map(stepRow));
    main.append(h("h2", {}, "Steps"), h("table", { "data-testid": "steps" }, h("thead", {}, h("tr", {}, ["step", "state", "duration", "attempts", "cache", "error"].map((c) => h("th", {}, c)))), steps));
    const metricsBox = h("div", { class: "grid", "data-testid": "curves" });
    main.append(h("h2", {}, "Metrics"), CV.kv(run.metrics), metricsBox);
    const drawCurves = async () => {
      const curves = await CV.get(`/api/runs/${run.id}/curves`);
      metricsBox.replaceChildren();
      for (const [key, c] of Object.entries(curves)) {
        if (c.x.length < 2) continue;
        const card = h("div", { class: "card" });
        metricsBox.append(card);
        CV.curves(card, key, [{ label: key, x: c.x, y: c.y }]);
      }
    };
    await drawCurves();
    main.append(h("h2", {}, "Artifacts"), CV.table(["step", "output", "artifact", "type", "size"], run.artifacts.map((a) =>
      h("tr", {}, h("td", {}, a.step), h("td", {}, a.name), h("td", {}, CV.link("/lineage?artifact=" + a.id, a.id)),
        h("td", { class: "muted" }, (a.type || "").split(".").pop()), h("td", { class: "num" }, (a.size || 0).toLocaleString())))));
    if (run.datasets.length) main.append(h("h2", {}, "Datasets"), CV.table(["dataset", "version", "role"], run.datasets.map((d) =>
      h("tr", {}, h("td", {}, CV.link(`/lineage?dataset=${d.dataset}:${d.version}`, d.dataset)), h("td", {}, d.version), h("td", {}, d.role)))));
    const logsBox = h("div", {});
    main.append(h("h2", {}, "Logs"), logsBox);
    const drawLogs = async () => {
      const logs = await CV.get(`/api/runs/${run.id}/logs`);
      logsBox.replaceChildren(...logs.map((l) => h("details", {}, h("summary", {}, `${l.step} (${l.attempts} attempt${l.attempts === 1 ? "" : "s"})`), h("pre", {}, l.text || "(no output)"))));
    };
    await drawLogs();
    main.append(h("h2", {}, "History"), CV.table(["at", "event", "detail"], run.events.map((e) =>
      h("tr", {}, h("td", {}, CV.when(e.at)), h("td", {}, e.kind), h("td", { class: "muted" }, e.detail || "")))));
    main.append(h("h2", {}, "Environment"), h("details", {}, h("summary", {}, "python, platform, packages"), h("pre", {}, JSON.stringify(run.environment, null, 2))));
    const why = await explained.catch(() => null);
    if (why) {
      for (const s of run.steps) s.cache_miss = why[s.name] || null;
      steps.replaceChildren(...run.steps.map(stepRow));
    }

    // Live: poll the small states answer until the run ends, then redraw what changed.
    if (run.status === "running") {
      let last = "";
      const tick = async () => {
        let live;
        try { live = await CV.get(`/api/runs/${run.id}/states`); } catch (e) { setTimeout(tick, 2000); return; }
        const sig = live.status + "|" + live.steps.map((x) => x.name + ":" + x.status).join(",");
        if (sig === last && live.status === "running") { setTimeout(tick, 700); return; }
        last = sig;
        const full = await CV.get("/api/runs/" + encodeURIComponent(run.id));
        CV.paintGraph(graphBox.firstChild, full.steps);
        if (full.steps.length !== graphBox.querySelectorAll("g[data-node]").length) graphBox.replaceChildren(CV.runGraph(full.steps, full.edges));
        timeBox.replaceChildren(CV.timeline(full.steps, full.started_at, full.ended_at));
        steps.replaceChildren(...full.steps.map(stepRow));
        statusBox.replaceChildren(CV.status(live.status));
        await drawCurves();     // a step that finished may have logged more points
        if (live.status === "running") setTimeout(tick, 700);
        else { await drawLogs(); document.body.dataset.live = "done"; }
      };
      document.body.dataset.live = "polling";
      setTimeout(tick, 700);
    }
  });

  // --- /compare?ids=... ----------------------------------------------------------------------
  CV.page("/compare", "Compare runs", async (main) => {
    const ids = new URLSearchParams(location.search).get("ids") || "";
    main.append(h("h1", {}, "Compare runs"));
    if (!ids) { main.append(h("p", { class: "muted" }, "Pick runs on the Runs page and press Compare selected.")); return; }
    const t0 = performance.now();
    // alongside the table's data; 250 step ranges, their low and high, are all a chart this wide can show
    const curvesAsked = CV.get("/api/curves?points=500&ids=" + encodeURIComponent(ids));
    curvesAsked.catch(() => {});
    const cmp = await CV.get("/api/compare?ids=" + encodeURIComponent(ids));
    const runIds = cmp.runs.map((r) => r.id);
    const head = h("tr", {}, h("th", {}, ""), cmp.runs.map((r) => h("th", {}, CV.link("/runs/" + r.id, r.id.slice(0, 8)))));
    const row = (label, key, get, differs) => h("tr", { class: differs ? "differs" : "" }, h("td", {}, label),
      cmp.runs.map((r) => h("td", { class: "num" }, CV.num(get(r)[key]))));
    const body = [
      h("tr", {}, h("td", {}, "status"), cmp.runs.map((r) => h("td", {}, CV.status(r.status)))),
      ...cmp.param_keys.map((k) => row("param " + k, k, (r) => r.parameters, cmp.differing_params.includes(k))),
      ...cmp.metric_keys.map((k) => row("metric " + k, k, (r) => r.metrics, cmp.differing_metrics.includes(k))),
    ];
    main.append(h("p", { class: "muted" }, `${cmp.runs.length} runs; rows in bold differ.`));
    if (cmp.runs.length <= 20) main.append(h("table", { "data-testid": "compare-table" }, h("thead", {}, head), h("tbody", {}, body)));
    else main.append(h("details", {}, h("summary", {}, "Table of parameters and metrics"), h("table", { "data-testid": "compare-table" }, h("thead", {}, head), h("tbody", {}, body))));
    // parallel coordinates: numeric parameters, then metrics
    const dims = [...cmp.param_keys.filter((k) => cmp.runs.some((r) => typeof r.parameters[k] === "number")).map((k) => "p:" + k),
      ...cmp.metric_keys.map((k) => "m:" + k)];
    const rows = cmp.runs.map((r) => ({ label: r.id, values: Object.fromEntries(dims.map((d) => [d, d.startsWith("p:") ? r.parameters[d.slice(2)] : r.metrics[d.slice(2)]])) }));
    if (dims.length >= 2) main.append(h("h2", {}, "Parallel coordinates"), h("div", { class: "card" }, CV.parallel(rows, dims)));
    const chartBox = h("div", { class: "grid", "data-testid": "curves" });
    main.append(h("h2", {}, "Curves"), chartBox);
    const curves = await curvesAsked;
    const keys = [...new Set(Object.values(curves).flatMap((c) => Object.keys(c)))].filter((k) =>
      Object.values(curves).some((c) => c[k] && c[k].x.length > 1)).sort();
    let pending = keys.length;
    const drawn = () => {
      pending -= 1;
      if (pending === 0) {
        performance.mark("ui:curves-drawn");
        document.body.dataset.curvesMs = String(performance.now() - t0);
        document.body.dataset.curves = "drawn";
      }
    };
    if (!keys.length) { document.body.dataset.curves = "drawn"; chartBox.append(h("p", { class: "muted" }, "No metric was logged more than once.")); }
    for (const key of keys) {
      const card = h("div", { class: "card", "data-metric": key });
      chartBox.append(card);
      const series = runIds.filter((id) => curves[id] && curves[id][key]).map((id) => ({ label: id.slice(0, 8), x: curves[id][key].x, y: curves[id][key].y }));
      let once = false;
      CV.curves(card, key, series, () => { if (!once) { once = true; drawn(); } });
    }
  });
})(window.CV);
