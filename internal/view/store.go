package view

import (
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"math"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The SQLite store is written behind the in-memory model: the applier hands
// the writer one dbBatch per applied batch of records — rows to insert and
// the end state of every room, member and user the batch touched — and the
// writer commits one or more of them per transaction with statements
// prepared once, together with the log positions they reach. So the store
// is always exactly "the log up to these positions", and a restarted site
// loads its model from it and resumes the log after them.

// schemaVersion changes whenever the schema or the apply rules change; a
// database of another version is rebuilt from the log. A rule for a new
// record type is such a change too, though no older record applies
// otherwise: a site of the version before skipped the new records it
// applied (a rolling upgrade, a site upgraded last), and its store says
// they are applied. Without the rebuild it would never apply them. (21:
// user.password; 22: an own change applies only while its PrevHash is
// the account's hash.)
const schemaVersion = 23

// markEvery is how many messages of a room one message_marks row spans.
const markEvery = 32

// spanOpen is the to_seq of a membership that has not ended.
const spanOpen = math.MaxInt64

const schema = `
CREATE TABLE applied(stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB);
-- Which log this read model is of: the cluster's id ('cluster') and each
-- stream's creation time ('created:STREAM'), so that a site notices when
-- the log under it is replaced.
CREATE TABLE log_identity(k TEXT PRIMARY KEY, v TEXT NOT NULL);
-- Session-signing keys as the log holds them (sealed); ord is the order
-- they became current, so the highest is the current one.
CREATE TABLE signing_keys(kid TEXT PRIMARY KEY, sealed BLOB NOT NULL, created_at INTEGER NOT NULL,
  retired_at INTEGER NOT NULL DEFAULT 0, ord INTEGER NOT NULL);
CREATE TABLE users(name TEXT PRIMARY KEY, display_name TEXT NOT NULL, status TEXT NOT NULL DEFAULT '',
  password_hash TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_seq INTEGER NOT NULL DEFAULT 0,
  role TEXT NOT NULL DEFAULT '', suspended INTEGER NOT NULL DEFAULT 0);
-- Admin and operator actions: the audit trail. detail names what an ops
-- action was about (an incident, a report, a site, a stream).
CREATE TABLE audit(stream TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, by TEXT NOT NULL,
  site TEXT NOT NULL, action TEXT NOT NULL, user TEXT NOT NULL, role TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
  PRIMARY KEY(stream, seq));
CREATE INDEX audit_at ON audit(at);
CREATE TABLE revoked_sessions(sid TEXT PRIMARY KEY, user TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE friends(user TEXT NOT NULL, friend TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(user, friend));
-- A room with its newest message, so that a restarted site shows room
-- lists without reading the log. no is the room's number in this store
-- (roomState.no), which keys its messages.
CREATE TABLE rooms(no INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, stream TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0, last_sender TEXT NOT NULL DEFAULT '', last_client_id TEXT NOT NULL DEFAULT '',
  last_text TEXT NOT NULL DEFAULT '', last_sent_at INTEGER NOT NULL DEFAULT 0);
CREATE TABLE members(room TEXT NOT NULL, user TEXT NOT NULL, read_seq INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY(room, user)) WITHOUT ROWID;
-- Every message's place in the room (by the room's number, rooms.no) and
-- in the log (pos), and its client key (clientKeyOf, as a signed 64-bit
-- integer) for the dedupe window. Nothing else of it is copied here — not
-- its text, sender, client id or time: the log holds them durably at
-- every site, and queries read them from there (or from the model's recent
-- messages) by position. This row is written once per message at every
-- site, so it is kept small: integers only.
CREATE TABLE messages(room INTEGER NOT NULL, seq INTEGER NOT NULL, pos INTEGER NOT NULL, client_key INTEGER NOT NULL,
  PRIMARY KEY(room, seq)) WITHOUT ROWID;
-- A sparse index of the messages by log position: the position of every
-- markEvery-th message of a room (seq 1, 1+markEvery, …). A room's seqs
-- and positions grow together, so a range of positions is a range of seqs
-- between two marks, read through the primary key; a full (room, pos)
-- index cost a second B-tree insert per message.
CREATE TABLE message_marks(room INTEGER NOT NULL, pos INTEGER NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(room, pos)) WITHOUT ROWID;
-- Room events other than messages (created, joined, left, renamed, read),
-- by the log position of their record; the room fixes the stream.
CREATE TABLE room_events(room TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY(room, seq)) WITHOUT ROWID;
-- Events for one user only (a friend added).
CREATE TABLE user_events(user TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL,
  PRIMARY KEY(user, stream, seq)) WITHOUT ROWID;
-- Who was in a room when: a room's events at positions from_seq..to_seq
-- (inclusive) concern the user. Sync follows these, so a device that
-- reconnects gets exactly what a connected one was pushed.
CREATE TABLE spans(user TEXT NOT NULL, stream TEXT NOT NULL, room TEXT NOT NULL, from_seq INTEGER NOT NULL,
  to_seq INTEGER NOT NULL, PRIMARY KEY(user, stream, room, from_seq)) WITHOUT ROWID;
`

type msgRow struct {
	room     int64 // roomState.no
	seq, pos uint64
	key      uint64 // clientKeyOf
}

type eventRow struct {
	key  string // room, or user for user events
	stm  string // stream (user events only)
	seq  uint64
	body string
}

type spanRow struct {
	user, stream, room string
	seq                uint64 // from_seq when opening, to_seq when closing
	close              bool
}

type memberKey struct{ room, user string }

type roomRow struct {
	no                     int64
	id, stream, kind, name string
	created                int64
	lastSeq                uint64
	last                   salamander.Message // zero when the room has none
}

type revokedRow struct {
	sid, user string
	at        int64
}

type friendRow struct {
	user, friend string
	at           int64
}

// auditRow is one admin action for the audit table.
type auditRow struct {
	stream                       string
	seq                          uint64
	at                           int64
	by, site, action, user, role string
	detail                       string
}

// dbBatch is what one applied batch of records changes in the store.
type dbBatch struct {
	reached    map[string]uint64
	keys       []SigningKey // in the order they were applied
	audit      []auditRow
	users      map[string]userState
	revoked    []revokedRow
	friends    []friendRow
	rooms      map[string]roomRow
	members    map[memberKey]*uint64 // nil: no longer a member
	messages   []msgRow
	roomEvents []eventRow
	userEvents []eventRow
	spans      []spanRow
	ops        *opsRows // nil when the batch changed nothing of the ops plane
	// revokedBefore (unix ns, 0: none) deletes the revocations made before
	// it: their tokens have expired (View.pruneRevoked).
	revokedBefore int64
}

func newDBBatch() *dbBatch {
	return &dbBatch{reached: map[string]uint64{}, users: map[string]userState{}, rooms: map[string]roomRow{},
		members: map[memberKey]*uint64{}}
}

// statements are the store's prepared statements, prepared once on the
// writer's single connection.
type statements struct {
	applied, key, user, revoked, friend, room, member, delMember, message, roomEvent, userEvent, openSpan, closeSpan *sql.Stmt
	audit, mark                                                                                                      *sql.Stmt
	preparedSet
}

func prepare(db *sql.DB) (*statements, error) {
	st := statements{preparedSet: preparedSet{db: db}}
	p := st.prepare
	p(&st.applied, `INSERT INTO applied(stream, seq) VALUES(?, ?) ON CONFLICT(stream) DO UPDATE SET seq = excluded.seq`)
	p(&st.key, `INSERT INTO signing_keys(kid, sealed, created_at, retired_at, ord)
		VALUES(?, ?, ?, ?, (SELECT COALESCE(MAX(ord), 0) + 1 FROM signing_keys))
		ON CONFLICT(kid) DO UPDATE SET retired_at = excluded.retired_at`)
	p(&st.user, `INSERT INTO users(name, display_name, status, password_hash, created_at, revoked_seq, role, suspended)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET display_name = excluded.display_name, status = excluded.status,
		password_hash = excluded.password_hash, revoked_seq = excluded.revoked_seq, role = excluded.role, suspended = excluded.suspended`)
	p(&st.audit, `INSERT INTO audit(stream, seq, at, by, site, action, user, role, detail) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT DO NOTHING`)
	p(&st.revoked, `INSERT INTO revoked_sessions(sid, user, at) VALUES(?, ?, ?) ON CONFLICT(sid) DO NOTHING`)
	p(&st.friend, `INSERT INTO friends(user, friend, at) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`)
	p(&st.room, `INSERT INTO rooms(no, id, stream, kind, name, created_at, last_seq, last_sender, last_client_id, last_text, last_sent_at)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT(no) DO UPDATE SET name = excluded.name, last_seq = excluded.last_seq, last_sender = excluded.last_sender,
		last_client_id = excluded.last_client_id, last_text = excluded.last_text, last_sent_at = excluded.last_sent_at`)
	p(&st.member, `INSERT INTO members(room, user, read_seq) VALUES(?, ?, ?)
		ON CONFLICT(room, user) DO UPDATE SET read_seq = excluded.read_seq`)
	p(&st.delMember, `DELETE FROM members WHERE room = ? AND user = ?`)
	p(&st.message, `INSERT INTO messages(room, seq, pos, client_key) VALUES(?, ?, ?, ?)`)
	p(&st.mark, `INSERT INTO message_marks(room, pos, seq) VALUES(?, ?, ?)`)
	p(&st.roomEvent, `INSERT INTO room_events(room, seq, body) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`)
	p(&st.userEvent, `INSERT INTO user_events(user, stream, seq, body) VALUES(?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	p(&st.openSpan, `INSERT INTO spans(user, stream, room, from_seq, to_seq) VALUES(?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`)
	p(&st.closeSpan, `UPDATE spans SET to_seq = ? WHERE user = ? AND room = ? AND to_seq = ?`)
	if err := st.done("statements"); err != nil {
		return nil, err
	}
	return &st, nil
}

// preparedSet prepares statements on one database and closes them
// together.
type preparedSet struct {
	db   *sql.DB
	all  []*sql.Stmt
	errs []error
}

// prepare prepares q into *dst; done reports whether every one was.
func (ps *preparedSet) prepare(dst **sql.Stmt, q string) {
	s, err := ps.db.Prepare(q)
	if err == nil {
		ps.all = append(ps.all, s)
	}
	*dst = s
	ps.errs = append(ps.errs, err)
}

// done returns the errors of prepare, having closed every statement if
// there were any.
func (ps *preparedSet) done(what string) error {
	if err := errors.Join(ps.errs...); err != nil {
		ps.close()
		return fmt.Errorf("view: prepare %s: %w", what, err)
	}
	return nil
}

func (ps *preparedSet) close() {
	for _, s := range ps.all {
		s.Close()
	}
}

// write commits batches in one transaction.
func (v *View) write(batches []*dbBatch) error {
	tx, err := v.w.Begin()
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	s := func(st *sql.Stmt) *sql.Stmt { return tx.Stmt(st) }
	var (
		applied, key, user, revoked, friend = s(v.st.applied), s(v.st.key), s(v.st.user), s(v.st.revoked), s(v.st.friend)
		room, member, delMember, message    = s(v.st.room), s(v.st.member), s(v.st.delMember), s(v.st.message)
		mark                                = s(v.st.mark)
		roomEvent, userEvent                = s(v.st.roomEvent), s(v.st.userEvent)
		openSpan, closeSpan                 = s(v.st.openSpan), s(v.st.closeSpan)
	)
	reached := map[string]uint64{}
	// Rows that hold a current state — a user, a room with its newest
	// message, a member's read marker — are written once per transaction
	// with their latest value: a room that got fifty messages since the
	// last write is upserted once, not fifty times.
	users, rooms, members := map[string]userState{}, map[string]roomRow{}, map[memberKey]*uint64{}
	for _, b := range batches {
		maps.Copy(users, b.users)
		maps.Copy(rooms, b.rooms)
		maps.Copy(members, b.members)
	}
	for _, b := range batches {
		for _, e := range b.audit {
			if _, err := tx.Stmt(v.st.audit).Exec(e.stream, e.seq, e.at, e.by, e.site, e.action, e.user, e.role, e.detail); err != nil {
				return fmt.Errorf("audit: %w", err)
			}
		}
		for _, k := range b.keys {
			if _, err := key.Exec(k.ID, k.Sealed, k.Created.UnixNano(), nanos(k.Retired)); err != nil {
				return fmt.Errorf("signing key: %w", err)
			}
		}
		for _, r := range b.revoked {
			if _, err := revoked.Exec(r.sid, r.user, r.at); err != nil {
				return fmt.Errorf("revoked session: %w", err)
			}
		}
		if b.revokedBefore != 0 {
			if _, err := tx.Exec(`DELETE FROM revoked_sessions WHERE at < ?`, b.revokedBefore); err != nil {
				return fmt.Errorf("expired revocations: %w", err)
			}
		}
		for _, f := range b.friends {
			if _, err := friend.Exec(f.user, f.friend, f.at); err != nil {
				return fmt.Errorf("friend: %w", err)
			}
		}
		for _, m := range b.messages {
			if _, err := message.Exec(m.room, m.seq, m.pos, int64(m.key)); err != nil {
				return fmt.Errorf("message %d/%d: %w", m.room, m.seq, err)
			}
			if m.seq%markEvery == 1 {
				if _, err := mark.Exec(m.room, m.pos, m.seq); err != nil {
					return fmt.Errorf("message mark %d/%d: %w", m.room, m.seq, err)
				}
			}
		}
		for _, e := range b.roomEvents {
			if _, err := roomEvent.Exec(e.key, e.seq, e.body); err != nil {
				return fmt.Errorf("room event: %w", err)
			}
		}
		for _, e := range b.userEvents {
			if _, err := userEvent.Exec(e.key, e.stm, e.seq, e.body); err != nil {
				return fmt.Errorf("user event: %w", err)
			}
		}
		for _, sp := range b.spans {
			if sp.close {
				_, err = closeSpan.Exec(sp.seq, sp.user, sp.room, spanOpen)
			} else {
				_, err = openSpan.Exec(sp.user, sp.stream, sp.room, sp.seq, spanOpen)
			}
			if err != nil {
				return fmt.Errorf("membership span: %w", err)
			}
		}
		if b.ops != nil {
			if err := writeOps(tx, b.ops); err != nil {
				return err
			}
		}
		for s, seq := range b.reached {
			reached[s] = max(reached[s], seq)
		}
	}
	for _, u := range users {
		if _, err := user.Exec(u.name, u.displayName, u.status, u.hash, u.created.UnixNano(), u.revokedSeq, u.role,
			u.suspended); err != nil {
			return fmt.Errorf("user %s: %w", u.name, err)
		}
	}
	for _, r := range rooms {
		var sentAt int64
		if r.last.Seq > 0 {
			sentAt = r.last.SentAt.UnixNano()
		}
		if _, err := room.Exec(r.no, r.id, r.stream, r.kind, r.name, r.created, r.lastSeq, r.last.Sender, r.last.ClientID,
			r.last.Text, sentAt); err != nil {
			return fmt.Errorf("room %s: %w", r.id, err)
		}
	}
	for k, read := range members {
		if read == nil {
			_, err = delMember.Exec(k.room, k.user)
		} else {
			_, err = member.Exec(k.room, k.user, *read)
		}
		if err != nil {
			return fmt.Errorf("member %s/%s: %w", k.room, k.user, err)
		}
	}
	for s, seq := range reached {
		if _, err := applied.Exec(s, seq); err != nil {
			return fmt.Errorf("record position: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	v.mu.Lock()
	for s, seq := range reached {
		v.dbApplied[s] = max(v.dbApplied[s], seq)
	}
	close(v.dbAdvanced)
	v.dbAdvanced = make(chan struct{})
	v.mu.Unlock()
	return nil
}

// load reads the model and the applied positions from the store.
func (v *View) load() error {
	m := newModel()
	q := func(query string, scan func(*sql.Rows) error, args ...any) error {
		rows, err := v.w.Query(query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	applied := map[string]uint64{}
	err := errors.Join(
		q(`SELECT stream, seq FROM applied`, func(r *sql.Rows) error {
			var s string
			var seq uint64
			err := r.Scan(&s, &seq)
			applied[s] = seq
			return err
		}),
		q(`SELECT kid, sealed, created_at, retired_at, ord FROM signing_keys ORDER BY ord`, func(r *sql.Rows) error {
			var k SigningKey
			var created, retired int64
			err := r.Scan(&k.ID, &k.Sealed, &created, &retired, &k.ord)
			k.Created, k.Retired = fromNanos(created), fromNanos(retired)
			m.keys[k.ID] = &k
			m.current = k.ID
			return err
		}),
		q(`SELECT name, display_name, status, password_hash, created_at, revoked_seq, role, suspended FROM users`, func(r *sql.Rows) error {
			var u userState
			var created int64
			err := r.Scan(&u.name, &u.displayName, &u.status, &u.hash, &created, &u.revokedSeq, &u.role, &u.suspended)
			u.created = fromNanos(created)
			m.addUser(&u)
			return err
		}),
		q(`SELECT sid, at FROM revoked_sessions WHERE at >= ? ORDER BY at`, func(r *sql.Rows) error {
			var sid string
			var at int64
			err := r.Scan(&sid, &at)
			m.revoke(sid, at)
			return err
		}, v.revokedCutoff()),
		q(`SELECT user, friend, at FROM friends`, func(r *sql.Rows) error {
			var u, f string
			var at int64
			err := r.Scan(&u, &f, &at)
			m.addFriend(u, f, fromNanos(at))
			return err
		}),
		q(`SELECT no, id, stream, kind, name, created_at, last_seq, last_sender, last_client_id, last_text, last_sent_at FROM rooms`,
			func(r *sql.Rows) error {
				rs := &roomState{}
				var kind string
				var created, sent int64
				var last salamander.Message
				err := r.Scan(&rs.no, &rs.id, &rs.stream, &kind, &rs.name, &created, &rs.lastSeq, &last.Sender, &last.ClientID, &last.Text, &sent)
				rs.kind, rs.created = salamander.RoomKind(kind), fromNanos(created)
				if rs.lastSeq > 0 {
					last.Room, last.Seq, last.SentAt = rs.id, rs.lastSeq, fromNanos(sent)
					rs.last = &last
				}
				m.rooms[rs.id] = rs
				m.lastRoomNo = max(m.lastRoomNo, rs.no)
				return err
			}),
	)
	if err == nil {
		err = errors.Join(
			q(`SELECT room, user, read_seq FROM members`, func(r *sql.Rows) error {
				var room, user string
				var read uint64
				if err := r.Scan(&room, &user, &read); err != nil {
					return err
				}
				if rs := m.rooms[room]; rs != nil {
					m.addMember(rs, user, read)
				}
				return nil
			}),
		)
	}
	if err == nil {
		err = loadOps(v.w, &m.ops)
	}
	if err != nil {
		return fmt.Errorf("view: load model: %w", err)
	}
	v.m = m
	v.applied = applied
	v.dbApplied = maps.Clone(applied)
	v.heldEnd = map[string]uint64{}
	return nil
}

// loadIDs fills a room's dedupe window from the store the first time the
// room is used after start. Every message of a room not yet used since
// start is in the store, so the window is the same as if it had been built
// record by record. The applier loads the windows a batch needs before it
// takes the model's lock (preloadWindows); this is for the rest.
func (v *View) loadIDs(r *roomState) error {
	w, err := v.readWindow(v.own, r.no, r.lastSeq)
	if err != nil {
		return fmt.Errorf("view: load client ids of %s: %w", r.id, err)
	}
	r.ids, r.idsLoaded = w, true
	v.m.windows.put(r, v.now(), true)
	return nil
}

// preloadWindows reads from the store, before the applier takes the
// model's lock, the dedupe windows of the rooms batch sends messages to
// that have none in memory (after a start, each room until its first
// message). A room with a long history has thousands of index rows in
// its window (~1.5–1.8 ms to read), and every request of the site would
// wait for them behind the lock. Only the applier loads windows and
// changes a room's messages, so what is read here is still the room's
// window when it is put in place; one that cannot be read is loaded by
// applying, which reports the failure.
func (v *View) preloadWindows(batch []jsstore.Entry) {
	type coldRoom struct {
		rs      *roomState
		no      int64
		lastSeq uint64
		w       clientWindow
		ok      bool
	}
	var cold []coldRoom
	var seen map[*roomState]bool
	v.mu.RLock()
	for _, e := range batch {
		if e.Err != nil || e.Record.Type != salamander.RecMessageSent {
			continue
		}
		rs := v.m.rooms[e.Record.Room]
		if rs == nil || rs.idsLoaded || seen[rs] {
			continue
		}
		if seen == nil {
			seen = map[*roomState]bool{}
		}
		seen[rs] = true
		cold = append(cold, coldRoom{rs: rs, no: rs.no, lastSeq: rs.lastSeq})
	}
	v.mu.RUnlock()
	if len(cold) == 0 {
		return
	}
	for i := range cold {
		c := &cold[i]
		var err error
		if c.w, err = v.readWindow(v.r, c.no, c.lastSeq); err == nil {
			c.ok = true
		}
	}
	v.mu.Lock()
	now := v.now()
	for _, c := range cold {
		if c.ok && !c.rs.idsLoaded && c.rs.lastSeq == c.lastSeq {
			c.rs.ids, c.rs.idsLoaded = c.w, true
			v.m.windows.put(c.rs, now, true)
		}
	}
	v.publishWindows()
	v.mu.Unlock()
}

// readWindow reads from the store the dedupe window of the room numbered
// no whose newest message is lastSeq: the client keys of its newest
// DedupeWindow messages, a range of the messages' primary key. A room's
// seqs are consecutive, so only the keys are read (each column scanned
// costs ~0.3 µs a row here: 1.5–1.8 ms for a full window, built, against
// 2.6 ms with the seqs); should the range ever hold fewer rows than seqs —
// a store with index rows missing, which it never writes — the seqs are
// read too, and the window is the newest unbroken run.
func (v *View) readWindow(db *sql.DB, no int64, lastSeq uint64) (clientWindow, error) {
	var w clientWindow
	n := min(lastSeq, DedupeWindow)
	if n == 0 {
		return w, nil
	}
	first := lastSeq - n + 1
	keys := make([]uint64, 0, n)
	if err := scanWindow(db, &keys, nil, `SELECT client_key FROM messages WHERE room = ? AND seq >= ? ORDER BY seq`, no, int64(first)); err != nil {
		return w, err
	}
	if uint64(len(keys)) == n {
		for i, k := range keys {
			w.add(k, first+uint64(i))
		}
		return w, nil
	}
	v.log.Warn("a room's message index has a hole; its dedupe window starts after it", "room_no", no,
		"rows", len(keys), "want", n)
	var seqs []uint64
	keys = keys[:0]
	if err := scanWindow(db, &keys, &seqs, `SELECT client_key, seq FROM messages WHERE room = ? AND seq >= ? ORDER BY seq`, no, int64(first)); err != nil {
		return w, err
	}
	for i, k := range keys {
		w.add(k, seqs[i])
	}
	return w, nil
}

// scanWindow appends the client keys (and seqs, if seqs is not nil) query
// returns.
func scanWindow(db *sql.DB, keys, seqs *[]uint64, query string, args ...any) error {
	rows, err := db.Query(query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var key int64
	var seq uint64
	dest := []any{&key}
	if seqs != nil {
		dest = append(dest, &seq)
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		*keys = append(*keys, uint64(key))
		if seqs != nil {
			*seqs = append(*seqs, seq)
		}
	}
	return rows.Err()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// nanos is t in unix nanoseconds, 0 for the zero time (fromNanos's inverse).
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
