// api.js: the failover client. It knows every site (GET /v1/sites), sends
// each request to the current one and, when that site cannot serve (a
// network error, a timeout, or 500/502/503/504), moves to the next and
// tries again, backing off with full jitter after each round through all
// of them — as the Go SDK (client/failover.go) does. Live keeps one
// WebSocket open to the current site and resumes from its cursor wherever
// it reconnects, dropping events it has already passed.

export const REQUEST_TIMEOUT_MS = 8000;
// OWN_FIRST_MS is how long the page waits for its own site's list of sites
// before it takes another site's.
const OWN_FIRST_MS = 1500;
const MIN_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 3000;
const FAILOVER_STATUS = new Set([500, 502, 503, 504]);

// ApiError is a final answer from a working site: {code, message}.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code);
    this.status = status;
    this.code = code;
  }
}

// SiteDown is a failed attempt at one site: try another.
class SiteDown extends Error {}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// backoff is the pause before round n (n ≥ 1) through the sites.
export function backoff(n) {
  const ceil = Math.min(MAX_BACKOFF_MS, MIN_BACKOFF_MS * 2 ** Math.max(0, n - 1));
  return Math.random() * ceil;
}

// Cursor is the client's place in the event log: per stream, the newest
// position it has passed. It is opaque on the wire ("acct:4095,p2:3071").
export class Cursor {
  constructor(s = "") {
    this.pos = new Map();
    this.merge(s);
  }
  // seen reports whether an event at pos was passed already.
  seen(pos) { return pos.seq <= (this.pos.get(pos.stream) || 0); }
  advance(pos) {
    if (!this.seen(pos)) this.pos.set(pos.stream, pos.seq);
  }
  // merge advances to every position of a cursor string.
  merge(s) {
    for (const part of (s || "").split(",")) {
      const i = part.lastIndexOf(":");
      if (i <= 0) continue;
      const seq = Number(part.slice(i + 1));
      if (Number.isSafeInteger(seq)) this.advance({ stream: part.slice(0, i), seq });
    }
  }
  toString() {
    return [...this.pos.keys()].sort().map((k) => `${k}:${this.pos.get(k)}`).join(",");
  }
}

// Api makes requests with failover. It emits "site" when the current site
// changes, "down" (detail: site index) when a site failed, and
// "unauthorized" when the session is no longer valid, "suspended" when its
// account is suspended.
export class Api extends EventTarget {
  constructor() {
    super();
    this.sites = [{ name: "", url: location.origin }];
    this.index = 0;
    this.token = "";
    // renewing settles when the password change in flight (renew) is
    // over; null when none is.
    this.renewing = null;
  }

  // renew runs fn, a change of this session (a password change), which
  // resolves to the new session. A site ends every session of the
  // account as it applies the change, before its answer — the new
  // session — arrives: a request refused 401 meanwhile waits for the
  // change and, if the token was replaced, goes again with the new one
  // instead of signing the page out (attempt), and Live reconnects with
  // it. fn's own requests pass { own: true }.
  async renew(fn) {
    let done;
    this.renewing = new Promise((r) => { done = r; });
    try {
      const s = await fn();
      this.token = s.token;
      return s;
    } finally {
      this.renewing = null;
      done();
    }
  }

  get site() { return this.sites[this.index]; }

  // discover learns every site from the page's own site (or, if that one
  // is down or slow, from any site it knew), own site first. Every known
  // site is asked at once: a hung own site (it takes connections and
  // answers nothing) costs OWN_FIRST_MS, not a request timeout per site.
  async discover(known = []) {
    const urls = [location.origin, ...known.map((s) => s.url).filter((u) => u !== location.origin)];
    const ask = async (base) => {
      const res = await fetchTimeout(base + "/v1/sites", {});
      if (!res.ok) throw new Error(`${base}: ${res.status}`);
      return { base, ...(await res.json()) };
    };
    const asks = urls.map(ask);
    for (const a of asks) a.catch(() => { /* judged below */ });
    let answer = null;
    try {
      answer = await Promise.race([asks[0], new Promise((_, no) => setTimeout(no, OWN_FIRST_MS))]);
    } catch {
      answer = await Promise.any(asks).catch(() => null);
    }
    if (!answer) {
      if (known.length) this.sites = known;
      return this.sites;
    }
    const { base, site, sites } = answer;
    if (!sites || sites.length === 0) return this.sites;
    const list = sites.map((s) => ({ name: s.name, url: s.url.replace(/\/+$/, "") }));
    // The page's own site is reached at the page's origin (same origin,
    // whatever name the site gives itself), and first.
    const own = list.findIndex((s) => s.name === site);
    if (base === location.origin && own >= 0) {
      list[own].url = location.origin;
      list.unshift(...list.splice(own, 1));
    }
    this.sites = list;
    this.index = 0;
    return list;
  }

  // moveOn leaves site i (if it is still the current one) for the next.
  moveOn(i, why) {
    this.dispatchEvent(new CustomEvent("down", { detail: { index: i, why } }));
    if (i !== this.index) return;
    this.index = (i + 1) % this.sites.length;
    this.dispatchEvent(new CustomEvent("site", { detail: this.site }));
  }

  // request makes one API call, failing over between sites until one gives
  // a final answer. It gives up after `rounds` rounds through every site
  // (Infinity: never), throwing the last failure.
  async request(method, path, body, { rounds = 3, own = false } = {}) {
    const n = this.sites.length;
    let last = null;
    for (let tries = 0; ; tries++) {
      if (tries > 0 && tries % n === 0) {
        if (tries / n >= rounds) throw last;
        await sleep(backoff(tries / n));
      }
      const i = this.index;
      try {
        return await this.attempt(this.sites[i].url, method, path, body, own);
      } catch (e) {
        if (!(e instanceof SiteDown)) throw e;
        last = e;
        this.moveOn(i, e.message);
      }
    }
  }

  async attempt(base, method, path, body, own = false) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = this.token;
    if (token) headers.Authorization = "Bearer " + token;
    let res;
    try {
      res = await fetchTimeout(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new SiteDown(`${base}: ${e.name === "AbortError" ? "no answer in time" : e.message}`);
    }
    const data = res.status === 204 ? null : await res.json().catch(() => null);
    if (FAILOVER_STATUS.has(res.status)) {
      throw new SiteDown(`${base}: ${res.status} ${data?.message || ""}`);
    }
    if (!res.ok) {
      const err = new ApiError(res.status, data?.code || "http_" + res.status, data?.message || res.statusText);
      if (res.status === 401 && token) {
        // Refused a session this page has replaced since, or is replacing
        // (a password change ends it before the new one is answered): ask
        // again with the new one rather than sign out.
        if (this.renewing && !own) await this.renewing;
        if (this.token && this.token !== token) return this.attempt(base, method, path, body, own);
        // The change's own requests leave it to their caller: a retry
        // after a change whose answer was lost finds its session ended.
        if (this.token === token && !own) this.dispatchEvent(new Event("unauthorized"));
      }
      // /v1/me refuses only a suspended account's session (403).
      if (res.status === 403 && path === "/v1/me" && this.token) this.dispatchEvent(new Event("suspended"));
      throw err;
    }
    return data;
  }
}

function fetchTimeout(url, init) {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), REQUEST_TIMEOUT_MS);
  return fetch(url, { ...init, signal: ctl.signal, cache: "no-store" }).finally(() => clearTimeout(timer));
}

// Live keeps one WebSocket open to the API's current site. Each connection
// resumes from the cursor: the site replays what came after it, says
// "ready", and goes on live. Stored events at or behind the cursor are
// dropped. A browser sees neither the site's WebSocket pings nor a site
// that hangs with its sockets open, so a socket quiet for QUIET_MS is
// asked with a "ping" frame, which a serving site acks at once; with no
// answer within PING_ANSWER_MS the site counts as hung and the page moves
// on. It emits:
//   "state"  detail {state: "connecting"|"live"|"moving"|"offline", site}
//   "event"  detail: an event to apply (before "ready": the backlog)
//   "ready"  detail: the ready event (cursor, incidents)
//   "answer" detail: an ack or nack of a frame this client sent
//   "open" / "closed" when a socket opens or closes (detail: its id)
//   "hung"   detail: the site index, when a ping went unanswered
export const QUIET_MS = 10000;
export const PING_ANSWER_MS = 5000;
const WATCH_MS = 500;
const PING_PREFIX = "ping-";
// CLOSE_TOO_MANY_SOCKETS closes the oldest of an account's sockets at a
// site beyond the 256 it keeps (salamander.CloseTooManySockets): the page
// stops (state "replaced") rather than reconnect, which would close the
// next oldest, whose device would reconnect in turn, round and round. Its
// user reconnects it (start) when they want.
export const CLOSE_TOO_MANY_SOCKETS = 4008;

export class Live extends EventTarget {
  constructor(api, cursor) {
    super();
    this.api = api;
    this.cursor = cursor;
    this.ws = null;
    this.drop = null; // leaves the current socket at once
    this.socketId = 0;
    this.pings = 0;
    this.wsIndex = -1;
    this.state = "connecting";
    this.running = false;
    this.fails = 0;
    this.wake = null;
    // A request that finds the socket's site down leaves the socket too.
    api.addEventListener("down", (e) => {
      if (this.ws && e.detail.index === this.wsIndex) this.reconnect();
    });
  }

  get open() { return this.ws !== null && this.ws.readyState === WebSocket.OPEN && this.state === "live"; }

  start() {
    if (this.running) return;
    this.running = true;
    this.loop();
  }

  stop() {
    this.running = false;
    if (this.ws) this.ws.close(1000, "bye");
    if (this.wake) this.wake();
  }

  // send writes a frame on the open socket; false when there is none.
  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  // reconnect leaves the socket (its site stopped answering) and moves on
  // without waiting for the close handshake, which a hung site never ends.
  reconnect() {
    if (this.drop) this.drop();
  }

  setState(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, site: this.api.site } }));
  }

  async loop() {
    const n = () => this.api.sites.length;
    while (this.running) {
      if (this.fails > 0 && this.fails % n() === 0) {
        this.setState("offline");
        await new Promise((r) => { this.wake = r; setTimeout(r, backoff(this.fails / n())); });
        this.wake = null;
        if (!this.running) return;
        // Ask over HTTP too: it fails over by itself and tells a revoked
        // session (401) from a site that is down.
        try { await this.api.request("GET", "/v1/me", undefined, { rounds: 1 }); } catch { /* counted below */ }
      }
      // A password change of this page ends the socket's session before
      // the new one is answered: reconnect with the new one.
      if (this.api.renewing) await this.api.renewing;
      const i = this.api.index;
      const ready = await this.connect(i);
      if (!this.running) return;
      this.fails = ready ? 1 : this.fails + 1;
      this.setState(this.fails % n() === 0 ? "offline" : "moving");
      this.api.moveOn(i, "live events lost");
    }
  }

  // connect runs one socket to site i until it closes or is left; it
  // resolves whether the site finished replaying the backlog.
  connect(i) {
    return new Promise((resolve) => {
      const site = this.api.sites[i];
      // The token goes in the handshake's Sec-WebSocket-Protocol header
      // (a page cannot set Authorization), not in the URL, which proxies
      // write to their access logs.
      const q = new URLSearchParams();
      const cur = this.cursor.toString();
      if (cur) q.set("cursor", cur);
      const ws = new WebSocket(site.url.replace(/^http/, "ws") + "/v1/ws?" + q,
        ["salamander.v1", "bearer." + this.api.token]);
      const id = ++this.socketId;
      let ready = false;
      let done = false;
      let heard = Date.now(); // when the site last sent anything
      let pingID = "";        // the ping sent since, if any
      let pingAt = 0;
      const finish = () => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(watch);
        ws.onopen = ws.onmessage = ws.onclose = null;
        if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) ws.close();
        if (this.ws === ws) { this.ws = null; this.drop = null; }
        this.dispatchEvent(new CustomEvent("closed", { detail: id }));
        resolve(ready);
      };
      this.ws = ws;
      this.drop = finish;
      this.wsIndex = i;
      if (this.state !== "moving") this.setState("connecting");
      const timer = setTimeout(() => { if (!ready) finish(); }, 2 * REQUEST_TIMEOUT_MS);
      // The watch pings a quiet socket and leaves it when the ping goes
      // unanswered: the site hangs (a stopped process, a frozen machine,
      // a link that drops packets without resetting the connection).
      const watch = setInterval(() => {
        if (!ready || ws.readyState !== WebSocket.OPEN) return;
        const now = Date.now();
        if (pingID) {
          if (now - pingAt < PING_ANSWER_MS) return;
          this.dispatchEvent(new CustomEvent("hung", { detail: i }));
          finish();
          return;
        }
        if (now - heard < QUIET_MS) return;
        pingID = `${PING_PREFIX}${id}-${++this.pings}`;
        pingAt = now;
        ws.send(JSON.stringify({ type: "ping", client_id: pingID }));
      }, WATCH_MS);
      ws.onopen = () => this.dispatchEvent(new CustomEvent("open", { detail: id }));
      ws.onmessage = (m) => {
        // Anything the site sends shows it still serves this socket.
        heard = Date.now();
        pingID = "";
        let ev;
        try { ev = JSON.parse(m.data); } catch { return; }
        if ((ev.type === "ack" || ev.type === "nack") && ev.client_id?.startsWith(PING_PREFIX)) {
          // A nack: the site is up but cannot serve; move on.
          if (ev.type === "nack" && ev.client_id.startsWith(`${PING_PREFIX}${id}-`)) finish();
          return;
        }
        switch (ev.type) {
          case "ack": case "nack":
            this.dispatchEvent(new CustomEvent("answer", { detail: ev }));
            return;
          case "ready":
            ready = true;
            this.cursor.merge(ev.cursor);
            this.setState("live");
            this.dispatchEvent(new CustomEvent("ready", { detail: ev }));
            return;
          case "move":
            // The site is drained: leave now, before it closes the socket.
            finish();
            return;
        }
        if (ev.pos) {
          if (this.cursor.seen(ev.pos)) return;
          this.dispatchEvent(new CustomEvent("event", { detail: ev }));
          this.cursor.advance(ev.pos);
          return;
        }
        this.dispatchEvent(new CustomEvent("event", { detail: ev }));
      };
      ws.onclose = (e) => {
        if (e.code === CLOSE_TOO_MANY_SOCKETS) {
          this.running = false;
          this.setState("replaced");
        }
        finish();
      };
    });
  }
}
