package view

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// refWindow is the dedupe window's rule written plainly: the newest
// DedupeWindow messages, a key's seq the newest message's with it.
type refWindow struct{ keys, seqs []uint64 }

func (r *refWindow) add(k, seq uint64) {
	r.keys, r.seqs = append(r.keys, k), append(r.seqs, seq)
	if len(r.keys) > DedupeWindow {
		r.keys, r.seqs = r.keys[1:], r.seqs[1:]
	}
}

func (r *refWindow) seqOf(k uint64) (uint64, bool) {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i] == k {
			return r.seqs[i], true
		}
	}
	return 0, false
}

// The window answers as the rule does while it grows, fills and slides,
// with keys that share their low bits (long probe runs, deletions moving
// entries back) and keys that repeat.
func TestClientWindowFollowsTheRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(r *rand.Rand) uint64
	}{
		{"random keys", func(r *rand.Rand) uint64 { return r.Uint64() }},
		// Low bits from a few values: runs of colliding homes.
		{"clustered keys", func(r *rand.Rand) uint64 { return r.Uint64()<<20 | uint64(r.IntN(16)) }},
		// A small key space: keys come back within the window.
		{"repeating keys", func(r *rand.Rand) uint64 { return uint64(r.IntN(6000)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			var w clientWindow
			var ref refWindow
			var probes []uint64
			seq := uint64(100)
			for i := range 3*DedupeWindow + 500 {
				k := tc.key(rng)
				w.add(k, seq)
				ref.add(k, seq)
				seq++
				probes = append(probes, k, tc.key(rng))
				if i%499 == 0 || i > 3*DedupeWindow+450 {
					// The newest keys, and some from anywhere: within the
					// window, gone from it, or never added.
					check := probes[max(0, len(probes)-300):]
					for range 100 {
						check = append(check, probes[rng.IntN(len(probes))])
					}
					for _, p := range check {
						got, gok := w.seqOf(p)
						want, wok := ref.seqOf(p)
						if got != want || gok != wok {
							t.Fatalf("after %d adds: seqOf(%#x) = %d, %v; the rule says %d, %v", i+1, p, got, gok, want, wok)
						}
					}
				}
				if w.n != len(ref.keys) {
					t.Fatalf("after %d adds: holds %d, want %d", i+1, w.n, len(ref.keys))
				}
			}
		})
	}
}

// A full window is 48 KiB, and a room with few messages holds a small one.
func TestClientWindowSize(t *testing.T) {
	var w clientWindow
	for seq := uint64(1); seq <= 5; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	if got := w.bytes(); got != 8*minWindowRing+2*2*minWindowRing {
		t.Fatalf("five messages take %d B", got)
	}
	for seq := uint64(6); seq <= 3*DedupeWindow; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	if got, want := w.bytes(), 8*DedupeWindow+2*2*DedupeWindow; got != want || want != 48<<10 {
		t.Fatalf("a full window takes %d B, want %d (48 KiB)", got, want)
	}
}

// A seq that does not follow the window's newest starts the window over:
// a key is never given a seq it was not sent at.
func TestClientWindowStartsOverAtAGap(t *testing.T) {
	var w clientWindow
	w.add(1, 10)
	w.add(2, 11)
	w.add(3, 20)
	if _, ok := w.seqOf(1); ok || w.n != 1 {
		t.Fatalf("after a gap the window holds %d keys, 1 found: %v", w.n, ok)
	}
	if seq, ok := w.seqOf(3); !ok || seq != 20 {
		t.Fatalf("seqOf(3) = %d, %v", seq, ok)
	}
}

// forge gives the message at seq, in the window, the key k instead of its
// own: what a collision of two client keys would do.
func (w *clientWindow) forge(k, seq uint64) {
	p := (w.head + int(seq-w.first)) & (len(w.keys) - 1)
	w.unindex(p)
	w.keys[p] = k
	w.index(p)
}

func BenchmarkClientWindow(b *testing.B) {
	var w clientWindow
	seq := uint64(1)
	for ; seq <= DedupeWindow; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	b.ReportAllocs()
	for b.Loop() {
		k := seq * 0x9e3779b97f4a7c15
		if _, dup := w.seqOf(k); !dup {
			w.add(k, seq)
		}
		seq++
	}
}

// contents lists the window's keys, oldest first, and the oldest's seq.
func (w *clientWindow) contents() (uint64, []uint64) {
	out := make([]uint64, 0, w.n)
	for i := range w.n {
		out = append(out, w.keys[(w.head+i)&(len(w.keys)-1)])
	}
	return w.first, out
}

// sendsTo returns entries creating room g_1 and n messages alice sends to
// it, at positions of stream p0 from 1.
func sendsTo(n int) []jsstore.Entry {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	out := []jsstore.Entry{{Pos: salamander.Position{Stream: "p0", Seq: 1}, Record: salamander.Record{
		Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup, Name: "g", Members: []string{"alice"},
		By: "alice", At: at}}}
	for i := range n {
		out = append(out, jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: uint64(i + 2)}, Record: salamander.Record{
			Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: fmt.Sprintf("c%d", i), Text: "x", At: at}})
	}
	return out
}

// After a restart the applier reads a room's window from the store before
// it takes the model's lock, and the window it puts in place is the one
// applying the log record by record builds.
func TestPreloadedWindowIsTheBuiltOne(t *testing.T) {
	log := sendsTo(DedupeWindow + 50)
	next := jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: uint64(len(log) + 1)}, Record: salamander.Record{
		Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c7", Text: "again", At: log[1].Record.At}}

	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	apply(t, v, &memLog{}, log)
	v.Close()
	v = openAt(t, path)
	defer v.Close()
	v.preloadWindows([]jsstore.Entry{next})
	rs := v.m.rooms["g_1"]
	if !rs.idsLoaded {
		t.Fatal("the window was not preloaded")
	}
	built := openTemp(t)
	apply(t, built, &memLog{}, log)
	f1, k1 := rs.ids.contents()
	f2, k2 := built.m.rooms["g_1"].ids.contents()
	if f1 != f2 || !slices.Equal(k1, k2) {
		t.Fatalf("preloaded window: %d keys from seq %d; built: %d from %d", len(k1), f1, len(k2), f2)
	}
	// c7 left the window 50 messages ago: its resend is a new message.
	apply(t, v, &memLog{}, []jsstore.Entry{next})
	if got := v.m.rooms["g_1"].lastSeq; got != DedupeWindow+51 {
		t.Fatalf("last seq %d after the resend of c7, want %d", got, DedupeWindow+51)
	}
}

// A room whose index rows have a hole (which the store never writes) gets
// the newest unbroken run of its window, each key with its own seq.
func TestReadWindowAcrossAHole(t *testing.T) {
	v := openTemp(t)
	apply(t, v, &memLog{}, sendsTo(20))
	rs := v.m.rooms["g_1"]
	if _, err := v.w.Exec(`DELETE FROM messages WHERE room = ? AND seq = 5`, rs.no); err != nil {
		t.Fatal(err)
	}
	w, err := v.readWindow(v.r, rs.no, rs.lastSeq)
	if err != nil {
		t.Fatal(err)
	}
	if first, keys := w.contents(); first != 6 || len(keys) != 15 {
		t.Fatalf("window from seq %d with %d keys, want 6 and 15", first, len(keys))
	}
	if seq, ok := w.seqOf(clientKeyOf("alice", "c9")); !ok || seq != 10 {
		t.Fatalf("c9 at %d (%v), want 10", seq, ok)
	}
	if _, ok := w.seqOf(clientKeyOf("alice", "c2")); ok {
		t.Fatal("c2, before the hole, is in the window")
	}
}

// testClock is an applier's clock the test moves.
type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

// The window of a room without a message for the idle time leaves memory
// once the store holds the room's newest message; the room's next message
// reads it back, and a resend within it is still recognized. A room used
// meanwhile keeps its window.
func TestIdleWindowsLeaveMemory(t *testing.T) {
	v := openTemp(t)
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	v.now = clock.now
	log := &memLog{}
	seq := uint64(0)
	entry := func(r salamander.Record) jsstore.Entry {
		seq++
		r.At = clock.t
		return jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: seq}, Record: r}
	}
	room := func(id string) jsstore.Entry {
		return entry(salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomGroup, Name: id,
			Members: []string{"alice"}, By: "alice"})
	}
	send := func(id, cid string) jsstore.Entry {
		return entry(salamander.Record{Type: salamander.RecMessageSent, Room: id, User: "alice", ClientID: cid, Text: "x"})
	}
	apply(t, v, log, []jsstore.Entry{room("g_1"), room("g_2"), send("g_1", "a1"), send("g_1", "a2"), send("g_2", "b1")})
	if w := v.Windows(); w.Windows != 2 || w.Bytes != 2*(8*minWindowRing+4*minWindowRing) || w.Loads != 0 {
		t.Fatalf("after two rooms talked: %+v", w)
	}
	clock.t = clock.t.Add(v.windowIdle / 2)
	apply(t, v, log, []jsstore.Entry{send("g_2", "b2")})
	clock.t = clock.t.Add(v.windowIdle/2 + time.Second)
	v.evictIdleWindows()
	if v.m.rooms["g_1"].idsLoaded || !v.m.rooms["g_2"].idsLoaded {
		t.Fatalf("g_1 idle, g_2 used since: in memory %v and %v", v.m.rooms["g_1"].idsLoaded, v.m.rooms["g_2"].idsLoaded)
	}
	if w := v.Windows(); w.Windows != 1 || w.Evictions != 1 {
		t.Fatalf("after one window left: %+v", w)
	}
	// g_1 talks again: a2's resend is a duplicate, a3 is new.
	apply(t, v, log, []jsstore.Entry{send("g_1", "a2"), send("g_1", "a3")})
	if got := v.m.rooms["g_1"].lastSeq; got != 3 {
		t.Fatalf("g_1's last seq %d, want 3 (a2's resend dropped)", got)
	}
	if w := v.Windows(); w.Windows != 2 || w.Loads != 1 {
		t.Fatalf("after g_1 talked again: %+v", w)
	}
	if m, ok, err := v.MessageByClientID(context.Background(), "g_1", "alice", "a1"); err != nil || !ok || m.Seq != 1 {
		t.Fatalf("a1 after the window came back: %+v %v %v", m, ok, err)
	}
}

// A window whose room's newest message the store does not hold yet stays
// in memory, however long the room is idle: read back, it would miss it.
// So does the window of a room a standby holds a message of, and only
// that room's.
func TestWindowsStayUntilStored(t *testing.T) {
	v := openTemp(t)
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	v.now = clock.now
	log := sendsTo(3)
	apply(t, v, &memLog{}, log[:2])
	v.src = &memLog{}
	if _, err := v.applyModel(log[2:]); err != nil { // applied, not stored
		t.Fatal(err)
	}
	clock.t = clock.t.Add(2 * v.windowIdle)
	v.evictIdleWindows()
	if !v.m.rooms["g_1"].idsLoaded {
		t.Fatal("a window left memory before the store held the room's newest message")
	}
	if err := v.write([]*dbBatch{{reached: map[string]uint64{"p0": 4}}}); err != nil {
		t.Fatal(err)
	}
	hold := func(room string) {
		v.mu.Lock()
		v.m.held["s0"] = []heldMessage{{pos: jsstore.PositionOf("s0", 1, 0),
			rec: salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "alice", ClientID: "h1"}}}
		v.mu.Unlock()
	}
	hold("g_1")
	v.evictIdleWindows()
	if !v.m.rooms["g_1"].idsLoaded {
		t.Fatal("a window left memory while a standby held a message of its room")
	}
	hold("g_2") // another room's
	v.evictIdleWindows()
	if v.m.rooms["g_1"].idsLoaded {
		t.Fatal("an idle, stored window stayed in memory while only another room's message was held")
	}
}

// A site catching up with the log applies rooms' messages long after they
// were sent: the windows of rooms quiet for the idle time leave memory as
// soon as the store holds them, even behind a room that talked just now.
func TestCatchUpLetsOldWindowsGo(t *testing.T) {
	v := openTemp(t)
	clock := &testClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	v.now = clock.now
	seq := uint64(0)
	entry := func(at time.Time, r salamander.Record) jsstore.Entry {
		seq++
		r.At = at
		return jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: seq}, Record: r}
	}
	long := clock.t.Add(-2 * v.windowIdle)
	var batch []jsstore.Entry
	for _, id := range []string{"g_now", "g_old"} {
		batch = append(batch, entry(long, salamander.Record{Type: salamander.RecRoomCreated, Room: id, Kind: salamander.RoomGroup,
			Name: id, Members: []string{"alice"}, By: "alice"}))
	}
	batch = append(batch,
		entry(clock.t, salamander.Record{Type: salamander.RecMessageSent, Room: "g_now", User: "alice", ClientID: "n1", Text: "x"}),
		entry(long, salamander.Record{Type: salamander.RecMessageSent, Room: "g_old", User: "alice", ClientID: "o1", Text: "x"}))
	apply(t, v, &memLog{}, batch)
	v.evictIdleWindows()
	if !v.m.rooms["g_now"].idsLoaded || v.m.rooms["g_old"].idsLoaded {
		t.Fatalf("in memory after catching up: g_now %v (talked now), g_old %v (quiet for two idle times)",
			v.m.rooms["g_now"].idsLoaded, v.m.rooms["g_old"].idsLoaded)
	}
}

// A sweep passes over rooms that cannot go yet, drops at most its share of
// windows and visits at most its share of rooms; a room's newest message
// is looked for in the stream it came from.
func TestEvictIdleBounds(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cutoff := at.Add(time.Minute)
	stored := func(s string) uint64 { return map[string]uint64{"p0": 100}[s] }
	rooms := func() (*windowSet, []*roomState) {
		var set windowSet
		var rs []*roomState
		// recent, old, old from another stream not stored, old, old
		for i, used := range []time.Time{cutoff, at, at, at, at} {
			r := &roomState{id: fmt.Sprint(i), stream: "p0", idsLoaded: true, win: windowLinks{lastStream: "p0", lastPos: 7}}
			if i == 2 {
				r.win.lastStream = "p1"
			}
			set.put(r, used, false)
			rs = append(rs, r)
		}
		return &set, rs
	}
	loaded := func(rs []*roomState) (out []bool) {
		for _, r := range rs {
			out = append(out, r.idsLoaded)
		}
		return out
	}
	set, rs := rooms()
	set.evictIdle(cutoff, stored, keepNone, 100, 100)
	if got := loaded(rs); !slices.Equal(got, []bool{true, false, true, false, false}) || set.count != 2 || set.evictions != 3 {
		t.Fatalf("in memory after a sweep: %v (%d left, %d dropped)", got, set.count, set.evictions)
	}
	set, rs = rooms()
	set.evictIdle(cutoff, stored, keepNone, 100, 1)
	if got := loaded(rs); !slices.Equal(got, []bool{true, false, true, true, true}) {
		t.Fatalf("dropping one: %v", got)
	}
	set, rs = rooms()
	set.evictIdle(cutoff, stored, keepNone, 3, 100)
	if got := loaded(rs); !slices.Equal(got, []bool{true, false, true, true, true}) {
		t.Fatalf("visiting three: %v", got)
	}
	if set.head != rs[0] || set.tail != rs[4] || rs[0].win.next != rs[2] || rs[2].win.prev != rs[0] {
		t.Fatal("the list is broken after a drop")
	}
}

func keepNone(*roomState) bool { return false }
