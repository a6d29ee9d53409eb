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
}

// newClientID is a fresh random client message id (32 hex digits).
export function newClientID() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

// Outbox holds a user's messages until a site acknowledges them, oldest
// first: {client_id, room_id, text, queued_at}. Every read and change goes
// to localStorage itself: the user's other tabs share the outbox, and a
// list kept here would write back over what they queued or took out
// (their messages would be lost). Two tabs may then both send a message;
// its client id makes that one message.
export class Outbox {
  constructor(user) {
    this.key = `salamander.outbox.${user}`;
    this.raw = null;   // the stored text last parsed,
    this.parsed = [];  // and what it parsed to (never changed in place)
  }
  // items is the stored list; parsed again only when the stored text
  // changed (an ack reads it several times).
  get items() {
    const raw = localStorage.getItem(this.key);
    if (raw !== this.raw) {
      this.raw = raw;
      this.parsed = parse(raw, []);
    }
    return this.parsed;
  }
  add(roomID, text) {
    const item = { client_id: newClientID(), room_id: roomID, text, queued_at: new Date().toISOString() };
    write(this.key, [...this.items, item]);
    return item;
  }
  // remove takes a message out; false when it was not there.
  remove(clientID) {
    const items = this.items;
    const left = items.filter((m) => m.client_id !== clientID);
    if (left.length === items.length) return false;
    write(this.key, left);
    return true;
  }
  has(clientID) { return this.items.some((m) => m.client_id === clientID); }
  forRoom(roomID) { return this.items.filter((m) => m.room_id === roomID); }
  get size() { return this.items.length; }
  // onChange calls fn when another tab changes the outbox.
  onChange(fn) {
    window.addEventListener("storage", (e) => { if (e.key === this.key) fn(); });
  }
}
