package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// maxSocketInFlight bounds the sends one socket carries at once (the server
// takes up to 256 frames in flight per socket); more wait for a slot.
const maxSocketInFlight = 128

var (
	// errSocketGone: the socket closed before the send was answered. The
	// Subscription reconnects by itself; the send moves on at once.
	errSocketGone = errors.New("the WebSocket closed before the send was answered")
	// errSocketBusy: the socket cannot take this send now (the same client
	// id is already in flight on it, or the application is not receiving
	// events so answers cannot be read); it goes over HTTP instead, and the
	// site is not to blame.
	errSocketBusy = errors.New("the WebSocket cannot take this send now")
	// errNotYourTurn: sends ahead of this one in its room are not all in
	// flight on the socket; it waits for its turn (see sendOrder).
	errNotYourTurn = errors.New("earlier sends to the room come first")
)

// stallGrace is how long a send whose frame is out waits for its answer
// once the socket's reader has begun waiting for the application to take
// events (the answer may be queued behind them) before it goes over HTTP.
const stallGrace = 250 * time.Millisecond

// sendSocket is a Subscription's WebSocket as Send sees it: send frames go
// out on it and their answers (ack, nack) come back on it, matched by room
// and client id.
type sendSocket struct {
	conn    *websocket.Conn
	site    int // index into Client.sites
	timeout time.Duration
	slots   chan struct{} // one per send in flight
	writing chan struct{} // held by the one send writing its frame
	closed  chan struct{} // closed when the connection ends
	// stalled is set while the reader waits for the application to take
	// events: answers queued behind them cannot be read meanwhile.
	stalled atomic.Bool

	mu      sync.Mutex
	waiting map[string]chan salamander.Event // room "\x00" client id -> answer
	stalls  chan struct{}                    // closed, and replaced, when a stall begins
}

func newSendSocket(conn *websocket.Conn, site int, timeout time.Duration) *sendSocket {
	return &sendSocket{conn: conn, site: site, timeout: timeout, slots: make(chan struct{}, maxSocketInFlight),
		writing: make(chan struct{}, 1), closed: make(chan struct{}), waiting: map[string]chan salamander.Event{},
		stalls: make(chan struct{})}
}

// stall says whether the reader is waiting for the application to take
// events; sends waiting for answers learn when such a wait begins.
func (s *sendSocket) stall(on bool) {
	s.stalled.Store(on)
	if on {
		s.mu.Lock()
		close(s.stalls)
		s.stalls = make(chan struct{})
		s.mu.Unlock()
	}
}

func answerKey(room, clientID string) string { return room + "\x00" + clientID }

// send writes f, if order lets q go on this socket now, and waits for
// its answer. A *failoverError means the site could not serve it (no
// answer in time, or a nack saying so); errSocketGone and errSocketBusy
// mean "try another way"; errNotYourTurn that q waits for its turn; any
// other error is ctx's. out reports whether the frame may have reached
// the site (it was written, or its write failed part way), so that the
// send may have been committed without an answer. The caller lands q
// (order.land) when it returns.
func (s *sendSocket) send(ctx context.Context, f salamander.ClientFrame, order *sendOrder, q *lineSend) (ev salamander.Event, out bool, err error) {
	var none salamander.Event
	if s.stalled.Load() {
		return none, false, errSocketBusy // its answer could not be read now
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.closed:
		return none, false, errSocketGone
	case <-ctx.Done():
		return none, false, ctx.Err()
	}
	defer func() { <-s.slots }()
	key := answerKey(f.RoomID, f.ClientID)
	answer := make(chan salamander.Event, 1)
	s.mu.Lock()
	if _, dup := s.waiting[key]; dup {
		s.mu.Unlock()
		return none, false, errSocketBusy
	}
	if s.stalled.Load() { // a stall began while this send waited for a slot
		s.mu.Unlock()
		return none, false, errSocketBusy
	}
	s.waiting[key] = answer
	stalls := s.stalls
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiting, key)
		s.mu.Unlock()
	}()
	data, err := json.Marshal(f)
	if err != nil {
		return none, false, fmt.Errorf("client: encoding a send frame: %w", err)
	}
	// The frame is written without ctx: a write cut short by a context
	// closes the whole socket (nor with a context of its own: coder/websocket
	// registers a callback with the context of every write given one). A
	// write that takes longer than the timeout closes the socket, as that
	// context would have. Sends queued behind a slow write wait here, where
	// their ctx counts, not in the library's lock, where it would not.
	select {
	case s.writing <- struct{}{}:
	case <-s.closed:
		return none, false, errSocketGone
	case <-ctx.Done():
		return none, false, ctx.Err()
	}
	// Its place in its room's line is taken with the write lock held, so
	// that the line's order on this socket is the order of the frames.
	clock, ok := order.place(q, s)
	if !ok {
		<-s.writing
		return none, false, errNotYourTurn
	}
	cut := time.AfterFunc(s.timeout, func() { s.conn.CloseNow() })
	err = s.conn.Write(context.Background(), websocket.MessageText, data)
	cut.Stop()
	<-s.writing
	if err != nil {
		return none, true, errSocketGone
	}
	// The timeout counts from when no earlier send to the room awaits its
	// answer on this socket (clock), not from the write: the site carries
	// out one socket's sends to a room one at a time, in order, so until
	// then this one waits behind their commits, however many, and that
	// wait says nothing against the site. From then on it is one send's
	// commit, bounded like any request. (A timeout scaled by the sends
	// ahead would guess at their commit times; this measures.) A site
	// that leaves a send unanswered that long is not serving: its socket
	// is closed (see below), so the sends queued behind it fail at once
	// instead of each waiting out a timeout of its own in turn.
	var t *time.Timer
	var expired <-chan time.Time
	start := func(d time.Duration) {
		if t == nil {
			t = time.NewTimer(d)
		} else {
			t.Reset(d)
		}
		expired = t.C
	}
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	if clock == nil {
		start(s.timeout)
	}
	stalled := false
	for {
		select {
		case ev := <-answer:
			return ev, true, nil
		case <-s.closed:
			return none, true, errSocketGone
		case <-ctx.Done():
			return none, true, ctx.Err()
		case <-clock:
			clock = nil
			if !stalled {
				start(s.timeout)
			}
		case <-stalls:
			// The reader waits for the application, and the answer may be
			// queued behind the events it has not taken: a moment more,
			// then HTTP (where the message is answered as the duplicate it
			// is, if it landed).
			stalls, stalled = nil, true
			start(stallGrace)
		case <-expired:
			if stalled || s.stalled.Load() {
				return none, true, errSocketBusy
			}
			// Closed also when its site is the only one (with more, the
			// Subscription leaves a site marked unusable anyway).
			s.conn.CloseNow()
			return none, true, &failoverError{err: fmt.Errorf("no answer on the WebSocket within %s", s.timeout)}
		}
	}
}

// answer hands an ack or nack to the send waiting for it. It reports
// whether one was.
func (s *sendSocket) answer(ev salamander.Event) bool {
	s.mu.Lock()
	ch, ok := s.waiting[answerKey(ev.RoomID, ev.ClientID)]
	s.mu.Unlock()
	if ok {
		select {
		case ch <- ev:
		default:
		}
	}
	return ok
}

// socket returns the WebSocket sends may use, or nil.
func (c *Client) socket() *sendSocket {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sock
}

func (c *Client) setSocket(s *sendSocket) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sock = s
}

// dropSocket withdraws s (its connection has ended) and fails the sends
// waiting on it.
func (c *Client) dropSocket(s *sendSocket) {
	c.mu.Lock()
	if c.sock == s {
		c.sock = nil
	}
	c.mu.Unlock()
	close(s.closed)
}
