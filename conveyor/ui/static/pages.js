// Conveyor dashboard: models (approve, reject, move alias, roll back), lineage, endpoints,
// monitoring, automation, datasets and studies.
"use strict";
(function (CV) {
  const h = CV.h;
  const json = (v) => h("code", {}, JSON.stringify(v));

  // --- models --------------------------------------------------------------------------------
  CV.page("/models", "Models", async (main) => {
    const models = await CV.get("/api/models");
    main.append(h("h1", {}, "Models"), CV.table(["model", "versions", "latest", "aliases", "protected"], models.map((m) =>
      h("tr", {}, h("td", {}, CV.link("/models/" + encodeURIComponent(m.name), m.name)), h("td", { class: "num" }, m.versions),
        h("td", { class: "num" }, m.latest), h("td", {}, Object.entries(m.aliases).map(([a, v]) => `${a}→${v}`).join(", ")),
        h("td", { class: "muted" }, m.protected_aliases.join(", ")))), { "data-testid": "models" }));
  });

  CV.page("/models/([^/]+)", "Model", async (main, name) => {
    const notice = CV.notice();
    main.append(h("h1", {}, "Model " + name), notice);
    const box = h("div", {});
    main.append(box);
    const act = async (label, path, body) => {
      try {
        await CV.post(path, body);
        CV.say(notice, label + ": done.");
        await draw();
      } catch (e) { CV.say(notice, label + ": " + e.message, true); }
    };
    const base = "/api/models/" + encodeURIComponent(name);
    const comment = h("input", { name: "comment", placeholder: "comment for approve / reject", size: 40 });
    async function draw() {
      const [m] = await Promise.all([CV.get(base), CV.whoami()]);
      const can = CV.canAct();
      const versions = CV.table(["version", "approval", "aliases", "metrics", "run", "created", ""], m.versions.map((v) =>
        h("tr", { "data-version": v.version }, h("td", { class: "num" }, v.version), h("td", { "data-testid": "approval" }, CV.status(v.approval)),
          h("td", {}, v.aliases.join(", ")), h("td", {}, Object.entries(v.metrics).map(([k, x]) => `${k}=${CV.num(x)}`).join(", ")),
          h("td", {}, v.run ? CV.link("/runs/" + v.run, v.run.slice(0, 8)) : "—"), h("td", {}, CV.when(v.created)),
          h("td", {},
            h("button", { "data-action": "approve", title: can ? "" : "needs the approver role",
              onclick: () => act(`Approve ${name}:${v.version}`, `${base}/versions/${v.version}/approve`, { comment: comment.value || undefined }) }, "Approve"),
            " ",
            h("button", { "data-action": "reject",
              onclick: () => act(`Reject ${name}:${v.version}`, `${base}/versions/${v.version}/reject`, { comment: comment.value || undefined }) }, "Reject"),
            " ", CV.link(`/lineage?model=${encodeURIComponent(name)}:${v.version}`, "lineage")))), { "data-testid": "versions" });
      const aliasSel = h("input", { name: "alias", placeholder: "alias", size: 12, value: "production" });
      const verSel = h("select", { name: "version" }, m.versions.map((v) => h("option", { value: v.version }, v.version)));
      const aliases = CV.table(["alias", "version", "history", ""], Object.entries(m.aliases).map(([a, v]) =>
        h("tr", { "data-alias": a }, h("td", {}, a + (m.protected_aliases.includes(a) ? " (protected)" : "")), h("td", { class: "num", "data-testid": "alias-version" }, v),
          h("td", { class: "muted" }, (m.alias_history[a] || []).map((x) => x.version === null ? "removed" : x.version).join(" → ")),
          h("td", {}, h("button", { "data-action": "rollback", onclick: () => act(`Roll back ${a}`, `${base}/aliases/${encodeURIComponent(a)}/rollback`, {}) }, "Roll back")))),
        { "data-testid": "aliases" });
      const move = h("form", { class: "bar" }, "Point alias ", aliasSel, " at version ", verSel, " ",
        h("button", { type: "submit", "data-action": "move-alias" }, "Move"));
      move.addEventListener("submit", (ev) => {
        ev.preventDefault();
        act(`Move ${aliasSel.value}`, `${base}/aliases/${encodeURIComponent(aliasSel.value)}`, { version: Number(verSel.value) });
      });
      const audit = CV.table(["at", "actor", "action", "version", "alias", "detail"], m.audit.map((a) =>
        h("tr", {}, h("td", {}, CV.when(a.at)), h("td", {}, a.actor), h("td", {}, a.action), h("td", { class: "num" }, a.version ?? ""),
          h("td", {}, a.alias || ""), h("td", { class: "muted" }, a.detail || ""))), { "data-testid": "audit" });
      box.replaceChildren(
        can ? "" : h("p", { class: "muted" }, `You are ${CV.me.actor} (${CV.me.role}): approving, rejecting and rolling back need the approver role.`),
        h("h2", {}, "Versions"), h("div", { class: "bar" }, comment), versions, h("h2", {}, "Aliases"), aliases, move, h("h2", {}, "Audit log"), audit);
    }
    await draw();
  });

  // --- lineage -------------------------------------------------------------------------------
  function tree(steps, verb) {
    return h("ul", { class: "tree" }, steps.map((s) => h("li", {}, `${verb} `, h("b", {}, s.step), " in run ", CV.link("/runs/" + s.run, s.run.slice(0, 8)),
      h("ul", { class: "tree" }, s.artifacts.map((a) => h("li", {}, CV.link("/lineage?artifact=" + a.artifact, a.artifact), ` ${a.name || ""} `,
        h("span", { class: "muted" }, a.type), tree(a.steps, verb)))))));
  }
  const served = (models) => CV.table(["model version", "approval", "aliases", "endpoints"], models.map((m) =>
    h("tr", {}, h("td", {}, CV.link(`/models/${encodeURIComponent(m.model)}`, `${m.model}:${m.version}`)), h("td", {}, CV.status(m.approval)),
      h("td", {}, m.aliases.join(", ")), h("td", {}, m.endpoints.map((e) => `${e.endpoint} (${e.how} ${e.ref})`).join(", ") || "—"))), { "data-testid": "lineage-models" });

  CV.page("/lineage", "Lineage", async (main) => {
    const q = new URLSearchParams(location.search);
    main.append(h("h1", {}, "Lineage"));
    const form = h("form", { class: "filters" }, h("label", {}, "artifact id", h("input", { name: "artifact", value: q.get("artifact") || "" })),
      h("label", {}, "model:version", h("input", { name: "model", value: q.get("model") || "" })),
      h("label", {}, "dataset:version", h("input", { name: "dataset", value: q.get("dataset") || "" })), h("button", { class: "primary" }, "Show"));
    main.append(form);
    const split = (text) => { const i = text.lastIndexOf(":"); return [text.slice(0, i), text.slice(i + 1)]; };
    if (q.get("model")) {
      const [name, v] = split(q.get("model"));
      const l = await CV.get(`/api/lineage/models/${encodeURIComponent(name)}/${v}`);
      main.append(h("h2", {}, `${l.model}:${l.version} `, CV.status(l.approval)),
        h("h2", {}, "Served by"), CV.table(["endpoint", "how", "reference"], l.endpoints.map((e) => h("tr", {}, h("td", {}, e.endpoint), h("td", {}, e.how), h("td", {}, e.ref)))),
        h("h2", {}, "Made by"), l.run ? h("p", {}, "run ", CV.link("/runs/" + l.run.id, l.run.id), ` of ${l.run.pipeline} with `, json(l.run.parameters)) : h("p", { class: "muted" }, "no run"),
        CV.table(["step", "input", "artifact", "content hash"], l.inputs.map((i) => h("tr", {}, h("td", {}, i.step), h("td", {}, i.input),
          h("td", {}, CV.link("/lineage?artifact=" + i.artifact, i.artifact)), h("td", { class: "muted" }, (i.content_hash || "").slice(0, 16))))),
        l.datasets.length ? [h("h2", {}, "Datasets"), CV.table(["dataset", "version", "role"], l.datasets.map((d) => h("tr", {}, h("td", {}, CV.link(`/lineage?dataset=${d.dataset}:${d.version}`, d.dataset)), h("td", {}, d.version), h("td", {}, d.role))))] : "",
        h("h2", {}, "Environment"), h("pre", {}, JSON.stringify(l.environment, null, 2)));
      return;
    }
    let l = null;
    if (q.get("artifact")) l = await CV.get("/api/lineage/artifacts/" + encodeURIComponent(q.get("artifact")));
    if (q.get("dataset")) {
      const [name, v] = split(q.get("dataset"));
      l = await CV.get(`/api/lineage/datasets/${encodeURIComponent(name)}/${v}`);
    }
    if (!l) { main.append(h("p", { class: "muted" }, "Name an artifact, a model version or a dataset version.")); return; }
    main.append(h("h2", {}, `${l.artifact} ${l.name || ""} `, h("span", { class: "muted" }, l.type)),
      h("h2", {}, "Upstream"), l.upstream.length ? tree(l.upstream, "made by") : h("p", { class: "muted" }, "nothing: an input from outside"),
      h("h2", {}, "Downstream"), l.downstream.length ? tree(l.downstream, "used by") : h("p", { class: "muted" }, "nothing used it yet"),
      h("h2", {}, "Models and endpoints downstream"), served(l.models));
  });

  // --- endpoints, monitoring, automation ------------------------------------------------------
  CV.page("/endpoints", "Endpoints", async (main) => {
    const eps = await CV.get("/api/endpoints");
    main.append(h("h1", {}, "Endpoints"), CV.table(["endpoint", "routes", "shadows", "logged (24 h)", "updated"], eps.map((e) =>
      h("tr", {}, h("td", {}, e.name), h("td", {}, (e.spec.routes || []).map((r) => `${r.model} (${r.weight ?? 100}%)`).join(", ")),
        h("td", {}, (e.spec.shadows || []).join(", ")),
        h("td", { class: "num" }, `${e.prediction_log.rows.toLocaleString()} rows, ${e.prediction_log.files} files`),
        h("td", {}, CV.when(e.updated)))), { "data-testid": "endpoints" }),
      h("h2", {}, "Traffic per version, last 24 hours"),
      CV.table(["endpoint", "version", "requests", "errors", "error rate", "mean latency ms", "CPU ms / request"],
        eps.flatMap((e) => e.traffic.map((u) => h("tr", {}, h("td", {}, e.name), h("td", {}, u.model ? `${u.model}:${u.version}` : "(none answered)"),
          h("td", { class: "num" }, u.requests.toLocaleString()), h("td", { class: "num" }, u.errors.toLocaleString()),
          h("td", { class: "num" }, (100 * u.error_rate).toFixed(2) + "%"), h("td", { class: "num" }, CV.num(u.mean_latency_ms)),
          h("td", { class: "num" }, CV.num(u.cpu_ms_per_request))))), { "data-testid": "traffic" }));
  });

  CV.page("/monitoring", "Monitoring", async (main) => {
    const m = await CV.get("/api/monitoring");
    main.append(h("h1", {}, "Monitoring"), CV.table(["monitor", "endpoint", "every", "last check", "drift share", "metric", "p99 ms"], m.monitors.map((x) => {
      const c = x.checks[x.checks.length - 1] || {};                 // checks come oldest first
      return h("tr", {}, h("td", {}, x.name), h("td", {}, x.endpoint), h("td", {}, CV.secs(x.every_s)),
        h("td", {}, c.status ? CV.status(c.status) : "—", " ", CV.when(c.at)), h("td", { class: "num" }, CV.num(c.drift_share)),
        h("td", { class: "num" }, CV.num(c.metric)), h("td", { class: "num" }, CV.num(c.p99_ms)));
    }), { "data-testid": "monitors" }),
    // Each monitor over time: drift share, the quality metric and p99 latency at every check, and what
    // the latest check found.
    ...m.monitors.filter((x) => x.checks.length).flatMap((x) => {
      const checks = x.checks;                                      // oldest first
      const t0 = Date.parse(checks[0].at) / 1000;
      const box = h("div", { class: "grid", "data-testid": "monitor-history" });
      const measures = [["drift_share", "drift share"], ["metric", x.config.metric || "metric"], ["p99_ms", "p99 latency ms"]];
      const draw = () => {
        for (const [key, label] of measures) {
          const pts = checks.filter((c) => typeof c[key] === "number");
          if (!pts.length) continue;
          const cell = h("div", { class: "card" });
          box.append(cell);
          CV.curves(cell, `${x.name}: ${label} (minutes since the first check shown)`,
            [{ label, x: pts.map((c) => (Date.parse(c.at) / 1000 - t0) / 60), y: pts.map((c) => c[key]) }]);
        }
      };
      setTimeout(draw, 0);
      const last = checks[checks.length - 1];
      return [h("h2", {}, `${x.name} over time`), box,
        h("p", { class: "muted" }, last.findings.length ? "Latest check found: " + last.findings.map((f) =>
          f.kind === "drift" ? `drift in ${(f.columns || []).join(", ")} (share ${CV.num(f.share)})` :
          f.kind === "latency" ? `p99 ${CV.num(f.p99_ms)} ms over ${f.threshold}` :
          f.kind === "performance" ? `${f.metric} ${CV.num(f.value)} past ${f.threshold}` : f.kind).join("; ") : "Latest check found nothing."),
        h("p", {}, h("a", { href: `/api/monitoring/${encodeURIComponent(x.name)}/report`, target: "_blank", "data-testid": "drift-report" },
          "Drift and quality report of the current window (HTML, with plots)"))];
    }),
    h("h2", {}, "Alerts"), CV.table(["at", "source", "message", "delivery"], m.alerts.map((a) =>
      h("tr", {}, h("td", {}, CV.when(a.at)), h("td", {}, a.source), h("td", {}, a.message), h("td", {}, a.delivery))), { "data-testid": "alerts" }));
  });

  CV.page("/automation", "Automation", async (main) => {
    const a = await CV.get("/api/automation");
    main.append(h("h1", {}, "Automation"),
      h("h2", {}, "Schedules"), CV.table(["schedule", "target", "cron", "next", "enabled"], a.schedules.map((s) =>
        h("tr", {}, h("td", {}, s.name), h("td", {}, s.target), h("td", {}, h("code", {}, s.cron)), h("td", {}, CV.when(s.next)), h("td", {}, s.enabled ? "yes" : "no"))), { "data-testid": "schedules" }),
      h("h2", {}, "Triggers"), CV.table(["trigger", "on", "target", "enabled"], a.triggers.map((t) =>
        h("tr", {}, h("td", {}, t.name), h("td", {}, t.on), h("td", {}, t.target), h("td", {}, t.enabled ? "yes" : "no"))), { "data-testid": "triggers" }),
      h("h2", {}, "Firings"), CV.table(["at", "source", "status", "run", "error"], a.firings.map((f) =>
        h("tr", {}, h("td", {}, CV.when(f.at)), h("td", {}, f.source), h("td", {}, CV.status(f.status)),
          h("td", {}, f.run ? CV.link("/runs/" + f.run, f.run.slice(0, 8)) : "—"), h("td", { class: "error" }, f.error || ""))), { "data-testid": "firings" }));
  });

  // --- datasets and studies ------------------------------------------------------------------
  CV.page("/datasets", "Datasets", async (main) => {
    const ds = await CV.get("/api/datasets");
    main.append(h("h1", {}, "Datasets"), CV.table(["dataset", "versions", "latest", "aliases"], ds.map((d) =>
      h("tr", {}, h("td", {}, CV.link("/datasets/" + encodeURIComponent(d.name), d.name)), h("td", { class: "num" }, d.versions),
        h("td", { class: "num" }, d.latest ?? ""), h("td", {}, Object.entries(d.aliases).map(([a, v]) => `${a}→${v}`).join(", ")))), { "data-testid": "datasets" }));
  });

  CV.page("/datasets/([^/]+)", "Dataset", async (main, name) => {
    const d = await CV.get("/api/datasets/" + encodeURIComponent(name));
    main.append(h("h1", {}, "Dataset " + name), CV.table(["version", "kind", "rows", "files", "size", "aliases", "made by", "created", ""], d.versions.map((v) =>
      h("tr", {}, h("td", { class: "num" }, v.version), h("td", {}, v.kind), h("td", { class: "num" }, v.rows ?? ""), h("td", { class: "num" }, v.files ?? ""),
        h("td", { class: "num" }, (v.size || 0).toLocaleString()), h("td", {}, v.aliases.join(", ")),
        h("td", {}, v.run ? CV.link("/runs/" + v.run, v.run.slice(0, 8)) : "—"), h("td", {}, CV.when(v.created)),
        h("td", {}, CV.link(`/lineage?dataset=${encodeURIComponent(name)}:${v.version}`, "lineage"))))));
    // Compare two versions: the same diff as `conveyor data diff`.
    if (d.versions.length >= 2) {
      const nums = d.versions.map((v) => v.version).sort((x, y) => x - y);
      const pick = (id, value) => h("select", { id }, nums.map((n) => h("option", n === value ? { value: n, selected: "" } : { value: n }, String(n))));
      const a = pick("diff-a", nums[nums.length - 2]), b = pick("diff-b", nums[nums.length - 1]);
      const key = h("input", { id: "diff-key", placeholder: "key columns (optional)" });
      const out = h("div", { "data-testid": "dataset-diff" });
      const run = async () => {
        const q = new URLSearchParams({ a: a.value, b: b.value });
        if (key.value.trim()) q.set("key", key.value.trim());
        let r;
        try { r = await CV.get(`/api/datasets/${encodeURIComponent(name)}/diff?${q}`); } catch (e) { out.replaceChildren(h("p", { class: "error" }, e.message)); return; }
        const cols = (list) => list.map((c) => c.name + (c.type ? ` (${c.type})` : "")).join(", ") || "—";
        out.replaceChildren(
          h("p", {}, `${r.names[0]} → ${r.names[1]}: ${r.rows[0].toLocaleString()} → ${r.rows[1].toLocaleString()} rows; ` +
            `${r.added} added, ${r.removed} removed` + (r.changed === null ? " (no key: changed rows not matched)" : `, ${r.changed} changed`)),
          CV.table(["", ""], [["columns added", cols(r.columns_added)], ["columns removed", cols(r.columns_removed)],
            ["type changes", r.type_changes.map((c) => `${c.name}: ${c.before} → ${c.after}`).join(", ") || "—"],
            ["changed by column", Object.entries(r.changed_by_column).map(([c, n]) => `${c} ${n}`).join(", ") || "—"]]
            .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", {}, v)))),
          r.distributions.length ? CV.table(["column", "distribution", "why"], r.distributions.map((x) =>
            h("tr", {}, h("td", {}, x.column), h("td", {}, x.drifted ? "shifted" : "stable"), h("td", { class: "muted" }, x.reason || ""))), {}) : h("span"));
      };
      main.append(h("h2", {}, "Compare versions"), h("p", {}, a, " → ", b, " ", key, " ", h("button", { onclick: run, "data-testid": "diff-run" }, "Compare")), out);
    }
  });

  CV.page("/studies", "Studies", async (main) => {
    const ss = await CV.get("/api/studies");
    main.append(h("h1", {}, "Studies"), CV.table(["study", "trials", "by state", "started"], ss.map((s) =>
      h("tr", {}, h("td", {}, CV.link("/studies/" + encodeURIComponent(s.name), s.name)), h("td", { class: "num" }, s.trials),
        h("td", {}, Object.entries(s.by_status).map(([k, n]) => `${k} ${n}`).join(", ")), h("td", {}, CV.when(s.started)))), { "data-testid": "studies" }));
  });

  CV.page("/studies/([^/]+)", "Study", async (main, name) => {
    const s = await CV.get("/api/studies/" + encodeURIComponent(name));
    const pkeys = [...new Set(s.trials.flatMap((t) => Object.keys(t.parameters)))].filter((k) => s.trials.some((t) => typeof t.parameters[k] === "number"));
    const mkeys = [...new Set(s.trials.flatMap((t) => Object.keys(t.metrics)))];
    const dims = [...pkeys.map((k) => "p:" + k), ...mkeys.map((k) => "m:" + k)];
    main.append(h("h1", {}, "Study " + name));
    if (dims.length >= 2) main.append(h("h2", {}, "Parallel coordinates"), h("div", { class: "card" }, CV.parallel(s.trials.map((t) => ({ label: t.number,
      values: Object.fromEntries(dims.map((d) => [d, d.startsWith("p:") ? t.parameters[d.slice(2)] : t.metrics[d.slice(2)]])) })), dims)));
    main.append(h("h2", {}, "Trials"), CV.table(["trial", "state", "parameters", "metrics"], s.trials.map((t) =>
      h("tr", {}, h("td", {}, CV.link("/runs/" + t.run, "#" + t.number)), h("td", {}, CV.status(t.status)), h("td", {}, json(t.parameters)), h("td", {}, json(t.metrics))))));
  });
})(window.CV);
