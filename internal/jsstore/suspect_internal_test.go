package jsstore

import (
	"context"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// An append of read markers alone that a partition did not answer in time
// leaves the partition suspect, and while it is, messages are held at
// once (TestMessagesBehindASilentReadMarkerAreHeldAtOnce). Nothing was
// held, so no merger ran to find that the partition answers again, and
// nothing else would: the next message to it, a second or an hour later,
// was held though its partition was healthy. The process now asks the
// partition's leader until it answers, as the merger does, and the
// suspicion ends with the silence.
func TestASuspicionWithNothingHeldEndsWhenThePartitionAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestStore(ctx, t, startLoneServer(ctx, t), func(c *Config) { c.HoldAfter = 300 * time.Millisecond })
	const room = "d_marks"
	p := s.RoomStream(room)
	pinfo, err := s.js.Stream(ctx, natsName(p))
	if err != nil {
		t.Fatal(err)
	}
	pcfg := pinfo.CachedInfo().Config
	// The partition stops answering (as while it elects a leader).
	if err := s.js.DeleteStream(ctx, natsName(p)); err != nil {
		t.Fatal(err)
	}
	mark := salamander.Record{Type: salamander.RecMessageRead, Room: room, User: "ann", Seq: 1}
	if _, _, err := s.Append(ctx, p, room, mark, AppendOptions{MsgID: "r:1", Batch: true}); salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("a read marker to a silent partition: %v, want unavailable", err)
	}
	if _, suspect, _ := s.unplaced(p, 0); !suspect {
		t.Fatal("the partition that did not answer is not suspect")
	}
	// It answers again.
	if _, err := s.js.CreateStream(ctx, pcfg); err != nil {
		t.Fatal(err)
	}
	// The suspicion ends within a merger's round of the partition's answer
	// (a 300 ms attempt, ≤ 100 ms apart); before, it never did.
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	waitUntil(t, wctx, func() bool {
		_, suspect, _ := s.unplaced(p, 0)
		return !suspect
	})
	msg := salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "ann", ClientID: "m1", Text: "hi"}
	pos, _, err := s.Append(ctx, p, room, msg, AppendOptions{MsgID: "m:1", Batch: true})
	if err != nil || pos.Stream != p {
		t.Fatalf("a message to the partition that answers again: %v %v, want a position in %s", pos, err, p)
	}
	var held uint64
	s.standby(p, func(st *standbyState) { held = st.end })
	if held != 0 {
		t.Fatalf("the standby holds records up to %d, want none", held)
	}
}
