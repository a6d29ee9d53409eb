package webtest

import "testing"

// The page's sender (sender.js), run in the browser on its own against a
// fake socket and a fake HTTP API, on a clock the test moves (Date.now):
//
//   - A site carries out one socket's sends to a room one at a time, so
//     with many frames to one room in flight the later ones wait behind
//     the earlier ones' commits. A frame's time counts from when no
//     earlier frame to its room awaits an answer on the socket: twenty
//     frames to one room answered 3 s apart (the last 60 s after it was
//     written) are not taken for a failed site; a frame first in its
//     room's line, or to another room, is still given up on after 8 s.
//   - A room's order holds across failures: after a nack saying the site
//     cannot, the socket is left and the room's unacknowledged messages go
//     again from the oldest — over HTTP one at a time (the next POST only
//     once the previous one is answered, a message queued meanwhile behind
//     them), then on the next socket in order — each under its client id;
//     after a rate-limit nack they go again on the same socket, in order,
//     once the pause is over. While a socket is closing (not open, its
//     close not heard yet), no message to a room with frames on it goes
//     over HTTP ahead of them.
//   - A session that ended (401) does not refuse the message: it stays in
//     the outbox under its client id, for the next sign-in.
func TestSenderTimesAndOrdersEachRoomsSends(t *testing.T) {
	p := modulesPage(t, "sender", nil)
	p.js(`window.result = undefined;
	(async () => {
		const store = await import("/app/js/store.js");
		const { Sender } = await import("/app/js/sender.js");
		const fails = [];
		const check = (ok, what) => { if (!ok) fails.push(what); };
		const settle = () => new Promise((r) => setTimeout(r, 0));
		let now = Date.now();
		Date.now = () => now;
		localStorage.clear();

		// FakeLive is a socket the test answers for. reconnect leaves it
		// (closed) when drops is set, as Live does; reopen makes the next
		// one ready.
		class FakeLive extends EventTarget {
			constructor() {
				super();
				this.socketId = 1; this.open = true; this.state = "live"; this.closed = 0;
				this.frames = []; this.reconnects = 0; this.drops = false;
			}
			send(f) {
				if (!this.open) return false;
				this.frames.push({ socket: this.socketId, ...f });
				return true;
			}
			reconnect() {
				this.reconnects++;
				if (this.drops) this.close();
			}
			close() {
				if (this.closed === this.socketId) return;
				this.closed = this.socketId; this.open = false; this.state = "moving";
				this.dispatchEvent(new CustomEvent("closed", { detail: this.socketId }));
			}
			reopen() {
				this.socketId++; this.open = true; this.state = "live";
				this.dispatchEvent(new CustomEvent("ready", { detail: {} }));
			}
			answer(ev) { this.dispatchEvent(new CustomEvent("answer", { detail: ev })); }
		}
		let seq = 0;
		const message = (f) => ({ room: f.room_id, client_id: f.client_id, text: f.text, seq: ++seq });
		const ack = (f) => ({ type: "ack", room_id: f.room_id, client_id: f.client_id, message: message(f) });
		const nack = (f, code) => ({ type: "nack", room_id: f.room_id, client_id: f.client_id, error: { code, message: code } });
		// posts are the HTTP sends begun, each answered by the test.
		const posts = [];
		const api = { request: (method, path, body) => new Promise((resolve, reject) => posts.push({ path, body, resolve, reject })) };
		const sender = (live, user, acked) => new Sender(api, live, new store.Outbox(user), {
			onSent: (m) => acked.push(m.text), onRefused: (m) => fails.push(user + ": " + m.text + " refused") });
		const texts = (fs) => fs.map((f) => f.text).join(",");

		// Twenty frames to one room, answered 3 s apart.
		{
			const live = new FakeLive(), acked = [];
			const s = sender(live, "a", acked);
			for (let i = 0; i < 20; i++) s.queue("r1", "m" + i);
			await settle();
			check(live.frames.length === 20, "all twenty written at once: " + live.frames.length);
			for (const f of live.frames.slice()) {
				now += 3000;
				s.checkStalled();
				live.answer(ack(f));
				await settle();
			}
			check(live.reconnects === 0, "twenty frames to one room answered 3 s apart: the site kept (left " + live.reconnects + " times)");
			check(acked.length === 20 && acked.every((t, i) => t === "m" + i), "acknowledged in order: " + acked);
		}

		// The first frame in a room's line is still timed, and so is one to
		// another room, from its own writing.
		{
			const live = new FakeLive(), acked = [];
			const s = sender(live, "b", acked);
			for (const t of ["b0", "b1", "b2"]) s.queue("r1", t);
			s.queue("r2", "x");
			await settle();
			const [b0, b1, , x] = live.frames;
			now += 5000;
			live.answer(ack(b0));
			s.checkStalled();
			check(live.reconnects === 0, "5 s in, nothing stalled");
			now += 4000;
			s.checkStalled();
			check(live.reconnects === 1, "the frame to r2, unanswered 9 s: the site left");
			live.answer(ack(x));
			live.reconnects = 0;
			now += 3000;
			s.checkStalled();
			check(live.reconnects === 0, "b1, first in its line for 7 s (12 s since written): the site kept");
			now += 1500;
			s.checkStalled();
			check(live.reconnects === 1, "b1, first in its line for 8.5 s: the site left");
			live.answer(ack(b1));
			live.answer(ack(live.frames[2]));
		}

		// A nack saying the site cannot: the socket is left; HTTP one at a
		// time from the oldest; then the next socket, in order.
		{
			const live = new FakeLive(), acked = [];
			live.drops = true;
			const s = sender(live, "c", acked);
			for (const t of ["a", "b", "c"]) s.queue("r1", t);
			s.queue("r2", "x");
			await settle();
			const [a, , , x] = live.frames;
			live.answer(ack(x));
			now += 3000; // long enough waiting for a socket: HTTP
			live.answer(nack(a, "unavailable"));
			await settle();
			check(live.reconnects === 1 && !live.open, "the socket left after the nack");
			check(posts.length === 1 && posts[0].body.client_id === a.client_id, "HTTP begins with a: " + posts.map((q) => q.body.text));
			s.queue("r1", "d");
			await settle();
			check(posts.length === 1, "one HTTP send at a time: " + posts.map((q) => q.body.text));
			posts[0].resolve({ message: message({ room_id: "r1", ...posts[0].body }) });
			await settle();
			check(posts.length === 2 && posts[1].body.text === "b", "then b: " + posts.map((q) => q.body.text));
			live.reopen();
			await settle();
			check(live.frames.length === 4, "nothing on the new socket while b's POST is out: " + texts(live.frames.slice(4)));
			posts[1].resolve({ message: message({ room_id: "r1", ...posts[1].body }) });
			await settle();
			const next = live.frames.slice(4);
			check(texts(next) === "c,d" && next.every((f) => f.socket === 2) && next[0].client_id === live.frames[2].client_id,
				"the rest on the next socket, in order, c under its client id: " + texts(next));
			for (const f of next) live.answer(ack(f));
			await settle();
			check(acked.join(",") === "x,a,b,c,d", "acknowledged: " + acked);
			check(posts.length === 2, "no more HTTP sends");
		}

		// A rate-limit nack: the site refuses the room's later sends too; after
		// the pause they all go again, in order, on the same socket.
		{
			const live = new FakeLive(), acked = [];
			const s = sender(live, "d", acked);
			for (const t of ["a", "b"]) s.queue("r1", t);
			await settle();
			const [a, b] = live.frames;
			live.answer(nack(a, "too_many_requests"));
			live.answer(nack(b, "too_many_requests"));
			await settle();
			check(live.frames.length === 2, "nothing sent during the pause");
			now += 2500;
			s.kick();
			await settle();
			const again = live.frames.slice(2);
			check(texts(again) === "a,b" && again[0].client_id === a.client_id && again[1].client_id === b.client_id,
				"again in order under their client ids: " + texts(again));
			for (const f of again) live.answer(ack(f));
			await settle();
			check(acked.join(",") === "a,b" && live.reconnects === 0, "acknowledged: " + acked);
		}

		// A socket closing (no longer open, its close not heard yet) with a
		// room's frames awaiting answers: nothing to that room goes over
		// HTTP ahead of them, another room's message does; once the close is
		// heard, the room goes again from its oldest.
		{
			const live = new FakeLive(), acked = [];
			const s = sender(live, "e", acked);
			for (let i = 0; i < 65; i++) s.queue("r1", "e" + i);
			s.queue("r2", "y");
			await settle();
			check(live.frames.length === 64, "64 frames in flight at most: " + live.frames.length);
			now += 3000;
			const before = posts.length;
			live.open = false;
			s.kick();
			await settle();
			const begun = () => posts.slice(before).map((q) => q.body.text).join(",");
			check(begun() === "y", "over HTTP meanwhile, only the other room's message: " + begun());
			posts[posts.length - 1].resolve({ message: message({ room_id: "r2", ...posts[posts.length - 1].body }) });
			live.close();
			await settle();
			check(begun() === "y,e0", "the close heard, the room from its oldest: " + begun());
		}
		// A session that ended (401): the message is not refused, it stays
		// in the outbox for the next sign-in, under its client id.
		{
			const live = new FakeLive(), acked = [];
			live.open = false; live.state = "offline";
			const s = sender(live, "f", acked);
			s.queue("r1", "kept");
			await settle();
			const post = posts[posts.length - 1];
			check(post && post.body.text === "kept", "sent over HTTP");
			const { ApiError } = await import("/app/js/api.js");
			post.reject(new ApiError(401, "unauthorized", "session ended"));
			await settle();
			const left = new store.Outbox("f").items;
			check(left.length === 1 && left[0].client_id === post.body.client_id,
				"after a 401 the message is still in the outbox under its client id: " + JSON.stringify(left));
		}
		return fails;
	})().then((f) => { window.result = f; }, (e) => { window.result = ["error: " + e + " " + e.stack]; });`)
	p.wait("the checks run", `window.result !== undefined`)
	var fails []string
	p.eval(`window.result`, &fails)
	for _, f := range fails {
		t.Error("failed: " + f)
	}
}
