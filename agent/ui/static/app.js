// spearlet's dashboard. It reads the agent over the page's own origin
// only: /ui/events (a snapshot every second) and, for the log pane,
// /v1/instances/{id}/logs?follow=true. Both are server-sent event streams,
// read with fetch so that the requests carry whatever credentials the page
// itself was loaded with; no token ever goes into a URL. Everything from
// the agent is put into the page as text, never as markup.
"use strict";

const HISTORY = 120; // chart points: two minutes of one-second snapshots
const MAX_LOG_LINES = 1000;

const state = {
  history: new Map(), // function -> [{p50, p99}] (null where nothing ended)
  lastInvocations: new Map(), // function -> count at the previous snapshot
  lastRequests: new Map(), // instance -> request count at the previous snapshot
  lastTime: 0,
  selected: "", // the instance whose output the log pane follows
  logAbort: null,
};

// readEvents reads server-sent events from url until the stream ends,
// calling onEvent(name, data) for each.
async function readEvents(url, onEvent, signal) {
  const resp = await fetch(url, {
    headers: { Accept: "text/event-stream" },
    credentials: "same-origin",
    cache: "no-store",
    signal,
  });
  if (!resp.ok) {
    throw new Error(`${resp.status} ${(await resp.text()).trim()}`);
  }
  const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  let event = "";
  let data = [];
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let nl;
    while ((nl = buf.indexOf("\n")) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith("\r")) line = line.slice(0, -1);
      if (line === "") {
        if (data.length > 0) onEvent(event || "message", data.join("\n"));
        event = "";
        data = [];
        continue;
      }
      if (line.startsWith(":")) continue; // a comment (keepalive)
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let v = colon < 0 ? "" : line.slice(colon + 1);
      if (v.startsWith(" ")) v = v.slice(1);
      if (field === "event") event = v;
      else if (field === "data") data.push(v);
    }
  }
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function cell(field, value, cls) {
  return el("td", { "data-field": field, class: cls }, value);
}

function badge(stateName, text) {
  return el("span", { class: "badge", "data-state": stateName }, text || stateName);
}

function ms(v) {
  if (v === null || v === undefined) return "–";
  if (v < 1) return `${(v * 1000).toFixed(0)}µs`;
  if (v < 1000) return `${v < 10 ? v.toFixed(2) : v.toFixed(1)}ms`;
  return `${(v / 1000).toFixed(2)}s`;
}

function nsToMs(ns) {
  return ns / 1e6;
}

function duration(seconds) {
  if (seconds < 60) return `${Math.floor(seconds)}s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)}m ${Math.floor(seconds % 60)}s`;
  if (seconds < 172800) return `${Math.floor(seconds / 3600)}h ${Math.floor((seconds % 3600) / 60)}m`;
  return `${Math.floor(seconds / 86400)}d`;
}

function rate(map, key, count, dt) {
  const last = map.get(key);
  map.set(key, count);
  if (last === undefined || dt <= 0) return null;
  return Math.max(0, count - last) / dt;
}

function perSecond(v) {
  return v === null ? "–" : v < 10 ? v.toFixed(1) : v.toFixed(0);
}

// chart draws a function's p50 and p99 over the last HISTORY snapshots.
function chart(points) {
  const w = 280;
  const h = 48;
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", w);
  svg.setAttribute("height", h);
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const top = Math.max(0.001, ...points.filter(Boolean).map((p) => p.p99));
  const x = (i) => (i * (w - 2)) / (HISTORY - 1) + 1;
  const y = (v) => h - 3 - (v / top) * (h - 14);
  for (const key of ["p99", "p50"]) {
    let d = "";
    let pen = false;
    points.forEach((p, i) => {
      if (!p) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(i + HISTORY - points.length).toFixed(1)} ${y(p[key]).toFixed(1)} `;
      pen = true;
    });
    const path = document.createElementNS(ns, "path");
    path.setAttribute("class", key);
    path.setAttribute("d", d.trim() || "M0 0");
    svg.append(path);
  }
  const label = document.createElementNS(ns, "text");
  label.setAttribute("class", "axis");
  label.setAttribute("x", 2);
  label.setAttribute("y", 9);
  label.textContent = points.some(Boolean) ? `max ${ms(top)}` : "no invocations yet";
  svg.append(label);
  return svg;
}

// retryIn says when a function's next start is tried: "in 12s", "now".
function retryIn(next, now) {
  if (!next) return "";
  const s = (Date.parse(next) - now) / 1000;
  return s > 0 ? `in ${duration(s)}` : "now";
}

function renderFunctions(snap, dt) {
  const body = document.querySelector("#functions tbody");
  const now = Date.parse(snap.time);
  const ejected = new Map(); // function -> its instances that outlier ejection keeps out
  for (const inst of snap.instances) {
    if (inst.health === "ejected") ejected.set(inst.function, (ejected.get(inst.function) || 0) + 1);
  }
  const rows = snap.functions.map((f) => {
    const hist = state.history.get(f.name) || [];
    hist.push(f.window.count > 0 ? { p50: f.window.p50_ms, p99: f.window.p99_ms } : null);
    while (hist.length > HISTORY) hist.shift();
    state.history.set(f.name, hist);
    const rps = rate(state.lastInvocations, f.name, f.invocations, dt);
    const latest = hist.findLast(Boolean); // the last second with invocations
    const health = el("td", { "data-field": "health" }, badge(f.health));
    if (f.health_reason) health.append(el("span", { class: "reason" }, f.health_reason));
    if (f.next_retry) health.append(el("span", { class: "reason" }, `next retry ${retryIn(f.next_retry, now)}`));
    const instances = el("td", { "data-field": "instances", class: "num" }, `${f.ready}/${f.instances}`);
    const out = ejected.get(f.name) || 0;
    if (out > 0) instances.append(el("span", { class: "reason", "data-field": "ejected" }, `${out} ejected`));
    const legend = el("span", { class: "legend" }, el("span", { class: "legend-p99" }, "p99"), el("span", { class: "legend-p50" }, "p50"));
    const chartCell = el("td", { "data-field": "chart" }, el("div", { class: "chartbox" }, chart(hist), legend));
    return el(
      "tr",
      { "data-function": f.name, "data-health": f.health },
      cell("name", f.name),
      cell("runtime", f.runtime),
      health,
      instances,
      cell("in_flight", f.in_flight, "num"),
      cell("queued", f.queued, "num"),
      cell("rps", perSecond(rps), "num"),
      cell("p50", latest ? ms(latest.p50) : "–", "num"),
      cell("p99", latest ? ms(latest.p99) : "–", "num"),
      cell("restarts", f.restarts, "num"),
      cell("last_error", f.last_error || "–", "wrap"),
      chartCell,
    );
  });
  body.replaceChildren(...rows);
}

function renderInstances(snap, dt) {
  const body = document.querySelector("#instances tbody");
  const now = Date.parse(snap.time);
  const rows = snap.instances.map((inst) => {
    const lat = inst.stats.latency || {};
    const count = lat.count || 0;
    const live = inst.status !== "stopped";
    const rps = live ? rate(state.lastRequests, inst.id, count, dt) : null;
    let status = inst.status;
    if (live && !inst.connected && status === "running") status = "disconnected";
    const where = inst.pid ? String(inst.pid) : inst.pod || "–";
    const uptime = live ? duration((now - Date.parse(inst.created)) / 1000) : "–";
    const lastError = inst.last_error || (live ? "" : inst.reason || "");
    const row = el(
      "tr",
      { "data-instance": inst.id, "data-function": inst.function, "data-status": inst.status },
      cell("id", inst.id),
      cell("function", inst.function),
      el("td", { "data-field": "status" }, badge(status)),
      standing(inst),
      cell("where", where),
      cell("transport", inst.channel),
      cell("uptime", uptime, "num"),
      cell("requests", count, "num"),
      cell("rps", perSecond(rps), "num"),
      cell("p50", count ? ms(nsToMs(lat.p50_ns)) : "–", "num"),
      cell("p99", count ? ms(nsToMs(lat.p99_ns)) : "–", "num"),
      cell("in_flight", inst.in_flight, "num"),
      cell("restarts", inst.restarts, "num"),
      cell("last_error", lastError || "–", "wrap"),
    );
    if (inst.id === state.selected) row.classList.add("selected");
    row.addEventListener("click", () => follow(inst.id));
    return row;
  });
  body.replaceChildren(...rows);
}

// standing is an instance's cell for its standing with outlier ejection:
// ok, ejected (until when, why) or probation.
function standing(inst) {
  const td = el("td", { "data-field": "health" });
  if (!inst.health) {
    td.append("–");
    return td;
  }
  td.append(badge(inst.health));
  if (inst.health_reason) td.append(el("span", { class: "reason" }, inst.health_reason));
  return td;
}

function render(snap) {
  const t = Date.parse(snap.time) / 1000;
  const dt = state.lastTime ? t - state.lastTime : 0;
  state.lastTime = t;
  const ready = snap.draining ? "shutting down" : snap.ready ? "ready" : "not ready";
  const r = document.getElementById("ready");
  r.textContent = ready;
  r.dataset.state = ready;
  document.getElementById("updated").textContent = `updated ${new Date(snap.time).toLocaleTimeString()}`;
  renderFunctions(snap, dt);
  renderInstances(snap, dt);
}

// follow shows the output of instance id in the log pane, live.
function follow(id) {
  if (state.logAbort) state.logAbort.abort();
  state.selected = id;
  for (const tr of document.querySelectorAll("#instances tbody tr")) {
    tr.classList.toggle("selected", tr.dataset.instance === id);
  }
  const pane = document.getElementById("logs");
  const lines = document.getElementById("logs-lines");
  const status = document.getElementById("logs-state");
  pane.hidden = false;
  document.getElementById("logs-instance").textContent = id;
  lines.replaceChildren();
  status.textContent = "following…";
  const abort = new AbortController();
  state.logAbort = abort;
  const url = `/v1/instances/${encodeURIComponent(id)}/logs?follow=true&lines=200`;
  readEvents(
    url,
    (event, data) => {
      if (event === "end") {
        status.textContent = "(the instance stopped)";
        return;
      }
      if (event === "error") {
        status.textContent = `(error: ${data})`;
        return;
      }
      const atBottom = lines.scrollTop + lines.clientHeight >= lines.scrollHeight - 4;
      lines.append(document.createTextNode(data + "\n"));
      while (lines.childNodes.length > MAX_LOG_LINES) lines.firstChild.remove();
      if (atBottom) lines.scrollTop = lines.scrollHeight;
    },
    abort.signal,
  ).catch((err) => {
    if (!abort.signal.aborted) status.textContent = `(${err.message})`;
  });
}

// watch keeps the page current, reconnecting when the stream drops.
async function watch() {
  for (;;) {
    try {
      await readEvents("/ui/events", (event, data) => {
        if (event === "snapshot") render(JSON.parse(data));
      });
    } catch (err) {
      const r = document.getElementById("ready");
      r.textContent = `disconnected: ${err.message}`;
      r.dataset.state = "disconnected";
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

watch();
