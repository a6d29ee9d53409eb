package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// Liveness of a Subscription's WebSocket: after wsQuiet without hearing from
// the site, the client pings it and gives up on it after wsPingTimeout.
const (
	wsReadLimit   = 1 << 20
	wsQuiet       = 20 * time.Second
	wsPingTimeout = 10 * time.Second
	wsCheckEvery  = 5 * time.Second
	// eventBuffer events are read ahead of the application, so that the
	// answers to sends on the same socket are not stuck behind them.
	eventBuffer = 256
)

// Subscription delivers a Client's live events. It owns two goroutines: one
// keeps a WebSocket open to one site at a time (when the socket breaks, the
// site stops answering pings, or a request marks the site unusable, it
// reconnects to the next site, backing off after each full round, and
// resumes from the Client's cursor), the other hands events to the
// application. While connected, the socket also carries the Client's sends
// (see SendWithID). Receive from Events promptly: the answers to those sends
// are read from the socket only while fewer than 256 events wait for the
// application (sends go over HTTP meanwhile, and a send whose answer is
// stuck behind those events moves there after 250 ms).
//
// Events arrive in the order the server sends them. A stored event (one with
// a position) is delivered at most once per Client, and a message at most
// once per (room, seq), however often reconnections replay it; the Client's
// cursor moves past an event only once it has been received from Events. A
// Client should have at most one Subscription at a time: concurrent ones
// share that bookkeeping, so each stored event reaches only one of them.
type Subscription struct {
	c      *Client
	events chan salamander.Event
	ahead  chan salamander.Event // read from the socket, not yet delivered
	parent context.Context
	cancel context.CancelFunc
	done   chan struct{}
	closed atomic.Bool

	// resume is where the next connection resumes: past every event read
	// from a socket, delivered or still read ahead (owned by run).
	resume salamander.Cursor

	mu   sync.Mutex
	site string
	err  error

	// learning is set while the user's name is asked for after a ready
	// (learnUser); learned waits for that.
	learning atomic.Bool
	learned  sync.WaitGroup
}

// Subscribe starts delivering live events, beginning with every stored event
// after the Client's cursor. The Subscription runs until Close is called,
// ctx ends, or a site refuses it with a final error (e.g. unauthorized). A
// site that refuses the connection for now (429: the account holds too many
// WebSockets; 408) is asked again after its Retry-After (at most a
// minute), and the Subscription goes on.
func (c *Client) Subscribe(ctx context.Context) *Subscription {
	runCtx, cancel := context.WithCancel(ctx)
	s := &Subscription{
		c:      c,
		events: make(chan salamander.Event),
		ahead:  make(chan salamander.Event, eventBuffer),
		parent: ctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	delivered := make(chan struct{})
	go func() {
		defer close(delivered)
		s.deliverLoop(runCtx)
	}()
	go s.run(runCtx, delivered)
	return s
}

// Events returns the channel events are delivered on. It is closed when the
// Subscription ends; Err then says why.
func (s *Subscription) Events() <-chan salamander.Event { return s.events }

// Site returns the base URL of the site the WebSocket is connected to, or ""
// while it is not connected.
func (s *Subscription) Site() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.site
}

// Err returns why the Subscription ended: nil after Close, ctx's error when
// ctx ended, or the final error a site answered with. It is nil while the
// Subscription runs.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops the Subscription and waits for its goroutine to end. Events
// not yet received are not counted as delivered.
func (s *Subscription) Close() error {
	s.closed.Store(true)
	s.cancel()
	<-s.done
	return nil
}

// Done returns a channel closed when the Subscription has ended.
func (s *Subscription) Done() <-chan struct{} { return s.done }

func (s *Subscription) setSite(site string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.site = site
}

// run connects and reconnects until the Subscription ends; then it waits
// for the delivering goroutine (delivered) to end.
func (s *Subscription) run(ctx context.Context, delivered <-chan struct{}) {
	c := s.c
	var err error
	defer func() {
		s.mu.Lock()
		s.site = ""
		switch {
		case s.closed.Load():
			s.err = nil
		case s.parent.Err() != nil:
			s.err = s.parent.Err()
		default:
			s.err = err
		}
		s.mu.Unlock()
		close(s.ahead) // the events read so far are still delivered
		<-delivered
		s.cancel() // ended by itself: its context leaves the parent's
		s.learned.Wait()
		close(s.done)
	}()
	// A session restored with SetToken learns its user before the first
	// connection (see learnUser).
	s.learnUser(ctx)
	if cur, err := salamander.ParseCursor(c.Cursor()); err == nil {
		s.resume = cur
	} else {
		s.resume = salamander.Cursor{}
	}
	n := len(c.sites)
	fails := 0 // connections failed since the last one that lasted
	for {
		if fails > 0 && fails%n == 0 {
			if err = sleep(ctx, c.backoff(fails/n)); err != nil {
				return
			}
		}
		i := c.startSite()
		began := time.Now()
		var ready bool
		tok := c.Token()
		ready, err = s.connect(ctx, i, tok)
		s.setSite("")
		if ctx.Err() != nil {
			return
		}
		if salamander.ErrorCode(err) == salamander.CodeUnauthorized && c.tokenReplaced(ctx, tok) {
			// The session this connection used ended with a password
			// change of this client's (the site closes its sockets as it
			// applies the change, before the new session is answered):
			// connect again with the new one.
			continue
		}
		var later *retryLater
		if errors.As(err, &later) {
			c.log.Warn("live events refused for now; trying again later", "site", c.sites[i], "after", later.after, "error", later.err)
			if err = sleep(ctx, max(later.after, c.backoff(fails/n+1))); err != nil {
				return
			}
			continue // the wait was the back-off: not counted again
		}
		var fe *failoverError
		var here *reconnectHere
		switch {
		case errors.As(err, &here):
			c.log.Warn("live events closed by the site; reconnecting there", "site", c.sites[i], "error", err)
		case errors.As(err, &fe):
			c.siteBad(i, err)
		default:
			c.log.Error("live events stopped", "site", c.sites[i], "error", err)
			return
		}
		// A connection that lasted starts the count again; one that broke
		// soon after its replay counts as failed, so that a site breaking
		// each socket at once (or a send marking it unusable each time)
		// is not asked again and again without a pause.
		if ready && time.Since(began) >= wsStable {
			fails = 0
		}
		fails++
	}
}

// ErrTooManySockets ends a Subscription whose socket the site closed
// because the account had more than salamander.MaxSocketsPerAccount open
// at one of its gateway processes (salamander.CloseTooManySockets): this
// socket was the oldest. The Subscription does not reconnect by itself —
// it would close the next oldest, whose device would reconnect in turn —
// so the application tells its user and subscribes again when asked to.
var ErrTooManySockets = errors.New("client: live events closed: this account has too many devices connected to the site")

// reconnectHere is a socket the site closed for what the client did
// (1008: it read too slowly, sent bad frames, or its session ended): the
// site is not failing, and neither the Subscription nor the Client's
// requests move away from it.
type reconnectHere struct{ err error }

func (e *reconnectHere) Error() string { return e.err.Error() }
func (e *reconnectHere) Unwrap() error { return e.err }

// wsStable is how long a connection must have lasted for the next one to
// be tried without counting towards the back-off.
const wsStable = 10 * time.Second

// retryLater is a site's "not now" to a WebSocket handshake (429 Too Many
// Requests, 408): the Subscription tries again after a while.
type retryLater struct {
	err   error
	after time.Duration
}

func (e *retryLater) Error() string { return e.err.Error() }
func (e *retryLater) Unwrap() error { return e.err }

// maxRetryAfter bounds how long a Subscription honours a Retry-After.
const maxRetryAfter = time.Minute

// retryAfter reads a Retry-After header given in seconds (0 when absent
// or given as a date), at most maxRetryAfter.
func retryAfter(h http.Header) time.Duration {
	secs, err := strconv.Atoi(strings.TrimSpace(h.Get("Retry-After")))
	if err != nil || secs < 0 {
		return 0
	}
	return min(time.Duration(secs)*time.Second, maxRetryAfter)
}

// learnUser asks the sites whose session the client holds when it does not
// know (one restored with SetToken), for at most a request's timeout: the
// user's own messages on the stream take them out of the outbox, known by
// the sender's name. A failure is the connection's to report (while no
// site answers, none could connect either); after the next ready it is
// asked again.
func (s *Subscription) learnUser(ctx context.Context) {
	c := s.c
	if c.UserName() != "" || c.Token() == "" {
		return
	}
	mctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if _, err := c.Me(mctx); err != nil && ctx.Err() == nil {
		c.log.Warn("could not learn the signed-in user's name", "error", err)
	}
}

// connect runs one WebSocket to site i until it breaks or ctx ends. ready
// reports whether the site finished replaying the backlog. A site that
// cannot serve yields a *failoverError; a final refusal a *salamander.Error.
func (s *Subscription) connect(ctx context.Context, i int, tok string) (ready bool, err error) {
	c := s.c
	u := c.sites[i] + "/v1/ws"
	if cur := s.resume.String(); cur != "" {
		u += "?" + url.Values{"cursor": {cur}}.Encode()
	}
	h := http.Header{}
	if tok != "" {
		h.Set("Authorization", "Bearer "+tok)
	}
	var heard atomic.Int64 // unix nanoseconds when the site was last heard from
	hear := func() { heard.Store(time.Now().UnixNano()) }
	dialCtx, cancelDial := context.WithTimeout(ctx, c.timeout)
	conn, resp, err := websocket.Dial(dialCtx, u, &websocket.DialOptions{
		HTTPClient:     c.httpClient,
		HTTPHeader:     h,
		OnPingReceived: func(context.Context, []byte) bool { hear(); return true },
		OnPongReceived: func(context.Context, []byte) { hear() },
	})
	cancelDial()
	if err != nil {
		if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout) {
			// Over the account's connection budget (or slow to ask): not
			// final, and not the site's fault. Try again when it says.
			body, _ := io.ReadAll(resp.Body)
			return false, &retryLater{err: decodeError(resp.StatusCode, resp.Header, body), after: retryAfter(resp.Header)}
		}
		if resp != nil && resp.StatusCode >= 400 && resp.StatusCode < 500 {
			body, _ := io.ReadAll(resp.Body)
			return false, decodeError(resp.StatusCode, resp.Header, body)
		}
		if resp != nil && resp.Body != nil {
			body, _ := io.ReadAll(resp.Body)
			if failoverStatus(resp.StatusCode) {
				err = decodeError(resp.StatusCode, resp.Header, body)
			}
		}
		return false, &failoverError{err: err}
	}
	defer conn.CloseNow()
	conn.SetReadLimit(wsReadLimit)
	hear()
	connected := time.Now()
	s.setSite(c.sites[i])
	c.siteOK(i)
	c.log.Info("live events connected", "site", c.sites[i])
	sock := newSendSocket(conn, i, c.timeout)
	c.setSocket(sock)
	defer c.dropSocket(sock)

	connCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.watch(connCtx, conn, sock, connected, &heard)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	// Reads are given no context: coder/websocket registers a callback
	// with the context of every read it is given one for, which cost a
	// busy subscriber ~7 % of its CPU. The connection is closed when
	// connCtx ends instead, which ends a read in progress alike.
	stopClosing := context.AfterFunc(connCtx, func() { conn.CloseNow() })
	defer stopClosing()
	var buf bytes.Buffer
	for {
		data, err := readMessage(conn, &buf)
		if err != nil {
			if websocket.CloseStatus(err) == salamander.CloseTooManySockets {
				return ready, fmt.Errorf("%w (%w)", ErrTooManySockets, err)
			}
			if websocket.CloseStatus(err) == websocket.StatusPolicyViolation {
				// The site closed this socket for what it did (read too
				// slowly, its session ended): the site serves, so the
				// Subscription reconnects there, and a session that
				// ended is told at that handshake.
				return ready, &reconnectHere{err: err}
			}
			return ready, &failoverError{err: err}
		}
		hear()
		var ev salamander.Event
		if err := salamander.DecodeEvent(data, &ev); err != nil {
			c.log.Warn("undecodable event dropped", "site", c.sites[i], "error", err)
			continue
		}
		switch ev.Type {
		case salamander.EventAck, salamander.EventNack:
			if !sock.answer(ev) && ev.Type == salamander.EventNack {
				c.log.Warn("frame refused", "site", c.sites[i], "room", ev.RoomID, "client_id", ev.ClientID, "error", ev.Error)
			}
			continue
		case salamander.EventReady:
			ready = true
			advanceCursor(s.resume, ev.Cursor)
			if c.UserName() == "" && c.Token() != "" && !s.learning.Swap(true) {
				// No site told the name before the first connection: a
				// site serves now, so ask again, beside the events.
				s.learned.Go(func() {
					defer s.learning.Store(false)
					s.learnUser(ctx)
				})
			}
		}
		if ev.Pos != nil {
			s.resume.Advance(*ev.Pos)
		}
		if !s.readAhead(connCtx, sock, ev) {
			return ready, ctx.Err()
		}
		if ev.Type == salamander.EventMove {
			// The site is being drained: move to another one now, before
			// it closes this socket.
			c.log.Info("site drained; moving", "site", c.sites[i])
			return ready, &failoverError{err: fmt.Errorf("site %s is drained", ev.Site)}
		}
	}
}

// keptReadBuffer bounds the buffer a Subscription keeps between reads: a
// rare large message (a replay page) is read into a buffer of its own.
const keptReadBuffer = 64 << 10

// readMessage reads conn's next message into buf, which is reused from one
// message to the next: every event is decoded before the next is read, and
// the decoder copies what it keeps.
func readMessage(conn *websocket.Conn, buf *bytes.Buffer) ([]byte, error) {
	_, r, err := conn.Reader(context.Background())
	if err != nil {
		return nil, err
	}
	if buf.Cap() > keptReadBuffer {
		*buf = bytes.Buffer{}
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// readAhead queues ev for delivery. It returns false if ctx ended first.
func (s *Subscription) readAhead(ctx context.Context, sock *sendSocket, ev salamander.Event) bool {
	select {
	case s.ahead <- ev:
		return true
	default:
	}
	sock.stall(true)
	defer sock.stall(false)
	select {
	case s.ahead <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

// deliverLoop delivers the events read ahead, in order, until they end or
// ctx does; then it closes Events.
func (s *Subscription) deliverLoop(ctx context.Context) {
	defer close(s.events)
	for {
		select {
		case ev, ok := <-s.ahead:
			if !ok {
				return
			}
			if ev.Type == salamander.EventReady {
				s.c.mergeCursor(ev.Cursor)
			}
			if !s.deliver(ctx, &ev) {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// watch closes conn when its site is marked unusable after the connection
// was made (e.g. a request there got 503), or when it stops answering
// pings. It does not ping while the reader waits for the application: a
// pong is seen only by a read, and a slow application says nothing about
// the site.
func (s *Subscription) watch(ctx context.Context, conn *websocket.Conn, sock *sendSocket, since time.Time, heard *atomic.Int64) {
	c, i := s.c, sock.site
	tick := time.NewTicker(wsCheckEvery)
	defer tick.Stop()
	for {
		bad, changed := c.badSince(i, since)
		if bad && len(c.sites) > 1 { // (with one site, nowhere better to go)
			c.log.Info("leaving unusable site", "site", c.sites[i])
			conn.CloseNow()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-changed:
		case <-tick.C:
			if sock.stalled.Load() {
				heard.Store(time.Now().UnixNano()) // quiet from now on, if it stays so
				continue
			}
			if time.Since(time.Unix(0, heard.Load())) < wsQuiet {
				continue
			}
			pingCtx, cancel := context.WithTimeout(ctx, wsPingTimeout)
			err := conn.Ping(pingCtx)
			cancel()
			if err != nil {
				if ctx.Err() == nil {
					c.log.Warn("site stopped answering pings", "site", c.sites[i], "error", err)
					conn.CloseNow()
				}
				return
			}
		}
	}
}

// deliver hands ev to the application unless it was delivered before, and
// records it as delivered once received. It returns false if ctx ended first.
func (s *Subscription) deliver(ctx context.Context, ev *salamander.Event) bool {
	c := s.c
	c.mu.Lock()
	fresh := c.state.fresh(ev)
	c.mu.Unlock()
	if !fresh {
		return true
	}
	c.observe(ev)
	select {
	case s.events <- *ev:
	case <-ctx.Done():
		return false
	}
	c.mu.Lock()
	c.state.delivered(ev)
	c.mu.Unlock()
	return true
}
