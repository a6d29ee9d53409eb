package webtest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// The page's model and outbox, run in the browser on their own (no site):
// two tabs of one user share one outbox, so neither writes over what the
// other queued or took out; and a list of rooms or presence asked for
// before a live event does not undo that event (a member who joined is
// not taken out again, a room left is not put back, a presence not turned
// back), while rooms missing from the list are dropped.
func TestModelAndOutboxKeepNewerChanges(t *testing.T) {
	p := modulesPage(t, "modules", nil)
	p.js(`window.result = undefined;
	(async () => {
		const store = await import("/app/js/store.js");
		const { Model } = await import("/app/js/model.js");
		const i18n = await import("/app/js/i18n.js");
		const fails = [];
		const check = (ok, what) => { if (!ok) fails.push(what); };

		// An error the site words in English is said in Korean by its code.
		i18n.setLang("ko");
		check(i18n.errorText({ code: "forbidden", message: "not a member of this room" }).includes("권한이 없습니다"),
			"a refusal in Korean");
		check(i18n.errorText({ code: "made_up", message: "as the site said" }) === "as the site said",
			"a code the page does not know: the site's message");
		i18n.setLang("en");
		check(i18n.errorText({ code: "forbidden", message: "not a member of this room" }) === "not a member of this room",
			"in English, the site's own message");

		// Two tabs: each its own Outbox over the same storage.
		localStorage.clear();
		const tabA = new store.Outbox("u"), tabB = new store.Outbox("u");
		const x = tabA.add("r1", "from tab A");
		const y = tabB.add("r1", "from tab B");
		check(tabA.size === 2 && tabB.size === 2 && tabA.has(y.client_id) && tabB.has(x.client_id),
			"each tab sees both queued messages");
		check(tabA.remove(x.client_id), "tab A takes its acknowledged message out");
		check(tabB.has(y.client_id) && !tabB.has(x.client_id) && new store.Outbox("u").size === 1,
			"tab B's message stays, also after a reload");
		check(!tabB.remove(x.client_id), "a message already out is not there to remove");

		const room = (id, members) => ({ id, kind: "group", name: id, members, last_seq: 0, read_seq: 0, read_markers: {} });
		const m = new Model({ name: "me" });
		for (const id of ["g1", "g2", "g3"]) m.setRoom(room(id, ["me", "a"]));
		const since = m.clock; // the rooms list is asked for here
		m.apply({ type: "room", action: "joined", user: "b", room: room("g1", ["me", "a", "b"]) });
		m.apply({ type: "room", action: "left", user: "me", room: room("g2", ["a"]) });
		// The answer, older than both events: g3 was left on another device
		// before it, g4 is new.
		m.setRooms([room("g1", ["me", "a"]), room("g2", ["me", "a"]), room("g4", ["me", "a"])], since);
		check(m.rooms.get("g1")?.members.length === 3, "the member who joined stays");
		check(!m.rooms.has("g2"), "the room left stays left");
		check(!m.rooms.has("g3"), "a room missing from the list is dropped");
		check(m.rooms.has("g4"), "a room new in the list is added");
		const fresh = m.clock;
		m.setRooms([room("g1", ["me", "a"]), room("g4", ["me", "a"])], fresh);
		check(m.rooms.get("g1")?.members.length === 2, "a list asked for after every event is taken");

		const asked = m.clock;
		m.apply({ type: "presence", user: "a", online: true });
		m.setPresence([{ user: "a", online: false }, { user: "b", online: true }], asked);
		check(m.presence.get("a") === true, "a presence event newer than the answer stays");
		check(m.presence.get("b") === true, "the answer's other presence is taken");
		return fails;
	})().then((f) => { window.result = f; }, (e) => { window.result = ["error: " + e]; });`)
	p.wait("the checks run", `window.result !== undefined`)
	var fails []string
	p.eval(`window.result`, &fails)
	for _, f := range fails {
		t.Error("failed: " + f)
	}
}

// The page asks every site it knew for the list of sites at once: with its
// own site hung (it takes the connection and answers nothing), the list
// comes from another in well under a request's timeout (8 s), and with its
// own site answering, its own list comes first.
func TestDiscoverDoesNotWaitForAHungSite(t *testing.T) {
	hung := make(chan struct{})
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"site":"b","sites":[{"name":"a","url":"http://a.invalid"},{"name":"b","url":"http://b.invalid/"}]}`))
	}))
	defer other.Close()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/sites", func(w http.ResponseWriter, r *http.Request) {
		select { // hung, as a SIGSTOPped site
		case <-hung:
		case <-r.Context().Done():
		}
	})
	p := modulesPage(t, "modules", mux)
	t.Cleanup(func() { close(hung) }) // (before the server closes: it waits for its handlers)
	p.js(`window.result = undefined;
	(async () => {
		const { Api } = await import("/app/js/api.js");
		const api = new Api();
		const start = performance.now();
		const list = await api.discover([{ name: "b", url: ` + jsString(other.URL) + ` }]);
		return { ms: performance.now() - start, urls: list.map((s) => s.url) };
	})().then((r) => { window.result = r; }, (e) => { window.result = { error: String(e) }; });`)
	p.wait("the discovery", `window.result !== undefined`, 30*time.Second)
	var got struct {
		MS    float64
		URLs  []string
		Error string
	}
	p.eval(`window.result`, &got)
	if got.Error != "" || len(got.URLs) != 2 || got.URLs[1] != "http://b.invalid" {
		t.Fatalf("discovered %+v", got)
	}
	if got.MS > 6000 {
		t.Fatalf("discovery took %.0f ms with the page's own site hung: it waited for it", got.MS)
	}
}
