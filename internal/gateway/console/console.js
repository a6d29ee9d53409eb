// Salamander ops console. Plain JavaScript, no build step, nothing loaded
// from elsewhere. Everything it shows comes from this site's /v1/ops/ API
// with the operator's session token; the live overview is the Server-Sent
// Events of GET /v1/ops/stream, read with fetch() so that it can carry the
// Authorization header.
"use strict";

const TOKEN_KEY = "salamander.ops.token";
// DEVICE_KEY + user keeps the device token of each account signed in here
// (Session.device): it outlives the session, as it must.
const DEVICE_KEY = "salamander.ops.device.";
const STALE_AFTER_MS = 5000; // the stream sends every 2 s

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  me: null,            // GET /v1/me
  tab: "overview",
  stream: null,        // AbortController of the running stream
  lastEvent: 0,        // when the last overview arrived
  overview: null,      // the last overview
  prev: {},            // site -> {at, counters} of the snapshot before, for rates
  rates: {},           // site -> {messages, requests}
  auditBefore: "",
};

// ---- small helpers -------------------------------------------------------

const $ = (id) => document.getElementById(id);

// h builds an element: h("td", {class: "num"}, "12"). Text is always set as
// text, never parsed as HTML (log lines and user names are not trusted).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity).filter(present)) el.append(c instanceof Node ? c : String(c));
  return el;
}

const present = (c) => c !== undefined && c !== null && c !== false;
function fill(el, ...children) { el.replaceChildren(...children.flat(Infinity).filter(present)); }
function append(el, ...children) { el.append(...children.flat(Infinity).filter(present)); }

function fmtInt(n) { return n === undefined || n === null ? "–" : Number(n).toLocaleString("en-US"); }
function fmtRate(r) { return r === undefined ? "–" : r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString("en-US"); }
function fmtTime(s) {
  if (!s) return "";
  const d = new Date(s);
  return d.toLocaleString("en-GB", { year: "numeric", month: "short", day: "2-digit", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}
function fmtClock(s) { return new Date(s).toLocaleTimeString("en-GB"); }
function fmtUptime(sec) {
  if (sec === undefined) return "–";
  const d = Math.floor(sec / 86400), hh = Math.floor(sec % 86400 / 3600), m = Math.floor(sec % 3600 / 60);
  return d ? `${d}d ${hh}h` : hh ? `${hh}h ${m}m` : m ? `${m}m ${sec % 60}s` : `${sec}s`;
}
function isAdmin() { return state.me && state.me.role === "admin"; }

let toastTimer = 0;
function toast(msg, bad) {
  const t = $("toast");
  t.textContent = msg;
  t.className = bad ? "toast bad" : "toast";
  t.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.hidden = true; }, 5000);
}

// ---- the API -------------------------------------------------------------

// api calls this site's API with the session. It resolves to {status, data,
// missing}: missing is true when this server has no such endpoint (older
// servers, or a feature not built yet) — the tab then says so.
async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + state.token };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    return { status: 0, data: { message: "this site did not answer: " + e.message } };
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  const missing = res.status === 404 && !!data && typeof data.message === "string" && data.message.startsWith("no route");
  if (res.status === 401) sessionEnded((data && data.message) || "your session ended");
  return { status: res.status, data, missing };
}

function errorText(r) {
  if (r.status === 403) return (r.data && r.data.message) || "this needs a higher role";
  return (r.data && r.data.message) || `the site answered ${r.status}`;
}

function unavailable(what) {
  return h("div", { class: "unavailable" }, `${what} not available on this server.`,
    h("br"), h("span", { class: "small" }, "(It answered 404: it runs a version without this endpoint.)"));
}

// load asks for a tab's data; when there is none to show it says why in
// box — the server lacks the endpoint, or refused — and returns null. The
// form that acts on the data (formId) shows only when there is data.
async function load(box, path, what, formId) {
  const r = await api("GET", path);
  if (formId) $(formId).hidden = r.missing || r.status !== 200;
  if (r.missing) { fill(box, unavailable(what)); return null; }
  if (r.status !== 200) { fill(box, h("p", { class: "notice bad" }, errorText(r))); return null; }
  return r.data;
}

// act takes an action and says how it went in a toast: done on success,
// that the server lacks it (what), or why it refused. It reports success.
async function act(method, path, body, what, done) {
  const r = await api(method, path, body);
  if (r.missing) toast(`${what} not available on this server.`, true);
  else if (r.status !== 200 && r.status !== 201) toast(errorText(r), true);
  else toast(done);
  return !r.missing && (r.status === 200 || r.status === 201);
}

// csvDownload fetches a CSV export with the session and saves it (a plain
// link could not carry the Authorization header).
async function csvDownload(path, file, button) {
  const res = await fetch(path, { headers: { Authorization: "Bearer " + state.token } });
  if (res.status === 404) {
    button.disabled = true;
    button.title = "not available on this server";
    toast("CSV export is not available on this server.", true);
    return;
  }
  if (!res.ok) {
    let msg = `the site answered ${res.status}`;
    try { msg = (await res.json()).message || msg; } catch { /* not JSON */ }
    toast(msg, true);
    return;
  }
  const url = URL.createObjectURL(await res.blob());
  const a = h("a", { href: url, download: file });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

// ---- login ---------------------------------------------------------------

async function login(ev) {
  ev.preventDefault();
  const err = $("login-error");
  err.textContent = "";
  const user = $("login-user").value.trim(), password = $("login-password").value;
  let res;
  try {
    // The login brings this browser's device token for the account, so
    // that strangers failing logins for an operator's account (during an
    // incident, say) do not lock the operator out.
    const post = (device) => fetch("/v1/login", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ name: user, password, device }) });
    const device = localStorage.getItem(DEVICE_KEY + user) || undefined;
    res = await post(device);
    // A site of a version before device tokens refuses the field: go without.
    if (device && res.status === 400) res = await post(undefined);
  } catch (e) {
    err.textContent = "This site did not answer: " + e.message;
    return;
  }
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    err.textContent = res.status === 401 ? "Wrong user name or password." : (data.message || `Login failed (${res.status}).`);
    return;
  }
  state.token = data.token;
  if (data.device) localStorage.setItem(DEVICE_KEY + user, data.device);
  // The console is for operators: ask the ops API itself, so the answer
  // is the one every tab will get.
  const probe = await api("GET", "/v1/ops/site");
  if (probe.status === 403) {
    await fetch("/v1/logout", { method: "POST", headers: { Authorization: "Bearer " + state.token } }).catch(() => {});
    state.token = "";
    err.textContent = `${user} cannot use the ops console: this needs the operator role. ` +
      "An admin can grant it (Users tab, or salamander admin set-role).";
    return;
  }
  if (probe.status !== 200) {
    state.token = "";
    err.textContent = errorText(probe);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("login-password").value = "";
  await enter();
}

// enter shows the console for the stored session.
async function enter() {
  const me = await api("GET", "/v1/me");
  if (me.status !== 200) {
    if (me.status !== 401) sessionEnded(errorText(me));
    return;
  }
  state.me = me.data;
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  $("live").hidden = false;
  const who = $("who");
  fill(who, h("b", {}, state.me.name), " · ", state.me.role || "user");
  who.hidden = false;
  showTab(location.hash.slice(1) || "overview");
  startStream();
}

function sessionEnded(message) {
  stopStream();
  state.token = "";
  state.me = null;
  sessionStorage.removeItem(TOKEN_KEY);
  for (const v of document.querySelectorAll(".view")) v.hidden = true;
  $("tabs").hidden = true;
  $("logout").hidden = true;
  $("live").hidden = true;
  $("who").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ? message.charAt(0).toUpperCase() + message.slice(1) + "." : "";
}

async function logout() {
  await fetch("/v1/logout", { method: "POST", headers: { Authorization: "Bearer " + state.token } }).catch(() => {});
  sessionEnded("");
}

// ---- tabs ----------------------------------------------------------------

const loaders = {
  overview: () => { if (state.overview) renderOverview(state.overview); },
  users: () => {},
  audit: () => loadAudit(false),
  incidents: loadIncidents,
  reports: loadReports,
  drills: loadDrills,
};

function showTab(name) {
  if (!loaders[name]) name = "overview";
  state.tab = name;
  for (const b of $("tabs").querySelectorAll("button")) b.setAttribute("aria-selected", String(b.dataset.tab === name));
  for (const v of document.querySelectorAll(".view")) v.hidden = v.id !== "view-" + name;
  if (location.hash.slice(1) !== name) history.replaceState(null, "", "#" + name);
  loaders[name]();
}

// ---- the live stream -----------------------------------------------------

function setLive(cls, text) {
  const l = $("live");
  l.className = "live " + cls;
  l.textContent = text;
}

function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

// startStream reads GET /v1/ops/stream until it ends, reconnecting with a
// growing pause when the connection drops.
async function startStream() {
  stopStream();
  const ctl = new AbortController();
  state.stream = ctl;
  let pause = 1000;
  while (!ctl.signal.aborted) {
    setLive("stale", "connecting…");
    try {
      const res = await fetch("/v1/ops/stream", { headers: { Authorization: "Bearer " + state.token }, signal: ctl.signal });
      if (res.status === 401 || res.status === 403) {
        const data = await res.json().catch(() => ({}));
        sessionEnded(data.message || "your session ended");
        return;
      }
      if (!res.ok || !res.body) throw new Error(`the site answered ${res.status}`);
      pause = 1000;
      await readEvents(res.body, ctl.signal);
    } catch (e) {
      if (ctl.signal.aborted) return;
      showStreamNote("Lost the live connection to this site (" + e.message + "); retrying.");
    }
    if (ctl.signal.aborted) return;
    setLive("off", "reconnecting");
    await new Promise((r) => setTimeout(r, pause));
    pause = Math.min(pause * 2, 10000);
  }
}

// readEvents parses a text/event-stream body: events are separated by a
// blank line, each with "event:" and "data:" lines.
async function readEvents(body, signal) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  signal.addEventListener("abort", () => reader.cancel().catch(() => {}));
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error("the stream ended");
    buf += value;
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let event = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (event === "overview") onOverview(JSON.parse(data));
      if (event === "end") {
        const e = JSON.parse(data || "{}");
        sessionEnded(e.message || "the console closed the live view");
        return;
      }
    }
  }
}

function showStreamNote(msg) {
  const n = $("stream-note");
  n.textContent = msg;
  n.hidden = !msg;
}

function onOverview(ov) {
  state.lastEvent = Date.now();
  showStreamNote("");
  setLive("on", "live");
  for (const s of ov.sites) {
    if (!s.status || !s.status.counters) continue; // a limited answer has no counters
    const c = s.status.counters, at = Date.parse(s.status.at), p = state.prev[s.name];
    if (p && at > p.at) {
      const dt = (at - p.at) / 1000;
      state.rates[s.name] = {
        messages: Math.max(0, c.messages_sent - p.counters.messages_sent) / dt,
        requests: Math.max(0, c.http_requests - p.counters.http_requests) / dt,
      };
    }
    state.prev[s.name] = { at, counters: c };
  }
  state.overview = ov;
  fill($("here"), "site ", h("b", {}, ov.site), " · ", fmtClock(ov.at));
  fillDrillSites(ov);
  if (state.tab === "overview") renderOverview(ov);
}

setInterval(() => {
  if (state.stream && state.lastEvent && Date.now() - state.lastEvent > STALE_AFTER_MS) {
    setLive("stale", `stale · ${Math.round((Date.now() - state.lastEvent) / 1000)} s`);
  }
}, 1000);

// ---- overview ------------------------------------------------------------

function renderOverview(ov) {
  fill($("sites"), ov.sites.map((s) => siteCard(s, ov.site)));
  renderServers(ov);
  renderStreams(ov);
  renderStandbys(ov);
  renderErrors(ov);
}

function check(ok, label, detail, warnOnly) {
  const cls = ok ? "ok" : warnOnly ? "warn" : "bad";
  return h("li", {}, h("span", { class: "dot " + cls }), h("span", { title: detail || "" }, label, detail ? h("span", { class: "muted" }, " " + detail) : null));
}

function siteCard(s, here) {
  const st = s.status;
  let level = "ok", label = "serving";
  if (!s.reachable) { level = "bad"; label = "unreachable"; }
  else if (!st) { level = "bad"; label = "no status"; }
  else if (st.drained) { level = "warn"; label = "drained"; }
  else if (!st.ready) { level = "bad"; label = "not ready"; }
  else if ((st.warnings || []).length || st.streams_error) { level = "warn"; label = "serving, with warnings"; }
  const head = h("div", { class: "site-head" },
    h("h2", {}, "Site " + s.name),
    s.name === here ? h("span", { class: "pill here" }, "you are here") : null,
    h("span", { class: "spacer" }),
    st && st.drained ? h("button", { class: "btn small", onclick: () => siteAction(s.name, "undrain") }, "Undrain")
      : st ? h("button", { class: "btn small", title: "ask this site's clients to move to the other sites", onclick: () => siteAction(s.name, "drain") }, "Drain") : null,
    h("span", { class: "pill " + level }, label));
  const card = h("div", { class: "card site-card " + level, "data-site": s.name }, head);
  if (!st) {
    append(card, h("p", { class: "site-error" }, s.error || "no answer"),
      h("div", { class: "site-foot" }, h("span", {}, s.url), h("span", { class: "spacer" }), h("span", {}, `asked in ${s.took_ms} ms`)));
    return card;
  }
  if (st.limited) {
    // Not confirmed as an operator there: only what its public status shows.
    append(card,
      h("ul", { class: "checklist" },
        check(true, "reachable", `${s.took_ms} ms`),
        check(st.ready, st.ready ? "ready" : "not ready", st.not_serving)),
      h("p", { class: "site-notes" }, st.limited),
      h("div", { class: "site-foot" },
        h("span", { class: "spacer" }),
        h("a", { href: s.url + "/status", target: "_blank", rel: "noopener" }, "status page")));
    return card;
  }
  const rate = state.rates[s.name] || {};
  append(card,
    h("ul", { class: "checklist" },
      check(true, "reachable", `${s.took_ms} ms`),
      check(st.ready, st.ready ? "ready" : "not ready", st.not_serving),
      check(!st.isolated, st.isolated ? "cut off" : "not isolated"),
      check(st.caught_up, st.caught_up ? "caught up" : "catching up"),
      check(st.nats_connected, st.nats_connected ? "NATS connected" : "NATS disconnected", st.nats.server),
      check(st.signing_key, st.signing_key ? "signing key" : "no signing key"),
      check(!st.log_alarm, st.log_alarm ? "LOG ALARM" : "log intact", st.log_alarm),
      check(!(st.warnings || []).length, `${(st.warnings || []).length} warnings`, null, true),
      st.drained ? check(false, "drained", "clients sent to the other sites", true) : null,
    ),
    (st.warnings || []).length ? h("ul", { class: "site-notes" }, st.warnings.map((w) => h("li", {}, w))) : null,
    st.stalled ? h("ul", { class: "site-notes" }, Object.entries(st.stalled).map(([k, v]) => h("li", {}, `${k} stalled: ${v}`))) : null,
    h("div", { class: "stats" },
      stat(fmtInt(st.websockets), "websockets"),
      stat(fmtRate(rate.messages), "messages/s"),
      stat(fmtRate(rate.requests), "requests/s"),
      stat(fmtInt(st.counters.http_5xx), "HTTP 5xx"),
    ),
    h("div", { class: "site-foot" },
      h("span", {}, "up " + fmtUptime(st.uptime_seconds)),
      h("span", {}, fmtInt(st.counters.messages_sent) + " sent"),
      h("span", {}, fmtInt(st.counters.goroutines) + " goroutines"),
      h("span", { class: "spacer" }),
      h("a", { href: s.url + "/metrics", class: "metrics-link", onclick: (e) => { e.preventDefault(); openMetrics(s.url); } }, "metrics"),
      h("a", { href: s.url + "/status", target: "_blank", rel: "noopener" }, "status page"),
      h("a", { href: s.url + "/openapi.yaml", target: "_blank", rel: "noopener" }, "API"),

    ));
  return card;
}

// openMetrics shows a site's /metrics in a new tab. It asks with the
// operator's token: outside its monitoring networks (serve --metrics-from)
// a site serves them to operators only, so a plain link would be refused.
async function openMetrics(base) {
  const u = new URL(base, location.href);
  if (u.origin !== location.origin && u.protocol !== "https:") {
    // The token is an operator's: never in the clear to another host.
    toast(base + " is not served over HTTPS: open its metrics from its own console.", true);
    return;
  }
  const tab = window.open("", "_blank"); // now, in the click: later, popup blockers refuse it
  try {
    const res = await fetch(base + "/metrics", { headers: { Authorization: "Bearer " + state.token } });
    const text = await res.text();
    if (!res.ok) throw new Error(`${res.status}: ${text}`);
    const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
    if (tab) tab.location = url;
    setTimeout(() => URL.revokeObjectURL(url), 60000);
  } catch (e) {
    if (tab) tab.close();
    toast("The metrics of " + base + " could not be read: " + e.message, true);
  }
}

function stat(v, label) { return h("div", { class: "stat" }, h("b", {}, v), h("span", {}, label)); }

async function siteAction(site, action) {
  if (action === "drain" && !confirm(`Drain site ${site}? Its clients will be asked to move to the other sites.`)) return;
  await act("POST", `/v1/ops/sites/${encodeURIComponent(site)}/${action}`, undefined, `${action} is`, `Site ${site}: ${action} done.`);
}

// streamsFrom picks the stream table to show (key "streams", or
// "standbys"): the freshest from a site that could ask the cluster.
function streamsFrom(ov, key = "streams") {
  for (const s of ov.sites) {
    if (s.status && s.status[key] && s.status[key].length && !s.status[key + "_error"]) return s.status[key];
  }
  for (const s of ov.sites) if (s.status && s.status[key]) return s.status[key];
  return [];
}

function renderServers(ov) {
  const servers = new Map();
  const server = (name) => {
    if (!servers.has(name)) servers.set(name, { name, sites: [], leads: 0, replicas: 0, lagging: 0, offline: 0 });
    return servers.get(name);
  };
  for (const s of ov.sites) {
    const n = s.status && s.status.nats;
    if (!n || !n.server) continue;
    const v = server(n.server);
    v.sites.push(s.name);
    Object.assign(v, { version: n.version, cluster: n.cluster, url: n.url, rtt: n.rtt_ms, id: n.server_id, connected: n.connected });
  }
  for (const st of streamsFrom(ov)) {
    for (const p of st.peers || []) {
      const v = server(p.server);
      v.replicas++;
      if (p.leader) v.leads++;
      if (p.offline) v.offline++;
      else if (!p.current || p.lag > 0) v.lagging++;
    }
  }
  const rows = [...servers.values()].sort((a, b) => a.name.localeCompare(b.name)).map((v) => {
    const health = v.offline ? h("span", { class: "pill bad" }, `${v.offline} offline`)
      : v.lagging ? h("span", { class: "pill warn" }, `${v.lagging} behind`)
        : h("span", { class: "pill ok" }, "all current");
    return h("tr", {},
      h("td", {}, h("b", { class: "mono" }, v.name), v.id ? h("div", { class: "muted small mono", title: v.id }, v.id.slice(0, 12) + "…") : null),
      h("td", {}, v.sites.length ? v.sites.join(", ") : h("span", { class: "muted" }, "none")),
      h("td", {}, v.version || "–", v.cluster ? h("div", { class: "muted small" }, v.cluster) : null),
      h("td", { class: "num" }, v.rtt !== undefined ? v.rtt.toFixed(2) + " ms" : "–"),
      h("td", { class: "num" }, v.leads),
      h("td", { class: "num" }, v.replicas),
      h("td", {}, health));
  });
  fill($("servers"),
    h("thead", {}, h("tr", {}, h("th", {}, "server"), h("th", {}, "sites on it"), h("th", {}, "version"),
      h("th", { class: "num" }, "RTT"), h("th", { class: "num" }, "leads"), h("th", { class: "num" }, "replicas"), h("th", {}, "replicas' state"))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: 7 }, "no server known"))));
}

// replicaChips shows a stream's leader and replicas, each replica with its
// lag (or offline).
function replicaChips(st) {
  return h("div", { class: "replicas" }, (st.peers || []).map((p) => {
    const cls = p.offline ? "off" : (!p.current || p.lag > 0) ? "lag" : "";
    const title = p.leader ? "leader" : `${p.current ? "current" : "not current"}, last heard ${p.active_ms} ms ago`;
    return h("span", { class: `replica ${cls} ${p.leader ? "leader" : ""}`, title }, (p.leader ? "★ " : "") + p.server,
      p.leader ? null : h("span", {}, p.offline ? "offline" : String(p.lag)));
  }));
}

function renderStreams(ov) {
  const streams = streamsFrom(ov);
  const sites = ov.sites.map((s) => s.name);
  const head = h("tr", {}, h("th", {}, "stream"), h("th", {}, "leader"), h("th", {}, "replicas (lag)"),
    h("th", { class: "num" }, "last seq"), h("th", { class: "num" }, "messages"),
    sites.map((n) => h("th", { class: "num" }, "applied at " + n)),
    h("th", {}, "move leader"));
  const rows = streams.map((st) => h("tr", { "data-stream": st.stream },
    h("td", {}, h("b", { class: "mono" }, st.stream)),
    h("td", {}, leaderCell(st)),
    h("td", {}, replicaChips(st)),
    h("td", { class: "num" }, readCount(st, st.last_seq)),
    h("td", { class: "num" }, readCount(st, st.messages)),
    ov.sites.map((s) => {
      const a = s.status && s.status.applied ? s.status.applied[st.stream] : undefined;
      if (a === undefined) return h("td", { class: "num muted" }, st.last_seq === 0 ? "0" : "–");
      const behind = st.last_seq - a;
      return h("td", { class: "num" }, fmtInt(a), behind > 0 ? h("span", { class: "behind" }, ` −${fmtInt(behind)}`) : null);
    }),
    h("td", {}, leaderPicker(st, sites))));
  fill($("streams"), h("thead", {}, head),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: 7 + sites.length }, "no stream status (the cluster may be electing)"))));
}

// leaderCell shows a stream's leader: "not answering" (its error on
// hover) for a stream that could not be read, "electing" with no leader.
function leaderCell(st) {
  if (st.error) return h("span", { class: "pill bad", title: st.error }, "not answering");
  return st.leader ? h("span", { class: "mono" }, st.leader) : h("span", { class: "pill bad" }, "electing");
}

// readCount is a count of a stream's, or "–" for one that could not be read.
function readCount(st, n) { return st.error ? "–" : fmtInt(n); }

// renderStandbys shows each partition's standby: where its leader is,
// and whether that is another site than its partition's leader (a fire
// must not take both; the sites move a standby that shares its
// partition's site on their own).
function renderStandbys(ov) {
  const standbys = streamsFrom(ov, "standbys");
  const partitions = new Map(streamsFrom(ov).map((st) => [st.stream, st]));
  const siteOf = (server) => server.replace(/^site-/, "");
  const rows = standbys.map((st) => {
    const p = partitions.get(st.standby_of);
    let placement;
    if (!st.leader) placement = h("span", { class: "pill bad" }, "electing");
    else if (!p || !p.leader) placement = h("span", { class: "pill warn" }, `${st.standby_of} is electing`);
    else if (siteOf(p.leader) === siteOf(st.leader)) placement = h("span", { class: "pill warn" }, `same site as ${st.standby_of}'s leader`);
    else placement = h("span", { class: "pill ok" }, "another site");
    return h("tr", { "data-standby": st.stream },
      h("td", {}, h("b", { class: "mono" }, st.stream)),
      h("td", { class: "mono" }, st.standby_of),
      h("td", {}, leaderCell(st)),
      h("td", {}, p && p.leader ? h("span", { class: "mono" }, p.leader) : h("span", { class: "muted" }, "–")),
      h("td", {}, placement),
      h("td", {}, replicaChips(st)),
      h("td", { class: "num" }, readCount(st, st.last_seq)));
  });
  fill($("standbys"),
    h("thead", {}, h("tr", {}, h("th", {}, "standby"), h("th", {}, "of partition"), h("th", {}, "leader"),
      h("th", {}, "partition's leader"), h("th", {}, "placement"), h("th", {}, "replicas (lag)"), h("th", { class: "num" }, "records held"))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { class: "empty", colspan: 7 }, "no standby status (the cluster may be electing)"))));
}

function leaderPicker(st, sites) {
  const sel = h("select", { "aria-label": "site to lead " + st.stream }, h("option", { value: "" }, "site…"), sites.map((n) => h("option", { value: n }, n)));
  sel.addEventListener("change", async () => {
    const site = sel.value;
    if (!site) return;
    sel.value = "";
    await act("POST", `/v1/ops/streams/${encodeURIComponent(st.stream)}/leader`, { site }, "Moving a leader is",
      `${st.stream}: leadership moving to site ${site}.`);
  });
  return sel;
}

function renderErrors(ov) {
  const all = [];
  for (const s of ov.sites) for (const e of (s.status && s.status.recent_errors) || []) all.push({ site: s.name, ...e });
  for (const s of ov.sites) if (!s.reachable) all.push({ site: s.name, at: ov.at, level: "ERROR", message: "unreachable: " + (s.error || "") });
  all.sort((a, b) => Date.parse(b.at) - Date.parse(a.at));
  const items = all.slice(0, 100).map((e) => h("li", {},
    h("span", { class: "when", title: fmtTime(e.at) }, fmtClock(e.at)),
    h("span", { class: "pill" }, e.site),
    h("span", { class: "lvl " + e.level }, e.level),
    h("span", { class: "msg" }, e.message,
      e.attrs ? h("span", { class: "attrs" }, Object.entries(e.attrs).filter(([k]) => k !== "site").map(([k, v]) => `${k}=${v}`).join("  ")) : null)));
  fill($("errors"), items.length ? items : h("li", { class: "none" }, "Nothing logged at WARN or above lately."));
}

// ---- users ---------------------------------------------------------------

async function lookUpUser(ev) {
  ev.preventDefault();
  const name = $("user-name").value.trim();
  const card = $("user-card");
  card.hidden = false;
  const r = await api("GET", "/v1/users/" + encodeURIComponent(name));
  if (r.status !== 200) {
    fill(card, h("p", { class: "error" }, errorText(r)));
    return;
  }
  const u = r.data;
  const out = h("div", { class: "notice", id: "user-result", hidden: true });
  const userAct = async (method, path, body, done) => {
    const res = await api(method, path, body);
    out.hidden = false;
    if (res.missing) { out.className = "notice warn"; out.textContent = "Not available on this server."; }
    else if (res.status !== 200) { out.className = "notice bad"; out.textContent = errorText(res); }
    else { out.className = "notice ok"; out.textContent = done; }
  };
  const role = h("select", { id: "user-role" }, ["user", "operator", "admin"].map((x) => h("option", {}, x)));
  const base = "/v1/ops/users/" + encodeURIComponent(u.name);
  fill(card,
    h("h2", {}, u.display_name || u.name, h("span", { class: "muted" }, "@" + u.name)),
    h("p", { class: "muted small" }, "Member since " + fmtTime(u.created_at), u.status ? " · " + u.status : ""),
    out,
    isAdmin() ? [
      h("div", { class: "row" },
        h("label", {}, "Role", role),
        h("button", { class: "btn primary", onclick: () => userAct("PUT", base + "/role", { role: role.value }, `${u.name} is now ${role.value}.`) }, "Set role")),
      h("div", { class: "row" },
        h("button", { class: "btn danger", onclick: () => confirm(`Suspend ${u.name}? They can no longer log in or use their sessions.`) && userAct("POST", base + "/suspend", undefined, `${u.name} is suspended.`) }, "Suspend"),
        h("button", { class: "btn", onclick: () => userAct("POST", base + "/restore", undefined, `${u.name} is restored.`) }, "Restore"),
        h("button", { class: "btn danger", onclick: () => confirm(`Revoke every session of ${u.name}?`) && userAct("POST", base + "/revoke", undefined, `Every session of ${u.name} is revoked.`) }, "Revoke sessions")),
    ] : h("p", { class: "notice" }, "Changing roles and accounts needs the admin role."));
}

// ---- audit ---------------------------------------------------------------

async function loadAudit(more) {
  const box = $("audit");
  if (!more) state.auditBefore = "";
  const q = "?limit=50" + (state.auditBefore ? "&before=" + encodeURIComponent(state.auditBefore) : "");
  const data = await load(box, "/v1/ops/audit" + q, "The audit trail is");
  if (!data) return;
  const entries = data.entries || [];
  const rows = entries.map((e) => h("tr", {},
    h("td", {}, fmtTime(e.at)), h("td", {}, h("span", { class: "pill" }, e.action)), h("td", {}, e.user || ""),
    h("td", {}, e.role || ""), h("td", {}, e.by || h("span", { class: "muted" }, "admin credential")), h("td", {}, e.site)));
  let tbody = box.querySelector("tbody");
  if (!more || !tbody) {
    tbody = h("tbody", {});
    fill(box, h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["when", "action", "user", "role", "by", "site"].map((x) => h("th", {}, x)))), tbody)));
  }
  box.querySelector(".more")?.remove();
  tbody.append(...rows);
  if (!tbody.children.length) tbody.append(h("tr", {}, h("td", { class: "empty", colspan: 6 }, "No admin action yet.")));
  if (entries.length === 50) {
    state.auditBefore = entries[entries.length - 1].at;
    box.append(h("p", { class: "more" }, h("button", { class: "btn", onclick: () => loadAudit(true) }, "Older entries")));
  }
}

// ---- incidents -----------------------------------------------------------

function bilingual(x) { return x ? [x.en, x.ko && x.ko !== x.en ? h("span", { class: "muted" }, " · " + x.ko) : null] : ""; }
const impactClass = { minor: "warn", major: "bad", critical: "bad" };

async function loadIncidents() {
  const box = $("incidents");
  const data = await load(box, "/v1/status/incidents", "Incidents are", "incident-new");
  if (!data) return;
  const open = data.open || [], history = data.history || [];
  fill(box,
    h("h3", {}, `Open (${open.length})`),
    open.length ? open.map((i) => incident(i, true)) : h("p", { class: "muted" }, "No open incident."),
    h("h3", {}, "History"),
    history.length ? history.slice(0, 20).map((i) => incident(i, false)) : h("p", { class: "muted" }, "None."));
}

function incident(i, open) {
  const el = h("div", { class: "incident" },
    h("header", {}, h("b", {}, bilingual(i.title)), h("span", { class: "pill " + (impactClass[i.impact] || "") }, i.impact),
      h("span", { class: "pill" }, i.state), (i.services || []).map((s) => h("span", { class: "pill" }, s)),
      h("span", { class: "muted small" }, "since " + fmtTime(i.started_at) + (i.resolved_at ? " · resolved " + fmtTime(i.resolved_at) : ""))),
    h("ul", { class: "updates" }, (i.updates || []).slice().reverse().map((u) => h("li", {},
      h("span", { class: "muted small" }, `${fmtTime(u.at)} · ${u.state} · ${u.by || ""}@${u.site || ""} — `), bilingual(u.message)))));
  if (open) {
    const form = h("form", { class: "form-grid" },
      h("label", {}, "State", h("select", { name: "state" }, ["investigating", "identified", "monitoring", "resolved"].map((s) => h("option", { selected: s === i.state }, s)))),
      h("label", {}, "Impact", h("select", { name: "impact" }, ["minor", "major", "critical"].map((s) => h("option", { selected: s === i.impact }, s)))),
      h("label", { class: "full" }, "Message (English)", h("textarea", { name: "message_en", required: true })),
      h("label", { class: "full" }, "Message (Korean)", h("textarea", { name: "message_ko", required: true })),
      h("div", { class: "full" }, h("button", { class: "btn primary", type: "submit" }, "Post update")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = new FormData(form);
      if (await act("POST", `/v1/ops/incidents/${encodeURIComponent(i.id)}/updates`, {
        state: f.get("state"), impact: f.get("impact"), message: { en: f.get("message_en"), ko: f.get("message_ko") } },
      "Posting updates is", "Update posted.")) loadIncidents();
    });
    append(el, h("details", { class: "inline" }, h("summary", {}, "Post an update"), form));
  }
  return el;
}

async function openIncident(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  if (await act("POST", "/v1/ops/incidents", {
    title: { en: f.get("title_en"), ko: f.get("title_ko") },
    message: { en: f.get("message_en"), ko: f.get("message_ko") },
    state: f.get("state"), impact: f.get("impact"), services: f.getAll("services") }, "Opening incidents is", "Incident opened.")) {
    ev.target.reset();
    loadIncidents();
  }
}

// ---- damage reports ------------------------------------------------------

async function loadReports() {
  const box = $("reports");
  const st = $("report-state").value;
  const data = await load(box, "/v1/ops/reports" + (st ? "?state=" + encodeURIComponent(st) : ""), "Damage reports are");
  if (!data) return;
  const reports = data.reports || [];
  const stateClass = { approved: "ok", rejected: "bad", needs_details: "warn" };
  fill(box, h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, ["filed", "user", "incident", "category", "claimed", "approved", "state", ""].map((x) => h("th", {}, x)))),
    h("tbody", {}, reports.length ? reports.map((rep) => h("tr", {},
      h("td", {}, fmtTime(rep.filed_at)), h("td", {}, rep.user), h("td", { class: "mono" }, rep.incident || ""),
      h("td", {}, rep.category, h("div", { class: "muted small" }, rep.description)),
      h("td", { class: "num" }, `${fmtInt(rep.amount_claimed)} ${rep.currency || ""}`),
      h("td", { class: "num" }, rep.amount_approved ? `${fmtInt(rep.amount_approved)} ${rep.currency || ""}` : "–"),
      h("td", {}, h("span", { class: "pill " + (stateClass[rep.state] || "") }, rep.state)),
      h("td", {}, reviewForm(rep))))
      : h("tr", {}, h("td", { class: "empty", colspan: 8 }, "No report."))))));
}

function reviewForm(rep) {
  const form = h("form", { class: "stack" },
    h("label", {}, "Decision", h("select", { name: "decision" }, ["ask_details", "approve", "reject"].map((d) => h("option", {}, d)))),
    h("label", {}, "Amount approved", h("input", { name: "amount", type: "number", min: "0", value: String(rep.amount_claimed || 0) })),
    h("label", {}, "Note", h("textarea", { name: "note" })),
    h("button", { class: "btn primary", type: "submit" }, "Review"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = new FormData(form);
    if (await act("POST", `/v1/ops/reports/${encodeURIComponent(rep.id)}/review`, {
      decision: f.get("decision"), note: f.get("note"), amount_approved: Number(f.get("amount")) },
    "Reviewing is", "Report reviewed.")) loadReports();
  });
  return h("details", { class: "inline" }, h("summary", {}, "Review"), form);
}

// ---- drills --------------------------------------------------------------

async function loadDrills() {
  const box = $("drills");
  const data = await load(box, "/v1/ops/drills", "Drills are", "drill-new");
  if (!data) return;
  const c = data.compliance || {}, drills = data.drills || [];
  const stateClass = { passed: "ok", failed: "bad", running: "warn" };
  fill(box,
    h("div", { class: "kv" },
      h("div", {}, h("b", {}, c.year || "–"), h("span", { class: "muted" }, "year")),
      h("div", {}, h("b", {}, `${fmtInt(c.recovery)} / ${fmtInt(c.required_recovery)}`), h("span", { class: "muted" }, "recovery drills (done / required)")),
      h("div", {}, h("b", {}, `${fmtInt(c.simulation)} / ${fmtInt(c.required_simulation)}`), h("span", { class: "muted" }, "simulation drills (done / required)")),
      h("div", {}, h("b", {}, h("span", { class: "pill " + (c.met ? "ok" : "bad") }, c.met ? "requirement met" : "requirement not met")),
        h("span", { class: "muted" }, "compliance")),
      h("div", {}, h("button", { class: "btn", "data-csv": "/v1/ops/drills.csv", "data-file": "drills.csv" }, "Export CSV"))),
    h("div", { class: "table-wrap" }, h("table", {},
      h("thead", {}, h("tr", {}, ["started", "scenario", "kind", "site", "by", "state", "ended", "summary"].map((x) => h("th", {}, x)))),
      h("tbody", {}, drills.length ? drills.map((d) => h("tr", {},
        h("td", {}, fmtTime(d.started_at)), h("td", {}, d.scenario), h("td", {}, d.kind), h("td", {}, d.site),
        h("td", {}, `${d.by || ""}${d.from_site ? "@" + d.from_site : ""}`),
        h("td", {}, h("span", { class: "pill " + (stateClass[d.state] || "") }, d.state),
          d.state === "running" ? h("button", { class: "btn small drill-end", "data-drill": d.id, onclick: () => endDrill(d) }, "End") : null),
        h("td", {}, fmtTime(d.ended_at)),
        h("td", {}, d.summary || "", d.report ? h("details", { class: "inline" }, h("summary", {}, "report"),
          h("pre", { class: "mono small" }, JSON.stringify(d.report, null, 2))) : null)))
        : h("tr", {}, h("td", { class: "empty", colspan: 8 }, "No drill yet."))))));
}

function fillDrillSites(ov) {
  const sel = $("drill-site");
  const names = ov.sites.map((s) => s.name);
  if ([...sel.options].map((o) => o.value).join() === names.join()) return;
  fill(sel, names.map((n) => h("option", { value: n }, n)));
}

// endDrill ends a running drill as failed, with a reason: for one whose
// runner died (a killed salamander drill, a burned gateway), which would
// otherwise block drains and other drills for an hour.
async function endDrill(d) {
  const reason = prompt(`End drill ${d.id} as failed? Its runner may be gone (killed, or its gateway burned). Why:`);
  if (!reason || !reason.trim()) return;
  if (await act("POST", `/v1/ops/drills/${encodeURIComponent(d.id)}/end`, { reason }, "Drills are", `Drill ${d.id} ended.`)) loadDrills();
}

async function startDrill(ev) {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const site = f.get("site"), seconds = Number(f.get("seconds"));
  if (!confirm(`Cut site ${site} off for ${seconds} s?`)) return;
  if (await act("POST", "/v1/ops/drills", { site, seconds }, "Drills are", `Drill started on site ${site}.`)) loadDrills();
}

// ---- wiring --------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", login);
  $("logout").addEventListener("click", logout);
  for (const b of $("tabs").querySelectorAll("button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("user-form").addEventListener("submit", lookUpUser);
  $("audit-reload").addEventListener("click", () => loadAudit(false));
  $("incident-form").addEventListener("submit", openIncident);
  $("reports-reload").addEventListener("click", loadReports);
  $("report-state").addEventListener("change", loadReports);
  $("drill-form").addEventListener("submit", startDrill);
  document.body.addEventListener("click", (ev) => {
    const b = ev.target.closest("[data-csv]");
    if (b) csvDownload(b.dataset.csv, b.dataset.file, b);
  });
  if (state.token) enter();
});
