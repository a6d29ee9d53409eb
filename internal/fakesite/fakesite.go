// Package fakesite is a fake Salamander site for testing clients (the chat
// CLI, the web app) in a state a real cluster reaches only by burning a
// site: sends acknowledged held — HTTP 202, or an ack whose message has
// held true and seq 0 — until the test places them, when they arrive at
// every socket as ordinary message events with their seqs. It serves one
// user and their rooms from memory, over HTTP and the WebSocket, with the
// API's wire types (package salamander), and checks no password or token.
// It is for tests only.
package fakesite

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// stream names the one log stream the site numbers its events in.
const stream = "p0"

// Config configures a Site.
type Config struct {
	// User is who every log-in and sign-up signs in, whatever the password.
	User salamander.User
	// Rooms are User's rooms (ID, Kind, Name and Members are used).
	Rooms []salamander.Room
	// Hold acknowledges every new send held, until Place places it.
	Hold bool
	// Password, when set, is what a password change (POST
	// /v1/me/password) must give as the current password (log-ins still
	// take any).
	Password string
}

// Site is a fake site. Serve it with httptest.NewServer(site).
type Site struct {
	cfg Config
	mux *http.ServeMux

	mu     sync.Mutex
	rooms  map[string]*room
	order  []string             // room ids, as configured
	events []salamander.Event   // stored events; the i-th is at p0:i+1
	held   []salamander.Message // acknowledged held, not placed yet, oldest first
	sends  int                  // sends received, retries included
	socks  map[*socket]bool
	// accepted counts the WebSockets accepted (Sockets).
	accepted int
	// logins holds the device token each login brought ("" for none).
	logins []string
	// refuseSends is the code every send is refused with ("": none;
	// RefuseSends, RefuseSendsAs).
	refuseSends salamander.Code
	// suspended refuses the user's session 403, as a suspended account's
	// (Suspend).
	suspended bool
	// changes counts the password changes: each ends the sessions before
	// it, whose tokens GET /v1/me and the WebSocket then refuse 401, and
	// answers a new session, token "tok-N" (a log-in's is "tok" before
	// any change).
	changes int
	// cutSends is how many sends are still to be cut off unanswered
	// (CutSends).
	cutSends int
	// refuseSocketReads nacks read frames unavailable (RefuseSocketReads).
	refuseSocketReads bool
	// dropFetches counts, per room, the next GET /v1/rooms/{id} to answer
	// by dropping the connection (Receive).
	dropFetches map[string]int
	// dropChange drops the answer of the next password change, which
	// takes effect all the same (DropNextChangeAnswer).
	dropChange bool
	// sendDelay is how long each send waits before it is stored
	// (SlowSends).
	sendDelay time.Duration
}

// room is a room with its placed messages (message seq n at msgs[n-1]).
type room struct {
	salamander.Room
	msgs []salamander.Message
}

// socket is one WebSocket's queue of events to write.
type socket struct {
	out  chan salamander.Event
	gone chan struct{} // closed when the site closes the socket (Suspend, CloseSockets)
	// code and reason are the close frame's, set before gone is closed.
	code   websocket.StatusCode
	reason string
}

// New returns a site serving cfg.User and cfg.Rooms.
func New(cfg Config) *Site {
	s := &Site{cfg: cfg, mux: http.NewServeMux(), rooms: map[string]*room{}, socks: map[*socket]bool{}}
	for _, r := range cfg.Rooms {
		r.ReadMarkers = map[string]uint64{}
		for _, m := range r.Members {
			r.ReadMarkers[m] = 0
		}
		s.rooms[r.ID] = &room{Room: r}
		s.order = append(s.order, r.ID)
	}
	session := func(w http.ResponseWriter, _ *http.Request) {
		tok, dev := s.currentSession()
		writeJSON(w, http.StatusOK, salamander.Session{Token: tok, ExpiresAt: time.Now().Add(24 * time.Hour).UTC(), User: cfg.User,
			Device: dev})
	}
	s.mux.HandleFunc("POST /v1/login", func(w http.ResponseWriter, r *http.Request) {
		var req salamander.LoginRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		s.mu.Lock()
		s.logins = append(s.logins, req.Device)
		s.mu.Unlock()
		session(w, r)
	})
	s.mux.HandleFunc("POST /v1/signup", session)
	s.mux.HandleFunc("POST /v1/logout", noContent)
	s.mux.HandleFunc("POST /v1/me/password", func(w http.ResponseWriter, r *http.Request) {
		if s.refusedSession(w, r) {
			return
		}
		var req salamander.ChangePasswordRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeError(w, salamander.Errorf(salamander.CodeInvalid, "request body must be JSON"))
			return
		}
		if err := salamander.ValidatePassword(req.NewPassword); err != nil {
			writeError(w, err)
			return
		}
		s.mu.Lock()
		if s.cfg.Password != "" && req.CurrentPassword != s.cfg.Password {
			s.mu.Unlock()
			writeError(w, salamander.Errorf(salamander.CodeForbidden, "the current password is wrong"))
			return
		}
		s.cfg.Password = req.NewPassword
		s.changes++
		drop := s.dropChange
		s.dropChange = false
		s.mu.Unlock()
		// As a real site: every session ends as the change is applied,
		// before its answer, the new session, is written.
		s.CloseSockets(websocket.StatusPolicyViolation, "session revoked or expired")
		if drop {
			panic(http.ErrAbortHandler) // the connection is dropped, unanswered
		}
		session(w, r)
	})
	s.mux.HandleFunc("GET /v1/me", func(w http.ResponseWriter, r *http.Request) {
		if s.refusedSession(w, r) {
			return
		}
		writeJSON(w, http.StatusOK, cfg.User)
	})
	s.mux.HandleFunc("GET /v1/sites", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"site": "a", "sites": []map[string]string{{"name": "a", "url": "http://" + r.Host}}})
	})
	s.mux.HandleFunc("GET /v1/users/{name}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, salamander.User{Name: r.PathValue("name"), DisplayName: r.PathValue("name")})
	})
	s.mux.HandleFunc("GET /v1/friends", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"friends": []salamander.User{}})
	})
	s.mux.HandleFunc("GET /v1/presence", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"presence": []salamander.Presence{}})
	})
	s.mux.HandleFunc("GET /v1/rooms", s.handleRooms)
	s.mux.HandleFunc("GET /v1/rooms/{id}", s.handleRoom)
	s.mux.HandleFunc("GET /v1/rooms/{id}/messages", s.handleHistory)
	s.mux.HandleFunc("POST /v1/rooms/{id}/messages", s.handleSend)
	s.mux.HandleFunc("POST /v1/rooms/{id}/read", s.handleRead)
	s.mux.HandleFunc("POST /v1/rooms/{id}/typing", noContent)
	s.mux.HandleFunc("GET /v1/sync", s.handleSync)
	s.mux.HandleFunc("GET /v1/ws", s.handleWebSocket)
	return s
}

// ServeHTTP serves the API.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// DeviceToken is the device token every session of the site carries (with
// "-N" after the Nth password change).
const DeviceToken = "fake-device-token"

// Logins returns the device token each login brought, in order ("" for
// none).
func (s *Site) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.logins)
}

// Sends returns how many sends the site has received (each retry counts).
func (s *Site) Sends() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sends
}

// Held returns the messages acknowledged held and not placed yet.
func (s *Site) Held() []salamander.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]salamander.Message(nil), s.held...)
}

// Place places every held message, in the order they were acknowledged,
// after every message placed before, as a merge does: each gets its seq
// and goes to every socket as a message event. It returns them placed.
func (s *Site) Place() []salamander.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []salamander.Message
	for _, m := range s.held {
		m.Held = false
		out = append(out, s.placeLocked(m))
	}
	s.held = nil
	return out
}

func (s *Site) handleRooms(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rooms := []salamander.Room{}
	for _, id := range s.order {
		rooms = append(rooms, s.roomLocked(s.rooms[id]))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": rooms})
}

// RefuseSends makes every send (HTTP or WebSocket) answered unavailable,
// as while no quorum of sites holds the log, or ends that.
func (s *Site) RefuseSends(on bool) {
	code := salamander.CodeUnavailable
	if !on {
		code = ""
	}
	s.RefuseSendsAs(code)
}

// RefuseSendsAs makes every send refused with code ("": none), e.g.
// forbidden, as for a room one has left.
func (s *Site) RefuseSendsAs(code salamander.Code) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseSends = code
}

// CutSends makes the next n sends cut off without an answer, as by a site
// that failed with them in flight: the HTTP request's connection is
// dropped, the WebSocket closed. Nothing is stored.
func (s *Site) CutSends(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cutSends = n
}

// SlowSends makes every send wait d before the site stores it, as a
// commit that takes long: the message may be sent again meanwhile (by
// another tab of its sender).
func (s *Site) SlowSends(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sendDelay = d
}

// errCut is a send CutSends cuts off.
var errCut = errors.New("fakesite: send cut off")

// Suspend refuses the user's session from now on as a suspended account's
// is refused: 403 on /v1/me and on the WebSocket handshake, and every open
// socket is closed.
func (s *Site) Suspend() {
	s.mu.Lock()
	s.suspended = true
	s.mu.Unlock()
	s.CloseSockets(websocket.StatusPolicyViolation, "account suspended")
}

// SuspendKeepingSockets refuses the user's session as Suspend does but
// leaves the open sockets open: the page's socket is at a site that has
// not applied the suspension yet, its requests reach one that has.
func (s *Site) SuspendKeepingSockets() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.suspended = true
}

// CloseSockets closes every open WebSocket with code and reason.
func (s *Site) CloseSockets(code websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sock := range s.socks {
		sock.code, sock.reason = code, reason
		close(sock.gone)
	}
	s.socks = map[*socket]bool{}
}

// Sockets returns how many WebSockets the site has accepted.
func (s *Site) Sockets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

var errSuspended = salamander.Errorf(salamander.CodeForbidden, "this account is suspended")

var errEnded = salamander.Errorf(salamander.CodeUnauthorized, "missing, malformed, expired or revoked token")

// currentSession is the token and device token a log-in is answered with:
// "tok" and DeviceToken, then "tok-N" and DeviceToken+"-N" after the Nth
// password change.
func (s *Site) currentSession() (token, device string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changes == 0 {
		return "tok", DeviceToken
	}
	n := strconv.Itoa(s.changes)
	return "tok-" + n, DeviceToken + "-" + n
}

// staleSession says whether r brings a session token (in Authorization, or
// a browser's WebSocket subprotocol bearer.TOKEN) that a password change
// has ended.
func (s *Site) staleSession(r *http.Request) bool {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	for _, p := range strings.Split(r.Header.Get("Sec-WebSocket-Protocol"), ",") {
		if t, ok := strings.CutPrefix(strings.TrimSpace(p), "bearer."); ok {
			tok = t
		}
	}
	cur, _ := s.currentSession()
	return tok != "" && tok != cur
}

// DropNextChangeAnswer makes the next password change take effect and its
// answer be lost (the connection dropped), as when a site fails between
// the two: the client's retry finds its session ended.
func (s *Site) DropNextChangeAnswer() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropChange = true
}

// Changes returns how many password changes the site has taken.
func (s *Site) Changes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changes
}

func (s *Site) isSuspended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.suspended
}

// Receive makes the user a member of room r, new to the site, and places
// m in it (its sender another member), as a friend starting a chat does:
// the page learns of the room from the message event. The next drop
// fetches of GET /v1/rooms/{r.ID} have their connection dropped, as when
// a site's HTTP fails while its WebSocket still delivers.
func (s *Site) Receive(r salamander.Room, m salamander.Message, drop int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.ReadMarkers = map[string]uint64{}
	for _, u := range r.Members {
		r.ReadMarkers[u] = 0
	}
	s.rooms[r.ID] = &room{Room: r}
	s.order = append(s.order, r.ID)
	if s.dropFetches == nil {
		s.dropFetches = map[string]int{}
	}
	s.dropFetches[r.ID] = drop
	m.Room = r.ID
	s.placeLocked(m)
}

func (s *Site) handleRoom(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id := r.PathValue("id"); s.dropFetches[id] > 0 {
		s.dropFetches[id]--
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	if rm := s.pathRoomLocked(w, r); rm != nil {
		writeJSON(w, http.StatusOK, s.roomLocked(rm))
	}
}

// handleHistory answers a page as the API does: the newest (with the
// user's held messages), or after or before a seq.
func (s *Site) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil || limit <= 0 {
		limit = 50
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	rm := s.pathRoomLocked(w, r)
	if rm == nil {
		return
	}
	page := salamander.HistoryPage{Messages: []salamander.Message{}}
	msgs := rm.msgs
	switch after, before := q.Get("after"), q.Get("before"); {
	case after != "":
		n, _ := strconv.Atoi(after)
		msgs = msgs[min(n, len(msgs)):]
		page.More = len(msgs) > limit
		msgs = msgs[:min(limit, len(msgs))]
	case before != "":
		n, _ := strconv.Atoi(before)
		msgs = msgs[:max(0, min(n-1, len(msgs)))]
		page.More = len(msgs) > limit
		msgs = msgs[max(0, len(msgs)-limit):]
	default:
		page.More = len(msgs) > limit
		msgs = msgs[max(0, len(msgs)-limit):]
		page.Held = s.heldLocked(rm.ID)
	}
	page.Messages = append(page.Messages, msgs...)
	writeJSON(w, http.StatusOK, page)
}

func (s *Site) handleSend(w http.ResponseWriter, r *http.Request) {
	var req salamander.SendRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, salamander.Errorf(salamander.CodeInvalid, "%v", err))
		return
	}
	res, err := s.send(r.PathValue("id"), req.ClientID, req.Text)
	switch {
	case err == errCut:
		panic(http.ErrAbortHandler) // the connection is dropped, unanswered
	case err != nil:
		writeError(w, err)
	case res.Duplicate:
		writeJSON(w, http.StatusOK, res)
	case res.Message.Held:
		writeJSON(w, http.StatusAccepted, res)
	default:
		writeJSON(w, http.StatusCreated, res)
	}
}

func (s *Site) handleRead(w http.ResponseWriter, r *http.Request) {
	var req salamander.ReadRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	s.read(r.PathValue("id"), req.Seq)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Site) handleSync(w http.ResponseWriter, r *http.Request) {
	cur, err := salamander.ParseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		writeError(w, err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := salamander.SyncResult{Events: s.eventsAfterLocked(cur), Cursor: s.cursorLocked(), Incidents: []salamander.Incident{},
		Held: append([]salamander.Message(nil), s.held...)}
	writeJSON(w, http.StatusOK, res)
}

// refusedSession answers a request of a session the site ended (401) or
// of a suspended account (403), as a real site refuses them, and reports
// whether it did.
func (s *Site) refusedSession(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case s.staleSession(r):
		writeError(w, errEnded)
	case s.isSuspended():
		writeError(w, errSuspended)
	default:
		return false
	}
	return true
}

// handleWebSocket replays the events after the cursor, says ready, and
// goes on with live events; it answers send and ping frames with acks
// and carries out read frames.
func (s *Site) handleWebSocket(w http.ResponseWriter, r *http.Request) {
	if s.refusedSession(w, r) {
		return
	}
	cur, err := salamander.ParseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		writeError(w, err)
		return
	}
	// A browser offers its token as the subprotocol salamander.v1 (see
	// gateway.wsProtocol): the fake site chooses it, and checks no token.
	conn, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true, Subprotocols: []string{"salamander.v1"}})
	if err != nil {
		return
	}
	defer conn.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	s.mu.Lock()
	backlog := s.eventsAfterLocked(cur)
	sock := &socket{out: make(chan salamander.Event, len(backlog)+1024), gone: make(chan struct{})}
	for _, ev := range backlog {
		sock.out <- ev
	}
	sock.out <- salamander.Event{Type: salamander.EventReady, Cursor: s.cursorLocked()}
	s.socks[sock] = true
	s.accepted++
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.socks, sock)
		s.mu.Unlock()
	}()

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		defer cancel()
		for {
			select {
			case ev := <-sock.out:
				b, _ := json.Marshal(ev)
				if conn.Write(ctx, websocket.MessageText, b) != nil {
					return
				}
			case <-sock.gone:
				_ = conn.Close(sock.code, sock.reason)
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			cancel()
			return
		}
		var f salamander.ClientFrame
		if json.Unmarshal(data, &f) != nil {
			continue
		}
		answer := salamander.Event{Type: salamander.EventAck, RoomID: f.RoomID, ClientID: f.ClientID}
		switch f.Type {
		case salamander.FrameSend:
			res, err := s.send(f.RoomID, f.ClientID, f.Text)
			if err == errCut {
				cancel()
				return // the socket is dropped, the send unanswered
			}
			if err != nil {
				answer.Type, answer.Error = salamander.EventNack, &salamander.Error{Code: salamander.ErrorCode(err), Message: salamander.ErrorMessage(err)}
			} else {
				answer.Message, answer.Duplicate = &res.Message, res.Duplicate
			}
		case salamander.FrameRead:
			s.mu.Lock()
			refuse := s.refuseSocketReads
			s.mu.Unlock()
			if refuse {
				answer.Type, answer.Error = salamander.EventNack, salamander.Errorf(salamander.CodeUnavailable, "the fake site refuses reads on the socket")
			} else {
				s.read(f.RoomID, f.Seq)
			}
		}
		if f.ClientID == "" {
			continue
		}
		select {
		case sock.out <- answer:
		case <-ctx.Done():
			return
		}
	}
}

// send sends a message from the user: the original for a client id used
// before, else held (Config.Hold) or placed at once.
func (s *Site) send(roomID, clientID, text string) (salamander.SendResult, error) {
	if err := salamander.ValidateClientID(clientID); err != nil {
		return salamander.SendResult{}, err
	}
	s.mu.Lock()
	delay := s.sendDelay
	s.mu.Unlock()
	time.Sleep(delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sends++
	if s.cutSends > 0 {
		s.cutSends--
		return salamander.SendResult{}, errCut
	}
	if s.refuseSends != "" {
		return salamander.SendResult{}, salamander.Errorf(s.refuseSends, "the fake site refuses sends")
	}
	rm, ok := s.rooms[roomID]
	if !ok {
		return salamander.SendResult{}, salamander.Errorf(salamander.CodeNotFound, "no room %q", roomID)
	}
	for _, m := range append(rm.msgs, s.held...) {
		if m.Room == roomID && m.ClientID == clientID {
			return salamander.SendResult{Message: m, Duplicate: true}, nil
		}
	}
	m := salamander.Message{Room: roomID, Sender: s.cfg.User.Name, ClientID: clientID, Text: text,
		SentAt: time.Now().UTC(), Unread: len(rm.Members) - 1}
	if s.cfg.Hold {
		m.Held = true
		s.held = append(s.held, m)
		return salamander.SendResult{Message: m}, nil
	}
	return salamander.SendResult{Message: s.placeLocked(m)}, nil
}

// placeLocked gives m the next seq of its room, stores its event and
// queues it to every socket. s.mu is held.
func (s *Site) placeLocked(m salamander.Message) salamander.Message {
	rm := s.rooms[m.Room]
	m.Seq = uint64(len(rm.msgs) + 1)
	rm.msgs = append(rm.msgs, m)
	rm.ReadMarkers[m.Sender] = m.Seq // a sender has read their own message
	ev := salamander.Event{Type: salamander.EventMessage, RoomID: m.Room, Message: &m, At: m.SentAt,
		Pos: &salamander.Position{Stream: stream, Seq: uint64(len(s.events) + 1)}}
	s.events = append(s.events, ev)
	s.queueLocked(ev)
	return m
}

// Typing tells every connected socket that user is typing in a room, or
// stopped (ephemeral: not stored, not replayed).
func (s *Site) Typing(roomID, user string, typing bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queueLocked(salamander.Event{Type: salamander.EventTyping, RoomID: roomID, User: user, Typing: typing, At: time.Now().UTC()})
}

// queueLocked queues ev to every socket. s.mu is held.
func (s *Site) queueLocked(ev salamander.Event) {
	for sock := range s.socks {
		select {
		case sock.out <- ev:
		default: // a socket this far behind is a broken test
		}
	}
}

// RefuseSocketReads makes read frames on the WebSocket answered
// unavailable (when they carry a client id; else unanswered), while
// POST /v1/rooms/{id}/read still moves the marker.
func (s *Site) RefuseSocketReads(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseSocketReads = on
}

// ReadMarker returns the user's read marker in a room.
func (s *Site) ReadMarker(roomID string) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rm, ok := s.rooms[roomID]; ok {
		return rm.ReadMarkers[s.cfg.User.Name]
	}
	return 0
}

// read moves the user's read marker in a room.
func (s *Site) read(roomID string, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rm, ok := s.rooms[roomID]; ok {
		rm.ReadMarkers[s.cfg.User.Name] = max(rm.ReadMarkers[s.cfg.User.Name], seq)
	}
}

// pathRoomLocked is the room the request's path names, or nil when it
// answered not_found. s.mu is held.
func (s *Site) pathRoomLocked(w http.ResponseWriter, r *http.Request) *room {
	rm, ok := s.rooms[r.PathValue("id")]
	if !ok {
		writeError(w, salamander.Errorf(salamander.CodeNotFound, "no room %q", r.PathValue("id")))
		return nil
	}
	return rm
}

// roomLocked is a room as its member sees it. s.mu is held.
func (s *Site) roomLocked(rm *room) salamander.Room {
	r := rm.Room
	r.LastSeq = uint64(len(rm.msgs))
	if len(rm.msgs) > 0 {
		r.LastMessage = &rm.msgs[len(rm.msgs)-1]
	}
	r.ReadSeq = rm.ReadMarkers[s.cfg.User.Name]
	r.Unread = r.LastSeq - r.ReadSeq
	r.ReadMarkers = map[string]uint64{}
	for u, seq := range rm.ReadMarkers {
		r.ReadMarkers[u] = seq
	}
	return r
}

// heldLocked are the held messages to a room. s.mu is held.
func (s *Site) heldLocked(roomID string) []salamander.Message {
	var out []salamander.Message
	for _, m := range s.held {
		if m.Room == roomID {
			out = append(out, m)
		}
	}
	return out
}

// eventsAfterLocked are the stored events after cur. s.mu is held.
func (s *Site) eventsAfterLocked(cur salamander.Cursor) []salamander.Event {
	return append([]salamander.Event{}, s.events[min(int(cur[stream]), len(s.events)):]...)
}

// cursorLocked is the position of the newest event. s.mu is held.
func (s *Site) cursorLocked() string {
	return salamander.Cursor{stream: uint64(len(s.events))}.String()
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	code := salamander.ErrorCode(err)
	writeJSON(w, code.HTTPStatus(), &salamander.Error{Code: code, Message: salamander.ErrorMessage(err)})
}

func noContent(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }
