package webtest

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// newTab opens another tab of p's browser (the same storage: the same
// device, another renderer process) at url.
func (p *page) newTab(name, url string) *page {
	p.t.Helper()
	ctx, cancel := chromedp.NewContext(p.ctx)
	p.t.Cleanup(cancel)
	// The first run opens the tab, for as long as its context lives (not
	// only for an action's timeout).
	if err := chromedp.Do(ctx); err != nil {
		p.t.Fatalf("%s: open a tab: %v", name, err)
	}
	tab := &page{t: p.t, name: name, ctx: ctx, shots: p.shots}
	tab.do("open "+url, chromedpNavigate(url))
	return tab
}

// Two tabs of one browser (one device, two renderer processes) share one
// outbox in localStorage, each changing it while the other does: neither
// loses what the other queued, nor brings back what it took out — each
// process sees the other's writes only a moment later, so a change that
// rewrote one shared list could write back a list without the other's
// newest message.
func TestOutboxSharedByTwoTabsLosesNothing(t *testing.T) {
	a := modulesPage(t, "tab-a", nil)
	var url string
	a.eval(`location.href`, &url)
	b := a.newTab("tab-b", url)
	const n = 150
	// Each tab queues n messages and takes every third out again (as its
	// acknowledgement would), yielding to its event loop between changes.
	run := func(p *page, name string) {
		p.js(`window.done = undefined;
		(async () => {
			const store = await import("/app/js/store.js");
			const box = new store.Outbox("u");
			for (let i = 0; i < ` + fmt.Sprint(n) + `; i++) {
				const m = box.add("r1", "` + name + ` " + i);
				if (i % 3 === 0) box.remove(m.client_id);
				await new Promise((r) => setTimeout(r, 0));
			}
		})().then(() => { window.done = true; }, (e) => { window.done = "error: " + e; });`)
	}
	a.js(`localStorage.clear()`)
	run(a, "a")
	run(b, "b")
	a.wait("tab a done", `window.done === true`)
	b.wait("tab b done", `window.done === true`)
	var want []string
	for _, name := range []string{"a", "b"} {
		for i := range n {
			if i%3 != 0 {
				want = append(want, fmt.Sprint(name, " ", i))
			}
		}
	}
	for _, p := range []*page{a, b} {
		var got []string
		deadline := time.Now().Add(5 * time.Second)
		for {
			p.eval(outboxOf(`"u"`)+`.map((m) => m.text)`, &got)
			if sameSet(got, want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if !sameSet(got, want) {
			t.Fatalf("%s sees %d messages in the outbox, want %d: lost %v, extra %v", p.name, len(got), len(want),
				missing(want, got), missing(got, want))
		}
		// Each tab's own messages stay in the order queued.
		for _, name := range []string{"a ", "b "} {
			last := -1
			for _, text := range got {
				if i, ok := strings.CutPrefix(text, name); ok {
					var k int
					fmt.Sscan(i, &k)
					if k < last {
						t.Fatalf("%s: %q after %s%d", p.name, text, name, last)
					}
					last = k
				}
			}
		}
	}
}

// The outbox as versions before kept it (one list under one key) is taken
// over by the first page that opens it, in its order, the list gone.
func TestOutboxTakesOverTheEarlierList(t *testing.T) {
	p := modulesPage(t, "legacy", nil)
	p.js(`window.result = undefined;
	(async () => {
		const store = await import("/app/js/store.js");
		localStorage.clear();
		const at = new Date().toISOString();
		const list = ["first", "second", "third"].map((text, i) => ({ client_id: "0000000000000000000000000000000" + i,
			room_id: "r1", text, queued_at: at }));
		localStorage.setItem("salamander.outbox.u", JSON.stringify(list));
		const box = new store.Outbox("u");
		const later = box.add("r1", "fourth");
		return { texts: box.items.map((m) => m.text), legacy: localStorage.getItem("salamander.outbox.u"),
			again: new store.Outbox("u").size, first: box.has(list[0].client_id), later: box.has(later.client_id) };
	})().then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });`)
	p.wait("the checks run", `window.result !== undefined`)
	var r struct {
		Texts        []string
		Legacy       *string
		Again        int
		First, Later bool
		Error        string
	}
	p.eval(`window.result`, &r)
	if r.Error != "" || strings.Join(r.Texts, ",") != "first,second,third,fourth" || r.Legacy != nil || r.Again != 4 || !r.First || !r.Later {
		t.Fatalf("after taking over the list: %+v", r)
	}
}

// A tab still running an earlier version writes the one list under the
// old key after this version took it over (as it queues a message, or is
// answered): the outbox takes that over too — when the other tab writes
// it (the storage event, which also tells the sender) and at its next
// read (each flush reads the outbox; a write in this tab fires no event)
// — and a message it holds already is not taken twice.
func TestOutboxTakesOverTheEarlierListWrittenLater(t *testing.T) {
	a := modulesPage(t, "tab-new", nil)
	var url string
	a.eval(`location.href`, &url)
	old := a.newTab("tab-old", url)
	a.js(`window.box = undefined; window.changes = 0;
	(async () => {
		const store = await import("/app/js/store.js");
		localStorage.clear();
		const box = new store.Outbox("u");
		box.onChange(() => { window.changes++; });
		window.held = box.add("r1", "held");
		window.box = box;
	})();`)
	a.wait("the outbox is open", `window.box !== undefined`)
	var held string
	a.eval(`window.held.client_id`, &held)
	// The old tab writes its list: one new message and the one held.
	at := time.Now().UTC().Format(time.RFC3339Nano)
	old.js(`localStorage.setItem("salamander.outbox.u", JSON.stringify([
		{ client_id: "` + held + `", room_id: "r1", text: "held", queued_at: "` + at + `" },
		{ client_id: "00000000000000000000000000000001", room_id: "r1", text: "from the old tab", queued_at: "` + at + `" }]))`)
	a.wait("the storage event", `window.changes > 0`)
	texts := func(what string) []string {
		var got struct {
			Texts  []string
			Legacy *string
		}
		a.eval(`({ texts: window.box.items.map((m) => m.text), legacy: localStorage.getItem("salamander.outbox.u") })`, &got)
		if got.Legacy != nil {
			t.Fatalf("%s: the old list is still there: %s", what, *got.Legacy)
		}
		return got.Texts
	}
	if got := texts("after the other tab's write"); strings.Join(got, ",") != "held,from the old tab" {
		t.Fatalf("after the old tab's write the outbox holds %q", got)
	}
	// Written in this very tab: no event; the next read takes it over.
	a.js(`localStorage.setItem("salamander.outbox.u", JSON.stringify([
		{ client_id: "00000000000000000000000000000002", room_id: "r1", text: "later", queued_at: new Date().toISOString() }]))`)
	if got := texts("at the next read"); strings.Join(got, ",") != "held,from the old tab,later" {
		t.Fatalf("at the next read the outbox holds %q", got)
	}
}

// missing lists what of want got lacks.
func missing(want, got []string) []string {
	have := map[string]bool{}
	for _, g := range got {
		have[g] = true
	}
	var out []string
	for _, w := range want {
		if !have[w] {
			out = append(out, w)
		}
	}
	return out
}

// Two tabs of the app for one user both send a message one of them queued
// while both were offline: it is stored once (the site answers the second
// send with the original, by its client id), each tab shows it once, in
// its place, and the outbox is empty in both.
func TestTwoTabsSendingOneMessageShowItOnce(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, a := minaAtFakeSite(t, fakesite.Config{
		User:  salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
	}, "en-US")
	var url string
	a.eval(`location.origin + "/"`, &url)
	b := a.newTab("mina-tab-b", url+"#/room/"+roomID)
	b.wait("the app, live", `!document.getElementById("app").hidden && document.getElementById("conn").dataset.state === "live"`)
	a.js(`location.hash = "#/room/` + roomID + `"`)
	a.wait("the app, live", `!document.getElementById("app").hidden && document.getElementById("conn").dataset.state === "live"`)
	a.offline(true)
	b.offline(true)
	a.wait("offline", `document.getElementById("conn").dataset.state !== "live"`)
	b.wait("offline", `document.getElementById("conn").dataset.state !== "live"`)
	a.say("sent by both tabs")
	for _, p := range []*page{a, b} {
		p.wait("the message waiting", `document.querySelectorAll("#messages .msg.pending").length === 1`)
	}
	// The site takes its time to store a send: both tabs send the message
	// before either hears back.
	site.SlowSends(5 * time.Second)
	before := site.Sends()
	a.offline(false)
	b.offline(false)
	// Both sends are answered (the second, stored as it waited, with the
	// original), then each tab shows the message once.
	deadline := time.Now().Add(30 * time.Second)
	for site.Sends()-before < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := site.Sends() - before; n != 2 {
		t.Fatalf("the site received %d sends of the message, want one from each tab", n)
	}
	for _, p := range []*page{a, b} {
		p.wait("the message sent, once", `document.querySelectorAll("#messages .msg.pending").length === 0 &&
			[...document.querySelectorAll("#messages .msg[data-seq] .text")].filter((e) => e.textContent === "sent by both tabs").length === 1`)
	}
	for _, p := range []*page{a, b} {
		var left int
		p.eval(`Object.keys(localStorage).filter((k) => k.startsWith("salamander.outbox.mina")).reduce((n, k) => {
			const v = JSON.parse(localStorage.getItem(k)); return n + (Array.isArray(v) ? v.length : 1); }, 0)`, &left)
		if left != 0 {
			t.Errorf("%s: %d messages left in the outbox", p.name, left)
		}
		if got := p.messages(); len(got) != 1 || got[0] != "sent by both tabs" {
			t.Errorf("%s shows %q", p.name, got)
		}
	}
}
