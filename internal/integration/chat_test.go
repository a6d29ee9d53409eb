package integration

import (
	"fmt"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// A message sent at site a is delivered live to a member connected at
// site c, and both see the same history.
func TestCrossSiteConversation(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	alice, _ := signedUp(t, 0, "alice")
	carol, carolName := signedUp(t, 2, "carol")

	sub := carol.Subscribe(ctx)
	defer sub.Close()

	room, err := alice.DirectRoom(ctx, carolName)
	if err != nil {
		t.Fatal(err)
	}
	res, err := alice.Send(ctx, room.ID, "hello from site a")
	if err != nil {
		t.Fatal(err)
	}
	if res.Message.Seq != 1 || res.Duplicate {
		t.Fatalf("first message: %+v", res)
	}
	got := waitMessage(t, sub.Events(), room.ID, 1, 20*time.Second)
	if got.Text != "hello from site a" || got.Unread != 1 {
		t.Fatalf("delivered at site c: %+v", got)
	}
	if carol.Site() != cluster.URL(2) {
		t.Fatalf("carol should be at site c, is at %s", carol.Site())
	}
	page, err := carol.History(ctx, room.ID, clientHistory(0, 0, 10))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || page.Messages[0].Text != "hello from site a" {
		t.Fatalf("history at c: %+v", page)
	}
}

func waitMessage(t *testing.T, events <-chan salamander.Event, room string, seq uint64, d time.Duration) salamander.Message {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case ev := <-events:
			if ev.Type == salamander.EventMessage && ev.Message.Room == room && ev.Message.Seq == seq {
				return *ev.Message
			}
		case <-timeout:
			t.Fatal(fmt.Sprintf("message %s/%d not delivered within %s", room, seq, d))
		}
	}
}
