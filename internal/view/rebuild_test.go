package view

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// everyKind is a log of every kind of record on three streams, the rules'
// refusals among them, some records carrying batches of entries (a
// restart may fall between two entries of one record): renames, leaves and
// rejoins, read markers, logouts, suspensions, roles, key rotations and
// revocations, incidents, damage reports, drills, drains, leader moves.
func everyKind() []jsstore.Entry {
	// Recent: a logout is remembered until its token has expired.
	at := time.Now().UTC().Truncate(time.Second).Add(-time.Hour)
	amount := func(n int64) *int64 { return &n }
	str := func(s string) *string { return &s }
	sites := []string{"a", "b", "c"}
	msg := func(room, user, id string) salamander.Record {
		return salamander.Record{Type: salamander.RecMessageSent, Room: room, User: user, ClientID: id,
			Text: user + " says " + id + " in " + room}
	}
	type stored struct {
		stream string
		recs   []salamander.Record // more than one: a batch record
	}
	one := func(stream string, r salamander.Record) stored { return stored{stream, []salamander.Record{r}} }
	batch := func(stream string, rs ...salamander.Record) stored { return stored{stream, rs} }
	log := []stored{
		one("acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "k1", Key: []byte("sealed-1")}),
		batch("acct",
			salamander.Record{Type: salamander.RecUserCreated, User: "alice", DisplayName: str("Alice"), PasswordHash: "$2a$10$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "$2a$12$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "carol", PasswordHash: "$2a$10$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "dave", PasswordHash: "$2a$10$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "op", PasswordHash: "$2a$10$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "$2a$10$x"},
			salamander.Record{Type: salamander.RecUserCreated, User: "alice", PasswordHash: "taken"}),
		one("acct", salamander.Record{Type: salamander.RecProfileChanged, User: "alice", DisplayName: str("Alice A."), Status: str("here")}),
		batch("acct",
			salamander.Record{Type: salamander.RecFriendAdded, User: "alice", Friend: "bob"},
			salamander.Record{Type: salamander.RecFriendAdded, User: "bob", Friend: "alice"},
			salamander.Record{Type: salamander.RecFriendAdded, User: "carol", Friend: "alice"},
			salamander.Record{Type: salamander.RecFriendAdded, User: "carol", Friend: "carol"},
			salamander.Record{Type: salamander.RecFriendAdded, User: "alice", Friend: "bob"}),
		one("acct", salamander.Record{Type: salamander.RecRoleSet, User: "op", Role: "operator", Site: "cli"}),
		one("acct", salamander.Record{Type: salamander.RecRoleSet, User: "boss", Role: "admin", Site: "cli"}),
		one("acct", salamander.Record{Type: salamander.RecSessionRevoked, User: "alice", Session: "s-alice-1"}),
		one("acct", salamander.Record{Type: salamander.RecSessionRevoked, User: "bob", Session: "s-bob-1"}),
		one("acct", salamander.Record{Type: salamander.RecUserRevoked, User: "carol"}),
		one("acct", salamander.Record{Type: salamander.RecUserRevoked, User: "dave", By: "boss", Site: "a"}),
		one("acct", salamander.Record{Type: salamander.RecUserRevoked, User: "bob", By: "op", Site: "a"}), // no admin
		// Password changes: carol's own, an admin's reset of alice's,
		// and one by no admin and one with no bcrypt hash (no effect).
		one("acct", salamander.Record{Type: salamander.RecPasswordSet, User: "carol", By: "carol", PasswordHash: testHash1}),
		one("acct", salamander.Record{Type: salamander.RecPasswordSet, User: "alice", By: "boss", Site: "a", PasswordHash: testHash2}),
		one("acct", salamander.Record{Type: salamander.RecPasswordSet, User: "dave", By: "op", Site: "a", PasswordHash: testHash1}),
		one("acct", salamander.Record{Type: salamander.RecPasswordSet, User: "bob", By: "bob", PasswordHash: "not a hash"}),
		// carol's own change judged against a hash she no longer has (a
		// site that had not applied her change above): no effect.
		one("acct", salamander.Record{Type: salamander.RecPasswordSet, User: "carol", By: "carol", PrevHash: "a replaced hash",
			PasswordHash: testHash2}),
		one("acct", salamander.Record{Type: salamander.RecUserSuspended, User: "dave", By: "boss", Site: "b"}),
		one("acct", salamander.Record{Type: salamander.RecUserSuspended, User: "carol", By: "op", Site: "b"}), // no admin
		one("acct", salamander.Record{Type: salamander.RecUserRestored, User: "dave", By: "boss", Site: "b"}),
		one("acct", salamander.Record{Type: salamander.RecUserSuspended, User: "bob", By: "boss", Site: "c"}),
		one("acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "k2", Key: []byte("sealed-2"), Rotate: true, By: "boss"}),
		one("acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "k3", Key: []byte("sealed-3"), Rotate: true, By: "boss"}),
		one("acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "k3", Rotate: true, By: "boss"}), // revoke the others
		one("acct", salamander.Record{Type: salamander.RecIncidentOpened, By: "op", Site: "a", Incident: &salamander.IncidentChange{
			ID: "inc-rebuild01", Title: salamander.Localized{EN: "t"}, State: "investigating", Impact: "major",
			Services: []string{"login"}, Message: salamander.Localized{EN: "m"}}}),
		batch("acct",
			salamander.Record{Type: salamander.RecIncidentUpdated, By: "op", Incident: &salamander.IncidentChange{ID: "inc-rebuild01",
				State: "monitoring", Message: salamander.Localized{EN: "better"}}},
			salamander.Record{Type: salamander.RecReportFiled, User: "alice", By: "alice", Report: &salamander.ReportChange{
				ID: "rep-rebuild01", Incident: "inc-rebuild01", Category: "other", Description: "d", Currency: "KRW", Amount: amount(100)}},
			salamander.Record{Type: salamander.RecReportReviewed, User: "alice", By: "boss", Report: &salamander.ReportChange{
				ID: "rep-rebuild01", Decision: "ask_details", Note: "how much?"}}),
		one("acct", salamander.Record{Type: salamander.RecReportAnswered, User: "alice", By: "alice", Report: &salamander.ReportChange{
			ID: "rep-rebuild01", Note: "this much", Amount: amount(80)}}),
		one("acct", salamander.Record{Type: salamander.RecReportReviewed, User: "alice", By: "boss", Report: &salamander.ReportChange{
			ID: "rep-rebuild01", Decision: "approve", Amount: amount(70)}}),
		one("acct", salamander.Record{Type: salamander.RecReportFiled, User: "carol", By: "carol", Report: &salamander.ReportChange{
			ID: "rep-rebuild02", Incident: "inc-rebuild01", Category: "other", Description: "e", Currency: "KRW", Amount: amount(5)}}),
		one("acct", salamander.Record{Type: salamander.RecIncidentUpdated, By: "op", Incident: &salamander.IncidentChange{ID: "inc-rebuild01",
			State: "resolved", Message: salamander.Localized{EN: "done"}}}),
		one("acct", salamander.Record{Type: salamander.RecDrillStarted, By: "op", Site: "a", Members: sites, Drill: &salamander.Drill{
			ID: "drl-rebuild01", Scenario: "isolate", Kind: "simulation", Site: "c", Seconds: 5}}),
		one("acct", salamander.Record{Type: salamander.RecSiteDrained, By: "op", Target: "b", Members: sites}), // a drill runs
		one("acct", salamander.Record{Type: salamander.RecDrillFault, By: "op", Drill: &salamander.Drill{ID: "drl-rebuild01"}}),
		one("acct", salamander.Record{Type: salamander.RecDrillEnded, By: "op", Drill: &salamander.Drill{ID: "drl-rebuild01",
			State: "passed", Summary: "ok", Report: json.RawMessage(`{"lost": 0}`)}}),
		one("acct", salamander.Record{Type: salamander.RecSiteDrained, By: "op", Site: "a", Target: "c", Members: sites}),
		one("acct", salamander.Record{Type: salamander.RecSiteDrained, By: "boss", Site: "a", Target: "a", Members: sites}), // no majority
		one("acct", salamander.Record{Type: salamander.RecLeaderMoved, By: "op", Site: "a", Name: "p1", Target: "b"}),
		one("acct", salamander.Record{Type: salamander.RecSiteUndrained, By: "op", Site: "a", Target: "c"}),
		one("acct", salamander.Record{Type: salamander.RecSiteDrained, By: "op", Site: "b", Target: "a", Members: sites}),
		one("acct", salamander.Record{Type: salamander.RecRoleSet, User: "op", Role: "user", By: "boss", Site: "a"}),

		one("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_p0", Kind: salamander.RoomGroup, Name: "first",
			Members: []string{"alice", "bob", "carol"}, By: "alice"}),
		one("p0", msg("g_p0", "alice", "a1")),
		batch("p0", msg("g_p0", "bob", "b1"), msg("g_p0", "alice", "a1"), msg("g_p0", "dave", "d0"), msg("g_p0", "carol", "c1")),
		one("p0", salamander.Record{Type: salamander.RecMessageRead, Room: "g_p0", User: "bob", Seq: 2}),
		one("p0", salamander.Record{Type: salamander.RecRoomJoined, Room: "g_p0", Members: []string{"dave", "alice"}, By: "alice"}),
		one("p0", salamander.Record{Type: salamander.RecRoomLeft, Room: "g_p0", User: "carol"}),
		one("p0", salamander.Record{Type: salamander.RecRoomRenamed, Room: "g_p0", Name: "second", By: "dave"}),
		one("p0", salamander.Record{Type: salamander.RecRoomRenamed, Room: "g_p0", Name: "third", By: "carol"}), // left
		batch("p0", msg("g_p0", "dave", "d1"), msg("g_p0", "carol", "c2"),
			salamander.Record{Type: salamander.RecMessageRead, Room: "g_p0", User: "alice", Seq: 99}),
		one("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "d_p0", Kind: salamander.RoomDirect,
			Members: []string{"alice", "bob"}, By: "alice"}),
		one("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "d_bad", Kind: salamander.RoomDirect,
			Members: []string{"alice"}, By: "alice"}),
		one("p0", msg("d_p0", "bob", "x1")),
		one("p0", salamander.Record{Type: salamander.RecRoomLeft, Room: "d_p0", User: "bob"}), // no leaving a direct room
		one("p0", salamander.Record{Type: salamander.RecRoomJoined, Room: "g_p0", Members: []string{"carol"}, By: "bob"}),

		one("p1", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_p1", Kind: salamander.RoomGroup, Name: "long",
			Members: []string{"bob", "carol"}, By: "bob"}),
	}
	// A longer history in p1, past a few position marks, with a member
	// out and back in the middle of it.
	for i := range 3 * markEvery {
		switch i {
		case markEvery:
			log = append(log, one("p1", salamander.Record{Type: salamander.RecRoomLeft, Room: "g_p1", User: "carol"}))
		case 2 * markEvery:
			log = append(log, one("p1", salamander.Record{Type: salamander.RecRoomJoined, Room: "g_p1",
				Members: []string{"carol", "alice"}, By: "bob"}))
		}
		if i%5 == 0 {
			log = append(log, batch("p1", msg("g_p1", "bob", fmt.Sprintf("l%d", i)), msg("g_p1", "carol", fmt.Sprintf("l%d", i))))
			continue
		}
		log = append(log, one("p1", msg("g_p1", "bob", fmt.Sprintf("l%d", i))))
	}
	log = append(log, one("p1", salamander.Record{Type: salamander.RecMessageRead, Room: "g_p1", User: "carol", Seq: 40}))

	seq := map[string]uint64{}
	var out []jsstore.Entry
	for _, s := range log {
		seq[s.stream]++
		for i, r := range s.recs {
			r.At = at
			out = append(out, jsstore.Entry{Pos: jsstore.PositionOf(s.stream, seq[s.stream], i), Record: r, Last: i == len(s.recs)-1})
		}
		at = at.Add(time.Second)
	}
	return out
}

// everything is every answer the read model gives about the users, rooms
// and ops plane of everyKind, as one text to compare.
func everything(t *testing.T, v *View) string {
	t.Helper()
	ctx := context.Background()
	users := []string{"alice", "bob", "carol", "dave", "op", "boss", "nobody"}
	rooms := []string{"g_p0", "d_p0", "d_bad", "g_p1"}
	var b strings.Builder
	put := func(what string, x any, err error) {
		if err != nil {
			x = "error: " + err.Error()
		}
		j, jerr := json.Marshal(x)
		if jerr != nil {
			t.Fatal(jerr)
		}
		fmt.Fprintf(&b, "%s: %s\n", what, j)
	}
	for _, u := range users {
		p, err := v.User(ctx, u)
		put("user "+u, p, err)
		hash, revoked, err := v.Credentials(ctx, u)
		put("credentials "+u, []any{hash, revoked}, err)
		put("role "+u, []any{v.Role(u), v.Suspended(u)}, nil)
		f, err := v.Friends(ctx, u)
		put("friends "+u, f, err)
		fl, err := v.Followers(ctx, u)
		put("followers "+u, fl, err)
		rs, next, err := v.RoomsOf(ctx, u, "", 100)
		put("rooms of "+u, []any{rs, next}, err)
		put("presence visible to "+u, v.PresenceVisible(u, users), nil)
		s, err := v.Sync(ctx, u, salamander.Cursor{}, 1000)
		put("sync of "+u, s, err)
		cur := salamander.Cursor{}
		var paged []salamander.Event
		for range 200 {
			s, err := v.Sync(ctx, u, cur, 7)
			if err != nil {
				put("sync pages of "+u, nil, err)
				break
			}
			paged = append(paged, s.Events...)
			if cur, err = salamander.ParseCursor(s.Cursor); err != nil {
				t.Fatal(err)
			}
			if !s.More {
				break
			}
		}
		put("sync pages of "+u, paged, nil)
	}
	for _, r := range rooms {
		room, err := v.Room(ctx, r, "")
		put("room "+r, room, err)
		for _, u := range users {
			room, err := v.Room(ctx, r, u)
			put("room "+r+" seen by "+u, room, err)
		}
		m, err := v.Members(ctx, r)
		put("members "+r, m, err)
		h, err := v.History(ctx, r, 0, 0, false, 1000)
		put("history "+r, h, err)
		h, err = v.History(ctx, r, 10, 0, false, 3)
		put("history before 10 "+r, h, err)
		h, err = v.History(ctx, r, 0, 20, true, 5)
		put("history after 20 "+r, h, err)
		for _, id := range []string{"a1", "b1", "d1", "c2", "x1", "l3", "l95"} {
			for _, u := range []string{"alice", "bob", "carol", "dave"} {
				m, ok, err := v.MessageByClientID(ctx, r, u, id)
				if ok || err != nil {
					put("message "+r+"/"+u+"/"+id, m, err)
				}
			}
		}
	}
	for _, sid := range []string{"s-alice-1", "s-bob-1", "s-none"} {
		ok, err := v.SessionRevoked(ctx, sid)
		put("session revoked "+sid, ok, err)
	}
	cur, ok := v.CurrentKey()
	put("current key", []any{cur, ok}, nil)
	for _, id := range []string{"k1", "k2", "k3"} {
		k, ok := v.KeyByID(id)
		put("key "+id, []any{k, ok, k.Revoked()}, nil)
	}
	a, err := v.Audit(ctx, time.Time{}, 1000)
	put("audit", a, err)
	put("incidents", v.Incidents(true), nil)
	put("drills", v.Drills(), nil)
	put("drained", v.Drained(), nil)
	reps, err := v.Reports(ctx, ReportFilter{})
	put("reports", reps, err)
	for _, id := range []string{"rep-rebuild01", "rep-rebuild02"} {
		u, st := v.ReportOwner(id)
		put("report owner "+id, []string{u, st}, nil)
	}
	put("hash cost", v.HashCost(), nil)
	applied := v.Applied()
	put("applied", applied, nil)
	return b.String()
}

// A read model answers the same, about everything, whether it applied the
// log live, in batches of any size written together, or was restarted
// between any two entries (in the middle of a batch record too) and loaded
// from its store each time: what a restarted site answers is what a site
// that never stopped does, and what one rebuilt from the log does.
func TestRestartsAnywhereAnswerAsTheLiveModel(t *testing.T) {
	h := everyKind()
	log := &memLog{}
	log.add(h)
	live := openTemp(t)
	apply(t, live, log, h)
	want := everything(t, live)
	if !strings.Contains(want, `"second"`) || !strings.Contains(want, "drl-rebuild01") || !strings.Contains(want, "rep-rebuild01") {
		t.Fatalf("the log did not do what it is for:\n%s", want)
	}

	// Restarted between every two entries.
	path := filepath.Join(t.TempDir(), "view.db")
	for i, e := range h {
		v := openAt(t, path)
		v.src = log
		if err := v.applyBatch([]jsstore.Entry{e}); err != nil {
			t.Fatal(err)
		}
		if i == len(h)-1 {
			if got := everything(t, v); got != want {
				t.Fatalf("restarted before every entry, the model answers otherwise:\n%s", diffLines(want, got))
			}
		}
		if err := v.Close(); err != nil {
			t.Fatal(err)
		}
	}
	again := openAt(t, path)
	again.src = log
	if got := everything(t, again); got != want {
		t.Fatalf("loaded from the store, the model answers otherwise:\n%s", diffLines(want, got))
	}
	again.Close()

	// Batches of random sizes, several written in one transaction, with a
	// restart now and then (what was not written is applied again).
	for seed := range uint64(5) {
		rng := rand.New(rand.NewPCG(seed, 7))
		path := filepath.Join(t.TempDir(), "view.db")
		v := openAt(t, path)
		v.src = log
		var pending []*dbBatch
		for i := 0; i < len(h); {
			n := 1 + rng.IntN(12)
			end := min(i+n, len(h))
			b, err := v.applyModel(h[i:end])
			if err != nil {
				t.Fatal(err)
			}
			if b != nil {
				pending = append(pending, b)
			}
			i = end
			switch rng.IntN(6) {
			case 0:
				if err := v.write(pending); err != nil {
					t.Fatal(err)
				}
				pending = nil
			case 1: // a crash: the model's unwritten batches are lost
				v.Close()
				v = openAt(t, path)
				v.src = log
				pending = nil
				i = firstUnapplied(h, v.Applied())
			}
		}
		if err := v.write(pending); err != nil {
			t.Fatal(err)
		}
		if got := everything(t, v); got != want {
			t.Fatalf("seed %d: batched and restarted, the model answers otherwise:\n%s", seed, diffLines(want, got))
		}
		v.Close()
	}
}

// firstUnapplied is the index of the first entry of h after applied.
func firstUnapplied(h []jsstore.Entry, applied map[string]uint64) int {
	for i, e := range h {
		if e.Pos.Seq > applied[e.Pos.Stream] {
			return i
		}
	}
	return len(h)
}

// diffLines lists the lines of want and got that differ.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := range max(len(w), len(g)) {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			out = append(out, "want "+a, "got  "+b)
		}
	}
	return strings.Join(slices.Compact(out), "\n")
}
