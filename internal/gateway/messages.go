package gateway

import (
	"context"
	"math"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

func (g *Gateway) handleSend(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.SendRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	res, err := g.send(r.Context(), c.User, g.clientAddr(r), r.PathValue("id"), req)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	status := http.StatusCreated
	switch {
	case res.Duplicate:
		status = http.StatusOK
	case res.Message.Held:
		status = http.StatusAccepted // held: acknowledged, its place comes with the merge
	}
	writeJSON(w, status, res)
}

// send validates and commits one message from user (at client address
// addr) to room and returns it once a quorum holds it and this site has
// applied it. Every transport (HTTP, WebSocket) sends through here. A
// retry of a client id already used in the room returns the original
// message with Duplicate set. Codes: invalid_request, too_large,
// not_found, forbidden, too_many_requests, unavailable.
func (g *Gateway) send(ctx context.Context, user string, addr netip.Addr, id string, req salamander.SendRequest) (salamander.SendResult, error) {
	start := time.Now()
	res, err := g.sendMessage(ctx, user, addr, id, req)
	g.metrics.observeSend(res, err, time.Since(start))
	return res, err
}

// sendMessage is send without its metrics.
func (g *Gateway) sendMessage(ctx context.Context, user string, addr netip.Addr, id string, req salamander.SendRequest) (salamander.SendResult, error) {
	if err := salamander.ValidateClientID(req.ClientID); err != nil {
		return salamander.SendResult{}, err
	}
	if err := salamander.ValidateMessageText(req.Text); err != nil {
		return salamander.SendResult{}, err
	}
	if !salamander.ValidRoomID(id) {
		return salamander.SendResult{}, errNoRoom(id)
	}
	// A retry of a message this site has already applied is answered from
	// the read model, as long as fewer than view.DedupeWindow messages
	// were sent to the room since (the log's rule), and even if the sender
	// has left the room since (it was delivered).
	if msg, ok, err := g.cfg.View.MessageByClientID(ctx, id, user, req.ClientID); err != nil {
		return salamander.SendResult{}, err
	} else if ok {
		return salamander.SendResult{Message: msg, Duplicate: true}, nil
	}
	// So is a retry of a message held (acknowledged while the room's
	// partition elects), not placed yet: appended again, it would be held
	// again — answered 202 as a new message, and listed twice as held.
	if msg, ok := g.cfg.View.HeldByClientID(id, user, req.ClientID); ok {
		return salamander.SendResult{Message: msg, Duplicate: true}, nil
	}
	if err := g.requireMember(ctx, id, user); err != nil {
		return salamander.SendResult{}, err
	}
	if _, err := g.budgets.spend(&g.budgets.send, user, addr, 1); err != nil {
		return salamander.SendResult{}, err
	}
	// The record's time, to the nanosecond, marks it as this request's
	// own: see sendOutcome.
	rec := salamander.Record{Type: salamander.RecMessageSent, Room: id, User: user, ClientID: req.ClientID, Text: req.Text,
		At: time.Now().UTC()}
	opt := jsstore.AppendOptions{MsgID: "msg:" + id + ":" + user + ":" + req.ClientID, Batch: true}
	pos, _, err := g.commit(ctx, g.cfg.Store.RoomStream(id), id, rec, opt)
	if err != nil {
		return salamander.SendResult{}, err
	}
	var msg salamander.Message
	var ok bool
	if jsstore.IsStandby(pos.Stream) {
		// Held while the room's partition elects a leader: acknowledged
		// (a quorum holds it), placed by the merge that follows.
		msg, ok = g.cfg.View.HeldMessage(pos)
	} else if msg, ok, err = g.cfg.View.MessageAt(ctx, id, pos); err != nil {
		return salamander.SendResult{}, err
	}
	if !ok || msg.Sender != user || msg.ClientID != req.ClientID {
		// Not applied as a new message at pos: an earlier send with this
		// id won (a retry racing its original), or the sender left the
		// room meanwhile.
		if msg, ok, err = g.cfg.View.MessageByClientID(ctx, id, user, req.ClientID); err != nil {
			return salamander.SendResult{}, err
		}
	}
	res, ok := sendOutcome(rec, msg, ok)
	if !ok {
		return salamander.SendResult{}, notMember(id)
	}
	return res, nil
}

// sendOutcome judges what the log holds for a send of rec once its append
// returned: msg is the room's message with rec's sender and client id
// (found says whether there is one). It is a duplicate only if it is not
// rec itself, i.e. another request's message. The log's own answer
// ("duplicate message id") cannot tell: when a leader election makes the
// store retry an append whose first attempt did land unseen, the retry is
// refused as a duplicate of that attempt, which is this very request.
// The message is rec when it has rec's time: every request stamps its own
// record, and the time is stored to the nanosecond.
func sendOutcome(rec salamander.Record, msg salamander.Message, found bool) (salamander.SendResult, bool) {
	if !found || msg.Sender != rec.User || msg.ClientID != rec.ClientID {
		return salamander.SendResult{}, false
	}
	ours := msg.SentAt.Equal(rec.At) && msg.Text == rec.Text
	return salamander.SendResult{Message: msg, Duplicate: !ours}, true
}

func (g *Gateway) handleHistory(w http.ResponseWriter, r *http.Request, c claims) {
	id := r.PathValue("id")
	before, err := queryUint(r, "before")
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	after, err := queryUint(r, "after")
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	// after=0 is "from the first message": a client pages forward from
	// the start of a room; no after at all (or an empty one, as for every
	// other parameter) is "the newest page".
	forward := r.URL.Query().Get("after") != ""
	if before > 0 && forward {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "give before or after, not both"))
		return
	}
	limit, err := queryLimit(r, salamander.DefaultPageSize, salamander.MaxPageSize)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := g.requireMember(r.Context(), id, c.User); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	page, err := g.cfg.View.History(r.Context(), id, before, after, forward, limit)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if page.Messages == nil {
		page.Messages = []salamander.Message{}
	}
	if newest := !forward && before == 0 || forward && !page.More; newest {
		// The newest page: the caller's messages held for their place
		// follow it (see Message.Held).
		page.Held = g.cfg.View.Held(id, c.User)
	}
	writeJSON(w, http.StatusOK, page)
}

func (g *Gateway) handleRead(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.ReadRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if err := g.markRead(r.Context(), c.User, r.PathValue("id"), req.Seq); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// markRead moves user's read marker in room id to seq (never backwards)
// and returns once this site has applied it. Every transport (HTTP,
// WebSocket) marks read through here. Codes: invalid_request (seq is 0 or
// past the room's last message), not_found, forbidden, unavailable.
func (g *Gateway) markRead(ctx context.Context, user, id string, seq uint64) error {
	room, err := g.memberRoomHead(ctx, id, user)
	if err != nil {
		return err
	}
	if seq > room.LastSeq && seq <= math.MaxInt64 {
		// The client may have learned of newer messages at a site that is
		// ahead of this one: catch up before calling the seq invalid.
		if err := g.confirmNegative(ctx, g.cfg.Store.RoomStream(id)); err != nil {
			return err
		}
		if room, err = g.memberRoomHead(ctx, id, user); err != nil {
			return err
		}
	}
	if seq == 0 || seq > room.LastSeq {
		return salamander.Errorf(salamander.CodeInvalid, "seq must be between 1 and the room's last message (%d)", room.LastSeq)
	}
	if seq <= room.ReadSeq {
		return nil
	}
	for {
		f, first := g.marks.join(user, id, seq)
		if first {
			rec := salamander.Record{Type: salamander.RecMessageRead, Room: id, User: user, Seq: seq}
			_, _, err = g.commit(ctx, g.cfg.Store.RoomStream(id), id, rec, jsstore.AppendOptions{Batch: true})
			g.marks.finish(user, id, f, err)
			return err
		}
		// A mark as far or further is being written for this user and
		// room: no second record is written (concurrent requests would
		// each add one at every site). If it fails — its request may
		// have gone away — this one writes its own.
		select {
		case <-f.done:
			if f.err == nil {
				return nil
			}
		case <-ctx.Done():
			return salamander.Errorf(salamander.CodeUnavailable, "this site could not complete the write in time; try again")
		}
	}
}

// readMarks are the read markers being written by this process, one per
// user and room (the furthest): a request for a mark no further than one
// in flight waits for that one instead of appending its own record.
type readMarks struct {
	mu       sync.Mutex
	inflight map[string]*markFlight // user + "\x00" + room
}

// markFlight is one read marker being written; done is closed once err
// is its outcome.
type markFlight struct {
	seq  uint64
	done chan struct{}
	err  error
}

// join returns the flight that carries user's mark at seq in room, and
// whether the caller is to write it (first) or wait for it.
func (m *readMarks) join(user, room string, seq uint64) (f *markFlight, first bool) {
	key := user + "\x00" + room
	m.mu.Lock()
	defer m.mu.Unlock()
	if f := m.inflight[key]; f != nil && f.seq >= seq {
		return f, false
	}
	if m.inflight == nil {
		m.inflight = map[string]*markFlight{}
	}
	f = &markFlight{seq: seq, done: make(chan struct{})}
	m.inflight[key] = f // a further mark takes the place of a nearer one
	return f, true
}

// finish records f's outcome and forgets it.
func (m *readMarks) finish(user, room string, f *markFlight, err error) {
	key := user + "\x00" + room
	m.mu.Lock()
	if m.inflight[key] == f {
		delete(m.inflight, key)
	}
	m.mu.Unlock()
	f.err = err
	close(f.done)
}

func (g *Gateway) handleTyping(w http.ResponseWriter, r *http.Request, c claims) {
	id := r.PathValue("id")
	var req struct {
		Typing *bool `json:"typing"` // required: a body without it is no signal
	}
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if req.Typing == nil {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "typing is required (true or false)"))
		return
	}
	if err := g.setTyping(r.Context(), c.User, id, *req.Typing); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// setTyping tells the room's other members that user is typing in room id
// (or stopped). Every transport (HTTP, WebSocket) signals through here.
// Codes: not_found, forbidden.
func (g *Gateway) setTyping(ctx context.Context, user, id string, typing bool) error {
	if err := g.requireMember(ctx, id, user); err != nil {
		return err
	}
	if g.eph.allowTyping(id, user, typing) {
		g.eph.publishTyping(id, user, typing)
	}
	return nil
}

func (g *Gateway) handleSync(w http.ResponseWriter, r *http.Request, c claims) {
	cur, err := g.parseCursor(r.URL.Query().Get("cursor"))
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	limit, err := queryLimit(r, salamander.MaxSyncEvents, salamander.MaxSyncEvents)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	res, err := g.cfg.View.Sync(r.Context(), c.User, cur, limit)
	if err != nil {
		writeError(w, g.log, r, err)
		return
	}
	res.Incidents = g.cfg.View.Incidents(false)
	res.Held = g.cfg.View.HeldBy(c.User)
	writeJSON(w, http.StatusOK, res)
}

func (g *Gateway) handlePresence(w http.ResponseWriter, r *http.Request, c claims) {
	q := r.URL.Query().Get("users")
	if q == "" {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "users must list at least one user name"))
		return
	}
	names := strings.SplitN(q, ",", salamander.MaxPresenceQuery+1) // no more than one over the limit
	if len(names) > salamander.MaxPresenceQuery {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeTooLarge, "at most %d users per query", salamander.MaxPresenceQuery))
		return
	}
	for _, n := range names {
		if err := salamander.ValidateUserName(n); err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	// Who is online, and when they were last, is said only to the people
	// told of it as it changes (friends) and to those who share a room.
	visible := g.cfg.View.PresenceVisible(c.User, names)
	out := make([]salamander.Presence, 0, len(names))
	for i, n := range names {
		if !visible[i] {
			out = append(out, salamander.Presence{User: n, Hidden: true})
			continue
		}
		out = append(out, g.eph.presence(n))
	}
	writeJSON(w, http.StatusOK, map[string]any{"presence": out})
}
