// The Skywire hypervisor dashboard: plain JS, no framework, every asset from this visor.
// Polls the REST under /api; the latency chart is built from those polls and kept here.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 2000;
const HISTORY = 120; // points kept per transport
const COLORS = ["#2456d6", "#d92d20", "#1a7f4b", "#b54708", "#7a5af8", "#0e9384", "#c11574"];
const RULE_TYPES = {0: "consume", 1: "forward", 2: "intermediary forward"};

const state = {
  selected: null, // the pk shown
  openLog: null, // the app whose log is shown
  series: new Map(), // "<visor pk>/<transport id>" -> [{t, ms}]
  typesOf: null, // the visor whose transport types fill the select
  timer: null,
  busy: false,
};

const $ = (id) => document.getElementById(id);
let terminal = null; // the TermPanel (term.js), made at start

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(method, path, body) {
  const headers = {Accept: "application/json"};
  if (method !== "GET") {
    const token = await fetch("/api/csrf", {credentials: "same-origin"}).then((r) => r.json());
    headers["X-CSRF-Token"] = token.csrf_token;
    headers["Content-Type"] = "application/json";
  }
  const resp = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  let doc = null;
  try {
    doc = text ? JSON.parse(text) : null;
  } catch (_) {
    doc = null;
  }
  if (!resp.ok) {
    const message = (doc && doc.error) || resp.statusText;
    if (resp.status === 401 && path !== "/api/login" && document.body.dataset.state === "dashboard") {
      showLogin(true, "Your session ended: log in again.");
    }
    throw new ApiError(resp.status, message);
  }
  return doc;
}

function showError(what, err) {
  const box = $("error");
  box.textContent = err ? `${what} (${err.status || "error"}): ${err.message}` : what;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function short(pk) {
  return pk ? `${pk.slice(0, 8)}…${pk.slice(-4)}` : "";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) node.append(child);
  return node;
}

function fillRows(tbody, rows, columns, empty) {
  tbody.replaceChildren();
  if (!rows.length) {
    tbody.append(el("tr", {class: "empty"}, el("td", {colSpan: columns, text: empty})));
  }
  for (const row of rows) tbody.append(row);
}

function duration(seconds) {
  if (seconds == null) return "";
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), "d"], [Math.floor(s / 3600) % 24, "h"],
                 [Math.floor(s / 60) % 60, "m"], [s % 60, "s"]];
  return parts.filter(([n], i) => n || i === 3).map(([n, u]) => `${n}${u}`).join(" ");
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

function ms(value) {
  return value == null ? "—" : `${Number(value).toFixed(1)} ms`;
}

// ------------------------------------------------------------------ login

function showLogin(exists, hint) {
  stopPolling();
  if (terminal) terminal.close("logged out");
  document.body.dataset.state = exists ? "login" : "create";
  $("dashboard").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-title").textContent = exists ? "Log in" : "Create the admin account";
  $("login-submit").textContent = exists ? "Log in" : "Create account";
  $("login-hint").textContent = hint || (exists ? "" :
    "First run: choose a password (6-64 characters, with upper and lower case, a digit and a symbol).");
  $("login-form").dataset.mode = exists ? "login" : "create";
}

async function submitLogin(event) {
  event.preventDefault();
  const form = event.target;
  const creds = {username: form.username.value, password: form.password.value};
  clearError();
  try {
    if (form.dataset.mode === "create") await api("POST", "/api/create-account", creds);
    await api("POST", "/api/login", creds);
  } catch (err) {
    showError("Login refused", err);
    return;
  }
  form.password.value = "";
  await showDashboard();
}

async function logout() {
  try {
    await api("POST", "/api/logout");
  } catch (err) {
    showError("Logout failed", err);
  }
  showLogin(true, "Logged out.");
}

// ------------------------------------------------------------------ dashboard

async function showDashboard() {
  const about = await api("GET", "/api/about");
  $("me").textContent = `hypervisor ${short(about.public_key)}`;
  $("me").dataset.pk = about.public_key;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  $("logout").hidden = false;
  document.body.dataset.state = "dashboard";
  state.selected = state.selected || about.public_key;
  await refresh();
  startPolling();
}

function startPolling() {
  stopPolling();
  state.timer = setInterval(refresh, POLL_MS);
}

function stopPolling() {
  if (state.timer !== null) clearInterval(state.timer);
  state.timer = null;
}

async function refresh() {
  if (state.busy || document.body.dataset.state !== "dashboard") return;
  state.busy = true;
  try {
    await refreshVisors();
    if (state.selected) await refreshVisor(state.selected);
    document.body.dataset.refreshed = String(Date.now());
  } catch (err) {
    if (err.status !== 401) showError("Refresh failed", err);
  } finally {
    state.busy = false;
  }
}

async function refreshVisors() {
  const visors = await api("GET", "/api/visors");
  const list = $("visors");
  if (!visors.some((v) => v.pk === state.selected)) state.selected = visors.length ? visors[0].pk : null;
  list.replaceChildren(...visors.map((v) => {
    const li = el("li", {"data-pk": v.pk, class: v.pk === state.selected ? "selected" : "",
                         title: v.pk},
      el("span", {class: "dot"}), el("span", {class: "key", text: short(v.pk)}));
    if (v.is_hypervisor) li.append(el("span", {class: "tag", text: "this hypervisor"}));
    const sub = v.error ? `unreachable: ${v.error}` :
      `${v.version || ""} · up ${duration(v.uptime_s)} · ${v.transports ?? 0} transports`;
    li.append(el("span", {class: "sub", text: sub}));
    li.addEventListener("click", () => select(v.pk));
    return li;
  }));
  list.dataset.count = String(visors.length);
}

async function select(pk) {
  if (terminal && terminal.pk !== pk) terminal.close(`${short(pk)} selected: open a shell there`);
  state.selected = pk;
  state.openLog = null;
  $("app-log").textContent = "";
  $("app-log-title").textContent = "";
  for (const li of $("visors").children) li.classList.toggle("selected", li.dataset.pk === pk);
  await refreshVisor(pk);
}

function base(pk) {
  return `/api/visors/${pk}`;
}

async function refreshVisor(pk) {
  const [summary, transports, rules, groups, apps, log] = await Promise.all([
    api("GET", `${base(pk)}/summary`),
    api("GET", `${base(pk)}/transports`),
    api("GET", `${base(pk)}/routes`),
    api("GET", `${base(pk)}/routegroups`),
    api("GET", `${base(pk)}/apps`).catch((err) => (err.status === 404 ? null : Promise.reject(err))),
    api("GET", `${base(pk)}/runtime-logs?n=200`),
  ]);
  if (pk !== state.selected) return;
  renderOverview(summary);
  renderTransports(pk, transports);
  renderRoutes(rules, groups);
  renderApps(apps);
  $("visor-log-source").textContent = `from ${log.source}`;
  $("visor-log").textContent = log.lines.join("\n");
  if (state.openLog) await showAppLog(state.openLog, false);
  $("visor").dataset.pk = pk;
}

function renderOverview(summary) {
  const info = summary.overview;
  $("ov-pk").textContent = info.pk;
  $("ov-version").textContent = info.version;
  $("ov-uptime").textContent = duration(info.uptime_s);
  $("ov-types").textContent = (info.transport_types || []).join(", ");
  fillRows($("dmsg").tBodies[0], summary.dmsg.map((s) => el("tr", {"data-server": s.server},
    el("td", {class: "key", text: s.server}), el("td", {class: "num", text: ms(s.latency_ms)}))),
  2, "no dmsg session");
  const select = document.forms["add-transport"].type;
  if (state.typesOf !== info.pk) {
    state.typesOf = info.pk;
    select.replaceChildren(...(info.transport_types || []).map((t) => el("option", {value: t, text: t})));
  }
}

function renderTransports(pk, transports) {
  const now = Date.now();
  fillRows($("transports").tBodies[0], transports.map((tp) => {
    const key = `${pk}/${tp.id}`;
    const points = state.series.get(key) || [];
    if (tp.latency_ms != null) points.push({t: now, ms: tp.latency_ms});
    state.series.set(key, points.slice(-HISTORY));
    const remove = el("button", {type: "button", class: "remove", text: "Remove"});
    remove.addEventListener("click", () => removeTransport(pk, tp.id));
    return el("tr", {"data-id": tp.id, "data-remote": tp.remote_pk},
      el("td", {class: "key", text: tp.id.slice(0, 8)}),
      el("td", {class: "key remote", text: tp.remote_pk}),
      el("td", {class: "type", text: tp.type}),
      el("td", {class: "num latency", text: ms(tp.latency_ms)}),
      el("td", {class: "num sent", text: bytes(tp.sent)}),
      el("td", {class: "num received", text: bytes(tp.received)}),
      el("td", {}, remove));
  }), 7, "no transports");
  drawChart(pk, transports);
}

function drawChart(pk, transports) {
  const svg = $("chart");
  const NS = "http://www.w3.org/2000/svg";
  const [W, H, PAD] = [640, 180, 28];
  const lines = transports.map((tp) => [tp, state.series.get(`${pk}/${tp.id}`) || []]);
  const all = lines.flatMap(([, pts]) => pts);
  svg.replaceChildren();
  const legend = $("legend");
  legend.replaceChildren();
  const svgEl = (tag, attrs) => {
    const node = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  };
  svg.append(svgEl("line", {class: "axis", x1: PAD, y1: H - PAD, x2: W - 4, y2: H - PAD}));
  svg.append(svgEl("line", {class: "axis", x1: PAD, y1: 4, x2: PAD, y2: H - PAD}));
  if (!all.length) {
    const text = svgEl("text", {x: W / 2, y: H / 2, "text-anchor": "middle"});
    text.textContent = "no latency measured yet";
    svg.append(text);
    svg.dataset.points = "0";
    return;
  }
  const t0 = Math.min(...all.map((p) => p.t));
  const t1 = Math.max(...all.map((p) => p.t), t0 + 1);
  const top = Math.max(...all.map((p) => p.ms), 1) * 1.15;
  const x = (t) => PAD + ((t - t0) / (t1 - t0)) * (W - PAD - 8);
  const y = (v) => H - PAD - (v / top) * (H - PAD - 8);
  const label = (text, attrs) => {
    const node = svgEl("text", attrs);
    node.textContent = text;
    svg.append(node);
  };
  label(`${top.toFixed(1)} ms`, {x: 2, y: 12});
  label("0", {x: 2, y: H - PAD});
  label(`${Math.round((t1 - t0) / 1000)} s`, {x: W - 30, y: H - 10});
  lines.forEach(([tp, pts], i) => {
    const color = COLORS[i % COLORS.length];
    if (pts.length) {
      const d = pts.map((p) => `${x(p.t).toFixed(1)},${y(p.ms).toFixed(1)}`).join(" ");
      svg.append(svgEl("polyline", {points: pts.length > 1 ? d : `${d} ${d}`, fill: "none",
                                    stroke: color, "stroke-width": 2, "data-id": tp.id}));
    }
    const swatch = el("span", {class: "swatch"});
    swatch.style.background = color; // CSSOM: allowed under the page's CSP
    legend.append(el("li", {"data-id": tp.id}, swatch, `${tp.type} → ${short(tp.remote_pk)}`));
  });
  svg.dataset.points = String(all.length);
}

function renderRoutes(rules, groups) {
  fillRows($("rules").tBodies[0], rules.map((r) => el("tr", {},
    el("td", {text: String(r.key ?? r.key_route_id)}),
    el("td", {text: RULE_TYPES[r.rule_type] || String(r.rule_type)}),
    el("td", {class: "key", text: JSON.stringify(r.app_fields || r.forward_fields || r.intermediary_forward_fields || {})}))),
  3, "no rules");
  fillRows($("routegroups").tBodies[0], groups.map((g) => el("tr", {},
    el("td", {class: "key", text: g.remote_pk}), el("td", {text: String(g.hops ?? "")}),
    el("td", {text: g.encrypted ? "yes" : "no"}), el("td", {class: "num", text: ms(g.latency_ms)}))),
  4, "no route groups");
}

function renderApps(apps) {
  const section = $("apps-section");
  section.dataset.apps = apps === null ? "none" : String(apps.length);
  fillRows($("apps").tBodies[0], (apps || []).map((a) => {
    const running = ["running", "starting", "restarting"].includes(a.state);
    const toggle = el("button", {type: "button", class: running ? "stop" : "start",
                                 text: running ? "Stop" : "Start"});
    toggle.addEventListener("click", () => setApp(a.name, {status: running ? 0 : 1}));
    const auto = el("input", {type: "checkbox", class: "autostart", checked: a.auto_start});
    auto.addEventListener("change", () => setApp(a.name, {autostart: auto.checked}));
    const logs = el("button", {type: "button", class: "logs", text: "Log"});
    logs.addEventListener("click", () => showAppLog(a.name, true));
    return el("tr", {"data-app": a.name, "data-state": a.state},
      el("td", {class: "name", text: a.name}),
      el("td", {class: `state state-${a.state}`, text: a.state}),
      el("td", {class: "num", text: String(a.port)}),
      el("td", {}, auto),
      el("td", {}, toggle, " ", logs));
  }), 5, apps === null ? "this visor runs no apps" : "no apps");
}

// ------------------------------------------------------------------ actions

async function act(what, fn) {
  clearError();
  document.body.dataset.started = String(Number(document.body.dataset.started || 0) + 1);
  try {
    await fn();
    await refresh();
  } catch (err) {
    showError(what, err);
  } finally {
    // actions started and completed (answered, and the page refreshed): tests wait on them
    document.body.dataset.actions = String(Number(document.body.dataset.actions || 0) + 1);
  }
}

async function addTransport(event) {
  event.preventDefault();
  const form = event.target;
  const pk = state.selected;
  await act("Adding the transport failed", async () => {
    await api("POST", `${base(pk)}/transports`,
              {remote_pk: form.pk.value.trim(), transport_type: form.type.value});
    form.pk.value = "";
  });
}

async function removeTransport(pk, id) {
  await act("Removing the transport failed", () => api("DELETE", `${base(pk)}/transports/${id}`));
}

async function setApp(name, change) {
  const pk = state.selected;
  await act(`Changing ${name} failed`, () =>
    api("PUT", `${base(pk)}/apps/${encodeURIComponent(name)}`, change));
}

async function showAppLog(name, announce) {
  const pk = state.selected;
  state.openLog = name;
  try {
    const doc = await api("GET", `${base(pk)}/apps/${encodeURIComponent(name)}/logs?n=200`);
    if (state.openLog !== name) return;
    $("app-log-title").textContent = `Log of ${name}`;
    $("app-log").dataset.app = name;
    $("app-log").textContent = doc.logs.length ? doc.logs.join("\n") : "(no output yet)";
  } catch (err) {
    if (announce) showError(`The log of ${name}`, err);
  }
}

// ------------------------------------------------------------------ terminal

async function openTerminal() {
  const pk = state.selected;
  clearError();
  try {
    const token = await api("GET", "/api/csrf"); // a websocket carries it in its URL
    terminal.connect(pk, token.csrf_token, short(pk));
  } catch (err) {
    showError("The terminal did not open", err);
  }
}

function terminalState(now) {
  const live = now === "open" || now === "connecting";
  $("term-open").hidden = live;
  $("term-close").hidden = !live;
  $("terminal-section").dataset.state = now;
}

// ------------------------------------------------------------------ start

async function start() {
  $("login-form").addEventListener("submit", submitLogin);
  $("logout").addEventListener("click", logout);
  $("add-transport").addEventListener("submit", addTransport);
  terminal = new TermPanel($("term"), $("term-status"), terminalState);
  $("term-open").addEventListener("click", openTerminal);
  $("term-close").addEventListener("click", () => terminal.close("closed here"));
  try {
    await showDashboard();
    return;
  } catch (err) {
    if (err.status !== 401) showError("The hypervisor did not answer", err);
  }
  try {
    const account = await api("GET", "/api/account");
    showLogin(account.exists);
  } catch (err) {
    showError("The hypervisor did not answer", err);
  }
}

start();
