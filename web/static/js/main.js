// main.js: the web messenger's start and wiring. It signs in (or restores
// the session), builds the model from the API, keeps the live connection
// and the outbox going across sites, and redraws the views on change.

import { Api, ApiError, Cursor, Live } from "./api.js";
import { $, fill, h } from "./dom.js";
import { currentLang, errorText, localized, setLang, t } from "./i18n.js";
import { Model } from "./model.js";
import { Sender } from "./sender.js";
import * as store from "./store.js";
import { renderAuth } from "./views/auth.js";
import { renderList, renderRail } from "./views/lists.js";
import { RoomView } from "./views/room.js";

const app = {
  api: new Api(),
  model: null,
  live: null,
  sender: null,
  outbox: null,
  roomView: null,
  tab: "chats",
  roomID: "",
  loaded: false, // rooms and friends loaded since sign-in
};

// ---- start ---------------------------------------------------------------

async function boot() {
  setLang(currentLang());
  applyTheme(store.theme.get());
  keepShell();
  const known = store.sites.get();
  store.sites.set(await app.api.discover(known));
  app.api.addEventListener("unauthorized", () => signOut(false));
  app.api.addEventListener("suspended", () => signOut(false, "suspended"));
  const s = store.session.get();
  if (s && Date.parse(s.expires_at) > Date.now()) start(s);
  else showAuth();
}

// keepShell registers the service worker (/sw.js), which keeps the app's
// files so that the page opens even while this site is down; the app then
// reaches the API at another site. Browsers allow it over HTTPS and on
// localhost only; without it the app works the same while its site is up.
function keepShell() {
  if (!("serviceWorker" in navigator)) return;
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).catch(() => { /* no offline start */ });
}

// authNotice is why the last session ended, said on the sign-in screen.
let authNotice;

function showAuth() {
  authNotice ??= store.notice.take();
  $("app").hidden = true;
  $("auth").hidden = false;
  renderAuth($("auth"), app.api, {
    onSession: (s) => { authNotice = ""; store.session.set(s); start(s); },
    onLang: () => showAuth(),
  });
  if (authNotice) $("auth-error").textContent = t(authNotice);
}

function start(s) {
  const api = app.api;
  api.token = s.token;
  const user = s.user.name;
  app.model = new Model(s.user);
  app.outbox = new store.Outbox(user);
  const cursor = new Cursor(store.cursor.get(user));
  app.live = new Live(api, cursor);
  app.sender = new Sender(api, app.live, app.outbox, {
    onSent: (m) => { app.model.addMessages(m.room, [m]) || fetchRoom(m.room).catch(() => {}); redrawRoom(m.room); drawConn(); },
    onRefused: (m, err) => {
      toast(t("sendFailed", errorText(err)));
      app.roomView.giveBack(m); // its text, back in its room's composer
      redrawRoom(m.room_id);
      drawConn();
    },
  });
  // Another tab of this user queued a message, or saw one acknowledged.
  app.outbox.onChange(() => { app.sender.kick(); if (app.roomID) redrawRoom(app.roomID); drawConn(); });
  app.roomView = new RoomView(app);
  restoreSnapshot(user);

  let saveTimer = 0;
  const saveCursor = () => {
    clearTimeout(saveTimer);
    // Not once signed out: a save still pending then wrote the cursor
    // back after signing out had removed it.
    saveTimer = setTimeout(() => { if (!app.signedOut) store.cursor.set(user, cursor.toString()); }, 300);
  };
  app.live.addEventListener("event", (e) => {
    const ev = e.detail;
    if (ev.type === "message" && ev.message.sender === user && app.outbox.has(ev.message.client_id)) {
      app.sender.sent(ev.message); // committed: its ack may never come
    }
    const missing = app.model.apply(ev);
    if (missing) applyWithRoom(missing, ev);
    if (ev.type === "friend") loadFriends();
    if (ev.pos) saveCursor();
  });
  app.live.addEventListener("ready", (e) => {
    app.model.setIncidents(e.detail.incidents);
    saveCursor();
    // Presence is not replayed: a change while the page had no socket
    // (its site failed over, or closed it as too slow to read) never
    // comes. So it is read again once each socket is ready — unless a
    // read began after this "ready" (the first load's, usually).
    const ready = ++readies;
    (app.loaded ? Promise.resolve() : loadAll()).then(() => {
      if (app.loaded && presenceAskedAt < ready) loadPresence().catch(() => { /* the next "ready" reads it */ });
    });
    app.roomView.onReconnected();
  });
  // Leaving or reloading the page keeps what it has seen: a reload then
  // resumes after it instead of replaying it.
  window.addEventListener("pagehide", () => {
    if (app.signedOut) return; // signing out: what it cleared stays cleared
    store.cursor.set(user, cursor.toString());
    writeSnapshot(user);
  });
  // Signed out in another tab: this one stops writing and shows sign-in.
  window.addEventListener("storage", (e) => {
    if (e.key !== store.SESSION_KEY || e.newValue !== null || app.signedOut) return;
    leave();
  });
  app.live.addEventListener("state", () => drawConn());
  api.addEventListener("site", () => { store.sites.set(api.sites); drawConn(); });
  app.model.addEventListener("change", (e) => { onChange(e.detail); saveSnapshot(user); });

  $("auth").hidden = true;
  $("app").hidden = false;
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => app.roomView.markRead());
  window.addEventListener("focus", () => app.roomView.markRead());
  drawAll();
  route();
  app.live.start();
  app.sender.kick();
  loadAll();
}

const SNAPSHOT_MESSAGES = 50;

function restoreSnapshot(user) {
  const snap = store.snapshot.get(user);
  if (!snap) return;
  app.model.setUser(snap.me);
  for (const u of snap.users || []) app.model.users.set(u.name, u);
  app.model.setFriends(snap.friends || []);
  for (const { messages, ...room } of snap.rooms || []) {
    app.model.setRoom(room);
    app.model.addMessages(room.id, messages || []);
  }
}

let snapshotTimer = 0;
function saveSnapshot(user) {
  if (snapshotTimer) return;
  snapshotTimer = setTimeout(() => writeSnapshot(user), 1000);
}

function writeSnapshot(user) {
  clearTimeout(snapshotTimer);
  snapshotTimer = 0;
  if (app.signedOut) return;
  const m = app.model;
  // Held messages are left out: the newest page of the room's history
  // lists them again while they wait, and a kept copy could outlive its
  // placing.
  const rooms = m.sortedRooms().slice(0, 200).map(({ messages, held, loaded, more, ...room }) =>
    ({ ...room, messages: m.sortedMessages({ messages }).slice(-SNAPSHOT_MESSAGES) }));
  store.snapshot.set(user, { me: m.me, friends: [...m.friends.values()], users: [...m.users.values()], rooms });
}

// loadAll fetches the profile, rooms and friends (again after a failure);
// one load at a time.
let loadingAll = null;
function loadAll() {
  loadingAll ||= loadAllOnce().finally(() => { loadingAll = null; });
  return loadingAll;
}

async function loadAllOnce() {
  const api = app.api;
  try {
    const since = app.model.clock;
    const [me, rooms] = await Promise.all([api.request("GET", "/v1/me"), loadRooms(api)]);
    app.model.setUser(me);
    app.model.setRooms(rooms, since);
    await loadFriends();
    app.loaded = true;
    for (const r of app.model.rooms.values()) for (const m of r.members) app.roomView.knowUser(m);
    drawAll();
  } catch (e) {
    if (e instanceof ApiError) toast(errorText(e));
    // otherwise every site is down: the next "ready" tries again
  }
}

// loadRooms reads every page of the user's rooms (GET /v1/rooms lists at
// most 500 at a time), most recently active first.
async function loadRooms(api) {
  const rooms = [];
  let next = "";
  for (;;) {
    const page = await api.request("GET", "/v1/rooms" + (next ? "?after=" + encodeURIComponent(next) : ""));
    rooms.push(...page.rooms);
    if (!page.next || page.next === next) return rooms;
    next = page.next;
  }
}

async function loadFriends() {
  const { friends } = await app.api.request("GET", "/v1/friends");
  app.model.setFriends(friends);
  await loadPresence();
}

// readies counts the live connection's "ready"s; presenceAskedAt is the
// count when the latest presence read began, presenceReads how many began.
let readies = 0, presenceAskedAt = 0, presenceReads = 0;

// loadPresence reads the presence of the user's friends, whose presence
// the page shows. A read overtaken by a later one leaves it the last word.
async function loadPresence() {
  const read = ++presenceReads;
  presenceAskedAt = readies;
  const since = app.model.clock;
  const names = [...app.model.friends.keys()];
  // A presence query names at most 100 users: more friends are asked in turn.
  for (let i = 0; i < names.length; i += 100) {
    const batch = names.slice(i, i + 100).join(",");
    const { presence } = await app.api.request("GET", "/v1/presence?users=" + encodeURIComponent(batch));
    if (read !== presenceReads) return;
    app.model.setPresence(presence, since);
  }
}

// applyWithRoom applies an event of a room the page does not know once it
// has fetched the room (a chat someone else started). A fetch that finds
// no site to answer is tried again, less and less often, until it is
// answered: the event must not be lost because HTTP failed while the
// socket delivered.
async function applyWithRoom(id, ev) {
  for (let wait = 500; ; wait = Math.min(wait * 2, 15000)) {
    try {
      await fetchRoom(id);
      app.model.apply(ev);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, wait));
      if (app.model.rooms.has(id)) { // a rooms list brought it meanwhile
        app.model.apply(ev);
        return;
      }
    }
  }
}

async function fetchRoom(id) {
  try {
    const since = app.model.clock;
    const r = await app.api.request("GET", `/v1/rooms/${encodeURIComponent(id)}`);
    app.model.setRoomAsked(r, since);
    for (const m of r.members) app.roomView.knowUser(m);
  } catch (e) {
    if (e instanceof ApiError) return;
    throw e;
  }
}

// signOut ends the session here (and at the sites when callServer); a
// notice ("suspended") is said on the sign-in screen after the reload.
async function signOut(callServer = true, notice = "") {
  if (app.signedOut) return;
  // Signing out forgets the messages no site has taken yet: ask first.
  if (callServer && app.outbox?.size && !confirm(t("unsentOnLogOut", app.outbox.size))) return;
  if (callServer) {
    try { await app.api.request("POST", "/v1/logout", undefined, { rounds: 1 }); } catch { /* signing out locally anyway */ }
  }
  store.session.clear();
  if (callServer) store.forget(app.model.me.name);
  if (notice) store.notice.set(notice);
  location.hash = "";
  leave();
}

// leave stops the signed-out session's page and shows sign-in; nothing of
// the session is written again (pagehide, the snapshot's timer).
function leave() {
  app.signedOut = true;
  clearTimeout(snapshotTimer);
  if (app.live) app.live.stop();
  location.reload();
}

// ---- navigation ----------------------------------------------------------

// route follows the address: #/chats, #/friends, #/settings or #/room/ID.
function route() {
  const [, what, id] = location.hash.split("/");
  if (what === "room" && id) {
    let roomID = "";
    try { roomID = decodeURIComponent(id); } catch { /* a malformed link */ }
    if (!/^[dg]_[0-9a-f]{16,32}$/.test(roomID)) {
      location.hash = "#/chats"; // no such room: the chat list (route runs again)
      return;
    }
    app.roomID = roomID;
    app.tab = "chats";
  } else {
    app.roomID = "";
    if (["chats", "friends", "settings"].includes(what)) app.tab = what;
  }
  document.body.classList.toggle("in-room", !!app.roomID);
  drawAll();
  app.roomView.open(app.roomID);
}

function go(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

// ---- drawing -------------------------------------------------------------

function onChange({ what, room }) {
  switch (what) {
    case "incidents": drawBanners(); return;
    case "typing": if (room === app.roomID) app.roomView.drawTyping(); return;
    case "presence": case "friends": drawList(); app.roomView.drawHead(); return;
  }
  scheduleListDraw();
  if (room && room === app.roomID) redrawRoom(room);
  if (what === "rooms" && room === app.roomID && !app.model.rooms.has(room)) go("#/chats");
}

let listFrame = 0;
function scheduleListDraw() {
  if (listFrame) return;
  listFrame = requestAnimationFrame(() => { listFrame = 0; drawList(); });
}

function redrawRoom(roomID) {
  if (roomID === app.roomID) app.roomView.scheduleDraw();
}

// focusKey is a selector for the rail's or list's element that has the
// focus, to find its redrawn self by ("" when the focus is elsewhere).
function focusKey() {
  const f = document.activeElement;
  if (!f || !($("rail").contains(f) || $("list-pane").contains(f))) return "";
  if (f.id) return "#" + CSS.escape(f.id);
  if (f.dataset.room) return `[data-room="${CSS.escape(f.dataset.room)}"]`;
  if (f.dataset.user) return `#list [data-user="${CSS.escape(f.dataset.user)}"]`;
  return "";
}

function drawAll() {
  drawList();
  drawBanners();
  drawConn();
}

function drawList() {
  // Redrawn on every message, read and presence: whatever of them had the
  // keyboard's focus (a tab, a chat, a person) gets it back.
  const focused = focusKey();
  renderRail($("rail"), app);
  renderList(app);
  if (focused) document.querySelector(focused)?.focus({ preventScroll: true });
  const unread = [...app.model.rooms.values()].reduce((n, r) => n + r.unread, 0);
  document.title = unread ? `(${unread}) ${t("appName")}` : t("appName");
}

// drawConn says honestly where the app is connected, or that it is moving.
function drawConn() {
  const live = app.live;
  const el = $("conn");
  const site = live.api.site;
  const waiting = app.outbox.size;
  const states = {
    live: ["ok", t("connLive", site.name || new URL(site.url).host)],
    connecting: ["wait", t("connConnecting")],
    moving: ["wait", t("connMoving")],
    offline: ["bad", t("connOffline")],
    replaced: ["bad", t("connTooManySockets")],
  };
  const [cls, text] = states[live.state];
  el.className = "conn " + cls;
  el.dataset.state = live.state;
  el.dataset.site = site.name;
  fill(el, h("span", { class: "dot", "aria-hidden": "true" }), h("span", { class: "conn-text" }, text),
    waiting ? h("span", { class: "conn-waiting" }, " · ", t("waiting", waiting)) : null,
    live.state === "replaced" ? h("button", { type: "button", class: "link conn-retry", onclick: () => live.start() }, t("connReconnect")) : null);
}

// drawBanners shows every open incident at the top, in the reader's
// language, with a link to the status page.
function drawBanners() {
  const el = $("banners");
  const list = [...(app.model?.incidents.values() || [])];
  const statusURL = app.api.site.url + "/status?lang=" + currentLang();
  fill(el, list.map((inc) => {
    const last = inc.updates?.[inc.updates.length - 1];
    return h("div", { class: `banner impact-${inc.impact || "minor"}`, role: "alert", dataset: { incident: inc.id } },
      h("strong", {}, localized(inc.title)),
      last ? h("span", { class: "banner-msg" }, localized(last.message)) : null,
      h("a", { href: statusURL, target: "_blank", rel: "noopener" }, t("statusPage"), " →"));
  }));
  document.body.classList.toggle("has-banner", list.length > 0);
}

let toastTimer = 0;
function toast(text) {
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

// ---- preferences ---------------------------------------------------------

function applyTheme(v) {
  store.theme.set(v);
  if (v === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = v;
}

function switchLang(l) {
  setLang(l);
  if (app.model) { drawAll(); app.roomView.relabel(); }
}

// The views reach the app's actions through app, not by importing this module.
Object.assign(app, { go, toast, fetchRoom, signOut, applyTheme, switchLang, drawConn });

boot();
