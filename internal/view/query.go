package view

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/salamander-chat/salamander"
)

// querier is what both a transaction and the reader pool offer.
type querier interface {
	QueryRow(query string, args ...any) *sql.Row
	Query(query string, args ...any) (*sql.Rows, error)
}

// User returns a user's profile; CodeNotFound if there is no such user.
func (v *View) User(ctx context.Context, name string) (salamander.User, error) {
	var u salamander.User
	var created int64
	err := v.r.QueryRowContext(ctx, `SELECT name, display_name, status, created_at FROM users WHERE name = ?`, name).
		Scan(&u.Name, &u.DisplayName, &u.Status, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return u, salamander.Errorf(salamander.CodeNotFound, "no user %q", name)
	}
	if err != nil {
		return u, fmt.Errorf("view: user %s: %w", name, err)
	}
	u.CreatedAt = fromNanos(created)
	return u, nil
}

// Credentials returns a user's password hash and the accounts-stream
// position of their latest "revoke every session": a session issued by a
// site that had not yet applied that position is revoked. CodeNotFound if
// there is no such user.
func (v *View) Credentials(ctx context.Context, name string) (hash string, revokedSeq uint64, err error) {
	err = v.r.QueryRowContext(ctx, `SELECT password_hash, revoked_seq FROM users WHERE name = ?`, name).Scan(&hash, &revokedSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, salamander.Errorf(salamander.CodeNotFound, "no user %q", name)
	}
	if err != nil {
		return "", 0, fmt.Errorf("view: credentials %s: %w", name, err)
	}
	return hash, revokedSeq, nil
}

// SessionRevoked reports whether the session id was logged out.
func (v *View) SessionRevoked(ctx context.Context, sid string) (bool, error) {
	var n int
	if err := v.r.QueryRowContext(ctx, `SELECT count(*) FROM revoked_sessions WHERE sid = ?`, sid).Scan(&n); err != nil {
		return false, fmt.Errorf("view: session %s: %w", sid, err)
	}
	return n > 0, nil
}

// Friends lists the users that user has added, by name.
func (v *View) Friends(ctx context.Context, user string) ([]salamander.User, error) {
	rows, err := v.r.QueryContext(ctx, `SELECT u.name, u.display_name, u.status, u.created_at
		FROM friends f JOIN users u ON u.name = f.friend WHERE f.user = ? ORDER BY u.name`, user)
	if err != nil {
		return nil, fmt.Errorf("view: friends of %s: %w", user, err)
	}
	defer rows.Close()
	out := []salamander.User{}
	for rows.Next() {
		var u salamander.User
		var created int64
		if err := rows.Scan(&u.Name, &u.DisplayName, &u.Status, &created); err != nil {
			return nil, fmt.Errorf("view: friends of %s: %w", user, err)
		}
		u.CreatedAt = fromNanos(created)
		out = append(out, u)
	}
	return out, rows.Err()
}

// Followers lists the users who have added user as a friend: the people
// told about user's presence.
func (v *View) Followers(ctx context.Context, user string) ([]string, error) {
	return queryStrings(ctx, v.r, `SELECT user FROM friends WHERE friend = ?`, user)
}

// Members lists a room's members; empty if there is no such room.
func (v *View) Members(ctx context.Context, room string) ([]string, error) {
	return queryStrings(ctx, v.r, `SELECT user FROM members WHERE room = ? ORDER BY user`, room)
}

// IsMember reports whether user is a member of room.
func (v *View) IsMember(ctx context.Context, room, user string) (bool, error) {
	var n int
	err := v.r.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE room = ? AND user = ?`, room, user).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("view: membership %s/%s: %w", room, user, err)
	}
	return n > 0, nil
}

// Room returns a room as viewer sees it: CodeNotFound if there is no such
// room, CodeForbidden if viewer is not a member.
func (v *View) Room(ctx context.Context, id, viewer string) (salamander.Room, error) {
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return salamander.Room{}, fmt.Errorf("view: room %s: %w", id, err)
	}
	defer tx.Rollback()
	room, err := loadRoom(tx, id, viewer)
	if err != nil {
		return room, err
	}
	if _, ok := room.ReadMarkers[viewer]; !ok {
		return salamander.Room{}, salamander.Errorf(salamander.CodeForbidden, "you are not a member of room %s", id)
	}
	return room, nil
}

// RoomsOf lists the rooms user is a member of, most recently active first.
func (v *View) RoomsOf(ctx context.Context, user string) ([]salamander.Room, error) {
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("view: rooms of %s: %w", user, err)
	}
	defer tx.Rollback()
	ids, err := queryStrings(ctx, tx, `SELECT m.room FROM members m JOIN rooms r ON r.id = m.room WHERE m.user = ?
		ORDER BY coalesce((SELECT sent_at FROM messages WHERE room = r.id AND seq = r.last_seq), r.created_at) DESC`, user)
	if err != nil {
		return nil, err
	}
	out := make([]salamander.Room, 0, len(ids))
	for _, id := range ids {
		room, err := loadRoom(tx, id, user)
		if err != nil {
			return nil, err
		}
		out = append(out, room)
	}
	return out, nil
}

// History returns up to limit messages of room in ascending order: the ones
// after seq `after` when after > 0, else the ones before `before` when
// before > 0, else the newest. Membership is the caller's to check.
func (v *View) History(ctx context.Context, room string, before, after uint64, limit int) (salamander.HistoryPage, error) {
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return salamander.HistoryPage{}, fmt.Errorf("view: history %s: %w", room, err)
	}
	defer tx.Rollback()
	var rows *sql.Rows
	const cols = `SELECT room, seq, sender, client_id, text, sent_at FROM messages WHERE room = ?`
	switch {
	case after > 0:
		rows, err = tx.QueryContext(ctx, cols+` AND seq > ? ORDER BY seq ASC LIMIT ?`, room, after, limit+1)
	case before > 0:
		rows, err = tx.QueryContext(ctx, cols+` AND seq < ? ORDER BY seq DESC LIMIT ?`, room, before, limit+1)
	default:
		rows, err = tx.QueryContext(ctx, cols+` ORDER BY seq DESC LIMIT ?`, room, limit+1)
	}
	if err != nil {
		return salamander.HistoryPage{}, fmt.Errorf("view: history %s: %w", room, err)
	}
	msgs, err := scanMessages(rows)
	if err != nil {
		return salamander.HistoryPage{}, fmt.Errorf("view: history %s: %w", room, err)
	}
	page := salamander.HistoryPage{Messages: msgs}
	if len(msgs) > limit {
		page.More = true
		page.Messages = msgs[:limit]
	}
	if after == 0 { // fetched newest-first; return ascending
		for i, j := 0, len(page.Messages)-1; i < j; i, j = i+1, j-1 {
			page.Messages[i], page.Messages[j] = page.Messages[j], page.Messages[i]
		}
	}
	members, err := loadMembers(tx, room)
	if err != nil {
		return salamander.HistoryPage{}, err
	}
	for i := range page.Messages {
		page.Messages[i].Unread = unreadCount(members, page.Messages[i].Seq)
	}
	return page, nil
}

// MessageAt returns the message committed at pos, if the record there was
// accepted as a message.
func (v *View) MessageAt(ctx context.Context, pos salamander.Position) (salamander.Message, bool, error) {
	return v.oneMessage(ctx, `SELECT room, seq, sender, client_id, text, sent_at FROM messages WHERE stream = ? AND stream_seq = ?`,
		pos.Stream, pos.Seq)
}

// MessageByClientID finds the message sender sent to room with clientID.
func (v *View) MessageByClientID(ctx context.Context, room, sender, clientID string) (salamander.Message, bool, error) {
	return v.oneMessage(ctx, `SELECT room, seq, sender, client_id, text, sent_at FROM messages
		WHERE room = ? AND sender = ? AND client_id = ?`, room, sender, clientID)
}

func (v *View) oneMessage(ctx context.Context, query string, args ...any) (salamander.Message, bool, error) {
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return salamander.Message{}, false, fmt.Errorf("view: message: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return salamander.Message{}, false, fmt.Errorf("view: message: %w", err)
	}
	msgs, err := scanMessages(rows)
	if err != nil || len(msgs) == 0 {
		return salamander.Message{}, false, err
	}
	members, err := loadMembers(tx, msgs[0].Room)
	if err != nil {
		return salamander.Message{}, false, err
	}
	msgs[0].Unread = unreadCount(members, msgs[0].Seq)
	return msgs[0], true, nil
}

// Sync returns the stored events for user after cursor, at most limit, and
// the cursor to continue from. The result is one consistent snapshot: a
// stream's cursor moves to this site's applied position only when every
// event of the user's up to there was returned.
func (v *View) Sync(ctx context.Context, user string, cur salamander.Cursor, limit int) (salamander.SyncResult, error) {
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
	}
	defer tx.Rollback()
	applied := map[string]uint64{}
	rows, err := tx.QueryContext(ctx, `SELECT stream, seq FROM applied ORDER BY stream`)
	if err != nil {
		return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
	}
	var streams []string
	for rows.Next() {
		var s string
		var seq uint64
		if err := rows.Scan(&s, &seq); err != nil {
			rows.Close()
			return salamander.SyncResult{}, fmt.Errorf("view: sync: %w", err)
		}
		applied[s] = seq
		streams = append(streams, s)
	}
	rows.Close()
	next := cur.Clone()
	res := salamander.SyncResult{Events: []salamander.Event{}}
	markers := map[string][]member{}
	for _, s := range streams {
		remaining := limit - len(res.Events)
		rows, err := tx.QueryContext(ctx, `SELECT e.seq, e.body FROM event_audience a
			JOIN events e ON e.stream = a.stream AND e.seq = a.seq
			WHERE a.user = ? AND a.stream = ? AND a.seq > ? ORDER BY a.seq LIMIT ?`,
			user, s, cur[s], remaining+1)
		if err != nil {
			return salamander.SyncResult{}, fmt.Errorf("view: sync %s: %w", s, err)
		}
		var got []salamander.Event
		for rows.Next() {
			var seq uint64
			var body string
			if err := rows.Scan(&seq, &body); err != nil {
				rows.Close()
				return salamander.SyncResult{}, fmt.Errorf("view: sync %s: %w", s, err)
			}
			var ev salamander.Event
			if err := json.Unmarshal([]byte(body), &ev); err != nil {
				rows.Close()
				return salamander.SyncResult{}, fmt.Errorf("view: sync %s:%d: %w", s, seq, err)
			}
			got = append(got, ev)
		}
		rows.Close()
		if len(got) > remaining {
			got = got[:remaining]
			res.More = true
		}
		for i := range got {
			if m := got[i].Message; m != nil {
				ms, ok := markers[m.Room]
				if !ok {
					if ms, err = loadMembers(tx, m.Room); err != nil {
						return salamander.SyncResult{}, err
					}
					markers[m.Room] = ms
				}
				m.Unread = unreadCount(ms, m.Seq)
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
	res.Cursor = next.String()
	return res, nil
}

func loadMembers(q querier, room string) ([]member, error) {
	rows, err := q.Query(`SELECT user, read_seq FROM members WHERE room = ? ORDER BY user`, room)
	if err != nil {
		return nil, fmt.Errorf("view: members of %s: %w", room, err)
	}
	defer rows.Close()
	var out []member
	for rows.Next() {
		var m member
		if err := rows.Scan(&m.name, &m.readSeq); err != nil {
			return nil, fmt.Errorf("view: members of %s: %w", room, err)
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// loadRoom reads a room with viewer's unread count (viewer may be "").
func loadRoom(q querier, id, viewer string) (salamander.Room, error) {
	room := salamander.Room{ID: id}
	var kind string
	var created int64
	err := q.QueryRow(`SELECT kind, name, created_at, last_seq FROM rooms WHERE id = ?`, id).
		Scan(&kind, &room.Name, &created, &room.LastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return room, salamander.Errorf(salamander.CodeNotFound, "no room %q", id)
	}
	if err != nil {
		return room, fmt.Errorf("view: room %s: %w", id, err)
	}
	room.Kind = salamander.RoomKind(kind)
	room.CreatedAt = fromNanos(created)
	members, err := loadMembers(q, id)
	if err != nil {
		return room, err
	}
	room.Members = names(members)
	room.ReadMarkers = make(map[string]uint64, len(members))
	for _, m := range members {
		room.ReadMarkers[m.name] = m.readSeq
	}
	if viewer != "" {
		room.ReadSeq = room.ReadMarkers[viewer]
		room.Unread = room.LastSeq - min(room.ReadSeq, room.LastSeq)
	}
	if room.LastSeq > 0 {
		rows, err := q.Query(`SELECT room, seq, sender, client_id, text, sent_at FROM messages WHERE room = ? AND seq = ?`,
			id, room.LastSeq)
		if err != nil {
			return room, fmt.Errorf("view: last message of %s: %w", id, err)
		}
		msgs, err := scanMessages(rows)
		if err != nil {
			return room, fmt.Errorf("view: last message of %s: %w", id, err)
		}
		if len(msgs) == 1 {
			msgs[0].Unread = unreadCount(members, msgs[0].Seq)
			room.LastMessage = &msgs[0]
		}
	}
	return room, nil
}

func scanMessages(rows *sql.Rows) ([]salamander.Message, error) {
	defer rows.Close()
	var out []salamander.Message
	for rows.Next() {
		var m salamander.Message
		var sent int64
		if err := rows.Scan(&m.Room, &m.Seq, &m.Sender, &m.ClientID, &m.Text, &sent); err != nil {
			return nil, err
		}
		m.SentAt = fromNanos(sent)
		out = append(out, m)
	}
	return out, rows.Err()
}

// unreadCount is how many members have a read marker before seq.
func unreadCount(members []member, seq uint64) int {
	n := 0
	for _, m := range members {
		if m.readSeq < seq {
			n++
		}
	}
	return n
}

type contextQuerier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func queryStrings(ctx context.Context, q contextQuerier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("view: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("view: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
