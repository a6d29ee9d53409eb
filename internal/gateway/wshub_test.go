package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/view"
)

// A "typing" that does not fit in a socket's queue is dropped; a presence
// change is not: no later event corrects it (each is sent once, on the
// change), so the socket is closed instead, and the device reconnects and
// reads presence again, as after a stored event that does not fit.
func TestSendToClosesASocketWhosePresenceEventDoesNotFit(t *testing.T) {
	c, _ := openTestSocket(t, time.Hour)
	h := &hub{conns: map[string][]*wsConn{"alice": {c}}}
	c.mu.Lock()
	c.ready = false // the replay runs: events wait in the queue
	c.mu.Unlock()
	c.enqueue(outFrame{data: make([]byte, wsQueueBytes-16)}, false, false)
	closing := func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.closing
	}
	if closing() {
		t.Fatal("a queue just under its limit closed the socket")
	}
	at := time.Now().UTC()
	h.sendTo([]string{"alice"}, salamander.Event{Type: salamander.EventTyping, RoomID: "r1", User: "bob", Typing: true, At: at})
	if closing() {
		t.Fatal("a typing event that did not fit closed the socket")
	}
	h.sendTo([]string{"alice"}, salamander.Event{Type: salamander.EventPresence, User: "bob", At: at})
	if !closing() {
		t.Fatal("a presence event that did not fit was dropped and the socket left open: the device shows bob online until his next change")
	}
}

// A broadcast event (a drain's "move", an incident) is not stored, so no
// replay sends it: a socket whose replay ended at the stream's applied
// position, past the event's, still gets it live.
func TestBroadcastEventsReachASocketWhoseReplayPassedThem(t *testing.T) {
	c, rec := openTestSocket(t, time.Hour)
	h := &hub{conns: map[string][]*wsConn{"alice": {c}}}
	c.mu.Lock()
	c.cur = salamander.Cursor{"acct": 4} // the replay's cursor: acct applied to 4
	c.mu.Unlock()
	pos := salamander.Position{Stream: "acct", Seq: 4}
	h.deliver([]view.Emitted{{Event: salamander.Event{Type: salamander.EventMove, Pos: &pos, Site: "a", At: time.Now().UTC()}, Broadcast: true}})
	if w := waitWrites(t, rec, 1); !strings.Contains(w[0], `"type":"move"`) {
		t.Fatalf("wrote %q, want the move event", w)
	}
}
