package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/wsock"
)

// WebSocket limits and timings. The frames themselves are documented in
// api/openapi.yaml (GET /v1/ws).
const (
	// wsMaxFrameBytes bounds a client frame: a send of the longest message
	// fits however its text is escaped (JSON needs at most 6 bytes per
	// byte of text). A longer frame is refused with a nack (too_large).
	wsMaxFrameBytes = 6*salamander.MaxMessageBytes + 1024
	// wsHardFrameBytes: a frame longer than this is not read at all; the
	// socket is closed (status 1009).
	wsHardFrameBytes = salamander.MaxBodyBytes
	// wsMaxInFlight frames of one socket may be accepted and not yet
	// answered; more are refused with too_many_requests. A send beyond it
	// is refused in its room's order (see admit).
	wsMaxInFlight = 256
	// wsMaxStrikes refused frames in a row close the socket (1008).
	wsMaxStrikes = 16
	// wsParkAfter: a socket that has sent nothing for this long after its
	// last frame is parked (no goroutine reads it until data comes).
	wsParkAfter = time.Second
	// wsQueueBytes bounds what a socket has yet to write; a device that
	// reads too slowly to stay under it is disconnected and resumes from
	// its cursor.
	wsQueueBytes   = 2 << 20
	wsPingInterval = 15 * time.Second
	wsPongTimeout  = 10 * time.Second
	wsWriteTimeout = 10 * time.Second
	wsReplayPage   = 500
	wsTendEvery    = time.Second
	wsCloseGrace   = 2 * time.Second
	// wsAckHold is how long the writer keeps the echo of a message this
	// device sent corked, waiting for the send's ack to go out with it in
	// one write(2). The ack follows as soon as the send's lane runs again;
	// the device already has the message, so its echo loses nothing by
	// waiting.
	wsAckHold = 5 * time.Millisecond
)

// DefaultSessionRecheck is Config.SessionRecheck's default: how soon an
// open socket whose token expired closes.
const DefaultSessionRecheck = 5 * time.Second

// wsConn is one device's WebSocket. Its frames are read by the socket's
// reader (wsock's: a goroutine while frames come, none while the socket is
// idle), which hands them to Message and ends the socket with Ended; the
// writer, one lane per room with frames in flight (run by the hub's
// workers), a ping and a close are started only while there is work for
// them and end when it is done.
type wsConn struct {
	g    *Gateway
	conn *wsock.Conn
	// cork gathers the frames the writer has queued into one write(2),
	// and keeps the connection's write deadline.
	cork *corkWriter
	user string
	// addr is the client's address, for its rate limits.
	addr netip.Addr
	// session is the socket's verified token: each frame, and the hub
	// every few seconds, check that it is still valid (checkSession).
	session claims

	// nextPing is when the hub pings next (unix ns); guarded by hub.mu.
	nextPing int64

	mu       sync.Mutex
	out      outQueue
	ready    bool // the backlog is replayed: events may be written
	writing  bool // a writeLoop is running
	pinging  bool
	closing  bool // a close has begun: nothing more is written
	exited   bool // the reader has ended: nothing new starts
	inflight int
	lanes    map[string]*lane // rooms with frames in flight
	// failedRooms outlive their lanes: a room whose send failed (retry
	// worth it) refuses every later send on this socket until the failed
	// one comes again, for wsFailedRoomFor at most — frames the device
	// sent before it heard of the failure must not land on a fresh lane
	// and be committed ahead of it.
	failedRooms map[string]roomFailure
	// awaiting is set while the writer holds an echo for its ack; wake
	// (made on first use) tells it a frame was queued.
	awaiting bool
	wake     chan struct{}
	wg       sync.WaitGroup // everything but the reader; it waits

	// cur is the device's place in the log: the replay's until ready, then
	// the (single) writer's.
	cur salamander.Cursor
	// strikes counts refused frames in a row (reader only).
	strikes int
	// endReplay ends the replay's context (finish).
	endReplay context.CancelFunc
}

// lane is one room's frames in flight on one socket, carried out in order.
type lane struct {
	// ctx bounds the lane's work; it ends with the socket.
	ctx    context.Context
	cancel context.CancelFunc
	frames []laneFrame
	// failed is set when a send failed in a way worth retrying: the sends
	// queued behind it are refused alike, so the client resends them all,
	// in order, instead of seeing a later one committed first. failedID
	// is that first failed send's client id.
	failed   error
	failedID string
}

// roomFailure is a room's first failed send on a socket, kept after its
// lane ended (wsConn.failedRooms), until it comes again or until.
type roomFailure struct {
	err      error
	clientID string
	until    time.Time
}

// wsFailedRoomFor is how long a room's failure outlives its lane: it
// guards the frames the device wrote before it heard of the refusal
// (they are on their way within a round trip). A device that sends the
// failed message otherwise (over HTTP, from another tab) is not held up
// longer than this.
const wsFailedRoomFor = 10 * time.Second

// wsMaxFailedRooms bounds the rooms a socket remembers a failure of; a
// socket with more is closed (its device reconnects and resends each
// room's messages in order on a new socket).
const wsMaxFailedRooms = 1024

// laneFrame is a frame in its room's lane; refused: a send that came
// beyond wsMaxInFlight, to be refused in its place.
type laneFrame struct {
	salamander.ClientFrame
	refused bool
}

// wsProtocol is the subprotocol a browser names to carry its token in the
// handshake (it cannot set the Authorization header): it offers
// wsProtocol and wsTokenPrefix+TOKEN, and the site chooses wsProtocol.
// The token then travels in a header, not in the URL, which proxies and
// load balancers write to their access logs.
const (
	wsProtocol    = "salamander.v1"
	wsTokenPrefix = "bearer."
)

// protocolToken is the session token a handshake offers as a subprotocol,
// and the subprotocol to answer with ("" and "" when it offers none).
func protocolToken(r *http.Request) (token, protocol string) {
	offered := wsock.Protocols(r)
	if !slices.Contains(offered, wsProtocol) {
		return "", ""
	}
	for _, p := range offered {
		if t, ok := strings.CutPrefix(p, wsTokenPrefix); ok {
			return t, wsProtocol
		}
	}
	return "", ""
}

// handleWebSocket serves one device: it replays every stored event since
// the device's cursor, says "ready", then streams live events, while it
// carries out the frames the device sends. Events are registered for
// before the replay starts and deduplicated by position, so nothing falls
// between replay and live. The handler returns once the replay is done;
// the socket's reader, owned by the hub, serves it from then on.
func (g *Gateway) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	if err := g.serving(); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if g.Drained() {
		writeError(w, g.log, r, errDrained)
		return
	}
	token := bearerToken(r.Header.Get("Authorization"))
	protocol := ""
	if token == "" {
		token, protocol = protocolToken(r)
	}
	if token == "" {
		token = r.URL.Query().Get("token")
	}
	cl, err := g.authenticate(r.Context(), token)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	cur, err := g.parseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	// A request that is not a WebSocket handshake is refused before it
	// spends the connection budget.
	if err := g.ws.CheckRequest(r); err != nil {
		writeHandshakeError(w, err)
		return
	}
	addr := g.clientAddr(r)
	if _, err := g.budgets.spend(&g.budgets.connect, cl.User, addr, 1); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	var cork *corkWriter
	conn, err := g.ws.Upgrade(w, r, protocol, func(nc net.Conn) io.Writer {
		cork = &corkWriter{conn: nc}
		return cork
	})
	if err != nil {
		g.log.Debug("websocket upgrade failed", "err", err)
		return // the connection has been answered or closed
	}
	// The replay's context ends with the request or with the socket
	// (finish waits for the replay: a Sync waiting for a slow store must
	// not hold a gone device's socket, or the site's shutdown, with it).
	replayCtx, endReplay := context.WithCancel(r.Context())
	defer endReplay()
	c := &wsConn{g: g, conn: conn, cork: cork, user: cl.User, addr: addr, session: cl, cur: cur, endReplay: endReplay}
	first, ok := g.hub.add(c)
	if !ok {
		conn.Close(wsock.StatusGoingAway, "site shutting down") // cut after wsCloseGrace
		return
	}
	c.wg.Add(1) // the replay below: the reader's end waits for it
	conn.Serve(c)
	defer c.wg.Done()
	// Presence follows the hub on every first device and last one gone,
	// also a device kicked at once below: the user's next device here is
	// not "first" while this one closes (setOnline asks the hub).
	if first {
		g.eph.setOnline(cl.User)
	}
	// SetIsolated sets the flag before it kicks every registered device, so
	// a device registered after the kick sees the flag here.
	if g.Isolated() {
		c.kick(wsock.StatusTryAgainLater, "site cut off from the other sites")
		return
	}
	c.replay(replayCtx)
}

// writeHandshakeError answers a request that is not a WebSocket handshake
// this site accepts, as the API answers every refusal: a JSON error.
func writeHandshakeError(w http.ResponseWriter, err error) {
	he, ok := err.(*wsock.HandshakeError)
	if !ok {
		he = &wsock.HandshakeError{Status: http.StatusBadRequest, Message: err.Error()}
	}
	code := salamander.CodeInvalid
	switch he.Status {
	case http.StatusForbidden:
		code = salamander.CodeForbidden
	case http.StatusMethodNotAllowed:
		code = salamander.CodeMethod
	case http.StatusUpgradeRequired:
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Sec-WebSocket-Version", "13")
	}
	writeJSON(w, he.Status, &salamander.Error{Code: code, Message: he.Message})
}

// replay writes every stored event since the device's cursor, then
// "ready", and lets the writer go on with live events. It ends when a
// write fails (a corked write fails only when its bytes go out, with the
// page's last event) or when the socket ends (ctx).
func (c *wsConn) replay(ctx context.Context) {
	cur := c.cur
	for {
		res, err := c.g.cfg.View.Sync(ctx, c.user, cur, wsReplayPage)
		if err == nil {
			cur, err = salamander.ParseCursor(res.Cursor)
		}
		if err != nil {
			if !c.ended() {
				c.g.log.Error("websocket replay failed", "user", c.user, "err", err)
				c.kick(wsock.StatusInternalError, "replay failed")
			}
			return
		}
		for i := range res.Events {
			data, err := salamander.EncodeEvent(&res.Events[i])
			if err == nil {
				err = c.writeCorked(data, i < len(res.Events)-1)
			}
			if err != nil {
				c.writeFailed(err)
				return
			}
		}
		if !res.More {
			break
		}
	}
	data, _ := json.Marshal(salamander.Event{Type: salamander.EventReady, Cursor: cur.String(),
		Incidents: c.g.cfg.View.Incidents(false)})
	if err := c.write(data); err != nil {
		c.writeFailed(err)
		return
	}
	c.mu.Lock()
	c.cur = cur
	c.ready = true
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// Message takes one of the device's frames from the socket's reader. A
// socket closed for a frame goes on being read until the device answers
// the close (frames after it are dropped), so that the device reads the
// close frame rather than a reset connection.
func (c *wsConn) Message(binary bool, data []byte, over bool) bool {
	if c.ended() {
		return true // closing: the device's frames are no longer carried out
	}
	if binary {
		c.kick(wsock.StatusUnsupportedData, "frames must be JSON text")
		return true
	}
	c.handleFrame(data, over)
	return true
}

// Ended is told by the socket's reader that reading is over; it ends
// everything else of the socket and unregisters it.
func (c *wsConn) Ended(err error) {
	why := wsGoneSite
	if err != nil {
		why = c.goneWhy(err)
	}
	c.finish(why)
}

// goneWhy says why the socket ended, given the error that ended its reader.
func (c *wsConn) goneWhy(err error) wsGoneReason {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	switch {
	case closing:
		return wsGoneSite
	case wsock.CloseStatus(err) != -1:
		return wsGoneDevice
	}
	return wsGoneLost
}

// finish ends the socket: it stops the socket's work, waits for every
// goroutine of it, and unregisters it.
func (c *wsConn) finish(why wsGoneReason) {
	c.mu.Lock()
	c.exited = true
	c.out.reset()
	for _, l := range c.lanes {
		l.cancel()
	}
	c.mu.Unlock()
	if c.endReplay != nil {
		c.endReplay()
	}
	_ = c.flush() // a close frame may wait among gathered bytes
	_ = c.conn.CloseNow()
	c.wg.Wait()
	if c.g.hub.remove(c) {
		c.g.eph.setOnline(c.user)
	}
	c.g.metrics.wsGone[why].Inc()
	c.g.hub.wg.Done()
}

// handleFrame refuses a bad frame or hands a good one to its room's lane;
// too many refused in a row close the socket.
func (c *wsConn) handleFrame(data []byte, over bool) {
	var f salamander.ClientFrame
	err := decodeFrame(data, over, &f)
	if err != nil {
		f.RoomID, f.ClientID = frameIDs(data)
	} else {
		err = checkFrame(&f)
	}
	if err == nil && f.Type == salamander.FramePing {
		// Answered here, ahead of every lane: it asks about the socket.
		if err = c.g.serving(); err == nil {
			c.reply(salamander.Event{Type: salamander.EventAck, ClientID: f.ClientID})
			c.strikes = 0
			return
		}
	}
	if err == nil {
		switch c.admit(f) {
		case frameQueued:
			c.strikes = 0
			return
		case frameRefusedInLane: // its lane answers it
		case frameRefused:
			err = errTooManyInFlight
		}
	}
	if err != nil {
		c.reply(nack(f.RoomID, f.ClientID, err))
	}
	c.strikes++
	if c.strikes >= wsMaxStrikes {
		c.kick(wsock.StatusPolicyViolation, "too many refused frames")
	}
}

// decodeFrame parses one client frame the way the HTTP API parses a body:
// valid UTF-8, one JSON object, no unknown fields, no trailing data.
func decodeFrame(data []byte, over bool, f *salamander.ClientFrame) error {
	if over {
		return salamander.Errorf(salamander.CodeTooLarge, "frame is over %d bytes (a message's text is at most %d)",
			wsMaxFrameBytes, salamander.MaxMessageBytes)
	}
	if !utf8.Valid(data) {
		return salamander.Errorf(salamander.CodeInvalid, "frame must be valid UTF-8")
	}
	if salamander.ReadClientFrame(data, f) { // the shape clients write, without reflection
		return checkStrings(data)
	}
	*f = salamander.ClientFrame{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(f); err != nil {
		*f = salamander.ClientFrame{}
		return salamander.Errorf(salamander.CodeInvalid, "malformed frame: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		*f = salamander.ClientFrame{}
		return salamander.Errorf(salamander.CodeInvalid, "malformed frame: trailing data after the object")
	}
	// The frame decoded, so its ids are usable for the nack.
	return checkStrings(data)
}

// checkFrame checks what can be checked before a frame is queued: its type
// and the ids its answer is matched by.
func checkFrame(f *salamander.ClientFrame) error {
	switch f.Type {
	case salamander.FrameSend, salamander.FrameTyping, salamander.FrameRead:
	case salamander.FramePing:
		return salamander.ValidateClientID(f.ClientID)
	default:
		return salamander.Errorf(salamander.CodeInvalid, "unknown frame type %q; want send, typing, read or ping", f.Type)
	}
	if f.ClientID != "" || f.Type == salamander.FrameSend {
		if err := salamander.ValidateClientID(f.ClientID); err != nil {
			return err
		}
	}
	if f.RoomID == "" {
		return salamander.Errorf(salamander.CodeInvalid, "room_id is required")
	}
	return nil
}

// frameIDs picks room_id and client_id out of a frame that did not decode
// (too long, a field of the wrong type, …), so that its nack can still be
// matched. It gives up at the first thing it cannot read.
func frameIDs(data []byte) (room, clientID string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return "", ""
	}
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return room, clientID
		}
		switch k {
		case "room_id", "client_id":
			v, err := dec.Token()
			s, ok := v.(string)
			if err != nil || !ok {
				return room, clientID
			}
			if len(s) > salamander.MaxClientIDBytes {
				s = s[:salamander.MaxClientIDBytes]
			}
			if k == "room_id" {
				room = s
			} else {
				clientID = s
			}
		default:
			var skip json.RawMessage
			if dec.Decode(&skip) != nil {
				return room, clientID
			}
		}
	}
	return room, clientID
}

var errTooManyInFlight = salamander.Errorf(salamander.CodeTooManyRequests,
	"%d frames are in flight on this socket; wait for their answers", wsMaxInFlight)

// admission is what admit did with a frame.
type admission int

const (
	frameQueued        admission = iota // carried out in its lane
	frameRefusedInLane                  // beyond wsMaxInFlight: refused in its lane, in order
	frameRefused                        // beyond wsMaxInFlight: refused now
)

// admit queues f on its room's lane, starting the lane if it is idle.
// Beyond wsMaxInFlight frames in flight a frame is refused. A send is
// refused in its lane, after the sends queued before it: its refusal then
// fails the lane, and every send behind it is refused too, as for any
// failed send, so that none written after it is committed before the
// client resends it. Those refusals count in flight too, and at most
// wsMaxStrikes of them: that many refused frames in a row close the socket
// anyway.
func (c *wsConn) admit(f salamander.ClientFrame) admission {
	c.mu.Lock()
	if c.exited {
		c.mu.Unlock()
		return frameQueued
	}
	over := c.inflight >= wsMaxInFlight
	if over && (f.Type != salamander.FrameSend || c.inflight >= wsMaxInFlight+wsMaxStrikes) {
		c.mu.Unlock()
		return frameRefused
	}
	c.inflight++
	l := c.lanes[f.RoomID]
	start := l == nil
	if start {
		if c.lanes == nil {
			c.lanes = map[string]*lane{}
		}
		l = &lane{}
		l.ctx, l.cancel = context.WithCancel(context.Background())
		if rf, ok := c.failedRooms[f.RoomID]; ok {
			delete(c.failedRooms, f.RoomID)
			if time.Now().Before(rf.until) {
				l.failed, l.failedID = rf.err, rf.clientID // (runLane clears it when the failed send comes again)
			}
		}
		c.lanes[f.RoomID] = l
		c.wg.Add(1)
	}
	l.frames = append(l.frames, laneFrame{f, over})
	c.mu.Unlock()
	if start {
		c.g.hub.lanes.run(func() { c.runLane(f.RoomID, l) })
	}
	if over {
		return frameRefusedInLane
	}
	return frameQueued
}

// runLane carries out one room's frames in the order they came, and ends
// when there are none left.
func (c *wsConn) runLane(room string, l *lane) {
	defer c.wg.Done()
	defer l.cancel()
	for {
		c.mu.Lock()
		if len(l.frames) == 0 || c.exited {
			if c.lanes[room] == l {
				delete(c.lanes, room)
				if l.failed != nil {
					c.rememberFailure(room, roomFailure{l.failed, l.failedID, time.Now().Add(wsFailedRoomFor)})
				}
			}
			if len(c.lanes) == 0 {
				c.lanes = nil
			}
			c.mu.Unlock()
			return
		}
		f := l.frames[0]
		l.frames[0] = laneFrame{}
		l.frames = l.frames[1:]
		if l.failed != nil && f.Type == salamander.FrameSend && f.ClientID == l.failedID {
			l.failed, l.failedID = nil, "" // the failed send, again: in order from here
		}
		failed := l.failed
		c.mu.Unlock()

		var ev *salamander.Event
		var retry error
		if f.refused && failed == nil {
			refusal := nack(f.RoomID, f.ClientID, errTooManyInFlight)
			ev, retry = &refusal, errTooManyInFlight
		} else {
			ev, retry = c.carryOut(l.ctx, f.ClientFrame, failed)
		}

		c.mu.Lock()
		if retry != nil && f.Type == salamander.FrameSend && l.failed == nil {
			l.failed, l.failedID = retry, f.ClientID
		}
		c.inflight--
		c.mu.Unlock()
		if ev != nil {
			c.reply(*ev)
		}
	}
}

// rememberFailure keeps a room's failure past its lane (c.mu held).
func (c *wsConn) rememberFailure(room string, rf roomFailure) {
	if c.failedRooms == nil {
		c.failedRooms = map[string]roomFailure{}
	}
	if _, ok := c.failedRooms[room]; !ok && len(c.failedRooms) >= wsMaxFailedRooms {
		go c.kick(wsock.StatusPolicyViolation, "too many rooms with failed sends; reconnect and resend them in order")
	}
	c.failedRooms[room] = rf
}

// carryOut does what f asks and returns its answer (nil when none is
// due), and the error when it failed in a way worth resending for.
func (c *wsConn) carryOut(ctx context.Context, f salamander.ClientFrame, failed error) (*salamander.Event, error) {
	g := c.g
	if failed != nil && f.Type == salamander.FrameSend {
		err := salamander.Errorf(salamander.ErrorCode(failed),
			"not sent: an earlier message to this room on this socket failed (%s); resend them in order",
			salamander.ErrorMessage(failed))
		ev := nack(f.RoomID, f.ClientID, err)
		return &ev, failed
	}
	err := g.serving()
	if err == nil {
		err = g.checkSession(ctx, c.session)
		c.kickIfSessionEnded(err)
	}
	var res salamander.SendResult
	if err == nil {
		switch f.Type {
		case salamander.FrameSend:
			res, err = g.send(ctx, c.user, c.addr, f.RoomID, salamander.SendRequest{ClientID: f.ClientID, Text: f.Text})
		case salamander.FrameTyping:
			err = g.setTyping(ctx, c.user, f.RoomID, f.Typing)
		case salamander.FrameRead:
			err = g.markRead(ctx, c.user, f.RoomID, f.Seq)
		}
	}
	if err != nil {
		code := salamander.ErrorCode(err)
		if code == salamander.CodeInternal && ctx.Err() == nil {
			g.log.Error("websocket frame failed", "user", c.user, "type", f.Type, "room", f.RoomID, "err", err)
		}
		ev := nack(f.RoomID, f.ClientID, err)
		// A refused send fails the room's queued sends too, so that none
		// is committed ahead of it (rate-limited ones included).
		if code == salamander.CodeUnavailable || code == salamander.CodeInternal || code == salamander.CodeTooManyRequests {
			return &ev, err
		}
		return &ev, nil
	}
	if f.ClientID == "" {
		return nil, nil
	}
	ev := salamander.Event{Type: salamander.EventAck, RoomID: f.RoomID, ClientID: f.ClientID}
	if f.Type == salamander.FrameSend {
		ev.Message, ev.Duplicate = &res.Message, res.Duplicate
	}
	return &ev, nil
}

func nack(room, clientID string, err error) salamander.Event {
	// A refused frame's ids are echoed so the client can match the
	// answer, but never more of them than a valid id can hold.
	if len(room) > salamander.MaxClientIDBytes {
		room = room[:salamander.MaxClientIDBytes]
	}
	if len(clientID) > salamander.MaxClientIDBytes {
		clientID = clientID[:salamander.MaxClientIDBytes]
	}
	return salamander.Event{Type: salamander.EventNack, RoomID: room, ClientID: clientID, Error: errorBody(err)}
}

// reply queues an answer to one of the device's frames.
func (c *wsConn) reply(ev salamander.Event) {
	if f, ok := encodeEvent(&ev); ok {
		c.enqueue(f, true, false)
	}
}

// enqueue queues a frame: a reply is written as soon as possible, an event
// once the replay is done. A frame that does not fit disconnects the
// device, unless droppable.
func (c *wsConn) enqueue(f outFrame, reply, droppable bool) {
	c.mu.Lock()
	if c.exited || c.closing {
		c.mu.Unlock()
		return
	}
	if !c.out.fits(f, wsQueueBytes) {
		c.mu.Unlock()
		if !droppable {
			c.kick(wsock.StatusPolicyViolation, "reading too slowly; reconnect and resume from your cursor")
		}
		return
	}
	if reply {
		c.out.pushReply(f)
	} else {
		c.out.pushEvent(f)
	}
	if c.awaiting {
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	start := c.startWriterLocked()
	c.mu.Unlock()
	if start {
		go c.writeLoop()
	}
}

// startWriterLocked reports whether the caller must start a writeLoop
// (and counts it in).
func (c *wsConn) startWriterLocked() bool {
	if c.writing || c.exited || c.closing || !c.out.hasWork(c.ready) {
		return false
	}
	c.writing = true
	c.wg.Add(1)
	return true
}

// writeLoop writes queued frames until none is left, dropping stored
// events the replay already sent.
//
// Under load a sent message's echo (the message event the sending device
// gets like every member) and its ack are queued moments apart, by the
// apply and by the send's lane: written as they come they cost two writes
// here and two reads on the device. So the echo of a message this device
// sent, while it has sends in flight, stays corked until the next frame
// (the ack, usually) is queued or wsAckHold passes.
func (c *wsConn) writeLoop() {
	defer c.wg.Done()
	hold := false
	for {
		c.mu.Lock()
		if hold && !c.out.hasWork(c.ready) && !c.closing && !c.exited {
			c.awaitFrameLocked(c.g.ackHold)
		}
		f, ok := c.out.next(c.ready)
		if !ok || c.closing || c.exited {
			c.writing = false
			c.mu.Unlock()
			// Whatever the last frames left corked (a frame skipped as
			// seen, a close or ping written meanwhile, a held echo) goes
			// out now.
			if err := c.flush(); err != nil {
				c.abort()
			}
			return
		}
		hold = f.sender == c.user && c.inflight > 0
		more := hold || c.out.hasWork(c.ready)
		c.mu.Unlock()
		if f.pos != nil {
			if c.cur.Seen(*f.pos) {
				continue
			}
			c.cur.Advance(*f.pos)
		}
		if err := c.writeCorked(f.data, more); err != nil {
			c.writeFailed(err)
			c.mu.Lock()
			c.writing = false
			c.mu.Unlock()
			return
		}
		// A corked frame goes out with the rest of the burst, which the
		// loop writes without waiting (at most corkLimit later).
		c.g.metrics.observeDelivery(f.at)
	}
}

// awaitFrameLocked waits, c.mu held on entry and on return, until a frame
// is queued or d passes.
func (c *wsConn) awaitFrameLocked(d time.Duration) {
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	wake := c.wake
	c.awaiting = true
	c.mu.Unlock()
	t := time.NewTimer(d)
	select {
	case <-wake:
	case <-t.C:
	}
	t.Stop()
	c.mu.Lock()
	c.awaiting = false
	select { // a wake-up sent after the timer fired
	case <-wake:
	default:
	}
}

// writeCorked writes one frame of the writer's: while more frames are
// queued behind it, it is gathered with them into one write(2), which
// under load is most of what writing a frame costs.
func (c *wsConn) writeCorked(data []byte, more bool) error {
	if more {
		c.cork.cork()
	}
	err := c.conn.WriteText(data)
	if err == nil && !more {
		err = c.cork.uncork()
	}
	return err
}

// writeFailed ends the writing of a socket whose write failed. A write
// refused because a close frame is out (a kick, or the socket's own close
// for a device's protocol error) leaves the cut to that close: its grace,
// or the reading and dropping of what the device still sends, so that the
// device reads the close frame and its reason rather than a reset
// connection. Any other failure cuts the connection at once. Either way
// the gathered bytes go out first: the close frame may be among them.
func (c *wsConn) writeFailed(err error) {
	_ = c.flush()
	if errors.Is(err, wsock.ErrClosing) {
		c.mu.Lock()
		c.closing = true // nothing more is written or carried out
		c.mu.Unlock()
		return
	}
	c.abort()
}

// flush writes out whatever is corked.
func (c *wsConn) flush() error { return c.cork.uncork() }

// write writes one frame (within wsWriteTimeout, as every write).
func (c *wsConn) write(data []byte) error { return c.conn.WriteText(data) }

// ended reports whether the reader has ended or a close has begun.
func (c *wsConn) ended() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.exited || c.closing
}

// ping pings the device (unless a ping is out already) and cuts it off if
// it does not answer within wsPongTimeout.
func (c *wsConn) ping() {
	c.mu.Lock()
	if c.exited || c.closing || c.pinging {
		c.mu.Unlock()
		return
	}
	c.pinging = true
	c.wg.Add(1)
	c.mu.Unlock()
	// The ping is written on a goroutine of its own: a write may wait for
	// a device that reads slowly. The pong is waited for by a timer.
	go func() {
		defer c.wg.Done()
		err := c.conn.Ping(wsPongTimeout)
		c.mu.Lock()
		c.pinging = false
		closing := c.closing || c.exited
		c.mu.Unlock()
		if err != nil && !closing && !errors.Is(err, wsock.ErrClosing) {
			c.abort() // the ping could not be written (a missing pong is wsock's to cut)
		}
	}()
}

// kickIfSessionEnded closes the socket when checkSession says its session
// may no longer be used: revoked or expired, or its account suspended (a
// suspended account's open sockets must stop receiving events too, not
// only its requests be refused).
func (c *wsConn) kickIfSessionEnded(err error) {
	switch {
	case errors.Is(err, errSuspended):
		c.kick(wsock.StatusPolicyViolation, "account suspended")
	case salamander.ErrorCode(err) == salamander.CodeUnauthorized:
		c.kick(wsock.StatusPolicyViolation, "session revoked or expired")
	}
}

// kick closes the socket with a status and reason the device sees, without
// waiting for the close handshake.
func (c *wsConn) kick(code wsock.StatusCode, reason string) {
	c.mu.Lock()
	if c.exited || c.closing {
		c.mu.Unlock()
		return
	}
	c.closing = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		_ = c.conn.Close(code, reason)
	}()
}

// abort cuts the connection off at once (and wakes a parked reader, so
// that the socket ends).
func (c *wsConn) abort() { _ = c.conn.CloseNow() }

// corkWriter passes writes to the connection, except while corked: it then
// gathers them (up to corkLimit) and writes them in one go when uncorked.
// Every frame is one Write; the socket's writer corks while more frames
// wait behind the one it writes, so a burst costs one write(2).
// An idle socket holds no buffer.
//
// Every byte the socket writes passes here — frames, pongs, pings, closes
// — so the writer also keeps the connection's write deadline: a write
// that blocks (a device that stopped reading) fails after wsWriteTimeout
// at most, and wsWriteTimeout/2 at least. The deadline rolls: it is set
// anew only when less than half of it is left, not around every write,
// because setting one re-arms a runtime timer, which cost ~6 % of a
// site's CPU when every frame to 50 members set and cleared it.
type corkWriter struct {
	conn net.Conn

	mu     sync.Mutex
	corked bool
	buf    *[]byte
	// deadline is the connection's write deadline as last set; pinned
	// when the socket set one of its own before a cut (SetWriteDeadline),
	// which then stays.
	deadline time.Time
	pinned   bool
}

const corkLimit = 32 << 10

var corkBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, corkLimit)
	return &b
}}

func (w *corkWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.corked || len(p) > corkLimit {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		w.armLocked()
		return w.conn.Write(p)
	}
	if w.buf != nil && len(*w.buf)+len(p) > corkLimit {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
	}
	if w.buf == nil {
		w.buf = corkBufs.Get().(*[]byte)
	}
	*w.buf = append(*w.buf, p...)
	return len(p), nil
}

// Flush writes out what was gathered and leaves the writer corked or not
// (wsock flushes before it cuts a connection after a close).
func (w *corkWriter) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *corkWriter) cork() {
	w.mu.Lock()
	w.corked = true
	w.mu.Unlock()
}

// uncork writes out what was gathered; writes pass straight through again.
func (w *corkWriter) uncork() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.corked = false
	return w.flushLocked()
}

// SetWriteDeadline sets the connection's write deadline to t for good:
// wsock sets a short one before it cuts a connection, which no later
// write may extend.
func (w *corkWriter) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.deadline, w.pinned = t, true
	return w.conn.SetWriteDeadline(t)
}

// armLocked makes sure the coming write has at least half of
// wsWriteTimeout before the deadline.
func (w *corkWriter) armLocked() {
	if w.pinned {
		return
	}
	now := time.Now()
	if w.deadline.Sub(now) >= wsWriteTimeout/2 {
		return
	}
	w.deadline = now.Add(wsWriteTimeout)
	_ = w.conn.SetWriteDeadline(w.deadline)
}

func (w *corkWriter) flushLocked() error {
	if w.buf == nil {
		return nil
	}
	w.armLocked()
	_, err := w.conn.Write(*w.buf)
	*w.buf = (*w.buf)[:0]
	corkBufs.Put(w.buf)
	w.buf = nil
	return err
}
