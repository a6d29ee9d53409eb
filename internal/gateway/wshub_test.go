package gateway

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
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
