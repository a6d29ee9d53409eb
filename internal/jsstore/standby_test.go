package jsstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A partition that does not answer (here: its stream is gone for a while,
// as it is unreachable during an election) gets no send kept waiting:
// messages are held in its standby after HoldAfter, room changes wait, and
// once the partition answers again a merge record places the held
// messages at its place, in order, before anything appended after it.
func TestMessagesAreHeldWhileAPartitionDoesNotAnswer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, _ := openStoreWith(t, "", func(c *jsstore.Config) {
		c.Partitions = 1
		c.HoldAfter = 300 * time.Millisecond
	})
	if got := s.Standbys(); len(got) != 1 || got[0] != "s0" {
		t.Fatalf("standbys %v, want [s0]", got)
	}
	send := func(text string) salamander.Position {
		t.Helper()
		rec := salamander.Record{Type: salamander.RecMessageSent, Room: "d_h", User: "ann", ClientID: text, Text: text}
		pos, _, err := s.Append(ctx, "p0", "d_h", rec, jsstore.AppendOptions{MsgID: "m:" + text, Batch: true})
		if err != nil {
			t.Fatalf("send %s: %v", text, err)
		}
		return pos
	}
	if pos := send("before"); pos.Stream != "p0" {
		t.Fatalf("a send to an answering partition went to %v", pos)
	}

	// The partition stops answering.
	js, err := jetstream.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "SAL_P0")
	if err != nil {
		t.Fatal(err)
	}
	pcfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, "SAL_P0"); err != nil {
		t.Fatal(err)
	}
	var held []salamander.Position
	for i := 1; i <= 3; i++ {
		start := time.Now()
		pos := send(fmt.Sprint("held ", i))
		if !jsstore.IsStandby(pos.Stream) || pos.Stream != "s0" {
			t.Fatalf("send %d during the outage: %v, want a position in s0", i, pos)
		}
		t.Logf("held %d after %v", i, time.Since(start))
		held = append(held, pos)
	}
	// A room change is not held: it waits for the held messages' merge.
	rctx, rcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, _, err = s.Append(rctx, "p0", "d_h", salamander.Record{Type: salamander.RecRoomRenamed, Room: "d_h", Name: "x"},
		jsstore.AppendOptions{})
	rcancel()
	if salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("a room change during the outage: %v, want unavailable", err)
	}

	// The partition answers again (empty: what it held does not matter
	// here). The merger places the held messages; what is sent next comes
	// after them, whether it is held too (the merge had not landed yet) or
	// appended to the partition.
	if _, err := js.CreateStream(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	send("after")
	var got []string
	var merges []salamander.MergeRange
	tctx, stop := context.WithCancel(ctx)
	s.Tail(tctx, "p0", 0, func(e jsstore.Entry) bool {
		switch e.Record.Type {
		case salamander.RecMessageSent:
			got = append(got, e.Record.Text)
			if e.Record.Text == "after" {
				stop()
			}
		case salamander.RecMerge:
			merges = append(merges, *e.Record.Merge)
		}
		return true
	})
	if len(merges) == 0 || merges[0].Standby != "s0" || merges[0].From != 0 || merges[0].To < jsstore.RecordSeq(held[2].Seq) {
		t.Errorf("merges %+v, want the first to place s0 (0, %d] at least", merges, jsstore.RecordSeq(held[2].Seq))
	}
	for i := 1; i < len(merges); i++ {
		if merges[i].From != merges[i-1].To {
			t.Errorf("merges %+v are not gap-free", merges)
		}
	}
	want := []string{"held 1", "held 2", "held 3", "after"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the partition holds %q, want %q", got, want)
	}
}

// When the append that found a partition silent carried only read markers
// (never held: they are answered unavailable), the messages queued behind
// it are held at once, not after a second HoldAfter: the partition is
// still suspected. Measured in a fire drill before this rule, sends to the
// burned site's partitions waited ~2 s instead of ~1 s.
func TestMessagesBehindASilentReadMarkerAreHeldAtOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const holdAfter = 2 * time.Second
	s, _ := openStoreWith(t, "", func(c *jsstore.Config) {
		c.Partitions = 1
		c.HoldAfter = holdAfter
	})
	js, err := jetstream.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "SAL_P0"); err != nil {
		t.Fatal(err)
	}
	mark := salamander.Record{Type: salamander.RecMessageRead, Room: "d_r", User: "ann", Seq: 1}
	if _, _, err := s.Append(ctx, "p0", "d_r", mark, jsstore.AppendOptions{MsgID: "r:1", Batch: true}); salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("a read marker to a silent partition: %v, want unavailable", err)
	}
	start := time.Now()
	msg := salamander.Record{Type: salamander.RecMessageSent, Room: "d_r", User: "ann", ClientID: "m1", Text: "hi"}
	pos, _, err := s.Append(ctx, "p0", "d_r", msg, jsstore.AppendOptions{MsgID: "m:1", Batch: true})
	if err != nil || pos.Stream != "s0" {
		t.Fatalf("a send behind it: %v %v, want a position in s0", pos, err)
	}
	if took := time.Since(start); took >= holdAfter {
		t.Fatalf("the send was held after %v: it waited HoldAfter (%v) again", took, holdAfter)
	}
}
