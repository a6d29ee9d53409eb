package view

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// applyBatch applies entries in one transaction with their positions, then
// wakes read-your-writes waiters and hands the client events to listeners.
func (v *View) applyBatch(batch []jsstore.Entry) error {
	tx, err := v.w.Begin()
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	a := applier{tx: tx}
	applied := v.Applied()
	reached := map[string]uint64{}
	for _, e := range batch {
		if e.Pos.Seq <= applied[e.Pos.Stream] || e.Pos.Seq <= reached[e.Pos.Stream] {
			continue // already applied: redelivery after a consumer reset
		}
		if e.Err != nil {
			v.log.Error("skipping undecodable record", "err", e.Err)
		} else if err := a.apply(e.Pos, e.Record); err != nil {
			return fmt.Errorf("apply %s at %s:%d: %w", e.Record.Type, e.Pos.Stream, e.Pos.Seq, err)
		}
		reached[e.Pos.Stream] = e.Pos.Seq
	}
	for s, seq := range reached {
		if _, err := tx.Exec(`INSERT INTO applied(stream, seq) VALUES(?, ?)
			ON CONFLICT(stream) DO UPDATE SET seq = excluded.seq`, s, seq); err != nil {
			return fmt.Errorf("record position: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	v.mu.Lock()
	for s, seq := range reached {
		v.applied[s] = seq
	}
	if a.key != nil {
		v.key = a.key
	}
	close(v.advanced)
	v.advanced = make(chan struct{})
	listeners := slices.Clone(v.listeners)
	v.mu.Unlock()
	if len(a.emitted) > 0 {
		for _, fn := range listeners {
			fn(a.emitted)
		}
	}
	return nil
}

// applier applies records inside one transaction and collects the client
// events they produce. Rule violations (a non-member posting, a duplicate
// client id) are not errors: the record is simply without effect, at every
// site alike. Errors are failures of the database.
type applier struct {
	tx      *sql.Tx
	emitted []Emitted
	key     []byte
}

func (a *applier) apply(pos salamander.Position, r salamander.Record) error {
	at := r.At.UnixNano()
	switch r.Type {
	case salamander.RecSigningKey:
		res, err := a.tx.Exec(`INSERT INTO meta(k, v) VALUES('signing_key', ?) ON CONFLICT(k) DO NOTHING`, r.Key)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			a.key = r.Key
		}
		return nil
	case salamander.RecUserCreated:
		dn := r.User
		if r.DisplayName != nil {
			dn = *r.DisplayName
		}
		_, err := a.tx.Exec(`INSERT INTO users(name, display_name, password_hash, created_at) VALUES(?, ?, ?, ?)
			ON CONFLICT(name) DO NOTHING`, r.User, dn, r.PasswordHash, at)
		return err
	case salamander.RecProfileChanged:
		if r.DisplayName != nil {
			if _, err := a.tx.Exec(`UPDATE users SET display_name = ? WHERE name = ?`, *r.DisplayName, r.User); err != nil {
				return err
			}
		}
		if r.Status != nil {
			if _, err := a.tx.Exec(`UPDATE users SET status = ? WHERE name = ?`, *r.Status, r.User); err != nil {
				return err
			}
		}
		return nil
	case salamander.RecSessionRevoked:
		_, err := a.tx.Exec(`INSERT INTO revoked_sessions(sid, user, at) VALUES(?, ?, ?) ON CONFLICT(sid) DO NOTHING`,
			r.Session, r.User, at)
		return err
	case salamander.RecUserRevoked:
		// By log position, not time: every site agrees on positions, not
		// on clocks.
		_, err := a.tx.Exec(`UPDATE users SET revoked_seq = max(revoked_seq, ?) WHERE name = ?`, pos.Seq, r.User)
		return err
	case salamander.RecFriendAdded:
		return a.friendAdded(pos, r)
	case salamander.RecRoomCreated:
		return a.roomCreated(pos, r)
	case salamander.RecRoomJoined:
		return a.roomJoined(pos, r)
	case salamander.RecRoomLeft:
		return a.roomLeft(pos, r)
	case salamander.RecRoomRenamed:
		return a.roomRenamed(pos, r)
	case salamander.RecMessageSent:
		return a.messageSent(pos, r)
	case salamander.RecMessageRead:
		return a.messageRead(pos, r)
	default:
		return nil // a record type from a newer version: skipped alike everywhere
	}
}

func (a *applier) friendAdded(pos salamander.Position, r salamander.Record) error {
	if !a.userExists(r.User) || !a.userExists(r.Friend) || r.User == r.Friend {
		return nil
	}
	res, err := a.tx.Exec(`INSERT INTO friends(user, friend, at) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`,
		r.User, r.Friend, r.At.UnixNano())
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	ev := salamander.Event{Type: salamander.EventFriend, Pos: &pos, User: r.Friend, At: r.At}
	return a.emit(ev, []string{r.User})
}

func (a *applier) roomCreated(pos salamander.Position, r salamander.Record) error {
	var exists int
	if err := a.tx.QueryRow(`SELECT count(*) FROM rooms WHERE id = ?`, r.Room).Scan(&exists); err != nil {
		return err
	}
	members := uniqueMembers(r.Members)
	if exists > 0 || len(members) == 0 || (r.Kind == salamander.RoomDirect && len(members) != 2) {
		return nil
	}
	if _, err := a.tx.Exec(`INSERT INTO rooms(id, kind, name, created_at) VALUES(?, ?, ?, ?)`,
		r.Room, string(r.Kind), r.Name, r.At.UnixNano()); err != nil {
		return err
	}
	for _, m := range members {
		if _, err := a.tx.Exec(`INSERT INTO members(room, user, joined_at) VALUES(?, ?, ?)`, r.Room, m, r.At.UnixNano()); err != nil {
			return err
		}
	}
	return a.emitRoom(pos, r, salamander.ActionCreated, r.By, nil, nil)
}

func (a *applier) roomJoined(pos salamander.Position, r salamander.Record) error {
	kind, ok, err := a.roomKind(r.Room)
	if err != nil || !ok || kind != salamander.RoomGroup || !a.isMember(r.Room, r.By) {
		return err
	}
	count, err := a.memberCount(r.Room)
	if err != nil {
		return err
	}
	var added []string
	for _, m := range uniqueMembers(r.Members) {
		if count >= salamander.MaxGroupMembers {
			break
		}
		res, err := a.tx.Exec(`INSERT INTO members(room, user, joined_at) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`,
			r.Room, m, r.At.UnixNano())
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 1 {
			count++
			added = append(added, m)
		}
	}
	if len(added) == 0 {
		return nil
	}
	return a.emitRoom(pos, r, salamander.ActionJoined, r.By, added, nil)
}

func (a *applier) roomLeft(pos salamander.Position, r salamander.Record) error {
	kind, ok, err := a.roomKind(r.Room)
	if err != nil || !ok || kind != salamander.RoomGroup || !a.isMember(r.Room, r.User) {
		return err
	}
	if _, err := a.tx.Exec(`DELETE FROM members WHERE room = ? AND user = ?`, r.Room, r.User); err != nil {
		return err
	}
	return a.emitRoom(pos, r, salamander.ActionLeft, r.User, []string{r.User}, []string{r.User})
}

func (a *applier) roomRenamed(pos salamander.Position, r salamander.Record) error {
	kind, ok, err := a.roomKind(r.Room)
	if err != nil || !ok || kind != salamander.RoomGroup || !a.isMember(r.Room, r.By) {
		return err
	}
	if _, err := a.tx.Exec(`UPDATE rooms SET name = ? WHERE id = ?`, r.Name, r.Room); err != nil {
		return err
	}
	return a.emitRoom(pos, r, salamander.ActionRenamed, r.By, nil, nil)
}

func (a *applier) messageSent(pos salamander.Position, r salamander.Record) error {
	if !a.isMember(r.Room, r.User) {
		return nil
	}
	var dup int
	if err := a.tx.QueryRow(`SELECT count(*) FROM messages WHERE room = ? AND sender = ? AND client_id = ?`,
		r.Room, r.User, r.ClientID).Scan(&dup); err != nil {
		return err
	}
	if dup > 0 {
		return nil
	}
	var seq uint64
	if err := a.tx.QueryRow(`UPDATE rooms SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq`, r.Room).Scan(&seq); err != nil {
		return err
	}
	if _, err := a.tx.Exec(`INSERT INTO messages(room, seq, sender, client_id, text, sent_at, stream, stream_seq)
		VALUES(?, ?, ?, ?, ?, ?, ?, ?)`, r.Room, seq, r.User, r.ClientID, r.Text, r.At.UnixNano(), pos.Stream, pos.Seq); err != nil {
		return err
	}
	// Sending marks the room read for the sender, as in every messenger.
	if _, err := a.tx.Exec(`UPDATE members SET read_seq = ? WHERE room = ? AND user = ?`, seq, r.Room, r.User); err != nil {
		return err
	}
	members, err := a.members(r.Room)
	if err != nil {
		return err
	}
	unread := 0
	for _, m := range members {
		if m.readSeq < seq {
			unread++
		}
	}
	msg := salamander.Message{Room: r.Room, Seq: seq, Sender: r.User, ClientID: r.ClientID, Text: r.Text,
		SentAt: r.At, Unread: unread}
	ev := salamander.Event{Type: salamander.EventMessage, Pos: &pos, RoomID: r.Room, Message: &msg, At: r.At}
	return a.emit(ev, names(members))
}

func (a *applier) messageRead(pos salamander.Position, r salamander.Record) error {
	var lastSeq uint64
	err := a.tx.QueryRow(`SELECT last_seq FROM rooms WHERE id = ?`, r.Room).Scan(&lastSeq)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	seq := min(r.Seq, lastSeq)
	res, err := a.tx.Exec(`UPDATE members SET read_seq = ? WHERE room = ? AND user = ? AND read_seq < ?`,
		seq, r.Room, r.User, seq)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil
	}
	members, err := a.members(r.Room)
	if err != nil {
		return err
	}
	ev := salamander.Event{Type: salamander.EventRead, Pos: &pos, RoomID: r.Room, User: r.User, Seq: seq, At: r.At}
	return a.emit(ev, names(members))
}

// emitRoom emits a room event carrying the room as it is now, to its
// members plus extra (a member who just left).
func (a *applier) emitRoom(pos salamander.Position, r salamander.Record, action, user string, users, extra []string) error {
	room, err := loadRoom(a.tx, r.Room, "")
	if err != nil {
		return err
	}
	ev := salamander.Event{Type: salamander.EventRoom, Pos: &pos, RoomID: r.Room, Room: &room, Action: action,
		User: user, Users: users, At: r.At}
	return a.emit(ev, append(slices.Clone(room.Members), extra...))
}

// emit stores ev for sync with its audience, fixed now, and queues it for
// live delivery to the same audience: a device that reconnects and syncs
// gets exactly what a connected one was pushed.
func (a *applier) emit(ev salamander.Event, audience []string) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	if _, err := a.tx.Exec(`INSERT INTO events(stream, seq, body) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`,
		ev.Pos.Stream, ev.Pos.Seq, string(body)); err != nil {
		return err
	}
	audience = uniqueMembers(audience)
	for _, u := range audience {
		if _, err := a.tx.Exec(`INSERT INTO event_audience(user, stream, seq) VALUES(?, ?, ?) ON CONFLICT DO NOTHING`,
			u, ev.Pos.Stream, ev.Pos.Seq); err != nil {
			return err
		}
	}
	a.emitted = append(a.emitted, Emitted{Event: ev, Audience: audience})
	return nil
}

func (a *applier) userExists(name string) bool {
	var n int
	return a.tx.QueryRow(`SELECT count(*) FROM users WHERE name = ?`, name).Scan(&n) == nil && n > 0
}

func (a *applier) isMember(room, user string) bool {
	var n int
	return a.tx.QueryRow(`SELECT count(*) FROM members WHERE room = ? AND user = ?`, room, user).Scan(&n) == nil && n > 0
}

func (a *applier) roomKind(room string) (salamander.RoomKind, bool, error) {
	var kind string
	err := a.tx.QueryRow(`SELECT kind FROM rooms WHERE id = ?`, room).Scan(&kind)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return salamander.RoomKind(kind), err == nil, err
}

func (a *applier) memberCount(room string) (int, error) {
	var n int
	err := a.tx.QueryRow(`SELECT count(*) FROM members WHERE room = ?`, room).Scan(&n)
	return n, err
}

type member struct {
	name    string
	readSeq uint64
}

func (a *applier) members(room string) ([]member, error) {
	return loadMembers(a.tx, room)
}

func names(ms []member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.name
	}
	return out
}

func uniqueMembers(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range in {
		if m != "" && !seen[m] {
			seen[m] = true
			out = append(out, m)
		}
	}
	return out
}
