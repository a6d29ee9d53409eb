// store.js: what the app keeps in the browser across reloads — the
// session, the sites it knows, its cursor, its device token, and the outbox
// of messages not acknowledged yet with their client ids (localStorage:
// written at once, read back before anything is sent, so a reload never
// loses or doubles a message). Everything but the session and the language
// is kept per user.

export const SESSION_KEY = "salamander.session";
const NOTICE_KEY = "salamander.notice";
const SITES_KEY = "salamander.sites";
const THEME_KEY = "salamander.theme";

// parse is stored text as what it holds, or fallback when there is none or
// it does not parse.
function parse(raw, fallback) {
  try {
    return raw === null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function read(key, fallback) {
  try {
    return parse(localStorage.getItem(key), fallback);
  } catch {
    return fallback; // storage refused (a browser's privacy mode)
  }
}

function write(key, value) {
  localStorage.setItem(key, JSON.stringify(value));
}

export const session = {
  get: () => read(SESSION_KEY, null),
  set: (s) => write(SESSION_KEY, s),
  clear: () => localStorage.removeItem(SESSION_KEY),
};

// notice is what the sign-in screen says once after a reload (why the
// session ended: "suspended"); kept for this tab only.
export const notice = {
  set: (v) => { try { sessionStorage.setItem(NOTICE_KEY, v); } catch { /* storage refused */ } },
  take: () => {
    try {
      const v = sessionStorage.getItem(NOTICE_KEY) || "";
      sessionStorage.removeItem(NOTICE_KEY);
      return v;
    } catch {
      return "";
    }
  },
};

export const sites = {
  get: () => read(SITES_KEY, []),
  set: (list) => write(SITES_KEY, list),
};

export const theme = {
  get: () => read(THEME_KEY, "auto"),
  set: (v) => write(THEME_KEY, v),
};

// cursor is the user's saved place in the event log.
export const cursor = {
  get: (user) => read(`salamander.cursor.${user}`, ""),
  set: (user, c) => write(`salamander.cursor.${user}`, c),
};

// snapshot is what the app last knew of the user's rooms, newest messages
// and friends: a reload shows them (and the outbox) before any site
// answers, or while none can.
export const snapshot = {
  get: (user) => read(`salamander.snapshot.${user}`, null),
  set: (user, snap) => write(`salamander.snapshot.${user}`, snap),
};

// device is this browser's device token for a user (Session.device): a
// login brings it back, so that strangers failing logins for the account
// do not lock this browser out. It is not a session and stays after
// signing out.
export const device = {
  get: (user) => read(`salamander.device.${user}`, ""),
  set: (user, token) => write(`salamander.device.${user}`, token),
};

// forget removes everything kept for a user (signing out) but the device
// token.
export function forget(user) {
  for (const k of ["cursor", "outbox", "snapshot"]) localStorage.removeItem(`salamander.${k}.${user}`);
  new Outbox(user).clear();
}

// newClientID is a fresh random client message id (32 hex digits).
export function newClientID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Outbox holds a user's messages until a site acknowledges them, oldest
// first: {client_id, room_id, text, queued_at, at}. Each message is an entry
// of its own in localStorage (salamander.outbox.USER:CLIENT_ID), written
// once when queued and removed once when acknowledged, and every read goes
// to localStorage itself: the user's other tabs share the outbox. They run
// in other processes, each seeing the others' writes only a moment later,
// so one list under one key, read, changed and written back by each tab,
// lost the messages another tab had just queued and brought back the ones
// it had just taken out. Two tabs may both send a message; its client id
// makes that one message (the site answers the second with the original).
export class Outbox {
  constructor(user) {
    this.prefix = `salamander.outbox.${user}:`; // ':' is in no user name
    this.cache = new Map(); // key -> [stored text, what it parsed to]
    this.last = 0;          // the newest at this tab gave
    this.legacy = `salamander.outbox.${user}`; // the one list of earlier versions
    this.adoptLegacy();
  }
  // adoptLegacy moves the list earlier versions kept under one key into
  // entries of their own, and removes it. A tab still running such a
  // version writes that key again whenever it queues or is answered, so
  // the list is taken over not only once but at every read of the outbox
  // (each flush reads it) and whenever another tab writes it (onChange).
  // A message held already is not taken twice, and one sent already is
  // the same message by its client id (the site answers it with the
  // original).
  adoptLegacy() {
    const old = read(this.legacy, null);
    if (!Array.isArray(old)) return;
    old.forEach((m, i) => {
      if (!m?.client_id || localStorage.getItem(this.prefix + m.client_id) !== null) return;
      write(this.prefix + m.client_id, { ...m, at: (Date.parse(m.queued_at) || 0) * 1000 + i });
    });
    localStorage.removeItem(this.legacy);
  }
  // keys are the storage keys of the messages held.
  keys() {
    this.adoptLegacy();
    const out = [];
    for (let i = 0; i < localStorage.length; i++) {
      const k = localStorage.key(i);
      if (k?.startsWith(this.prefix)) out.push(k);
    }
    return out;
  }
  // items is the stored messages, oldest first (each parsed again only
  // when its stored text changed).
  get items() {
    const keys = this.keys();
    const live = new Set(keys);
    for (const k of this.cache.keys()) if (!live.has(k)) this.cache.delete(k);
    const out = [];
    for (const k of keys) {
      const raw = localStorage.getItem(k);
      let c = this.cache.get(k);
      if (!c || c[0] !== raw) this.cache.set(k, c = [raw, parse(raw, null)]);
      if (c[1]?.client_id) out.push(c[1]);
    }
    return out.sort((x, y) => (x.at || 0) - (y.at || 0) || (x.client_id < y.client_id ? -1 : 1));
  }
  add(roomID, text) {
    // After every message held, as this tab sees them, whatever the clock
    // says: a room's messages go out in the order typed.
    const after = this.items.reduce((n, m) => Math.max(n, m.at || 0), this.last);
    this.last = Math.max(Date.now() * 1000, after + 1);
    const item = { client_id: newClientID(), room_id: roomID, text, queued_at: new Date().toISOString(), at: this.last };
    write(this.prefix + item.client_id, item);
    return item;
  }
  // remove takes a message out; false when it was not there.
  remove(clientID) {
    if (!this.has(clientID)) return false;
    localStorage.removeItem(this.prefix + clientID);
    return true;
  }
  has(clientID) { return localStorage.getItem(this.prefix + clientID) !== null; }
  forRoom(roomID) { return this.items.filter((m) => m.room_id === roomID); }
  get size() { return this.keys().length; }
  // clear removes every message (signing out).
  clear() { for (const k of this.keys()) localStorage.removeItem(k); }
  // onChange calls fn when another tab changes the outbox.
  onChange(fn) {
    window.addEventListener("storage", (e) => {
      if (e.key === this.legacy) this.adoptLegacy(); // a tab of an earlier version wrote it
      if (e.key === null || e.key === this.legacy || e.key.startsWith(this.prefix)) fn();
    });
  }
}
