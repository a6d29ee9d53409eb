// model.js: what the app knows — rooms with their messages and read
// markers, friends, presence, who is typing, open incidents — built from
// API answers and the live events, and nothing else. A message is kept
// once per (room, seq), however often it arrives. A message of mine
// acknowledged held (held: true, seq 0: its room's site was failing over)
// is sent but has no place yet: it waits in room.held, by client id,
// until its message event — same client id, with its seq — places it.
// It emits "change" with detail {what, room} after each change, for the
// views to redraw.

const TYPING_SHOWN_MS = 6000;

export class Model extends EventTarget {
  constructor(me) {
    super();
    this.me = me;                 // the signed-in user's profile
    this.rooms = new Map();       // id -> room (as the API gives it) + messages
    this.friends = new Map();     // name -> profile
    this.users = new Map();       // name -> profile, of everyone seen
    this.presence = new Map();    // name -> online
    this.typing = new Map();      // room id -> Map(user -> until)
    this.incidents = new Map();   // id -> open incident
    // clock counts the changes made to rooms and presence by anything
    // but a list loaded whole (live events, a room fetched or changed by
    // the user); touched holds each room's and user's last one. A list
    // asked for at clock c leaves alone what was touched after c: its
    // answer is older than that change.
    this.clock = 0;
    this.touched = new Map();     // "room:" + id or "presence:" + name -> clock
    this.users.set(me.name, me);
  }

  touch(key) { this.touched.set(key, ++this.clock); }
  touchedSince(key, since) { return (this.touched.get(key) || 0) > since; }

  changed(what, room) {
    this.dispatchEvent(new CustomEvent("change", { detail: { what, room } }));
  }

  // displayName is a user's display name when known, else their name.
  displayName(name) {
    return this.users.get(name)?.display_name || name;
  }

  // roomTitle is a group's name, or the other member's name in a 1:1 room.
  roomTitle(room) {
    if (room.kind === "direct") {
      const other = room.members.find((m) => m !== this.me.name) || this.me.name;
      return this.displayName(other);
    }
    return room.name || room.members.filter((m) => m !== this.me.name).map((m) => this.displayName(m)).join(", ");
  }

  otherMember(room) {
    return room.kind === "direct" ? room.members.find((m) => m !== this.me.name) : null;
  }

  // setRoom takes a room from an API answer (or a room event), keeping the
  // messages already known and the newer of each read marker.
  setRoom(r) {
    this.touch("room:" + r.id);
    return this.mergeRoom(r);
  }

  // setRoomAsked is setRoom for an answer asked for at clock since: it is
  // dropped if the room changed after that.
  setRoomAsked(r, since) {
    return this.touchedSince("room:" + r.id, since) ? this.rooms.get(r.id) : this.mergeRoom(r);
  }

  // setRooms takes the whole list of the user's rooms, asked for at clock
  // since: rooms changed after that keep what the change said, and a room
  // missing from the list (left on another device) is dropped unless it
  // changed after that (it was just made, say).
  setRooms(list, since) {
    const ids = new Set();
    for (const r of list) {
      ids.add(r.id);
      this.setRoomAsked(r, since);
    }
    for (const id of [...this.rooms.keys()]) {
      if (!ids.has(id) && !this.touchedSince("room:" + id, since)) this.forgetRoom(id);
    }
  }

  // dropRoom forgets a room the user left.
  dropRoom(id) {
    this.touch("room:" + id);
    this.forgetRoom(id);
  }

  forgetRoom(id) {
    this.rooms.delete(id);
    this.changed("rooms", id);
  }

  // setRoomChanged takes the answer to the user's own change of a room,
  // asked for at clock since: it carries that change, but a room event
  // may have come with a newer one meanwhile; either way no list asked
  // for before it may undo it.
  setRoomChanged(r, since) {
    this.setRoomAsked(r, since);
    this.touch("room:" + r.id);
  }

  mergeRoom(r) {
    const old = this.rooms.get(r.id);
    const room = { ...(old || { messages: new Map(), held: new Map(), more: true, loaded: false }), ...r };
    room.read_markers = { ...(r.read_markers || {}) };
    if (old) {
      for (const [u, s] of Object.entries(old.read_markers)) {
        if (u in room.read_markers) room.read_markers[u] = Math.max(room.read_markers[u], s);
      }
      room.last_seq = Math.max(old.last_seq, r.last_seq || 0);
      room.read_seq = Math.max(old.read_seq, r.read_seq || 0);
      if (old.last_message && (!r.last_message || old.last_message.seq > r.last_message.seq)) {
        room.last_message = old.last_message;
      }
    }
    room.unread = Math.max(0, room.last_seq - room.read_seq);
    this.rooms.set(room.id, room);
    this.changed("room", room.id);
    return room;
  }

  // addMessages merges messages into their room, held ones (see above)
  // among them; false if the room is unknown (the caller fetches it).
  addMessages(roomID, msgs) {
    const room = this.rooms.get(roomID);
    if (!room) return false;
    for (const m of msgs) {
      if (m.held || !m.seq) {
        if (!this.placed(room, m)) room.held.set(m.client_id, m);
        continue;
      }
      if (m.sender === this.me.name) room.held.delete(m.client_id);
      if (!room.messages.has(m.seq)) room.messages.set(m.seq, m);
      this.markRead(room, m.sender, m.seq); // a sender has read their own message
      if (m.seq > room.last_seq) room.last_seq = m.seq;
      if (!room.last_message || m.seq >= room.last_message.seq) room.last_message = m;
    }
    room.unread = Math.max(0, room.last_seq - room.read_seq);
    this.changed("messages", roomID);
    return true;
  }

  // placed reports whether a message with m's sender and client id has
  // its place in the room.
  placed(room, m) {
    for (const x of room.messages.values()) if (x.client_id === m.client_id && x.sender === m.sender) return true;
    return false;
  }

  markRead(room, user, seq) {
    if (user in room.read_markers || room.members.includes(user)) {
      room.read_markers[user] = Math.max(room.read_markers[user] || 0, seq);
    }
    if (user === this.me.name) room.read_seq = Math.max(room.read_seq, seq);
  }

  // unreadBy is how many members have not read message seq: the number
  // shown next to a message, falling as read markers arrive.
  unreadBy(room, seq) {
    let read = 0;
    for (const u of room.members) if ((room.read_markers[u] || 0) >= seq) read++;
    return Math.max(room.members.length - read, 0);
  }

  // sortedRooms are the rooms, most recently active first.
  sortedRooms() {
    const when = (r) => Date.parse(r.last_message?.sent_at || r.created_at) || 0;
    return [...this.rooms.values()].sort((a, b) => when(b) - when(a));
  }

  sortedMessages(room) {
    return [...room.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  // apply applies a live or replayed event. It returns a room id the app
  // must fetch (an event of a room it does not know yet), or "".
  apply(ev) {
    switch (ev.type) {
      case "message": {
        const m = ev.message;
        if (!this.addMessages(m.room, [m])) return m.room;
        this.stopTyping(m.room, m.sender);
        return "";
      }
      case "read": {
        const room = this.rooms.get(ev.room_id);
        if (!room) return ev.room_id;
        this.markRead(room, ev.user, ev.seq);
        room.unread = Math.max(0, room.last_seq - room.read_seq);
        this.changed("read", room.id);
        return "";
      }
      case "room": {
        if (!ev.room) return "";
        if (ev.action === "left" && ev.user === this.me.name) {
          this.dropRoom(ev.room.id);
          return "";
        }
        this.setRoom(ev.room);
        return "";
      }
      case "typing": {
        if (ev.user === this.me.name) return "";
        const m = this.typing.get(ev.room_id) || new Map();
        // (online: what sites before the typing field sent, during a
        // rolling upgrade.)
        if (ev.typing ?? ev.online) m.set(ev.user, Date.now() + TYPING_SHOWN_MS);
        else m.delete(ev.user);
        this.typing.set(ev.room_id, m);
        this.changed("typing", ev.room_id);
        setTimeout(() => this.changed("typing", ev.room_id), TYPING_SHOWN_MS + 50);
        return "";
      }
      case "presence":
        this.touch("presence:" + ev.user);
        this.presence.set(ev.user, !!ev.online);
        this.changed("presence");
        return "";
      case "incident":
        if (ev.incident.state === "resolved") this.incidents.delete(ev.incident.id);
        else this.incidents.set(ev.incident.id, ev.incident);
        this.changed("incidents");
        return "";
    }
    return "";
  }

  stopTyping(roomID, user) {
    const m = this.typing.get(roomID);
    if (m && m.delete(user)) this.changed("typing", roomID);
  }

  // typers are who is typing in a room now.
  typers(roomID) {
    const m = this.typing.get(roomID);
    if (!m) return [];
    const now = Date.now();
    return [...m].filter(([, until]) => until > now).map(([u]) => u);
  }

  setIncidents(list) {
    this.incidents = new Map((list || []).filter((i) => i.state !== "resolved").map((i) => [i.id, i]));
    this.changed("incidents");
  }

  // setPresence takes users' presence from an answer asked for at clock
  // since, but not over a presence event that came after that.
  setPresence(list, since) {
    for (const p of list) {
      if (!this.touchedSince("presence:" + p.user, since)) this.presence.set(p.user, !!p.online);
    }
    this.changed("presence");
  }

  setFriends(list) {
    this.friends = new Map(list.map((u) => [u.name, u]));
    for (const u of list) this.users.set(u.name, u);
    this.changed("friends");
  }

  setUser(u) {
    this.users.set(u.name, u);
    if (this.friends.has(u.name)) this.friends.set(u.name, u);
    if (u.name === this.me.name) this.me = u;
    this.changed("friends");
  }
}
