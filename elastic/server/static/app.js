// elastic dashboard: plain JavaScript, no framework, no build step, nothing from a CDN.
// It polls the orchestrator's read-only JSON routes every REFRESH_MS and redraws in place.
// Everything shown goes through textContent or SVG attributes, never innerHTML: task data
// and errors may contain HTML. The token (when the server has one) is kept in
// sessionStorage and sent as "Authorization: Bearer"; POSTs carry it too, and the
// browser adds Origin, which the server checks against itself.
"use strict";

const REFRESH_MS = 2000;
const TOKEN_KEY = "elastic-token";
const PAGE_SIZE = 50;
const SVG_NS = "http://www.w3.org/2000/svg";
const COLORS = ["#1565c0", "#c62828", "#2e7d32", "#b26a00"];

const state = { before: null, next: null, taskKey: null, refreshing: false };

// -- small helpers --------------------------------------------------------------------

function $(id) { return document.getElementById(id); }

// An element with attributes and children; strings become text nodes (never HTML).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(child == null ? "" : String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function table(headers, rows) {
  if (!rows.length) return el("p", { class: "muted" }, "none");
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

function statusCell(status) { return el("td", { class: "status-" + status }, status); }

function number(value, digits) {
  if (value === null || value === undefined) return "–";
  return Number(value).toFixed(digits === undefined ? 0 : digits);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
}

function ago(iso) {
  if (!iso) return "–";
  return duration((Date.now() - Date.parse(iso)) / 1000) + " ago";
}

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function progressBar(fraction) {
  if (fraction === null || fraction === undefined) return el("span", { class: "muted" }, "–");
  const percent = Math.max(0, Math.min(100, fraction * 100));
  return el("span", {}, el("span", { class: "bar" }, el("span", { style: "width:" + percent.toFixed(1) + "%" })),
    " " + percent.toFixed(0) + "%");
}

function taskLink(taskId) {
  return el("a", { href: "#/task/" + encodeURIComponent(taskId) }, taskId);
}

function replace(id, node) { $(id).replaceChildren(node); }

// -- talking to the server ------------------------------------------------------------

class NeedsToken extends Error {}

async function api(path, options) {
  const headers = { "Accept": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["Authorization"] = "Bearer " + token;
  if (options && options.body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "omit" });
  const body = await response.json().catch(() => ({}));
  if (response.status === 401) throw new NeedsToken(body.error || "token needed");
  if (!response.ok) throw new Error(body.error || response.status + " " + response.statusText);
  return body;
}

function askForToken(message) {
  $("token-form").hidden = false;
  $("connection").textContent = message;
}

// -- the overview ---------------------------------------------------------------------

async function refreshOverview() {
  const [queue, workers, series, failures, providers, tasks] = await Promise.all([
    api("/api/dashboard/queue"), api("/api/dashboard/workers"), api("/api/dashboard/series"),
    api("/api/dashboard/failures?limit=10"), api("/api/providers").catch(() => ({ providers: {} })),
    api(tasksQuery())]);
  drawQueue(queue);
  drawCharts(series.samples);
  drawWorkers(workers.workers);
  drawProviders(providers);
  drawFailures(failures.failures);
  drawTasks(tasks);
}

function drawQueue(queue) {
  const counts = queue.by_status;
  const cards = [["pending", counts.pending], ["running", counts.assigned], ["held", counts.held],
    ["completed", counts.completed], ["failed", counts.failed], ["cancelled", counts.cancelled],
    ["total", counts.total], ["oldest pending", duration(queue.oldest_pending_age_seconds)]];
  replace("queue-cards", el("div", { class: "cards" }, cards.map(([label, value]) =>
    el("div", { class: "card", "data-count": label }, el("div", { class: "value" }, value), el("div", { class: "label" }, label)))));
  const priorities = [...new Set(queue.by_priority.map((c) => c.priority))].sort((a, b) => b - a);
  const statuses = ["pending", "assigned", "held", "completed", "failed", "cancelled"];
  const cell = (status, priority) => {
    const found = queue.by_priority.find((c) => c.status === status && c.priority === priority);
    return el("td", { class: "num" }, found ? found.count : 0);
  };
  replace("priority-table", table(["priority", ...statuses],
    priorities.map((p) => el("tr", {}, el("td", {}, p), statuses.map((s) => cell(s, p))))));
  replace("unservable", queue.unservable.length ? el("div", {}, el("h3", {}, "Work no online worker can run"),
    table(["type", "algorithm", "model", "tasks", "why"], queue.unservable.map((u) => el("tr", {},
      el("td", {}, u.type), el("td", {}, u.algorithm || "–"), el("td", {}, u.model || "–"),
      el("td", { class: "num" }, u.count), el("td", { class: "error" }, u.reason))))) : el("span"));
}

function drawWorkers(workers) {
  replace("workers-table", table(["worker", "type", "state", "offers", "running", "success", "last heartbeat"],
    workers.map((w) => el("tr", {},
      el("td", {}, w.worker_id), el("td", {}, w.worker_type), statusCell(w.status),
      el("td", {}, [...w.task_types, ...w.algorithms, ...w.models].join(", ")),
      el("td", {}, w.running.length ? w.running.map((t) => el("div", {}, taskLink(t.task_id), " ", progressBar(t.progress)))
        : el("span", { class: "muted" }, w.active_tasks + "/" + w.capacity)),
      el("td", { class: "num" }, number(w.success_rate * 100, 0) + "%"),
      el("td", {}, ago(w.last_heartbeat))))));
}

// One row per provider (keyless budget) and per API key fingerprint: what is left of each limit.
function drawProviders(answer) {
  const rows = [];
  for (const [name, budget] of Object.entries(answer.providers || {})) {
    rows.push(budgetRow(name, "", budget));
    for (const [keyId, keyBudget] of Object.entries(budget.keys || {})) rows.push(budgetRow(name, keyId, keyBudget));
  }
  replace("providers-table", table(["provider", "key", "left", "paused until"], rows));
}

function budgetRow(name, keyId, budget) {
  const left = Object.keys(budget).filter((k) => k.startsWith("remaining_") && budget[k] !== null)
    .map((k) => k.replace("remaining_", "").replaceAll("_", " ") + ": " + budget[k] + " of " + budget[k.replace("remaining_", "")]);
  return el("tr", {}, el("td", {}, name), el("td", {}, keyId ? keyId.slice(0, 12) : "–"),
    el("td", {}, left.length ? left.join(", ") : "no limit"),
    el("td", { class: budget.cooldown_until ? "error" : "" },
      budget.cooldown_until ? new Date(budget.cooldown_until * 1000).toLocaleTimeString() : "–"));
}

function drawFailures(failures) {
  replace("failures-table", table(["task", "type", "state", "ended", "error", "attempts"],
    failures.map((t) => el("tr", {}, el("td", {}, taskLink(t.task_id)), el("td", {}, t.type), statusCell(t.status),
      el("td", {}, ago(t.finished_at)), el("td", { class: "error" }, t.error || ""),
      el("td", {}, t.history.map((a) => el("div", {}, "#" + a.attempt + " " + a.worker_id + ": " + a.outcome +
        (a.error && a.error !== t.error ? " (" + a.error + ")" : ""))))))));
}

function tasksQuery() {
  const params = new URLSearchParams({ limit: PAGE_SIZE });
  if ($("filter-status").value) params.append("status", $("filter-status").value);
  if ($("filter-type").value.trim()) params.append("type", $("filter-type").value.trim());
  if (state.before) params.append("before", state.before);
  return "/api/tasks?" + params;
}

function drawTasks(answer) {
  state.next = answer.next;
  $("page-older").disabled = !answer.next;
  replace("tasks-table", table(["task", "type", "state", "priority", "progress", "attempts", "submitted", "description"],
    answer.tasks.map((t) => el("tr", { "data-task-id": t.task_id }, el("td", {}, taskLink(t.task_id)),
      el("td", {}, t.type), statusCell(t.status), el("td", { class: "num" }, t.priority),
      el("td", {}, progressBar(t.status === "completed" ? 1 : t.progress)), el("td", { class: "num" }, t.attempts),
      el("td", {}, ago(t.created_at)), el("td", {}, t.description || "")))));
}

// -- charts drawn by hand in SVG --------------------------------------------------------

function lineChart(lines, options) {
  const width = 360, height = 150, left = 44, bottom = 20, top = 8;
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  const points = lines.flatMap((line) => line.points.filter(([, y]) => y !== null));
  if (!points.length) {
    const empty = svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle", fill: "#6b7280" });
    empty.textContent = "no data yet";
    chart.append(empty);
    return chart;
  }
  const xs = points.map(([x]) => x), ys = points.map(([, y]) => y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs, Math.min(...xs) + 1)];
  const y1 = Math.max(...ys, options.minTop === undefined ? 1 : options.minTop) * 1.1;
  const sx = (x) => left + ((x - x0) / (x1 - x0)) * (width - left - 4);
  const sy = (y) => height - bottom - (y / y1) * (height - bottom - top);
  chart.append(svg("line", { x1: left, y1: sy(0), x2: width - 4, y2: sy(0), stroke: "#999" }));
  chart.append(svg("line", { x1: left, y1: top, x2: left, y2: sy(0), stroke: "#999" }));
  for (const [value, y] of [[y1, top + 8], [0, sy(0)]]) {
    const label = svg("text", { x: left - 4, y, "text-anchor": "end", "font-size": 10, fill: "#6b7280" });
    label.textContent = options.format(value);
    chart.append(label);
  }
  const span = svg("text", { x: width - 4, y: height - 4, "text-anchor": "end", "font-size": 10, fill: "#6b7280" });
  span.textContent = options.xLabel(x1 - x0);
  chart.append(span);
  lines.forEach((line, index) => {
    const shown = line.points.filter(([, y]) => y !== null).map(([x, y]) => sx(x).toFixed(1) + "," + sy(y).toFixed(1));
    chart.append(svg("polyline", { points: shown.join(" "), fill: "none", stroke: COLORS[index], "stroke-width": 1.6 }));
  });
  return chart;
}

function legend(lines) {
  return el("div", { class: "legend" }, lines.map((line, index) =>
    el("span", { style: "color:" + COLORS[index] }, "■ " + line.name)));
}

function chartWithLegend(lines, options) {
  return el("div", {}, lineChart(lines, options), legend(lines));
}

function drawCharts(samples) {
  const minutes = (seconds) => "last " + duration(seconds);
  const pick = (key) => samples.map((s) => [s.at, s[key]]);
  replace("chart-throughput", chartWithLegend([{ name: "ended/min", points: pick("ended_per_minute") }],
    { format: (v) => v.toFixed(1), xLabel: minutes }));
  replace("chart-latency", chartWithLegend([{ name: "run", points: pick("mean_run_seconds") },
    { name: "submit to end", points: pick("mean_latency_seconds") }], { format: (v) => v.toFixed(1) + "s", xLabel: minutes, minTop: 0 }));
  replace("chart-depth", chartWithLegend([{ name: "pending", points: pick("pending") },
    { name: "running", points: pick("running") }], { format: (v) => v.toFixed(0), xLabel: minutes }));
}

// -- one task's page ------------------------------------------------------------------

function currentTaskId() {
  const match = location.hash.match(/^#\/task\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

// A task's page asks for the light summary every tick and for the whole task (data,
// result with its series and snapshots, attempts) only when the summary changed.
async function refreshTask(taskId) {
  const summary = (await api("/api/tasks?limit=1&id=" + encodeURIComponent(taskId))).tasks[0];
  if (!summary) throw new Error("no task " + taskId);
  const key = [taskId, summary.status, summary.attempts, summary.progress, summary.finished_at].join("|");
  if (key === state.taskKey) return;
  const task = await api("/api/tasks/status/" + encodeURIComponent(taskId));
  state.taskKey = key;
  drawTask(task);
}

function drawTask(task) {
  $("task-title").textContent = "Task " + task.task_id;
  $("cancel-button").disabled = !["pending", "assigned", "held"].includes(task.status);
  $("retry-button").disabled = !["failed", "cancelled"].includes(task.status);
  const fields = [["state", task.status], ["type", task.type], ["priority", task.priority],
    ["worker", task.assigned_to || "–"], ["attempts", task.attempts], ["submitted", when(task.created_at)],
    ["started", when(task.started_at)], ["ended", when(task.finished_at)], ["description", task.description || "–"],
    ["error", task.error || "–"], ["why it waits", task.unservable || "–"]];
  replace("task-fields", el("table", {}, el("tbody", {}, fields.map(([name, value]) =>
    el("tr", {}, el("th", {}, name), name === "state" ? statusCell(value) : el("td", {}, value))))));
  replace("task-progress", task.status === "assigned" ? el("p", {}, "progress ", progressBar(task.progress),
    " · ETA ", duration(eta(task))) : el("span"));
  replace("task-attempts", table(["#", "worker", "started", "ended", "outcome", "error"],
    task.history.map((a) => el("tr", {}, el("td", {}, a.attempt), el("td", {}, a.worker_id), el("td", {}, when(a.started_at)),
      el("td", {}, when(a.ended_at)), statusCell(a.outcome), el("td", { class: "error" }, a.error || "")))));
  $("task-data").textContent = JSON.stringify(task.data, null, 2);
  $("task-result").textContent = JSON.stringify(shownResult(task.result), null, 2);
  drawSimulation(task.result);
}

// Seconds left, from the time the attempt has run and the fraction it reported done.
function eta(task) {
  if (!task.started_at || !task.progress || task.progress <= 0 || task.progress >= 1) return null;
  const elapsed = (Date.now() - Date.parse(task.started_at)) / 1000;
  return elapsed * (1 - task.progress) / task.progress;
}

// The result without the encoded snapshots (drawn below instead of printed).
function shownResult(result) {
  if (!result || !result.snapshots) return result;
  return { ...result, snapshots: result.snapshots.map((s) => ({ step: s.step, encoding: s.encoding, particles: "…" })) };
}

function drawSimulation(result) {
  const parts = [];
  const series = result && result.series;
  if (series && series.step) {
    const along = (key) => series.step.map((step, i) => [step, series[key] ? series[key][i] : null]);
    const energy = ["kinetic_energy", "potential_energy", "total_energy"].map((key) => ({ name: key.replace("_", " "), points: along(key) }));
    parts.push(el("figure", {}, el("figcaption", {}, "Energy against step"), signedChart(energy)));
    parts.push(el("figure", {}, el("figcaption", {}, "Temperature against step"),
      signedChart([{ name: "temperature", points: along("temperature") }])));
  }
  const snapshots = result && result.snapshots;
  if (snapshots && snapshots.length && result.box_length) {
    const last = snapshots[snapshots.length - 1];
    parts.push(el("figure", {}, el("figcaption", {}, "Particles at step " + last.step + " (colour: speed)"),
      particleCanvas(last, result.box_length)));
  }
  replace("task-simulation", el("div", { class: "charts" }, parts));
}

// A line chart whose values may be negative (energies): shifted to start at zero, labelled with the real values.
function signedChart(lines) {
  const values = lines.flatMap((l) => l.points.map(([, y]) => y)).filter((y) => y !== null);
  const low = Math.min(...values, 0);
  const shifted = lines.map((l) => ({ name: l.name, points: l.points.map(([x, y]) => [x, y === null ? null : y - low]) }));
  return chartWithLegend(shifted, { format: (v) => (v + low).toFixed(2), xLabel: (steps) => steps + " steps", minTop: 0 });
}

function decodeFloats(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const view = new DataView(bytes.buffer);
  return Array.from({ length: bytes.length / 4 }, (_, i) => view.getFloat32(i * 4, true));
}

function particleCanvas(snapshot, boxLength) {
  const size = 300;
  const canvas = el("canvas", { width: size, height: size });
  if (snapshot.encoding !== "float32-le-base64") return el("p", { class: "muted" }, "unknown snapshot encoding");
  const positions = decodeFloats(snapshot.positions), speeds = decodeFloats(snapshot.speeds);
  const top = Math.max(...speeds, 1e-9);
  const context = canvas.getContext("2d");
  context.fillStyle = "#fff";
  context.fillRect(0, 0, size, size);
  const radius = Math.max(0.6, Math.min(4, 150 / Math.sqrt(speeds.length)));
  speeds.forEach((speed, i) => {
    context.fillStyle = `hsl(${240 - 240 * (speed / top)}, 70%, 45%)`;
    context.beginPath();
    context.arc(positions[2 * i] / boxLength * size, size - positions[2 * i + 1] / boxLength * size, radius, 0, 2 * Math.PI);
    context.fill();
  });
  return canvas;
}

async function act(action) {
  const taskId = currentTaskId();
  try {
    const answer = await api("/api/tasks/" + encodeURIComponent(taskId) + "/" + action, { method: "POST", body: "{}" });
    $("action-message").textContent = action + ": task is " + answer.status;
  } catch (error) {
    $("action-message").textContent = action + " refused: " + error.message;
  }
  state.taskKey = null;
  refresh();
}

// -- the loop -------------------------------------------------------------------------

async function refresh() {
  if (state.refreshing) return;
  state.refreshing = true;
  const taskId = currentTaskId();
  $("overview").hidden = taskId !== null;
  $("task-page").hidden = taskId === null;
  try {
    await (taskId === null ? refreshOverview() : refreshTask(taskId));
    $("connection").textContent = "updated " + new Date().toLocaleTimeString();
    $("token-form").hidden = true;
  } catch (error) {
    if (error instanceof NeedsToken) askForToken("this orchestrator needs its token");
    else $("connection").textContent = "not updated: " + error.message;
  } finally {
    state.refreshing = false;
  }
}

function start() {
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    refresh();
  });
  $("token-button").addEventListener("click", () => { $("token-form").hidden = !$("token-form").hidden; });
  $("task-filter").addEventListener("submit", (event) => { event.preventDefault(); state.before = null; refresh(); });
  $("page-newest").addEventListener("click", () => { state.before = null; refresh(); });
  $("page-older").addEventListener("click", () => { if (state.next) { state.before = state.next; refresh(); } });
  $("cancel-button").addEventListener("click", () => act("cancel"));
  $("retry-button").addEventListener("click", () => act("retry"));
  window.addEventListener("hashchange", () => { $("action-message").textContent = ""; state.taskKey = null; refresh(); });
  refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
