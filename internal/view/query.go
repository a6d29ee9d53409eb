package view

import (
	"context"
	"database/sql"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Queries about users, sessions, rooms and members answer from the model;
// history and sync read the store once it holds everything the model had
// applied when they began.

// User returns a user's profile; CodeNotFound if there is no such user.
func (v *View) User(_ context.Context, name string) (salamander.User, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	u := v.m.users[name]
	if u == nil {
		return salamander.User{}, salamander.Errorf(salamander.CodeNotFound, "no user %q", name)
	}
	return u.public(), nil
}

func (u *userState) public() salamander.User {
	return salamander.User{Name: u.name, DisplayName: u.displayName, Status: u.status, CreatedAt: u.created}
}

// Credentials returns a user's password hash and the accounts-stream
// position of their latest "revoke every session": a session issued by a
// site that had not yet applied that position is revoked. CodeNotFound if
// there is no such user.
func (v *View) Credentials(_ context.Context, name string) (hash string, revokedSeq uint64, err error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	u := v.m.users[name]
	if u == nil {
		return "", 0, salamander.Errorf(salamander.CodeNotFound, "no user %q", name)
	}
	return u.hash, u.revokedSeq, nil
}

// HashCost is the bcrypt cost most of the users' password hashes have (0
// when there are none): a login for a name nobody has is checked against
// a dummy hash of this cost, so that it takes as long as a wrong password
// for most names that exist, also after the configured cost changed
// (hashes keep the cost they were made with).
func (v *View) HashCost() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	best := 0
	for c, n := range v.m.hashCosts {
		if n > v.m.hashCosts[best] {
			best = c
		}
	}
	return best
}

// SessionRevoked reports whether the session id was logged out.
func (v *View) SessionRevoked(_ context.Context, sid string) (bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.m.revoked[sid]
	return ok, nil
}

// Friends lists the users that user has added, by name.
func (v *View) Friends(_ context.Context, user string) ([]salamander.User, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := []salamander.User{}
	for f := range v.m.friends[user] {
		if u := v.m.users[f]; u != nil {
			out = append(out, u.public())
		}
	}
	slices.SortFunc(out, func(a, b salamander.User) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Followers lists the users who have added user as a friend: the people
// told about user's presence.
func (v *View) Followers(_ context.Context, user string) ([]string, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.m.followers[user]))
	for f := range v.m.followers[user] {
		out = append(out, f)
	}
	slices.Sort(out)
	return out, nil
}

// PresenceVisible reports, for each of users, whether viewer may see their
// presence: their own, a friend's (one viewer added: the people told of
// a user's presence as it changes), or that of someone viewer shares a
// room with. Anyone else's, existing or not, is not said.
func (v *View) PresenceVisible(viewer string, users []string) []bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]bool, len(users))
	mine := v.m.userRooms[viewer]
	for i, u := range users {
		if u == viewer {
			out[i] = true
			continue
		}
		if _, ok := v.m.friends[viewer][u]; ok {
			out[i] = true
			continue
		}
		// Walk the shorter list of rooms, asking the other user's
		// membership of each (a binary search).
		rooms, other := mine, u
		if theirs := v.m.userRooms[u]; len(theirs) < len(rooms) {
			rooms, other = theirs, viewer
		}
		for _, r := range rooms {
			if r.members.has(other) {
				out[i] = true
				break
			}
		}
	}
	return out
}

// Members lists a room's members; empty if there is no such room.
func (v *View) Members(_ context.Context, room string) ([]string, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := []string{}
	if rs := v.m.rooms[room]; rs != nil {
		out = append(out, rs.members.names...)
	}
	return out, nil
}

// IsMember reports whether user is a member of room.
func (v *View) IsMember(_ context.Context, room, user string) (bool, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	rs := v.m.rooms[room]
	return rs != nil && isMember(rs, user), nil
}

// Room returns a room as viewer sees it: CodeNotFound if there is no such
// room, CodeForbidden if viewer is not a member.
func (v *View) Room(_ context.Context, id, viewer string) (salamander.Room, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	rs, err := v.viewedRoom(id, viewer)
	if err != nil {
		return salamander.Room{ID: id}, err
	}
	return rs.roomView(viewer), nil
}

// viewedRoom is room id if viewer ("": anyone) may see it, else Room's
// errors. The caller holds the model's lock.
func (v *View) viewedRoom(id, viewer string) (*roomState, error) {
	rs := v.m.rooms[id]
	if rs == nil {
		return nil, salamander.Errorf(salamander.CodeNotFound, "no room %q", id)
	}
	if viewer != "" && !isMember(rs, viewer) {
		return nil, salamander.Errorf(salamander.CodeForbidden, "you are not a member of room %s", id)
	}
	return rs, nil
}

// RoomHead is Room without its members and read markers (Members and
// ReadMarkers are nil): what a read marker or a membership check needs,
// without copying a group's member list.
func (v *View) RoomHead(_ context.Context, id, viewer string) (salamander.Room, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	rs, err := v.viewedRoom(id, viewer)
	if err != nil {
		return salamander.Room{ID: id}, err
	}
	return rs.head(viewer), nil
}

// RoomsOf lists a page of the rooms user is a member of: those with the
// limit smallest ids after the id after ("" for the first page), the page
// ordered most recently active first (ties by id), and the id the next
// page starts after ("" when none follows). Pages go by id, which no
// message moves: a room active while a client reads the pages is neither
// missed nor listed twice; a list that fits one page is ordered whole by
// activity. Only the page is built: a room's view copies its members and
// read markers, and the model's lock is held meanwhile.
func (v *View) RoomsOf(_ context.Context, user, after string, limit int) ([]salamander.Room, string, error) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var rooms []*roomState
	for _, rs := range v.m.userRooms[user] {
		if rs.id > after {
			rooms = append(rooms, rs)
		}
	}
	next := ""
	if len(rooms) > limit {
		slices.SortFunc(rooms, func(a, b *roomState) int { return strings.Compare(a.id, b.id) })
		rooms = rooms[:limit]
		next = rooms[limit-1].id
	}
	slices.SortFunc(rooms, func(a, b *roomState) int {
		if c := b.activity().Compare(a.activity()); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	out := make([]salamander.Room, 0, len(rooms))
	for _, rs := range rooms {
		out = append(out, rs.roomView(user))
	}
	return out, next, nil
}

// MessageAt returns room's message committed at pos, if the record there
// was accepted as a message of room: from the model when it is recent (it
// keeps the last few thousand messages of each stream by position), else
// from the store, found between the room's position marks around pos.
func (v *View) MessageAt(ctx context.Context, room string, pos salamander.Position) (salamander.Message, bool, error) {
	v.mu.RLock()
	if m := v.m.recentAt(pos); m != nil {
		out := *m
		if rs := v.m.rooms[m.Room]; rs != nil {
			out.Unread = rs.unread(m.Seq)
		}
		v.mu.RUnlock()
		return out, out.Room == room, nil
	}
	rs := v.m.rooms[room]
	v.mu.RUnlock()
	if rs == nil || rs.stream != pos.Stream {
		return salamander.Message{}, false, nil
	}
	if err := v.waitStored(ctx); err != nil {
		return salamander.Message{}, false, err
	}
	var seq uint64
	err := v.rd.messageAtPos.QueryRowContext(ctx, rs.no, int64(pos.Seq)).Scan(&seq)
	if err == sql.ErrNoRows {
		return salamander.Message{}, false, nil
	}
	if err != nil {
		return salamander.Message{}, false, fmt.Errorf("view: message at %s:%d: %w", pos.Stream, pos.Seq, err)
	}
	return v.message(ctx, room, seq)
}

// MessageByClientID finds the message sender sent to room with clientID,
// among the room's newest DedupeWindow messages.
func (v *View) MessageByClientID(ctx context.Context, room, sender, clientID string) (salamander.Message, bool, error) {
	v.mu.RLock()
	rs := v.m.rooms[room]
	if rs == nil {
		v.mu.RUnlock()
		return salamander.Message{}, false, nil
	}
	if !rs.idsLoaded {
		// The room has not been used since this site started, or its
		// window left memory while the room was quiet (WindowIdle). Its
		// window is loaded by the applier; read the store instead.
		v.mu.RUnlock()
		return v.messageByClientIDStored(ctx, room, rs.no, sender, clientID)
	}
	seq, ok := rs.ids.seqOf(clientKeyOf(sender, clientID))
	v.mu.RUnlock()
	if !ok {
		return salamander.Message{}, false, nil
	}
	return v.messageOf(ctx, room, seq, sender, clientID)
}

func (v *View) messageByClientIDStored(ctx context.Context, room string, no int64, sender, clientID string) (salamander.Message, bool, error) {
	var seq uint64
	err := v.rd.messageByKey.QueryRowContext(ctx, no, DedupeWindow, int64(clientKeyOf(sender, clientID))).Scan(&seq)
	if err == sql.ErrNoRows {
		return salamander.Message{}, false, nil
	}
	if err != nil {
		return salamander.Message{}, false, fmt.Errorf("view: message by client id: %w", err)
	}
	return v.messageOf(ctx, room, seq, sender, clientID)
}

// messageOf returns the room's message at seq if sender sent it under
// clientID: the window knows messages by their client key, and a key
// shared by two client ids (~2^-64) must not answer one sender with
// another's message.
func (v *View) messageOf(ctx context.Context, room string, seq uint64, sender, clientID string) (salamander.Message, bool, error) {
	m, ok, err := v.message(ctx, room, seq)
	if err != nil || !ok || m.Sender != sender || m.ClientID != clientID {
		return salamander.Message{}, false, err
	}
	return m, true, nil
}

// roomRef is the room's number in the store (roomState.no) and the stream
// that holds its records, false if this site has no such room.
func (v *View) roomRef(room string) (no int64, stream string, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if rs := v.m.rooms[room]; rs != nil {
		return rs.no, rs.stream, true
	}
	return 0, "", false
}

// message returns a room's message by seq, from memory when it is the
// newest, else from the store.
func (v *View) message(ctx context.Context, room string, seq uint64) (salamander.Message, bool, error) {
	v.mu.RLock()
	rs := v.m.rooms[room]
	if rs != nil && rs.last != nil && rs.last.Seq == seq {
		out := *rs.last
		out.Unread = rs.unread(seq)
		v.mu.RUnlock()
		return out, true, nil
	}
	v.mu.RUnlock()
	if rs == nil {
		return salamander.Message{}, false, nil
	}
	if err := v.waitStored(ctx); err != nil {
		return salamander.Message{}, false, err
	}
	rows, err := v.rd.message.QueryContext(ctx, rs.no, seq)
	if err != nil {
		return salamander.Message{}, false, fmt.Errorf("view: message: %w", err)
	}
	msgs, err := v.scanMessages(ctx, room, rs.stream, rows)
	if err != nil || len(msgs) == 0 {
		return salamander.Message{}, false, err
	}
	v.setUnread(msgs)
	return msgs[0], true, nil
}

// History returns up to limit messages of room in ascending order: the ones
// after seq `after` when after > 0, else the ones before `before` when
// before > 0, else the newest. Membership is the caller's to check.
func (v *View) History(ctx context.Context, room string, before, after uint64, forward bool, limit int) (salamander.HistoryPage, error) {
	if err := v.waitStored(ctx); err != nil {
		return salamander.HistoryPage{}, err
	}
	no, stream, ok := v.roomRef(room)
	if !ok {
		return salamander.HistoryPage{Messages: []salamander.Message{}}, nil
	}
	var rows *sql.Rows
	var err error
	switch {
	case forward:
		rows, err = v.rd.historyAfter.QueryContext(ctx, no, after, limit+1)
	case before > 0:
		rows, err = v.rd.historyBefore.QueryContext(ctx, no, before, limit+1)
	default:
		rows, err = v.rd.historyNewest.QueryContext(ctx, no, limit+1)
	}
	if err != nil {
		return salamander.HistoryPage{}, fmt.Errorf("view: history %s: %w", room, err)
	}
	msgs, err := v.scanMessages(ctx, room, stream, rows)
	if err != nil {
		return salamander.HistoryPage{}, fmt.Errorf("view: history %s: %w", room, err)
	}
	page := salamander.HistoryPage{Messages: msgs}
	if len(msgs) > limit {
		page.More = true
		page.Messages = msgs[:limit]
	}
	if !forward { // fetched newest-first; return ascending
		slices.Reverse(page.Messages)
	}
	v.setUnread(page.Messages)
	return page, nil
}

// setUnread sets each message's unread count from the current markers.
func (v *View) setUnread(msgs []salamander.Message) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for i := range msgs {
		if rs := v.m.rooms[msgs[i].Room]; rs != nil {
			msgs[i].Unread = rs.unread(msgs[i].Seq)
		}
	}
}

// syncQuery returns, for one user and stream, the events after a position
// up to another, in log order: messages and other room events of every
// room while the user was in it (their membership spans), and the user's
// own events. A span's messages are read by seq between the marks around
// its positions (message_marks): the last mark at or before the span's
// start and the first after its end bound the seqs, the positions filter
// the at most 2 × markEvery rows between. The rest of a message (sender,
// client id, time, text) comes from the log by position.
//
// At most ?5 (the limit) rows are wanted in all, so each span gives at
// most that many of each kind: its messages' seqs end ?5 + markEvery after
// the mark below its start (a room's seqs are consecutive and in log
// order), its other events at its ?5-th after its start, and the user's
// own at the ?5-th. Without those bounds a page of one event from the
// start of a long history sorted every event since. The bounds are worked
// out once a span (b, materialized), so that each is the upper end of an
// index range, not a test of every row.
var syncQuery = fmt.Sprintf(`WITH b AS MATERIALIZED (
  SELECT s.room, r.no, max(?1, s.from_seq - 1) AS lo, min(s.to_seq, ?2) AS hi,
    coalesce((SELECT k.seq FROM message_marks k WHERE k.room = r.no AND k.pos <= max(?1, s.from_seq - 1)
      ORDER BY k.pos DESC LIMIT 1), 0) AS mlo,
    coalesce((SELECT k.seq FROM message_marks k WHERE k.room = r.no AND k.pos > min(s.to_seq, ?2)
      ORDER BY k.pos LIMIT 1), 9223372036854775807) AS mhi,
    min(s.to_seq, ?2, coalesce((SELECT f.seq FROM room_events f WHERE f.room = s.room AND f.seq > max(?1, s.from_seq - 1)
      ORDER BY f.seq LIMIT 1 OFFSET ?5 - 1), 9223372036854775807)) AS ehi
  FROM spans s JOIN rooms r ON r.id = s.room
  WHERE s.user = ?3 AND s.stream = ?4 AND s.to_seq > ?1)
SELECT seq, kind, room, body, mseq FROM (
  SELECT m.pos AS seq, 1 AS kind, b.room, '' AS body, m.seq AS mseq
    FROM b JOIN messages m ON m.room = b.no AND m.seq >= b.mlo AND m.seq < min(b.mhi, b.mlo + ?5 + %d)
      AND m.pos > b.lo AND m.pos <= b.hi
  UNION ALL
  SELECT e.seq, 2, e.room, e.body, 0
    FROM b JOIN room_events e ON e.room = b.room AND e.seq > b.lo AND e.seq <= b.ehi
  UNION ALL
  SELECT * FROM (SELECT seq, 3, '', body, 0 FROM user_events WHERE user = ?3 AND stream = ?4 AND seq > ?1 AND seq <= ?2
    ORDER BY seq LIMIT ?5)
) ORDER BY seq LIMIT ?5`, markEvery)

// readStatements are the readers' queries on a request's path, prepared
// once. Compiling a query's text is not free with this driver: a Sync
// compiled syncQuery once per stream, and twice in fact (SQLite compiles a
// statement again at its first step when a parameter it planned with, here
// the page's limit, is bound to a new value), which was 5/6 of a Sync's
// CPU (BenchmarkSyncFirstPage: 780 µs with the text, 109 µs prepared) —
// on every WebSocket connect, and a reconnect storm after a fire is all
// connects. database/sql prepares a statement again on each reader
// connection it first runs on, and keeps it there (the readers stay open:
// see Open). The sync query is prepared once per bound (syncBounds).
type readStatements struct {
	applied                                    *sql.Stmt // Sync
	sync                                       [len(syncBounds)]*sql.Stmt
	syncWide                                   *sql.Stmt // a limit past every bound (compiled anew as it changes)
	message, messageByKey, messageAtPos        *sql.Stmt // one message, by seq, client key or position
	historyAfter, historyBefore, historyNewest *sql.Stmt // History's three directions
	audit, audited                             *sql.Stmt
	preparedSet
}

func prepareReads(db *sql.DB) (*readStatements, error) {
	rd := readStatements{preparedSet: preparedSet{db: db}}
	p := rd.prepare
	p(&rd.applied, `SELECT stream, seq FROM applied ORDER BY stream`)
	for i := range rd.sync {
		p(&rd.sync[i], syncQuery)
	}
	p(&rd.syncWide, syncQuery)
	const cols = `SELECT seq, pos FROM messages WHERE room = ?`
	p(&rd.message, cols+` AND seq = ?`)
	p(&rd.messageByKey, `SELECT seq FROM (SELECT seq, client_key FROM messages WHERE room = ?
		ORDER BY seq DESC LIMIT ?) WHERE client_key = ?`)
	// A room's seqs and positions grow together: the message at a
	// position lies between the marks around it (see message_marks).
	p(&rd.messageAtPos, fmt.Sprintf(`SELECT seq FROM messages WHERE room = ?1
		AND seq >= coalesce((SELECT k.seq FROM message_marks k WHERE k.room = ?1 AND k.pos <= ?2 ORDER BY k.pos DESC LIMIT 1), 0)
		AND seq < coalesce((SELECT k.seq FROM message_marks k WHERE k.room = ?1 AND k.pos <= ?2 ORDER BY k.pos DESC LIMIT 1), 0) + %d
		AND pos = ?2`, markEvery))
	p(&rd.historyAfter, cols+` AND seq > ? ORDER BY seq ASC LIMIT ?`)
	p(&rd.historyBefore, cols+` AND seq < ? ORDER BY seq DESC LIMIT ?`)
	p(&rd.historyNewest, cols+` ORDER BY seq DESC LIMIT ?`)
	p(&rd.audit, `SELECT stream, seq, at, by, site, action, user, role, detail FROM audit
		WHERE at < ? ORDER BY at DESC, stream, seq LIMIT ?`)
	p(&rd.audited, `SELECT count(*) FROM audit WHERE stream = ? AND seq = ?`)
	if err := rd.done("reads"); err != nil {
		return nil, err
	}
	return &rd, nil
}

// syncBounds are the bounds a sync's query is run with, one statement
// each (readStatements.sync): the smallest that holds the page's limit
// plus one. Each statement is then bound to one value only, which SQLite
// does not compile again; a replay asks for 500 events (wsReplayPage),
// GET /v1/sync for up to MaxSyncEvents (its default). A larger bound
// than the page needs costs a little (each span's rows are bounded by
// it): a page of one from a long history takes ~0.23 ms bound to 101,
// ~0.13 ms bound to 2.
var syncBounds = [...]int{2, 101, 501, salamander.MaxSyncEvents + 1}

// syncStmt returns the statement and bound for a page of limit events.
func (rd *readStatements) syncStmt(limit int) (*sql.Stmt, int) {
	for i, b := range syncBounds {
		if limit+1 <= b {
			return rd.sync[i], b
		}
	}
	return rd.syncWide, limit + 1
}

// Sync returns the stored events for user after cursor, at most limit, and
// the cursor to continue from. The result is one consistent snapshot: a
// stream's cursor moves to this site's applied position only when every
// event of the user's up to there was returned.
func (v *View) Sync(ctx context.Context, user string, cur salamander.Cursor, limit int) (salamander.SyncResult, error) {
	// Only the streams the cursor is behind on, as the model has applied
	// them, hold events for it: the store must have caught up with those
	// alone, and a cursor up to date with every stream (a device that
	// reconnects when nothing came meanwhile) is answered without the
	// store — in a reconnect storm, without asking the writer for a
	// commit per device.
	v.mu.RLock()
	behind := map[string]uint64{}
	for s, seq := range v.applied {
		if cur[s] < seq && !jsstore.IsStandby(s) {
			behind[s] = seq
		}
	}
	v.mu.RUnlock()
	if len(behind) == 0 {
		return salamander.SyncResult{Events: []salamander.Event{}, Cursor: cur.String()}, nil
	}
	if err := v.waitStoredUpTo(ctx, behind); err != nil {
		return salamander.SyncResult{}, err
	}
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
	}
	defer tx.Rollback()
	applied := map[string]uint64{}
	var streams []string
	rows, err := tx.StmtContext(ctx, v.rd.applied).QueryContext(ctx)
	if err != nil {
		return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
	}
	for rows.Next() {
		var s string
		var seq uint64
		if err := rows.Scan(&s, &seq); err != nil {
			rows.Close()
			return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
		}
		if jsstore.IsStandby(s) {
			continue // held messages have no events: their merge in the partition places them
		}
		applied[s] = seq
		streams = append(streams, s)
	}
	rows.Close()
	next := cur.Clone()
	res := salamander.SyncResult{Events: []salamander.Event{}}
	size := 0 // the page's size so far, as estimated by eventSize
	stmt, bound := v.rd.syncStmt(limit)
	for _, s := range streams {
		if cur[s] >= applied[s] {
			// Nothing new here (a reconnect's usual case for most
			// streams): no query.
			next.Advance(salamander.Position{Stream: s, Seq: applied[s]})
			continue
		}
		remaining := limit - len(res.Events)
		got, err := v.syncStream(ctx, tx, stmt, user, s, cur[s], applied[s], bound, remaining+1)
		if err != nil {
			return salamander.SyncResult{}, err
		}
		if len(got) > remaining {
			got = got[:remaining]
			res.More = true
		}
		// A page is bounded in bytes too: at most limit events of the
		// longest texts would be tens of megabytes for one answer. It
		// always holds one event, so that a client moves on.
		for i := range got {
			if size += eventSize(&got[i]); size > maxSyncPageBytes && len(res.Events)+i > 0 {
				got = got[:i]
				res.More = true
				break
			}
		}
		res.Events = append(res.Events, got...)
		if res.More {
			if len(got) > 0 {
				next.Advance(*got[len(got)-1].Pos)
			}
			break
		}
		next.Advance(salamander.Position{Stream: s, Seq: applied[s]})
	}
	v.mu.RLock()
	for i := range res.Events {
		if m := res.Events[i].Message; m != nil {
			if rs := v.m.rooms[m.Room]; rs != nil {
				m.Unread = rs.unread(m.Seq)
			}
		}
	}
	v.mu.RUnlock()
	res.Cursor = next.String()
	return res, nil
}

// maxSyncPageBytes bounds a sync page's size (as eventSize estimates it).
const maxSyncPageBytes = 4 << 20

// eventSize is an upper estimate of an event's size in a JSON answer: its
// message's text and names at up to two bytes each (an escaped character
// takes more, but texts are mostly letters), plus its fixed fields.
func eventSize(e *salamander.Event) int {
	n := 512 + len(e.User) + len(e.RoomID)
	if m := e.Message; m != nil {
		n += 2 * (len(m.Text) + len(m.Sender) + len(m.ClientID) + len(m.Room))
	}
	if r := e.Room; r != nil {
		n += 2 * len(r.Name)
		for _, u := range r.Members {
			n += len(u) + 3
		}
	}
	return n
}

// syncStream returns the first want events of user's in stream after
// after, up to upTo, with stmt (syncQuery) bound to bound (≥ want): the
// same for every stream of a page and every page of a size, since SQLite
// compiles the statement again whenever that parameter changes (it also
// bounds an OFFSET), which cost some 150 µs a stream.
func (v *View) syncStream(ctx context.Context, tx *sql.Tx, stmt *sql.Stmt, user, stream string, after, upTo uint64, bound, want int) ([]salamander.Event, error) {
	rows, err := tx.StmtContext(ctx, stmt).QueryContext(ctx, after, upTo, user, stream, bound)
	if err != nil {
		return nil, fmt.Errorf("view: sync %s: %w", stream, err)
	}
	defer rows.Close()
	var out []salamander.Event
	var refs []logRef
	for len(out) < want && rows.Next() {
		var seq, mseq uint64
		var kind int
		var room, body string
		if err := rows.Scan(&seq, &kind, &room, &body, &mseq); err != nil {
			return nil, fmt.Errorf("view: sync %s: %w", stream, err)
		}
		if kind == 1 {
			msg := &salamander.Message{Room: room, Seq: mseq}
			pos := salamander.Position{Stream: stream, Seq: seq}
			out = append(out, salamander.Event{Type: salamander.EventMessage, Pos: &pos, RoomID: room, Message: msg})
			refs = append(refs, logRef{pos: pos, msg: msg})
			continue
		}
		var ev salamander.Event
		if err := salamander.DecodeEvent([]byte(body), &ev); err != nil {
			return nil, fmt.Errorf("view: sync %s:%d: %w", stream, seq, err)
		}
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("view: sync %s: %w", stream, err)
	}
	if err := v.fillFromLog(ctx, refs); err != nil {
		return nil, err
	}
	for i := range out {
		if m := out[i].Message; m != nil {
			out[i].At = m.SentAt // a message event is as old as its message
		}
	}
	return out, nil
}

// scanMessages reads rows of (seq, pos) of one room's messages and fills
// in the rest of each message from the log (the room's stream).
func (v *View) scanMessages(ctx context.Context, room, stream string, rows *sql.Rows) ([]salamander.Message, error) {
	defer rows.Close()
	var out []salamander.Message
	var pos []uint64
	for rows.Next() {
		var seq, p uint64
		if err := rows.Scan(&seq, &p); err != nil {
			return nil, err
		}
		out = append(out, salamander.Message{Room: room, Seq: seq})
		pos = append(pos, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return out, nil
	}
	refs := make([]logRef, len(out))
	for i := range out {
		refs[i] = logRef{pos: salamander.Position{Stream: stream, Seq: pos[i]}, msg: &out[i]}
	}
	return out, v.fillFromLog(ctx, refs)
}

// logRef is a message whose sender, client id, time and text are to be
// read from position pos.
type logRef struct {
	pos salamander.Position
	msg *salamander.Message
}

// fillFromLog sets what the store does not keep of each message (sender,
// client id, time and text): from the model's recent messages when it
// holds them, else from the log, where every site holds every message
// durably.
func (v *View) fillFromLog(ctx context.Context, refs []logRef) error {
	fill := func(m *salamander.Message, sender, clientID, text string, at time.Time) {
		m.Sender, m.ClientID, m.Text, m.SentAt = sender, clientID, text, at
	}
	missing := map[string][]uint64{}
	var fromLog []logRef
	v.mu.RLock()
	for _, r := range refs {
		if m := v.m.recentAt(r.pos); m != nil {
			fill(r.msg, m.Sender, m.ClientID, m.Text, m.SentAt)
		} else {
			missing[r.pos.Stream] = append(missing[r.pos.Stream], r.pos.Seq)
			fromLog = append(fromLog, r)
		}
	}
	src := v.src
	v.mu.RUnlock()
	if len(missing) == 0 {
		return nil
	}
	if src == nil {
		return salamander.Errorf(salamander.CodeUnavailable, "this site is still joining the cluster; try again or use another site")
	}
	got := map[salamander.Position]salamander.Record{}
	for stream, positions := range missing {
		recs, err := src.Fetch(ctx, stream, positions)
		if err != nil {
			return err
		}
		for p, rec := range recs {
			got[salamander.Position{Stream: stream, Seq: p}] = rec
		}
	}
	for _, r := range fromLog {
		rec, ok := got[r.pos]
		if !ok {
			return fmt.Errorf("view: the log holds no entry at %s:%d, where room %s's message %d was applied",
				r.pos.Stream, r.pos.Seq, r.msg.Room, r.msg.Seq)
		}
		fill(r.msg, rec.User, rec.ClientID, rec.Text, rec.At)
	}
	return nil
}

// Suspended reports whether an admin has suspended the account.
func (v *View) Suspended(name string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	u := v.m.users[name]
	return u != nil && u.suspended
}

// Admins counts the accounts that are admins and not suspended: those
// who can take admin actions through the API.
func (v *View) Admins() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.m.admins(0)
}

// Role is a user's role (salamander.RoleUser when none was set).
func (v *View) Role(name string) string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if u := v.m.users[name]; u != nil && u.role != "" {
		return u.role
	}
	return salamander.RoleUser
}

// Audit returns up to limit admin actions, newest first, from before
// time before (all when zero).
func (v *View) Audit(ctx context.Context, before time.Time, limit int) ([]salamander.AuditEntry, error) {
	if err := v.waitStored(ctx); err != nil {
		return nil, err
	}
	end := int64(math.MaxInt64)
	if !before.IsZero() {
		end = before.UnixNano()
	}
	rows, err := v.rd.audit.QueryContext(ctx, end, limit)
	if err != nil {
		return nil, fmt.Errorf("view: audit: %w", err)
	}
	defer rows.Close()
	out := []salamander.AuditEntry{}
	for rows.Next() {
		var e salamander.AuditEntry
		var stream string
		var seq uint64
		var at int64
		if err := rows.Scan(&stream, &seq, &at, &e.By, &e.Site, &e.Action, &e.User, &e.Role, &e.Detail); err != nil {
			return nil, fmt.Errorf("view: audit: %w", err)
		}
		e.Pos, e.At = fmt.Sprintf("%s:%d", stream, seq), fromNanos(at)
		out = append(out, e)
	}
	return out, rows.Err()
}

// Audited reports whether the record at pos, which this site has
// applied, is in the audit trail: whether it counted as the action of
// whoever it names (an ops record from an account that had lost its role,
// at that point of the log, is ignored and not in the trail).
func (v *View) Audited(ctx context.Context, pos salamander.Position) (bool, error) {
	if err := v.waitStoredUpTo(ctx, map[string]uint64{pos.Stream: pos.Seq}); err != nil {
		return false, err
	}
	var n int
	if err := v.rd.audited.QueryRowContext(ctx, pos.Stream, pos.Seq).Scan(&n); err != nil {
		return false, fmt.Errorf("view: audited: %w", err)
	}
	return n > 0, nil
}

// HeldMessage returns the message held at pos in a standby stream if it
// is not placed yet. One that is (its append to the partition landed after
// all) is not found here: the sender's answer is then the placed message.
func (v *View) HeldMessage(pos salamander.Position) (salamander.Message, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	for _, h := range v.m.held[pos.Stream] {
		if h.pos == pos && !v.m.placed(h.rec) {
			return heldMessageOf(h.rec), true
		}
	}
	return salamander.Message{}, false
}

// Held lists sender's messages to room that are held, not placed yet,
// oldest first, each client id once: a resend another site held again
// (it had not read the first hold yet) is placed once, so it is listed
// once.
func (v *View) Held(room, sender string) []salamander.Message {
	v.mu.RLock()
	defer v.mu.RUnlock()
	rs := v.m.rooms[room]
	if rs == nil {
		return nil
	}
	var out []salamander.Message
	seen := map[string]bool{}
	for _, h := range v.m.held[jsstore.StandbyOf(rs.stream)] {
		if h.rec.Room == room && h.rec.User == sender && !seen[h.rec.ClientID] && !v.m.placed(h.rec) {
			seen[h.rec.ClientID] = true
			out = append(out, heldMessageOf(h.rec))
		}
	}
	return out
}

// HeldByClientID returns sender's message to room held under clientID,
// not placed yet, if there is one: a resend of it is its duplicate, not
// a message to hold again.
func (v *View) HeldByClientID(room, sender, clientID string) (salamander.Message, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	rs := v.m.rooms[room]
	if rs == nil {
		return salamander.Message{}, false
	}
	for _, h := range v.m.held[jsstore.StandbyOf(rs.stream)] {
		if h.rec.Room == room && h.rec.User == sender && h.rec.ClientID == clientID && !v.m.placed(h.rec) {
			return heldMessageOf(h.rec), true
		}
	}
	return salamander.Message{}, false
}

// HeldBy lists sender's messages to any room that are held, not placed
// yet, in each standby's order, each (room, client id) once (see Held).
func (v *View) HeldBy(sender string) []salamander.Message {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []salamander.Message
	type key struct{ room, clientID string }
	seen := map[key]bool{}
	for _, standby := range slices.Sorted(maps.Keys(v.m.held)) {
		for _, h := range v.m.held[standby] {
			k := key{h.rec.Room, h.rec.ClientID}
			if h.rec.User == sender && !seen[k] && !v.m.placed(h.rec) {
				seen[k] = true
				out = append(out, heldMessageOf(h.rec))
			}
		}
	}
	return out
}

func heldMessageOf(r salamander.Record) salamander.Message {
	return salamander.Message{Room: r.Room, Sender: r.User, ClientID: r.ClientID, Text: r.Text, SentAt: r.At, Held: true}
}
