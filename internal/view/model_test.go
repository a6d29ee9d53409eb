package view

import (
	"testing"

	"github.com/salamander-chat/salamander"
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
