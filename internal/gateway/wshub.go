package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/wsock"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/view"
)

// hub maps users to their WebSockets at this site and fans applied events
// out to them. A device too slow to drain its queue is disconnected rather
// than allowed to hold memory or block delivery to others; it resumes from
// its cursor when it reconnects.
//
// The hub owns every socket's reading (wg: one per socket until its reader
// ends); each socket owns the rest of its goroutines. One goroutine for the
// whole hub (tend) pings the sockets and re-checks their tokens, so an
// idle socket has no timer and no goroutine at all (wsock parks it).
//
// Lock order: hub.mu before wsConn.mu.
type hub struct {
	metrics *metrics
	wg      sync.WaitGroup // one per registered socket, until its reader ends
	// lanes runs the sockets' lanes (wsConn.runLane).
	lanes *workers

	mu     sync.Mutex
	conns  map[string][]*wsConn // by user
	closed bool
}

func newHub(m *metrics) *hub {
	return &hub{metrics: m, conns: map[string][]*wsConn{}, lanes: newWorkers(workerIdle)}
}

// maxSocketsPerUser bounds one user's WebSockets at one gateway process:
// a device that reconnects leaves its old socket open until the pings
// find it gone, so a few extra are normal, and a load test holds many
// devices per user (`bench --scenario idle`: 150), but every socket holds
// memory and the connect budget alone would let an account pile up
// thousands over a day.
const maxSocketsPerUser = salamander.MaxSocketsPerAccount

// add registers c and reports whether it is the user's first device here.
// On success the caller must serve c's socket; its end (Ended) unregisters
// c. A user's sockets are kept oldest first: beyond maxSocketsPerUser the
// oldest is closed (most likely a device that has gone without a word),
// with a status that tells a device still there not to reconnect by
// itself: each reconnect would close the next oldest, whose device would
// reconnect in turn, round and round for as long as they all ran.
func (h *hub) add(c *wsConn) (first bool, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, false
	}
	h.wg.Add(1)
	h.conns[c.user] = append(h.conns[c.user], c)
	if set := h.conns[c.user]; len(set) > maxSocketsPerUser {
		for _, old := range set[:len(set)-maxSocketsPerUser] { // closing already: kick does nothing
			old.kick(salamander.CloseTooManySockets, fmt.Sprintf("more than %d sockets of this account here: the oldest is closed",
				maxSocketsPerUser))
		}
	}
	// The first ping comes at a random point of the first interval, so
	// that sockets opened together are not pinged together ever after.
	c.nextPing = time.Now().Add(wsPingInterval/2 + rand.N(wsPingInterval/2)).UnixNano()
	h.metrics.wsConns.Inc()
	h.metrics.wsConnects.Inc()
	return len(h.conns[c.user]) == 1, true
}

// remove unregisters c and reports whether it was the user's last device here.
func (h *hub) remove(c *wsConn) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.conns[c.user]
	i := slices.Index(set, c)
	if i < 0 {
		return false
	}
	set = slices.Delete(set, i, i+1) // oldest first still
	h.metrics.wsConns.Dec()
	if len(set) == 0 {
		delete(h.conns, c.user)
		return true
	}
	h.conns[c.user] = set
	return false
}

// connected reports whether user has a device connected here.
func (h *hub) connected(user string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns[user]) > 0
}

// users counts the users with at least one device connected here.
func (h *hub) users() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// all returns every registered socket.
func (h *hub) all() []*wsConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*wsConn
	for _, set := range h.conns {
		out = append(out, set...)
	}
	return out
}

// kickAll disconnects every device; they reconnect, to another site if
// this one refuses them.
func (h *hub) kickAll(code wsock.StatusCode, reason string) {
	for _, c := range h.all() {
		c.kick(code, reason)
	}
}

// closeAll refuses new sockets, closes every open one and waits until
// their goroutines have ended. A device that does not answer the close
// within wsCloseGrace is cut off.
func (h *hub) closeAll() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	conns := h.all()
	for _, c := range conns {
		c.kick(wsock.StatusGoingAway, "site shutting down")
	}
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-time.After(wsCloseGrace):
	}
	for _, c := range conns {
		c.abort()
	}
	<-done
}

// audience appends to out the sockets of users (each once).
func (h *hub) audience(users []string, out []*wsConn) []*wsConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var seen map[string]bool
	if len(users) > 8 {
		seen = make(map[string]bool, len(users))
	}
	for i, u := range users {
		if seen != nil {
			if seen[u] {
				continue
			}
			seen[u] = true
		} else if slices.Contains(users[:i], u) {
			continue
		}
		out = append(out, h.conns[u]...)
	}
	return out
}

// deliver is the view's apply listener: it queues each event for every
// connected device of its audience. An event is encoded once, however many
// devices it goes to.
func (h *hub) deliver(batch []view.Emitted) {
	var targets []*wsConn
	for i := range batch {
		e := &batch[i]
		if e.Broadcast {
			targets = append(targets[:0], h.all()...)
		} else {
			targets = h.audience(e.Audience, targets[:0])
		}
		if len(targets) == 0 {
			continue
		}
		f, ok := encodeEvent(&e.Event)
		if !ok {
			continue
		}
		if e.Broadcast {
			// Not stored, so never in a replay: a socket whose replay
			// moved its cursor past this event's position (to the
			// stream's applied end) must still get it — a drain's "move"
			// is otherwise lost by a device connecting as it is applied.
			f.pos = nil
		}
		for _, c := range targets {
			c.enqueue(f, false, false)
		}
	}
	clear(targets)
}

// sendTo queues an ephemeral event for every device of the given users.
// Ephemeral events are never replayed. A "typing" is dropped for a device
// whose queue is full: losing one is harmless, the next comes within
// seconds and the device stops showing it on its own. A presence change
// is sent once, on the change, so one dropped would stand until the
// user's next change: the device is disconnected instead, as for a stored
// event, and reads presence again (GET /v1/presence) once it is back.
func (h *hub) sendTo(users []string, ev salamander.Event) {
	targets := h.audience(users, nil)
	if len(targets) == 0 {
		return
	}
	f, ok := encodeEvent(&ev)
	if !ok {
		return
	}
	droppable := ev.Type == salamander.EventTyping
	for _, c := range targets {
		c.enqueue(f, false, droppable)
	}
}

// duePings returns the sockets whose ping is due at now and schedules
// their next one.
func (h *hub) duePings(now time.Time) []*wsConn {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*wsConn
	t := now.UnixNano()
	for _, set := range h.conns {
		for _, c := range set {
			if c.nextPing <= t {
				c.nextPing = now.Add(wsPingInterval).UnixNano()
				out = append(out, c)
			}
		}
	}
	return out
}

// tendSockets is the hub's one background goroutine: it pings every socket
// each wsPingInterval (a socket that does not answer within wsPongTimeout
// is cut off) and re-checks every socket's token each Config.SessionRecheck, so a
// logout, a revocation or an expiry also closes open sockets.
func (g *Gateway) tendSockets(ctx context.Context) {
	t := time.NewTicker(wsTendEvery)
	defer t.Stop()
	checked := time.Now()
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return
		case now = <-t.C:
		}
		for _, c := range g.hub.duePings(now) {
			c.ping()
		}
		if now.Sub(checked) >= g.cfg.SessionRecheck && g.rechecking.CompareAndSwap(false, true) {
			checked = now
			g.recheck(ctx, g.hub.all(), func() { g.rechecking.Store(false) })
		}
	}
}

// encodeEvent encodes ev for the wire; the frame remembers a stored
// event's position so that each socket drops what its replay already sent.
func encodeEvent(ev *salamander.Event) (outFrame, bool) {
	data, err := salamander.EncodeEvent(ev)
	if err != nil {
		return outFrame{}, false
	}
	f := outFrame{data: data}
	if ev.Pos != nil {
		p := *ev.Pos
		f.pos = &p
	}
	if ev.Type == salamander.EventMessage {
		f.at = ev.At.UnixNano()
		if ev.Message != nil {
			f.sender = ev.Message.Sender
		}
	}
	return f, true
}
