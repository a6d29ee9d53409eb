package view

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

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
