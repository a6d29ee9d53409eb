package view

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A stream's recent messages are its newest recentPerStream, found by
// position; older ones, and other streams', are not mixed in.
func TestRecentKeepsEachStreamsNewest(t *testing.T) {
	m := newModel()
	const extra = 10
	for i := range uint64(recentPerStream + extra) {
		m.addRecent(salamander.Position{Stream: "p0", Seq: 1000 + 3*i}, &salamander.Message{Seq: i + 1})
	}
	m.addRecent(salamander.Position{Stream: "p1", Seq: 1000}, &salamander.Message{Seq: 7})
	for i := range uint64(recentPerStream + extra) {
		got := m.recentAt(salamander.Position{Stream: "p0", Seq: 1000 + 3*i})
		if i < extra && got != nil || i >= extra && (got == nil || got.Seq != i+1) {
			t.Fatalf("message %d: %+v", i, got)
		}
	}
	if got := m.recentAt(salamander.Position{Stream: "p1", Seq: 1000}); got == nil || got.Seq != 7 {
		t.Fatalf("p1: %+v", got)
	}
	if m.recentAt(salamander.Position{Stream: "p2", Seq: 1000}) != nil || len(m.recent["p0"].byPos) != recentPerStream {
		t.Fatal("recent holds more than it should")
	}
}

func BenchmarkAddRecent(b *testing.B) {
	m := newModel()
	msg := &salamander.Message{}
	streams := []string{"p0", "p1", "p2", "p3", "p4", "p5"}
	var n uint64
	for b.Loop() {
		n++
		m.addRecent(salamander.Position{Stream: streams[n%6], Seq: n << 10}, msg)
	}
}

// BenchmarkModelMemory measures what a site's model holds in memory per
// user and per direct room (for sizing a gateway: every gateway holds the
// whole model): 40,000 users with display names and password hashes,
// 20,000 direct rooms between them, then one message in each room. It
// reports the live heap's growth per user, per room without a message and
// per room's first message (its dedupe window, newest message and place
// among the partition's recent messages).
func BenchmarkModelMemory(b *testing.B) {
	const users = 40000
	heap := func() int64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m)
		return int64(m.HeapAlloc)
	}
	user := func(i int) string { return fmt.Sprintf("user%07d", i) }
	room := func(r int) string { return fmt.Sprintf("d_%032x", r) }
	var perUser, perRoom, perMessage int64
	for range b.N {
		v, err := Open(filepath.Join(b.TempDir(), "view.db"), nil)
		if err != nil {
			b.Fatal(err)
		}
		v.src = &memLog{}
		at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		seq := map[string]uint64{}
		var batch []jsstore.Entry
		add := func(stream string, r salamander.Record) {
			seq[stream]++
			r.At = at
			batch = append(batch, jsstore.Entry{Pos: jsstore.PositionOf(stream, seq[stream], 0), Last: true, Record: r})
			if len(batch) == 1000 {
				if err := v.applyBatch(batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		h0 := heap()
		for i := range users {
			dn := fmt.Sprintf("User Number %d", i)
			add("acct", salamander.Record{Type: salamander.RecUserCreated, User: user(i), DisplayName: &dn,
				PasswordHash: "$2a$10$" + strings.Repeat("h", 53)})
		}
		h1 := heap()
		for r := range users / 2 {
			add("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: room(r), Kind: salamander.RoomDirect,
				Members: []string{user(2 * r), user(2*r + 1)}, By: user(2 * r)})
		}
		h2 := heap()
		for r := range users / 2 {
			add("p1", salamander.Record{Type: salamander.RecMessageSent, Room: room(r), User: user(2 * r),
				ClientID: fmt.Sprintf("%032x", r), Text: "a message of some forty bytes, as most are"})
		}
		h3 := heap()
		perUser += (h1 - h0) / users
		perRoom += (h2 - h1) / (users / 2)
		perMessage += (h3 - h2) / (users / 2)
		runtime.KeepAlive(v)
		v.Close()
	}
	b.ReportMetric(float64(perUser)/float64(b.N), "B/user")
	b.ReportMetric(float64(perRoom)/float64(b.N), "B/room")
	b.ReportMetric(float64(perMessage)/float64(b.N), "B/first-message")
}

// A user's rooms are listed once each, as they join, leave and join again,
// also after a restart.
func TestRoomsOfFollowsJoinsAndLeaves(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	entry := (&p0Entries{}).entry
	group := func(id string) jsstore.Entry {
		return entry(salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomGroup, Name: id,
			Members: []string{"alice", "bob"}, By: "alice"})
	}
	log := &memLog{}
	apply(t, v, log, []jsstore.Entry{group("g_1"), group("g_2"), group("g_3"),
		entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_1", User: "bob"}),
		entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_1", User: "bob"}),                             // not a member any more
		entry(salamander.Record{Type: salamander.RecRoomJoined, Room: "g_2", Members: []string{"bob"}, By: "alice"}), // one already
		entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_3", User: "bob"}),
		entry(salamander.Record{Type: salamander.RecRoomJoined, Room: "g_3", Members: []string{"bob"}, By: "alice"}),
	})
	ids := func(v *View, user string) []string {
		rooms, _, err := v.RoomsOf(context.Background(), user, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, r := range rooms {
			out = append(out, r.ID)
		}
		slices.Sort(out)
		return out
	}
	check := func(when string, v *View) {
		t.Helper()
		if got := ids(v, "bob"); !slices.Equal(got, []string{"g_2", "g_3"}) {
			t.Fatalf("%s: bob's rooms %v, want g_2 and g_3", when, got)
		}
		if got := ids(v, "alice"); !slices.Equal(got, []string{"g_1", "g_2", "g_3"}) {
			t.Fatalf("%s: alice's rooms %v", when, got)
		}
	}
	check("applied", v)
	v.Close()
	v = openAt(t, path)
	defer v.Close()
	check("reloaded", v)
	apply(t, v, log, []jsstore.Entry{entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_2", User: "bob"}),
		entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_3", User: "bob"})})
	if got := ids(v, "bob"); len(got) != 0 {
		t.Fatalf("bob left every room: %v", got)
	}
	if _, ok := v.m.userRooms["bob"]; ok {
		t.Fatal("a user in no room still has a list")
	}
}

// Presence is visible to the user, to friends they added, and to anyone
// sharing a room with them; a room left ends it, and a friendship is one
// way (who added whom).
func TestPresenceVisibleToFriendsAndRoommates(t *testing.T) {
	v := openTemp(t)
	entry := (&p0Entries{}).entry
	log := &memLog{}
	var users []jsstore.Entry
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		users = append(users, entry(salamander.Record{Type: salamander.RecUserCreated, User: u, PasswordHash: "h"}))
	}
	apply(t, v, log, append(users,
		entry(salamander.Record{Type: salamander.RecFriendAdded, User: "alice", Friend: "dave"}),
		entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup, Name: "g",
			Members: []string{"alice", "bob", "carol"}, By: "alice"}),
		entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_2", Kind: salamander.RoomGroup, Name: "h",
			Members: []string{"bob", "erin"}, By: "bob"}),
		entry(salamander.Record{Type: salamander.RecRoomLeft, Room: "g_1", User: "carol"}),
	))
	names := []string{"alice", "bob", "carol", "dave", "erin", "nosuchuser"}
	for _, c := range []struct {
		viewer string
		want   []bool
	}{
		{"alice", []bool{true, true, false, true, false, false}},  // herself, a roommate, one who left, a friend
		{"dave", []bool{false, false, false, true, false, false}}, // alice added dave, not dave alice
		{"bob", []bool{true, true, false, false, true, false}},
		{"nosuchuser", []bool{false, false, false, false, false, true}},
	} {
		if got := v.PresenceVisible(c.viewer, names); !slices.Equal(got, c.want) {
			t.Errorf("%s sees the presence of %v: %v, want %v", c.viewer, names, got, c.want)
		}
	}
}

// An invitation that no longer fits the room as the log orders it (two
// raced, each fitting as its gateway saw the room) adds whom there is room
// for, up to the room's limit, and the answer's room shows who is in. The
// rule is the log's for good: a site rebuilding its read model must reach
// what the others applied, so it cannot change for records already
// written. A room created with more members than a group holds (no
// gateway writes one) is created as written, for the same reason.
func TestInvitesPastAFullRoomAddWhomThereIsRoomFor(t *testing.T) {
	v := openTemp(t)
	defer v.Close()
	entry := (&p0Entries{}).entry
	users := func(prefix string, n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%s%d", prefix, i))
		}
		return out
	}
	full := salamander.MaxGroupMembers
	apply(t, v, &memLog{}, []jsstore.Entry{
		entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_full", Kind: salamander.RoomGroup, Name: "g",
			Members: users("m", full-10), By: "m0"}),
		entry(salamander.Record{Type: salamander.RecRoomJoined, Room: "g_full", Members: users("a", 6), By: "m0"}),
		entry(salamander.Record{Type: salamander.RecRoomJoined, Room: "g_full", Members: users("b", 6), By: "m1"}),
	})
	room, err := v.Room(context.Background(), "g_full", "m0")
	if err != nil {
		t.Fatal(err)
	}
	if len(room.Members) != full || !slices.Contains(room.Members, "a5") || !slices.Contains(room.Members, "b3") ||
		slices.Contains(room.Members, "b4") {
		t.Fatalf("the room holds %d members (want %d: the first invite's six, the second's first four)", len(room.Members), full)
	}
}

// A message is found by its log position also when the model no longer
// holds it (past a stream's newest recentPerStream messages): a send whose
// append the log answered "duplicate" of an old one is then answered with
// that message, not as if it were lost. Two rooms share the stream, so a
// message's position is not its seq and the marks must find it.
func TestMessageAtFindsOldMessagesInTheStore(t *testing.T) {
	v := openTemp(t)
	entry := (&p0Entries{}).entry
	entries := []jsstore.Entry{
		entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_a", Kind: salamander.RoomGroup, Name: "a", Members: []string{"ann"}, By: "ann"}),
		entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_b", Kind: salamander.RoomGroup, Name: "b", Members: []string{"bo"}, By: "bo"}),
	}
	posOf := map[string]salamander.Position{}
	for i := range recentPerStream/2 + 100 {
		for _, r := range []struct{ room, user string }{{"g_a", "ann"}, {"g_b", "bo"}} {
			id := fmt.Sprintf("%s-%d", r.room, i)
			e := entry(salamander.Record{Type: salamander.RecMessageSent, Room: r.room, User: r.user, ClientID: id, Text: id})
			posOf[id] = e.Pos
			entries = append(entries, e)
		}
	}
	apply(t, v, &memLog{}, entries)
	ctx := context.Background()
	for _, id := range []string{"g_a-0", "g_a-40", "g_a-41", "g_b-33"} {
		room := id[:3]
		if v.m.recentAt(posOf[id]) != nil {
			t.Fatalf("set-up: %s is still among the model's recent messages", id)
		}
		m, ok, err := v.MessageAt(ctx, room, posOf[id])
		if err != nil || !ok || m.ClientID != id || m.Room != room {
			t.Fatalf("%s at %v: %+v, %v, %v", id, posOf[id], m, ok, err)
		}
	}
	last := fmt.Sprintf("g_a-%d", recentPerStream/2+99)
	if m, ok, err := v.MessageAt(ctx, "g_a", posOf[last]); err != nil || !ok || m.ClientID != last {
		t.Fatalf("a recent message: %+v, %v, %v", m, ok, err)
	}
	for _, c := range []struct {
		room string
		pos  salamander.Position
	}{{"g_b", posOf["g_a-40"]}, {"g_b", posOf[last]}, {"g_a", salamander.Position{Stream: "p0", Seq: 1}}, {"g_x", posOf["g_a-0"]}} {
		if m, ok, err := v.MessageAt(ctx, c.room, c.pos); err != nil || ok {
			t.Fatalf("room %s at %v: %+v, %v, %v; want none", c.room, c.pos, m, ok, err)
		}
	}
}

// A user's rooms are listed in pages by id, each page most recently
// active first (ties by id), a list that fits one page ordered whole by
// activity: every room once, however the list is cut — also when a room
// on a later page becomes the most active while the pages are read.
func TestRoomsOfInPages(t *testing.T) {
	v := openTemp(t)
	entry := (&p0Entries{}).entry
	log := &memLog{}
	var entries []jsstore.Entry
	for i := range 7 {
		id := fmt.Sprintf("g_%d", i)
		entries = append(entries, entry(salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomGroup,
			Name: id, Members: []string{"ann", "bo"}, By: "ann"}))
	}
	talk := func(id string, minutes int) jsstore.Entry {
		e := entry(salamander.Record{Type: salamander.RecMessageSent, Room: id, User: "ann", ClientID: fmt.Sprintf("%s-%d", id, minutes), Text: id})
		e.Record.At = e.Record.At.Add(time.Duration(minutes) * time.Minute)
		return e
	}
	// g_5 and g_2 talk, g_2 last; the rest keep their (equal) creation time.
	apply(t, v, log, append(entries, talk("g_5", 1), talk("g_2", 2)))
	ids := func(rooms []salamander.Room) []string {
		var out []string
		for _, r := range rooms {
			out = append(out, r.ID)
		}
		return out
	}
	whole, next, err := v.RoomsOf(context.Background(), "bo", "", 10)
	if err != nil || next != "" {
		t.Fatalf("one page: next %q, %v", next, err)
	}
	if want := []string{"g_2", "g_5", "g_0", "g_1", "g_3", "g_4", "g_6"}; !slices.Equal(ids(whole), want) {
		t.Fatalf("one page: %v, want %v", ids(whole), want)
	}
	for _, size := range []int{1, 2, 3, 7} {
		var got []string
		after := ""
		for page := 0; ; page++ {
			rooms, next, err := v.RoomsOf(context.Background(), "bo", after, size)
			if err != nil {
				t.Fatal(err)
			}
			if len(rooms) > size || page > 7 {
				t.Fatalf("pages of %d: a page of %d rooms, or too many pages", size, len(rooms))
			}
			got = append(got, ids(rooms)...)
			if page == 0 && size == 2 {
				// g_6, not read yet, becomes the most active meanwhile.
				apply(t, v, log, []jsstore.Entry{talk("g_6", 3)})
			}
			if next == "" {
				break
			}
			after = next
		}
		slices.Sort(got)
		if want := []string{"g_0", "g_1", "g_2", "g_3", "g_4", "g_5", "g_6"}; !slices.Equal(got, want) {
			t.Fatalf("pages of %d: %v, want every room once", size, got)
		}
	}
}

// HashCost is the bcrypt cost most accounts' password hashes have, also
// after a restart: a login for a name nobody has is checked against a
// dummy hash of that cost, so that it takes as long as most wrong
// passwords after the configured cost changed.
func TestHashCostIsTheMostCommon(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	if got := v.HashCost(); got != 0 {
		t.Fatalf("no accounts: cost %d, want 0", got)
	}
	hash := func(cost int) string {
		h, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), cost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	entries := (&p0Entries{}).entry
	user := func(name string, cost int) jsstore.Entry {
		e := entries(salamander.Record{Type: salamander.RecUserCreated, User: name, PasswordHash: hash(cost)})
		e.Pos.Stream = "acct"
		return e
	}
	log := &memLog{}
	apply(t, v, log, []jsstore.Entry{user("ann", 4), user("bo", 4), user("cy", 5)})
	if got := v.HashCost(); got != 4 {
		t.Fatalf("two accounts at 4, one at 5: cost %d", got)
	}
	apply(t, v, log, []jsstore.Entry{user("di", 5), user("ed", 5)})
	if got := v.HashCost(); got != 5 {
		t.Fatalf("two accounts at 4, three at 5: cost %d", got)
	}
	v.Close()
	v = openAt(t, path)
	defer v.Close()
	if got := v.HashCost(); got != 5 {
		t.Fatalf("reopened: cost %d, want 5", got)
	}
}
