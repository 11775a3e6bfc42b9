// Conveyor dashboard: the shell. Reads /api, draws the page the path names. No build step.
"use strict";
window.CV = window.CV || {};
(function (CV) {
  // --- DOM: every text goes through textContent, never innerHTML -----------------------------
  CV.h = function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === null || kid === undefined || kid === false) continue;
      el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return el;
  };
  const h = CV.h;

  CV.cookie = function (name) {
    const hit = document.cookie.split("; ").find((c) => c.startsWith(name + "="));
    return hit ? decodeURIComponent(hit.slice(name.length + 1)) : "";
  };

  class ApiError extends Error {
    constructor(status, body) { super(body.error || ("HTTP " + status)); this.status = status; this.field = body.field; }
  }
  CV.ApiError = ApiError;

  async function call(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method !== "GET") {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = CV.cookie("conveyor_csrf");
      opts.body = JSON.stringify(body || {});
    }
    const resp = await fetch(path, opts);
    if (resp.status === 401) {
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
      throw new ApiError(401, { error: "Log in first." });
    }
    const data = await resp.json().catch(() => ({ error: "The answer was not JSON." }));
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
  CV.get = (path) => call("GET", path);
  CV.post = (path, body) => call("POST", path, body);
  CV.qs = (params) => {
    const u = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) {
      if (Array.isArray(v)) v.filter(Boolean).forEach((x) => u.append(k, x));
      else if (v !== "" && v !== null && v !== undefined) u.set(k, v);
    }
    const s = u.toString();
    return s ? "?" + s : "";
  };

  // --- formatting ------------------------------------------------------------------------------
  CV.status = (s) => h("span", { class: "status " + s, "data-status": s }, s);
  CV.when = (iso) => (iso ? iso.replace("T", " ").slice(0, 19) : "—");
  CV.secs = (s) => (s === null || s === undefined ? "—" : s < 1 ? (s * 1000).toFixed(0) + " ms"
    : s < 120 ? s.toFixed(2) + " s" : (s / 60).toFixed(1) + " min");
  CV.num = (v) => (typeof v === "number" ? (Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(6))))
    : v === undefined || v === null ? "" : typeof v === "string" ? v : JSON.stringify(v));
  CV.table = (cols, rows, attrs) => h("table", attrs || {},
    h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, c)))),
    h("tbody", {}, rows));
  CV.kv = (obj) => h("div", { class: "kv" }, Object.entries(obj).map(([k, v]) => [h("div", {}, k), h("div", {}, CV.num(v))]));
  CV.link = (href, text) => h("a", { href }, text);
  CV.notice = () => h("div", { class: "notice", role: "status", "data-testid": "notice" });
  CV.say = (el, text, bad) => { el.textContent = text; el.className = "notice" + (bad ? " error" : ""); };

  // --- routing -------------------------------------------------------------------------------
  const routes = [];
  CV.page = (pattern, title, draw) => routes.push({ re: new RegExp("^" + pattern + "$"), title, draw });

  const NAV = [["/runs", "Runs"], ["/compare", "Compare"], ["/models", "Models"], ["/lineage", "Lineage"],
    ["/endpoints", "Endpoints"], ["/monitoring", "Monitoring"], ["/automation", "Automation"],
    ["/datasets", "Datasets"], ["/studies", "Studies"]];

  async function header(main) {
    const who = h("span", { class: "who", "data-testid": "who" });
    const nav = NAV.map(([href, text]) => h("a", { href, class: location.pathname.startsWith(href) ? "on" : "" }, text));
    document.body.prepend(h("header", {}, h("a", { class: "brand", href: "/runs" }, "Conveyor"), nav, who));
    try {
      CV.me = await CV.session;
      who.append(CV.me.actor + " · " + CV.me.role);
      if (CV.me.auth === "session") {
        who.append(h("button", { onclick: async () => {
          await fetch("/logout", { method: "POST", credentials: "same-origin",
            headers: { "X-CSRF-Token": CV.cookie("conveyor_csrf") } });
          location.href = "/login";
        } }, "Log out"));
      }
    } catch (e) { if (e.status !== 401) main.append(h("p", { class: "error" }, e.message)); throw e; }
  }

  CV.canAct = () => CV.me && (CV.me.role === "approver" || CV.me.role === "admin");
  CV.whoami = async () => { CV.me = CV.me || await CV.session; return CV.me; };

  async function start() {
    const main = document.getElementById("page");
    CV.session = CV.get("/api/session");
    const top = header(main);
    const path = location.pathname.replace(/\/+$/, "") || "/runs";
    const route = routes.find((r) => r.re.test(path));
    if (!route) { await top; main.append(h("h1", {}, "Not found"), h("p", {}, "No page at " + path + ".")); return; }
    document.title = route.title + " · Conveyor";
    const args = path.match(route.re).slice(1).map(decodeURIComponent);
    const drawing = route.draw(main, ...args);
    drawing.catch(() => {});
    try {
      await top;          // the page's own requests are already on their way
      await drawing;
    } catch (e) {
      main.append(h("p", { class: "error", "data-testid": "error" }, e.message));
    }
    document.body.dataset.ready = "1";
  }
  CV.start = start;
  document.addEventListener("DOMContentLoaded", () => { start().catch(() => {}); });
})(window.CV);
