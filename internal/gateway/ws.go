package gateway

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/view"
)

const (
	wsQueueLen     = 4096
	wsPingInterval = 15 * time.Second
	wsWriteTimeout = 10 * time.Second
	wsReplayPage   = 500
	// tokenRecheck is how soon a revoked session's open sockets close.
	tokenRecheck = 5 * time.Second
)

// hub maps users to their WebSockets at this site and fans applied events
// out to them. A device too slow to drain its queue is disconnected rather
// than allowed to hold memory or block delivery to others; it resumes from
// its cursor when it reconnects.
type hub struct {
	metrics *metrics
	mu      sync.Mutex
	conns   map[string]map[*wsConn]struct{}
	closed  bool
}

type wsConn struct {
	user   string
	queue  chan salamander.Event
	cancel context.CancelFunc
}

func newHub(m *metrics) *hub {
	return &hub{metrics: m, conns: map[string]map[*wsConn]struct{}{}}
}

// add registers c and reports whether it is the user's first device here.
func (h *hub) add(c *wsConn) (first bool, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false, false
	}
	set := h.conns[c.user]
	if set == nil {
		set = map[*wsConn]struct{}{}
		h.conns[c.user] = set
	}
	set[c] = struct{}{}
	h.metrics.wsConns.Inc()
	return len(set) == 1, true
}

// remove unregisters c and reports whether it was the user's last device here.
func (h *hub) remove(c *wsConn) (last bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	set := h.conns[c.user]
	if _, ok := set[c]; !ok {
		return false
	}
	delete(set, c)
	h.metrics.wsConns.Dec()
	if len(set) == 0 {
		delete(h.conns, c.user)
		return true
	}
	return false
}

// online lists the users with at least one device connected here.
func (h *hub) online() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]string, 0, len(h.conns))
	for u := range h.conns {
		out = append(out, u)
	}
	return out
}

// kickAll disconnects every device; they reconnect, to another site if
// this one refuses them.
func (h *hub) kickAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.conns {
		for c := range set {
			c.cancel()
		}
	}
}

func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, set := range h.conns {
		for c := range set {
			c.cancel()
		}
	}
}

// deliver is the view's apply listener: it queues each event for every
// connected device of its audience.
func (h *hub) deliver(batch []view.Emitted) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range batch {
		seen := map[string]bool{}
		for _, u := range e.Audience {
			if seen[u] {
				continue
			}
			seen[u] = true
			for c := range h.conns[u] {
				c.push(e.Event)
			}
		}
	}
}

// sendTo queues an ephemeral event for every device of the given users.
// Ephemeral events are dropped for a device whose queue is full: losing a
// "typing" is harmless, and unlike stored events it cannot be replayed.
func (h *hub) sendTo(users []string, ev salamander.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, u := range users {
		for c := range h.conns[u] {
			select {
			case c.queue <- ev:
			default:
			}
		}
	}
}

func (c *wsConn) push(ev salamander.Event) {
	select {
	case c.queue <- ev:
	default:
		c.cancel() // too slow: drop the connection; the device resumes from its cursor
	}
}

// handleWebSocket serves one device: it replays every stored event since
// the device's cursor, says "ready", then streams live events. Events are
// registered for before the replay starts and deduplicated by position, so
// nothing falls between replay and live.
func (g *Gateway) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	if err := g.serving(); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	token := bearerToken(r.Header.Get("Authorization"))
	if token == "" {
		token = r.URL.Query().Get("token")
	}
	c, err := g.authenticate(r.Context(), token)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	cur, err := g.parseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{OriginPatterns: g.cfg.OriginPatterns})
	if err != nil {
		return // Accept has answered the request
	}
	defer conn.CloseNow()
	conn.SetReadLimit(4096)
	ctx, cancel := context.WithCancel(conn.CloseRead(context.Background()))
	defer cancel()
	wc := &wsConn{user: c.User, queue: make(chan salamander.Event, wsQueueLen), cancel: cancel}
	first, ok := g.hub.add(wc)
	if !ok {
		conn.Close(websocket.StatusGoingAway, "site shutting down")
		return
	}
	defer func() {
		if g.hub.remove(wc) {
			g.eph.setOnline(c.User, false)
		}
	}()
	// SetIsolated sets the flag before it kicks every registered device, so
	// a device registered after the kick sees the flag here.
	if g.Isolated() {
		conn.Close(websocket.StatusTryAgainLater, "site cut off from the other sites")
		return
	}
	if first {
		g.eph.setOnline(c.User, true)
	}
	pingDone := make(chan struct{})
	go func() {
		defer close(pingDone)
		g.pinger(ctx, conn, cancel)
	}()
	defer func() {
		cancel()
		<-pingDone
	}()

	write := func(ev salamander.Event) error {
		wctx, wcancel := context.WithTimeout(ctx, wsWriteTimeout)
		defer wcancel()
		return wsjson.Write(wctx, conn, ev)
	}
	for {
		res, err := g.cfg.View.Sync(ctx, c.User, cur, wsReplayPage)
		if err != nil {
			conn.Close(websocket.StatusInternalError, "replay failed")
			return
		}
		for _, ev := range res.Events {
			if err := write(ev); err != nil {
				return
			}
		}
		next, err := salamander.ParseCursor(res.Cursor)
		if err != nil {
			conn.Close(websocket.StatusInternalError, "replay failed")
			return
		}
		cur = next
		if !res.More {
			break
		}
	}
	if err := write(salamander.Event{Type: salamander.EventReady, Cursor: cur.String()}); err != nil {
		return
	}
	// The token was checked once at connect; re-check it now and then so a
	// logout, a revocation or expiry also closes open sockets.
	recheck := time.NewTicker(tokenRecheck)
	defer recheck.Stop()
	for {
		select {
		case <-ctx.Done():
			conn.Close(websocket.StatusGoingAway, "closing")
			return
		case <-recheck.C:
			if _, err := g.authenticate(ctx, token); salamander.ErrorCode(err) == salamander.CodeUnauthorized {
				conn.Close(websocket.StatusPolicyViolation, "session revoked or expired")
				return
			}
		case ev := <-wc.queue:
			if ev.Pos != nil {
				if cur.Seen(*ev.Pos) {
					continue
				}
				cur.Advance(*ev.Pos)
			}
			if err := write(ev); err != nil {
				return
			}
		}
	}
}

func (g *Gateway) pinger(ctx context.Context, conn *websocket.Conn, cancel context.CancelFunc) {
	t := time.NewTicker(wsPingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, wsWriteTimeout)
			err := conn.Ping(pctx)
			pcancel()
			if err != nil {
				cancel()
				return
			}
		}
	}
}
