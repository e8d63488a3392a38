// ralph web: live updates over Server-Sent Events, charts and the dependency drawing.
// Served from the package under a Content-Security-Policy without inline script. Text from
// tasks and agents only ever goes into the page through textContent or server-escaped HTML.
"use strict";

(function () {
  const $ = (sel, root) => (root || document).querySelector(sel);
  const $$ = (sel, root) => Array.from((root || document).querySelectorAll(sel));
  const page = document.body.dataset.page;
  const SVG = "http://www.w3.org/2000/svg";

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function debounce(fn, ms) {
    let timer = null;
    return function () {
      if (timer) return;
      timer = setTimeout(() => { timer = null; fn(); }, ms);
    };
  }

  // -- server-rendered fragments ------------------------------------------------------------
  async function refreshPart(box, url) {
    if (!box) return;
    const target = url || box.dataset.part;
    const open = new Set($$("details[open] > summary", box).map((s) => s.textContent));
    const res = await fetch(target, { headers: { Accept: "text/html" }, credentials: "same-origin" });
    if (!res.ok) return;
    const doc = new DOMParser().parseFromString(await res.text(), "text/html");
    box.replaceChildren(...Array.from(doc.body.childNodes));
    $$("details > summary", box).forEach((s) => { if (open.has(s.textContent)) s.parentElement.open = true; });
    wireForms(box);
    tick();
    box.dispatchEvent(new CustomEvent("refreshed"));
  }

  function wireForms(root) {
    $$("form[data-confirm]", root).forEach((form) => {
      if (form.dataset.wired) return;
      form.dataset.wired = "1";
      form.addEventListener("submit", (ev) => {
        if (!window.confirm(form.dataset.confirm)) ev.preventDefault();
      });
    });
  }

  // -- time ---------------------------------------------------------------------------------
  function fmtSecs(s) {
    if (s < 60) return s.toFixed(0) + "s";
    const m = Math.floor(s / 60), h = Math.floor(m / 60);
    return h ? h + "h" + String(m % 60).padStart(2, "0") + "m" : m + "m" + String(Math.floor(s % 60)).padStart(2, "0") + "s";
  }
  function tick() {
    const now = Date.now() / 1000;
    $$(".elapsed[data-since]").forEach((td) => { td.textContent = fmtSecs(Math.max(0, now - Number(td.dataset.since))); });
  }

  // -- the event stream ---------------------------------------------------------------------
  function connect(onEvent) {
    const conn = $("#conn");
    let last = Number(document.body.dataset.last || 0);
    const source = new EventSource("/events" + (last ? "?after=" + last : ""));
    source.addEventListener("open", () => { if (conn) { conn.textContent = "live"; conn.className = "conn on"; } });
    source.addEventListener("error", () => { if (conn) { conn.textContent = "reconnecting…"; conn.className = "conn off"; } });
    source.addEventListener("reset", (msg) => {
      last = JSON.parse(msg.data).last;
      onEvent({ id: last, kind: "reset", task_id: null, reset: true });
    });
    source.addEventListener("ralph", (msg) => {
      const ev = JSON.parse(msg.data);
      if (ev.id <= last) return;
      last = ev.id;
      onEvent(ev);
    });
  }

  function addEventRow(ev) {
    const body = $("#events");
    if (!body) return;
    const tr = el("tr", { class: "ev-" + ev.kind + " fresh" });
    tr.append(el("td", {}, ev.id), el("td", { class: "when" }, ev.at), el("td", {}, ev.kind));
    const taskCell = el("td");
    if (ev.task_id) taskCell.append(el("a", { class: "tid", href: "/tasks/" + encodeURIComponent(ev.task_id) }, ev.task_id));
    tr.append(taskCell, el("td", {}, ev.worker || ""), el("td", { class: "detail" }, ev.detail));
    body.prepend(tr);
    body.dataset.last = ev.id;
    while (body.children.length > 60) body.lastElementChild.remove();
  }

  // -- charts (stacked bars in SVG) -------------------------------------------------------------
  const PALETTE = ["#4f7cff", "#f2994a", "#27ae60", "#bb6bd9", "#eb5757", "#2d9cdb", "#f2c94c", "#828282"];

  function barChart(box, labels, stacks, opts) {
    const W = 640, H = 170, L = 46, B = 22, T = 8, R = 6;
    const n = labels.length;
    const totals = labels.map((_, i) => stacks.reduce((s, st) => s + (st.values[i] || 0), 0));
    const max = Math.max(...totals, 0) || 1;
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "bars", role: "img", "aria-label": opts.title });
    const y = (v) => T + (H - T - B) * (1 - v / max);
    for (let k = 0; k <= 4; k++) {
      const v = (max * k) / 4;
      chart.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      chart.append(svg("text", { x: L - 4, y: y(v) + 4, class: "axis", "text-anchor": "end" }, opts.fmt(v)));
    }
    const bw = (W - L - R) / n;
    labels.forEach((label, i) => {
      let base = 0;
      stacks.forEach((st, s) => {
        const v = st.values[i] || 0;
        if (v <= 0) return;
        const rect = svg("rect", { x: L + i * bw + 1, y: y(base + v), width: Math.max(1, bw - 2), height: y(base) - y(base + v), fill: PALETTE[s % PALETTE.length] });
        rect.append(svg("title", {}, `${label} · ${st.name}: ${opts.fmt(v)}`));
        chart.append(rect);
        base += v;
      });
      if (i % Math.ceil(n / 8) === 0) chart.append(svg("text", { x: L + i * bw + bw / 2, y: H - 6, class: "axis", "text-anchor": "middle" }, opts.tick(label)));
    });
    box.replaceChildren(chart);
    box.dataset.total = String(totals.reduce((a, b) => a + b, 0));
  }

  async function drawCharts() {
    const box = $("#charts");
    if (!box) return;
    const res = await fetch(box.dataset.src, { credentials: "same-origin" });
    if (!res.ok) return;
    const d = await res.json();
    const hourLabel = (h) => { const t = new Date(h * 1000); return String(t.getHours()).padStart(2, "0") + ":00"; };
    const usd = (v) => "$" + (v >= 100 ? v.toFixed(0) : v >= 1 ? v.toFixed(2) : v.toFixed(3));
    const count = (v) => (Number.isInteger(v) ? String(v) : v.toFixed(1));
    barChart($("#chart-done"), d.hours, d.agents.map((a) => ({ name: a, values: d.done[a] })), { title: "tasks done per hour", fmt: count, tick: hourLabel });
    barChart($("#chart-cost"), d.hours, d.agents.map((a) => ({ name: a, values: d.cost[a] })), { title: "USD per hour by agent", fmt: usd, tick: hourLabel });
    barChart($("#chart-day"), d.days, d.agents.map((a) => ({ name: a, values: d.day_cost[a] })), { title: "USD per day by agent", fmt: usd, tick: (s) => s.slice(5) });
    const legend = $("#chart-legend");
    legend.replaceChildren();
    d.agents.forEach((a, i) => {
      const sw = el("span", { class: "swatch" });
      sw.style.background = PALETTE[i % PALETTE.length];
      legend.append(sw, document.createTextNode(" " + a + "  "));
    });
    // The same words as `ralph stats`: an unknown cost stays unknown, never $0.
    const t = d.totals;
    const n = t.unknown_cost;
    const more = t.cost_usd !== null && n ? ` + ${n} attempt${n === 1 ? "" : "s"} of unknown cost` : "";
    const spent = t.cost_usd === null ? "unknown" : usd(t.cost_usd) + more;
    legend.append(el("span", { class: "dim", id: "chart-total" }, `14-day total ${spent}`));
    box.dataset.drawn = "1";
  }

  // -- dependency graph ------------------------------------------------------------------------
  async function drawGraph() {
    const box = $("#graph");
    if (!box) return;
    const res = await fetch(box.dataset.src, { credentials: "same-origin" });
    if (!res.ok) return;
    const g = await res.json();
    const NW = 200, NH = 40, GX = 70, GY = 26;
    const cols = [g.blockers, [g.center], g.dependents];
    const above = g.ancestors.slice().reverse();
    const rows = Math.max(g.blockers.length, g.dependents.length, 1);
    const pos = {};
    const x0 = 10;
    const yTop = 10 + above.length * (NH + GY);
    cols.forEach((ids, c) => ids.forEach((id, r) => {
      const off = (rows - ids.length) / 2;
      pos[id] = { x: x0 + c * (NW + GX), y: yTop + (r + off) * (NH + GY) };
    }));
    above.forEach((id, r) => { pos[id] = { x: x0 + NW + GX, y: 10 + r * (NH + GY) }; });
    const kidsY = yTop + rows * (NH + GY);
    g.children.forEach((id, r) => { pos[id] = { x: x0 + NW + GX + (r % 2) * 24, y: kidsY + r * (NH + 10) }; });
    const height = kidsY + g.children.length * (NH + 10) + 10;
    const width = x0 + 3 * NW + 2 * GX + 10;
    const s = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "graph", width: width, role: "img", "aria-label": "dependencies" });
    const defs = svg("defs");
    const marker = svg("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }));
    defs.append(marker);
    s.append(defs);
    const link = (a, b, cls) => {
      if (!pos[a] || !pos[b]) return;
      const p = pos[a], q = pos[b];
      let x1, y1, x2, y2;
      if (cls === "parent") { x1 = p.x + 12; y1 = p.y + NH; x2 = q.x; y2 = q.y + NH / 2; }
      else { x1 = p.x + NW; y1 = p.y + NH / 2; x2 = q.x; y2 = q.y + NH / 2; }
      s.append(svg("path", { d: cls === "parent" ? `M ${x1} ${y1} V ${y2} H ${x2}` : `M ${x1} ${y1} C ${x1 + GX / 2} ${y1}, ${x2 - GX / 2} ${y2}, ${x2} ${y2}`, class: "edge e-" + cls, "marker-end": "url(#arrow)" }));
    };
    g.blockers.forEach((b) => link(b, g.center, "blocks"));
    g.dependents.forEach((d) => link(g.center, d, "blocks"));
    for (let i = 0; i < above.length; i++) link(above[i], above[i + 1] || g.center, "parent");
    g.children.forEach((c) => link(g.center, c, "parent"));
    for (const [id, p] of Object.entries(pos)) {
      const node = g.nodes[id];
      const a = svg("a", { href: "/tasks/" + encodeURIComponent(id) });
      a.append(svg("rect", { x: p.x, y: p.y, width: NW, height: NH, rx: 6, class: "node n-" + node.status + (id === g.center ? " center" : "") }));
      a.append(svg("text", { x: p.x + 8, y: p.y + 16, class: "nid" }, id + " · " + node.status));
      const title = node.title.length > 30 ? node.title.slice(0, 29) + "…" : node.title;
      a.append(svg("text", { x: p.x + 8, y: p.y + 32, class: "ntitle" }, title));
      a.append(svg("title", {}, node.title));
      s.append(a);
    }
    if (!g.blockers.length && !g.dependents.length && !g.children.length && !above.length) {
      box.replaceChildren(el("p", { class: "dim" }, "No dependencies, parent or children."));
      return;
    }
    box.replaceChildren(s);
  }

  // -- transcript following ----------------------------------------------------------------------
  let follower = null;
  function followTranscript() {
    if (follower) { follower.close(); follower = null; }
    const box = $("#transcript");
    if (!box || !box.dataset.stream) return;
    const list = $("#turns", box);
    follower = new EventSource(box.dataset.stream);
    follower.addEventListener("turns", (msg) => {
      const data = JSON.parse(msg.data);
      for (const t of data.turns) {
        const li = el("li", { class: "turn t-" + t.kind + (t.is_error ? " err" : "") + " fresh" });
        li.append(el("span", { class: "kind" }, t.tool || t.kind), el("pre", {}, t.text));
        list.append(li);
      }
    });
    follower.addEventListener("end", () => {
      follower.close();
      follower = null;
      setTimeout(() => refreshPart($("#transcript-box")), 300);
    });
  }

  // -- pages ---------------------------------------------------------------------------------------
  wireForms(document);
  tick();
  setInterval(tick, 1000);

  if (page === "overview") {
    const live = $("#live");
    const refresh = debounce(() => refreshPart(live), 100);
    const charts = debounce(drawCharts, 1500);
    drawCharts();
    connect((ev) => {
      if (!ev.reset) addEventRow(ev);
      refresh();
      if (["done", "failed", "released", "reconciled"].includes(ev.kind)) charts();
    });
    // Heartbeats are not events: a worker that died is noticed on this slower beat.
    setInterval(() => refreshPart(live), 10000);
  } else if (page === "tasks") {
    const live = $("#live");
    const refresh = debounce(() => refreshPart(live), 300);
    connect((ev) => { if (ev.task_id || ev.reset) refresh(); });
  } else if (page === "task") {
    const live = $("#live");
    const id = live.dataset.task;
    const pinned = new URLSearchParams(location.search).has("attempt");
    const transcriptBox = $("#transcript-box");
    if (!pinned) transcriptBox.dataset.part = transcriptBox.dataset.part.split("?")[0];
    const refresh = debounce(() => refreshPart(live), 100);
    live.addEventListener("refreshed", () => {
      const head = $("#task-head");
      const tr = $("#transcript");
      const attempts = Number(head.dataset.attempts);
      const shown = tr ? Number(tr.dataset.of) : 0;
      const running = tr && tr.dataset.running === "1";
      if (!pinned && (attempts !== shown || (running && !follower))) refreshPart(transcriptBox);
      drawGraph();
    });
    transcriptBox.addEventListener("refreshed", followTranscript);
    drawGraph();
    followTranscript();
    connect((ev) => { if (ev.task_id === id || ev.reset) refresh(); });
  }
})();
