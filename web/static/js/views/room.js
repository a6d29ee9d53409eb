// views/room.js: one chat room — messages grouped by sender and day, each
// with its live unread count; mine that are sent but held for their place
// (their room's site is failing over); the messages still in the outbox;
// infinite scroll back into history; read markers that advance as the
// user reads; the typing indicator; and the composer (Enter sends,
// Shift+Enter breaks the line, Enter while an IME composes Hangul does
// neither).

import { ApiError } from "../api.js";
import { $, avatar, fill, h, reconcile } from "../dom.js";
import { currentLang, dayKey, errorText, fmtDay, fmtTime, t } from "../i18n.js";
import { icon } from "../icons.js";
import { profileDialog, roomSettingsDialog } from "./dialogs.js";

// MAX_MESSAGE_BYTES is a message's limit in UTF-8 bytes (salamander.MaxMessageBytes).
const MAX_MESSAGE_BYTES = 4000;

const PAGE = 50;
const TYPING_RESEND_MS = 3000;
const TYPING_IDLE_MS = 5000;
const EMOJI = "😀 😂 🥹 😊 😍 🥰 😘 😎 🤔 😮 😢 😭 😡 🥳 😴 🙏 👍 👎 👏 🙌 💪 👋 🤝 ❤️ 🧡 💛 💚 💙 💜 🔥 ✨ 🎉 🎂 ☕ 🍜 🍗 🍺 ⚽ 📷 ✅".split(" ");

export class RoomView {
  constructor(app) {
    this.app = app;
    this.roomID = "";
    this.frame = 0;
    this.loadingOlder = false;
    this.asked = new Set(); // users whose profiles were fetched
    this.unsentReads = new Map(); // room id -> a read marker no site took yet
    this.readsOut = new Map(); // client id -> {id, seq}: a read frame not answered yet
    // A read frame carries a client id, so that a refusal is heard of: it
    // goes over HTTP instead; one whose socket closed unanswered is said
    // again on the next.
    app.live.addEventListener("answer", (e) => this.readAnswered(e.detail));
    app.live.addEventListener("closed", () => {
      for (const r of this.readsOut.values()) this.keepRead(r.id, r.seq);
      this.readsOut.clear();
    });
    this.givenBack = new Map(); // room id -> the text of its messages a site refused, for its composer
    this.composing = false;
    this.enterSent = false;
    this.typingSent = 0;
    this.typingTimer = 0;
    this.anchor = null; // distance from the bottom to keep while older messages load

    const input = $("input");
    input.addEventListener("compositionstart", () => { this.composing = true; });
    input.addEventListener("compositionend", () => { this.composing = false; });
    input.addEventListener("keydown", (e) => {
      if (e.key !== "Enter" || e.shiftKey) return;
      // An IME is composing (Hangul): Enter commits the syllable, it
      // does not send.
      if (e.isComposing || e.keyCode === 229 || this.composing) return;
      e.preventDefault();
      this.enterSent = true;
      this.send();
    });
    // The line break of the Enter that sent, should the browser still
    // insert it (some synthetic key events do), is dropped.
    input.addEventListener("beforeinput", (e) => {
      if (this.enterSent && (e.inputType === "insertLineBreak" || e.inputType === "insertParagraph")) e.preventDefault();
    });
    input.addEventListener("keyup", () => { this.enterSent = false; });
    input.addEventListener("input", () => { this.autosize(); this.typing(); });
    input.addEventListener("blur", () => this.stopTyping());
    $("composer").addEventListener("submit", (e) => { e.preventDefault(); this.send(); });
    $("emoji-button").addEventListener("click", () => this.toggleEmoji());
    $("messages").addEventListener("scroll", () => this.onScroll());
    fill($("emoji-panel"), EMOJI.map((e) => h("button", { type: "button", class: "emoji", "aria-label": e,
      onclick: () => this.insert(e) }, e)));
    fill($("emoji-button"), icon("emoji"));
    fill($("send-button"), icon("send"));
    this.relabel();
  }

  get room() { return this.app.model.rooms.get(this.roomID); }

  relabel() {
    $("input").placeholder = t("typeMessage");
    $("input").setAttribute("aria-label", t("typeMessage"));
    $("send-button").setAttribute("aria-label", t("send"));
    $("emoji-button").setAttribute("aria-label", t("emoji"));
    $("emoji-panel").setAttribute("aria-label", t("emojiPicker"));
    $("messages").setAttribute("aria-label", t("messageList"));
    fill($("room-empty"), h("img", { src: "/app/icon.svg", alt: "", class: "logo" }), h("p", {}, t("pickChat")));
    if (this.roomID) this.draw();
  }

  // knowUser fetches a user's profile once, for their display name.
  knowUser(name) {
    const m = this.app.model;
    if (m.users.has(name) || this.asked.has(name)) return;
    this.asked.add(name);
    this.app.api.request("GET", "/v1/users/" + encodeURIComponent(name))
      .then((u) => m.setUser(u), () => this.asked.delete(name));
  }

  async open(id) {
    if (id !== this.roomID) {
      this.stopTyping();
      this.roomID = id;
      this.anchor = null;
      this.latestTries = 0;
      this.stuck = true;
      $("input").value = this.givenBack.get(id) || "";
      this.givenBack.delete(id);
      this.autosize();
      $("emoji-panel").hidden = true;
    }
    $("room").hidden = !id;
    $("room-empty").hidden = !!id;
    if (!id) return;
    if (!this.room) {
      try {
        await this.app.fetchRoom(id);
      } catch {
        // No site answered for a room the page does not know yet (a link
        // opened offline): it is shown empty, not as the room before it,
        // and asked for again while it stays open.
        if (this.roomID === id && !this.room) this.drawUnknown(id);
        return;
      }
      if (this.roomID !== id) return; // another room was opened meanwhile
    }
    clearTimeout(this.openRetry);
    const room = this.room;
    if (!room) { this.app.go("#/chats"); return; }
    for (const u of room.members) this.knowUser(u);
    this.drawHead();
    this.draw();
    await this.loadLatest(room); // at once if loaded already
    this.markRead();
    if (matchMedia("(min-width: 721px)").matches) $("input").focus();
  }

  // drawUnknown shows a room that could not be fetched yet as empty and
  // loading, and asks for it again in a while.
  drawUnknown(id) {
    this.headShown = null;
    this.drawnRoom = null;
    fill($("room-head"), h("a", { href: "#/chats", class: "icon-btn back", "aria-label": t("back") }, icon("back")));
    fill($("messages"), h("div", { class: "history-edge loading" }));
    clearTimeout(this.openRetry);
    this.openRetry = setTimeout(() => { if (this.roomID === id && !this.room) this.open(id); }, 3000);
  }

  // onReconnected runs after a WebSocket (maybe at another site) is live
  // again: read markers no site took are said again, and so is the open
  // room's (a frame on a lost socket may never have arrived); holes in the
  // history are filled, and a room not fetched or loaded yet is asked for.
  onReconnected() {
    this.resendReads();
    const room = this.room;
    if (!room) {
      if (this.roomID) this.open(this.roomID);
      return;
    }
    this.markRead(true);
    if (room.loaded) this.fillGaps(room.id);
    else this.loadLatest(room);
  }

  // The model replaces a room's object whenever the room changes (a room
  // event, the rooms list loaded again), so what a load learns is written
  // to the room as it is when the answer comes, found by its id, never to
  // the object the load began with.
  current(id) { return this.app.model.rooms.get(id); }

  // loadLatest fetches the newest page of a room's history. Until it has
  // answered the room cannot show where it starts, so a load that no site
  // answered is asked again, with a growing pause, for as long as the room
  // stays open (and at once when a WebSocket is live again).
  async loadLatest(room) {
    const id = room.id;
    if (room.loaded || this.loadingLatest === id) return;
    this.loadingLatest = id;
    clearTimeout(this.latestRetry);
    try {
      const page = await this.app.api.request("GET", `/v1/rooms/${encodeURIComponent(id)}/messages?limit=${PAGE}`);
      const cur = this.current(id);
      if (!cur) return;
      cur.loaded = true;
      cur.more = page.more;
      this.latestTries = 0;
      this.app.model.addMessages(id, [...page.messages, ...(page.held || [])]);
      await this.fillGaps(id);
    } catch (e) {
      if (e instanceof ApiError) this.app.toast(errorText(e));
      else {
        this.latestTries = (this.latestTries || 0) + 1;
        this.latestRetry = setTimeout(() => { if (this.roomID === id && this.room) this.loadLatest(this.room); },
          Math.min(15000, 1000 * 2 ** (this.latestTries - 1)));
      }
    } finally {
      if (this.loadingLatest === id) this.loadingLatest = null;
    }
  }

  // fillGaps fetches the messages missing between the oldest and newest
  // known ones (events lost while no site was reachable).
  async fillGaps(id) {
    for (let guard = 0; guard < 20; guard++) {
      const room = this.current(id);
      if (!room) return;
      const seqs = [...room.messages.keys()].sort((a, b) => a - b);
      const i = seqs.findIndex((s, k) => k > 0 && s !== seqs[k - 1] + 1);
      const newest = seqs[seqs.length - 1] || 0;
      let after = -1;
      if (i > 0) after = seqs[i - 1];
      else if (room.last_seq > newest && newest > 0) after = newest;
      if (after < 0) return;
      const page = await this.app.api.request("GET",
        `/v1/rooms/${encodeURIComponent(id)}/messages?after=${after}&limit=200`).catch(() => null);
      if (!page || page.messages.length === 0) return;
      this.app.model.addMessages(id, page.messages);
    }
  }

  async loadOlder() {
    const room = this.room;
    if (!room || !room.loaded || !room.more || this.loadingOlder) return;
    const id = room.id;
    const oldest = Math.min(...room.messages.keys());
    if (!Number.isFinite(oldest) || oldest <= 1) { room.more = false; this.draw(); return; }
    this.loadingOlder = true;
    try {
      const page = await this.app.api.request("GET",
        `/v1/rooms/${encodeURIComponent(id)}/messages?before=${oldest}&limit=${PAGE}`);
      const cur = this.current(id);
      if (!cur) return;
      const el = $("messages");
      if (this.roomID === id) this.anchor = el.scrollHeight - el.scrollTop;
      cur.more = page.more;
      this.olderTries = 0;
      this.app.model.addMessages(id, page.messages);
    } catch (e) {
      if (e instanceof ApiError) this.app.toast(errorText(e));
      // No site answered: a person at the top of the list cannot scroll
      // further to ask again, so the page does, a few times, while they
      // stay there.
      else if ((this.olderTries = (this.olderTries || 0) + 1) <= 5) {
        setTimeout(() => { if (this.roomID === id && $("messages").scrollTop < 120) this.loadOlder(); }, 2000);
      }
    } finally {
      this.loadingOlder = false;
    }
  }

  onScroll() {
    const el = $("messages");
    this.stuck = el.scrollHeight - el.scrollTop - el.clientHeight < 60;
    if (el.scrollTop < 120) this.loadOlder();
  }

  // markRead moves the user's read marker to the newest message while the
  // room is on screen.
  markRead(again = false) {
    const room = this.room;
    if (!room || document.visibilityState !== "visible" || !room.last_seq) return;
    const seq = room.last_seq;
    if (seq <= room.read_seq && !again) return;
    const m = this.app.model;
    m.markRead(room, m.me.name, seq);
    room.unread = Math.max(0, room.last_seq - room.read_seq);
    this.sendRead(room.id, seq);
    m.changed("read", room.id);
  }

  // sendRead says a read marker on the socket, or over HTTP while there is
  // none; one no site took is kept in unsentReads (per room, the newest)
  // and said again on the next live socket, whichever room is open then.
  sendRead(id, seq) {
    const clientID = `r:${id}:${seq}`;
    if (this.app.live.send({ type: "read", room_id: id, seq, client_id: clientID })) {
      this.readsOut.set(clientID, { id, seq });
      return;
    }
    this.readOverHTTP(id, seq);
  }

  readOverHTTP(id, seq) {
    this.app.api.request("POST", `/v1/rooms/${encodeURIComponent(id)}/read`, { seq }, { rounds: 1 })
      .then(() => { if (this.unsentReads.get(id) === seq) this.unsentReads.delete(id); })
      .catch((e) => { if (!(e instanceof ApiError)) this.keepRead(id, seq); }); // a refusal is final
  }

  keepRead(id, seq) {
    if ((this.unsentReads.get(id) || 0) < seq) this.unsentReads.set(id, seq);
  }

  // readAnswered takes the answer to a read frame: a refusal (the site
  // could not, or the room's earlier sends failed) goes over HTTP.
  readAnswered(ev) {
    const r = this.readsOut.get(ev.client_id);
    if (!r) return;
    this.readsOut.delete(ev.client_id);
    if (ev.type === "nack") this.readOverHTTP(r.id, r.seq);
  }

  resendReads() {
    for (const [id, seq] of [...this.unsentReads]) {
      this.unsentReads.delete(id);
      if (this.app.model.rooms.has(id)) this.sendRead(id, seq);
    }
  }

  send() {
    const input = $("input");
    const text = input.value.replace(/^\s*\n|\s+$/g, "");
    if (!text.trim() || !this.roomID) return;
    // Refused here, with the text left where it was: a site would refuse
    // it (its limit counts UTF-8 bytes: ~1,333 Hangul syllables).
    const bytes = new TextEncoder().encode(text).length;
    if (bytes > MAX_MESSAGE_BYTES) {
      this.app.toast(t("tooLong", bytes, MAX_MESSAGE_BYTES));
      return;
    }
    try {
      this.app.sender.queue(this.roomID, text);
    } catch {
      this.app.toast(t("notQueued")); // the browser's storage is full: the text stays
      return;
    }
    input.value = "";
    this.autosize();
    this.stopTyping();
    $("emoji-panel").hidden = true;
    this.stuck = true;
    this.draw();
    this.app.drawConn();
  }

  // giveBack returns the text of a message a site refused to its room's
  // composer — at once when that room is open and its composer empty,
  // else when the room is opened next — so that nothing typed is lost.
  giveBack(m) {
    if (m.room_id === this.roomID && !$("input").value.trim()) {
      $("input").value = m.text;
      this.autosize();
      return;
    }
    const before = this.givenBack.get(m.room_id);
    this.givenBack.set(m.room_id, before ? before + "\n" + m.text : m.text);
  }

  typing() {
    if (!this.roomID || !$("input").value.trim()) return;
    const now = Date.now();
    if (now - this.typingSent > TYPING_RESEND_MS) {
      this.typingSent = now;
      this.app.live.send({ type: "typing", room_id: this.roomID, typing: true });
    }
    clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.typingTimer);
    if (!this.typingSent || !this.roomID) return;
    this.typingSent = 0;
    this.app.live.send({ type: "typing", room_id: this.roomID, typing: false });
  }

  // autosize grows the composer with its text where CSS cannot
  // (field-sizing).
  autosize() {
    if (CSS.supports("field-sizing", "content")) return;
    const input = $("input");
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 140) + "px";
  }

  toggleEmoji() {
    const p = $("emoji-panel");
    p.hidden = !p.hidden;
    $("emoji-button").setAttribute("aria-expanded", String(!p.hidden));
  }

  insert(text) {
    const input = $("input");
    const { selectionStart: a, selectionEnd: b, value } = input;
    input.value = value.slice(0, a) + text + value.slice(b);
    input.selectionStart = input.selectionEnd = a + text.length;
    input.focus();
    this.autosize();
  }

  // drawHead redraws the room's header only when what it shows changed:
  // it is asked on every message, and replacing its buttons each time
  // would drop the keyboard focus from them and lose a click whose press
  // and release land on different elements.
  drawHead() {
    const room = this.room;
    if (!room) return;
    const m = this.app.model;
    const other = m.otherMember(room);
    const title = m.roomTitle(room);
    const online = !!(other && m.presence.get(other));
    const sub = other
      ? (online ? t("online") : m.users.get(other)?.status || "")
      : t("members", room.members.length);
    const label = other ? m.displayName(other) : title;
    const shown = JSON.stringify([room.id, room.kind, other, title, label, sub, online, room.members.length, currentLang()]);
    if (shown === this.headShown && $("room-head").firstChild) return;
    this.headShown = shown;
    // The handlers read the room when clicked: the model may have replaced it since.
    fill($("room-head"),
      h("a", { href: "#/chats", class: "icon-btn back", "aria-label": t("back") }, icon("back")),
      h("button", { class: "room-who", onclick: () => other ? profileDialog(this.app, other) : this.room && roomSettingsDialog(this.app, this.room) },
        avatar(other || room.id, label),
        h("span", { class: "room-names" },
          h("h2", { id: "room-title" }, title, room.kind === "group" ? h("span", { class: "count" }, room.members.length) : null),
          sub ? h("span", { class: "room-sub" + (online ? " online" : "") }, sub) : null)),
      room.kind === "group"
        ? h("button", { class: "icon-btn", id: "room-settings", "aria-label": t("roomSettings"), title: t("roomSettings"),
          onclick: () => this.room && roomSettingsDialog(this.app, this.room) }, icon("more"))
        : null);
  }

  drawTyping() {
    const m = this.app.model;
    const who = m.typers(this.roomID).map((u) => m.displayName(u));
    fill($("typing"), who.length ? [h("span", { class: "dots", "aria-hidden": "true" }, h("i"), h("i"), h("i")), t("typing", who.join(", "))] : null);
  }

  scheduleDraw() {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => { this.frame = 0; this.draw(); this.drawHead(); this.markRead(); });
  }

  draw() {
    const room = this.room;
    if (!room) return;
    const m = this.app.model;
    const me = m.me.name;
    const el = $("messages");
    const msgs = m.sortedMessages(room);
    const mine = new Set(msgs.filter((x) => x.sender === me).map((x) => x.client_id));
    const pending = this.app.outbox.forRoom(room.id).filter((p) => !mine.has(p.client_id) && !room.held.has(p.client_id));
    // Each item has a key and a signature of what it shows: reconcile
    // keeps the elements whose signature did not change (see dom.js).
    const lang = currentLang();
    const items = [];
    const edge = room.loaded && !room.more ? "beginning" : room.loaded ? "older" : "loading";
    items.push({ key: "edge", sig: edge + lang, make: () => edge === "beginning"
      ? h("div", { class: "history-edge" }, t("beginning"))
      : h("div", { class: "history-edge loading" }, edge === "older" ? t("loadingOlder") : "") });
    const minute = (x) => Math.floor(Date.parse(x.sent_at) / 60000);
    const together = (a, b) => a && b && a.sender === b.sender && minute(a) === minute(b);
    const message = (key, x, opts) => {
      const name = opts.mine ? "" : m.displayName(x.sender);
      const sig = JSON.stringify([x.seq, x.client_id, x.sender, name, x.text, x.sent_at, lang,
        opts.first, opts.last, opts.unread, !!opts.pending, !!opts.held]);
      return { key, sig, make: () => bubble(this.app, x, opts) };
    };
    let prev = null;
    msgs.forEach((x, i) => {
      const next = msgs[i + 1];
      if (!prev || dayKey(prev.sent_at) !== dayKey(x.sent_at)) {
        const day = dayKey(x.sent_at);
        items.push({ key: "day:" + day, sig: day + lang,
          make: () => h("div", { class: "day", role: "separator" }, h("span", {}, fmtDay(x.sent_at))) });
        prev = null;
      }
      const first = !together(prev, x);
      const last = !together(x, next) || (next && dayKey(next.sent_at) !== dayKey(x.sent_at));
      const unread = m.unreadBy(room, x.seq);
      items.push(message("seq:" + x.seq, x, { mine: x.sender === me, first, last, unread }));
      prev = x;
    });
    for (const x of room.held.values()) {
      items.push(message("held:" + x.client_id, x, { mine: true, first: true, last: true, held: true }));
    }
    for (const p of pending) {
      items.push(message("pending:" + p.client_id, { sender: me, text: p.text, client_id: p.client_id, sent_at: p.queued_at },
        { mine: true, first: true, last: true, pending: true }));
    }
    const stick = this.stuck !== false;
    if (this.drawnRoom !== room.id) {
      this.drawn = new Map(); // keys are a room's own
      this.drawnRoom = room.id;
    }
    reconcile(el, items, this.drawn);
    if (this.anchor !== null) {
      el.scrollTop = el.scrollHeight - this.anchor;
      this.anchor = null;
    } else if (stick) {
      el.scrollTop = el.scrollHeight;
    }
    this.drawTyping();
    if (room.loaded && room.more && el.scrollHeight <= el.clientHeight + 120) this.loadOlder();
  }
}

// bubble is one message: the sender's avatar and name on the first of a
// run, the time on the last, and beside mine (and others') the count of
// members who have not read it — or, on one of mine not sent yet, a clock,
// and on one sent but held for its place (no seq yet), a check.
function bubble(app, x, { mine, first, last, unread, pending, held }) {
  const m = app.model;
  const cls = ["msg", mine ? "mine" : "theirs", first ? "first" : "", last ? "last" : "", pending ? "pending" : "",
    held ? "held" : ""].filter(Boolean).join(" ");
  const meta = h("span", { class: "meta" },
    pending
      ? h("span", { class: "state", title: t("notSent") }, "◷")
      : held ? h("span", { class: "state", title: t("sentHeld"), "aria-label": t("sentHeld") }, "✓")
        : unread > 0 ? h("span", { class: "unread", "aria-label": t("unreadBy", unread) }, unread) : null,
    last ? h("time", { datetime: x.sent_at }, fmtTime(x.sent_at)) : null);
  const dataset = pending ? { clientId: x.client_id } : held ? { clientId: x.client_id, held: "" } : { seq: x.seq, clientId: x.client_id };
  return h("div", { class: cls, dataset },
    !mine && first ? h("button", { class: "msg-avatar", "aria-label": m.displayName(x.sender),
      onclick: () => profileDialog(app, x.sender) }, avatar(x.sender, m.displayName(x.sender))) : null,
    h("div", { class: "msg-body" },
      !mine && first ? h("div", { class: "sender" }, m.displayName(x.sender)) : null,
      h("div", { class: "line" }, h("div", { class: "bubble" }, h("span", { class: "text" }, x.text)), meta)));
}
