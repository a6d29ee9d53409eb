// sender.js: sends the outbox. While the WebSocket is live every waiting
// message goes over it as a "send" frame, pipelined; otherwise they go one
// at a time over HTTP with failover. Every retry — on another socket, at
// another site, after a reload — carries the message's one client id, so
// the log stores it once: an answer with duplicate:true is the original.
//
// Each room's messages are committed in the order they were queued: one
// flush at a time writes frames in outbox order, and a site carries out
// one socket's sends to a room one at a time, in the order written,
// refusing the ones behind a send that failed (to be resent in order). A
// failure that ends the socket — a nack saying the site cannot, no
// answer in time, a close — drops every frame on it, and the next socket
// (or HTTP, one message at a time) starts again from each room's oldest
// unacknowledged message; after a rate-limit nack the refused frames go
// again on the same socket, in order, once the pause is over. Rooms do
// not wait for one another on a socket.

import { ApiError, REQUEST_TIMEOUT_MS } from "./api.js";

// Codes that mean "this site could not; resend here or elsewhere".
const RETRY_CODES = new Set(["unavailable", "internal"]);
// KEEP_CODES end the session, not the message: it stays in the outbox.
const KEEP_CODES = new Set(["unauthorized"]);
const HTTP_AFTER_MS = 2000; // how long a message waits for a socket before HTTP
// Frames sent and not yet answered, at most: well under the site's 256 per
// socket, beyond which sends are refused (too_many_requests).
const MAX_INFLIGHT = 64;

export class Sender extends EventTarget {
  // onSent(message) is called with each acknowledged message (held ones
  // too: held true, seq 0, placed later by their message event); onRefused
  // (item, error) with one a site refused for good (it leaves the outbox).
  constructor(api, live, outbox, { onSent, onRefused }) {
    super();
    this.api = api;
    this.live = live;
    this.outbox = outbox;
    this.onSent = onSent;
    this.onRefused = onRefused;
    // Frames awaiting their answers, in the order written: client id ->
    // {socket, room, at}. at is when its wait began to count against the
    // site (see checkStalled); 0 while an earlier frame to its room awaits
    // its answer on the same socket.
    this.inflight = new Map();
    this.busy = false;
    this.again = false;
    this.timer = 0;
    this.holdUntil = 0; // after too_many_requests
    live.addEventListener("answer", (e) => this.answer(e.detail));
    live.addEventListener("ready", () => this.kick());
    live.addEventListener("closed", (e) => {
      // Frames on a closed socket lost their answers: send them again.
      for (const [id, f] of this.inflight) if (f.socket === e.detail) this.inflight.delete(id);
      this.kick();
    });
    setInterval(() => this.checkStalled(), 1000);
  }

  // queue adds a message to the outbox and starts sending it.
  queue(roomID, text) {
    const item = this.outbox.add(roomID, text);
    this.kick();
    return item;
  }

  // sent is called for a message seen committed (an ack, an HTTP answer or
  // a message event): it leaves the outbox.
  sent(message) {
    this.landed(message.client_id);
    this.outbox.remove(message.client_id);
    this.onSent(message);
    if (this.outbox.size > this.inflight.size) this.kick(); // a frame's slot is free
  }

  kick() {
    if (this.busy) { this.again = true; return; }
    this.flush();
  }

  async flush() {
    this.busy = true;
    try {
      do {
        this.again = false;
        await this.flushOnce();
      } while (this.again);
    } finally {
      this.busy = false;
    }
  }

  async flushOnce() {
    const wait = this.holdUntil - Date.now();
    if (wait > 0) {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.kick(), wait);
      return;
    }
    if (this.live.open) {
      for (const m of this.outbox.items) {
        if (this.inflight.size >= MAX_INFLIGHT) break; // the next answer sends more
        if (this.inflight.has(m.client_id)) continue;
        const frame = { type: "send", room_id: m.room_id, client_id: m.client_id, text: m.text };
        if (!this.live.send(frame)) break;
        const socket = this.live.socketId;
        const behind = [...this.inflight.values()].some((f) => f.socket === socket && f.room === m.room_id);
        this.inflight.set(m.client_id, { socket, room: m.room_id, at: behind ? 0 : Date.now() });
      }
      return;
    }
    // No socket: after a short wait for one (none when none is coming:
    // offline, or closed for too many devices), HTTP, one message at a time
    // (in order), until a socket is live again. A room with a frame still
    // awaiting its answer (its socket is closing: the close gives it up
    // and kicks again) sends nothing after it meanwhile.
    const waiting = new Set(); // such rooms
    for (const m of this.outbox.items) { // a list never changed in place
      if (this.live.open) { this.again = true; return; }
      if (!this.outbox.has(m.client_id)) continue;
      if (waiting.has(m.room_id) || this.inflight.has(m.client_id)) {
        waiting.add(m.room_id);
        continue;
      }
      const waited = Date.now() - Date.parse(m.queued_at);
      if (waited < HTTP_AFTER_MS && this.live.state !== "offline" && this.live.state !== "replaced") {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.kick(), HTTP_AFTER_MS - waited);
        return;
      }
      try {
        const r = await this.api.request("POST", `/v1/rooms/${encodeURIComponent(m.room_id)}/messages`,
          { client_id: m.client_id, text: m.text }, { rounds: 1 });
        this.sent(r.message);
      } catch (e) {
        if (e instanceof ApiError && e.code === "too_many_requests") {
          this.hold(2000);
          return;
        }
        if (e instanceof ApiError && KEEP_CODES.has(e.code)) {
          // The session ended, not the message: the page signs out, and
          // the outbox (kept per account) sends it under its client id
          // after the next sign-in — an earlier attempt that landed is
          // then answered as the original, where a text given back to the
          // composer would be sent again as a new message.
          return;
        }
        if (e instanceof ApiError) {
          this.refused(m, e);
          continue;
        }
        // Every site failed this round: try again after a pause.
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.kick(), 1000);
        return;
      }
    }
  }

  answer(ev) {
    if (!this.inflight.has(ev.client_id) && !this.outbox.has(ev.client_id)) return;
    if (ev.type === "ack" && ev.message) {
      this.sent(ev.message);
      return;
    }
    this.landed(ev.client_id);
    const code = ev.error?.code || "internal";
    if (RETRY_CODES.has(code)) {
      this.live.reconnect(); // this site cannot: the next one will get it
    } else if (code === "too_many_requests") {
      this.hold(2000);
    } else if (KEEP_CODES.has(code)) {
      // (see flush: kept for after the next sign-in)
    } else {
      const m = this.outbox.items.find((x) => x.client_id === ev.client_id);
      if (m) this.refused(m, new ApiError(0, code, ev.error?.message));
    }
  }

  refused(m, err) {
    this.landed(m.client_id);
    this.outbox.remove(m.client_id);
    this.onRefused(m, err);
  }

  hold(ms) {
    this.holdUntil = Date.now() + ms;
    this.kick();
  }

  // landed takes a frame out of those awaiting answers (answered, or its
  // message seen committed or refused) and starts the clock of the next
  // frame to its room on its socket: the site carries that one out now.
  landed(clientID) {
    const f = this.inflight.get(clientID);
    if (!f) return;
    this.inflight.delete(clientID);
    for (const g of this.inflight.values()) {
      if (g.socket !== f.socket || g.room !== f.room) continue;
      if (!g.at) g.at = Date.now();
      return;
    }
  }

  // checkStalled gives up on a socket whose site has not answered a frame
  // in time (it may be hanging, not closed). A frame's time counts from
  // when no earlier frame to its room awaits an answer on the socket: the
  // site carries out one socket's sends to a room one at a time, so until
  // then it waits behind their commits, however many, and that says
  // nothing against the site. From then on it is one send's commit,
  // bounded like any request.
  checkStalled() {
    const now = Date.now();
    for (const f of this.inflight.values()) {
      if (f.socket === this.live.socketId && f.at && now - f.at > REQUEST_TIMEOUT_MS) {
        this.live.reconnect();
        return;
      }
    }
    if (this.outbox.size > 0 && !this.busy && this.inflight.size === 0) this.kick();
  }
}
