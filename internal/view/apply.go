package view

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// applyBatch applies entries to the model and the store, as Run does, but
// writes the store before it returns (for tests).
func (v *View) applyBatch(batch []jsstore.Entry) error {
	b, err := v.applyModel(batch)
	if b != nil {
		if werr := v.write([]*dbBatch{b}); werr != nil {
			return werr
		}
	}
	return err
}

// applyModel applies entries in order to the in-memory model, hands the
// client events to listeners, wakes read-your-writes waiters and returns
// what the store must be told (nil if nothing was new). If an
// entry fails to apply it stops there and returns the error together with
// what the entries before it changed: the model has applied them, so the
// store must be told too, or it would hold a hole; the caller retries the
// batch, and the entries already applied are skipped.
func (v *View) applyModel(batch []jsstore.Entry) (*dbBatch, error) {
	v.mu.Lock()
	// Most entries are messages or read markers, each emitting one event,
	// storing at most one message row and touching one room and member:
	// sized once rather than grown by doubling.
	hint := min(len(batch), maxEmittedPrealloc)
	a := applier{v: v, m: v.m, now: v.now(), partitions: v.parts, db: newDBBatch(), dirtyRooms: make(map[string]bool, hint),
		dirtyMembers: make(map[memberKey]bool, hint), dirtyUsers: map[string]bool{},
		emitted: make([]Emitted, 0, hint)}
	a.db.messages = make([]msgRow, 0, hint)
	moved := false // a standby was read further: held messages wait on it
	var failed error
	for _, e := range batch {
		if jsstore.IsStandby(e.Pos.Stream) {
			moved = a.held(e) || moved
			continue
		}
		if e.Pos.Seq <= v.applied[e.Pos.Stream] {
			continue // already applied: redelivery
		}
		if e.Err != nil {
			v.log.Error("skipping undecodable record", "err", e.Err)
		} else if err := a.apply(e.Pos, e.Record); err != nil {
			// Stop here: the entries after it must not be applied before
			// it. (Only a failing disk, loading a room's client ids
			// before the entry changes anything, gets here.)
			failed = fmt.Errorf("apply %s at %s:%d: %w", e.Record.Type, e.Pos.Stream, e.Pos.Seq, err)
			break
		}
		reached := e.Pos.Seq
		if e.Last {
			reached = jsstore.End(e.Pos).Seq
		}
		v.applied[e.Pos.Stream] = reached
		a.db.reached[e.Pos.Stream] = reached
		v.entries.Add(1)
	}
	if len(a.db.reached) == 0 {
		v.publishWindows() // held messages may have loaded windows
		if moved {
			close(v.advanced)
			v.advanced = make(chan struct{})
		}
		v.mu.Unlock()
		return nil, failed
	}
	a.snapshot()
	v.publishWindows()
	// Waiters are woken after the listeners have the events: a sender's
	// socket then usually has the message event queued before the ack,
	// and writes the two together (gateway wsConn.writeLoop). A waiter
	// that looks after the unlock sees the new state already.
	advanced := v.advanced
	v.advanced = make(chan struct{})
	listeners := slices.Clone(v.listeners)
	endListeners := slices.Clone(v.sessionListeners)
	v.mu.Unlock()
	if len(a.emitted) > 0 {
		for _, fn := range listeners {
			fn(a.emitted)
		}
	}
	if len(a.sessionsEnded) > 0 {
		for _, fn := range endListeners {
			fn(a.sessionsEnded)
		}
	}
	close(advanced)
	return a.db, failed
}

// usedAt is when a room whose record is dated at was last used, for its
// dedupe window's idle time: now, unless the record is older than a
// minute — a site catching up with the log (after a return with an empty
// disk, every room in the history) then lets the windows of rooms long
// quiet leave memory as soon as the store holds them, instead of keeping
// every room's window for the idle time. The minute absorbs clocks a
// little behind.
func (a *applier) usedAt(at time.Time) time.Time {
	if old := at.Add(time.Minute); old.Before(a.now) {
		return old
	}
	return a.now
}

// maxEmittedPrealloc bounds the events a batch's applier makes room for
// up front (a catch-up applies thousands of entries at once).
const maxEmittedPrealloc = 1024

// applier applies records to the model (the caller holds v.mu) and
// collects the client events they produce and the rows to store. Rule
// violations (a non-member posting, a duplicate client id) are not errors:
// the record is simply without effect, at every site alike.
type applier struct {
	v   *View
	m   *model
	now time.Time // when the batch is applied (see usedAt)
	// partitions is the cluster's partition count (0: not known, as in
	// tests without a log): a room is created only in its own (roomOf).
	partitions int
	db         *dbBatch
	// The rooms, members and users the batch changed: their end state is
	// what the store is told (see snapshot).
	dirtyRooms   map[string]bool
	dirtyMembers map[memberKey]bool
	dirtyUsers   map[string]bool
	emitted      []Emitted
	// sessionsEnded are users some of whose sessions the batch ended
	// (logged out, revoked, suspended), for OnSessionsEnded.
	sessionsEnded []string
}

// byAdmin says whether an admin action may be applied: the admin
// credential (By "") may take any; an account only if it is an admin at
// this point of the log and not suspended, whatever a gateway claims (as
// byRole). A site that has not applied a suspension yet still takes the
// suspended admin's requests, and their records land after it in the log:
// they restored themselves, promoted others and suspended whoever
// suspended them.
func (a *applier) byAdmin(r salamander.Record) bool {
	return a.byRole(r, salamander.RoleAdmin)
}

// lastAdmin says whether u is the last admin who can act (an admin, not
// suspended, and no other such) at this point of the log, when an
// account's r would demote or suspend them: such a record has no effect.
// Each site's gateway refuses it already, but two admins demoting each
// other at two sites at once each pass that check, and their records
// would leave nobody to take an admin action through the API. The admin
// credential (By "") may still: it is how an operator recovers anyway.
func (a *applier) lastAdmin(u *userState, r salamander.Record) bool {
	return r.By != "" && u.role == salamander.RoleAdmin && !u.suspended && a.m.admins(2) < 2
}

// audit records an admin action for the audit trail.
func (a *applier) audit(pos salamander.Position, r salamander.Record, action string) {
	a.auditDetail(pos, r, action, "")
}

// auditDetail records an ops action and what it was about.
func (a *applier) auditDetail(pos salamander.Position, r salamander.Record, action, detail string) {
	a.db.audit = append(a.db.audit, auditRow{stream: pos.Stream, seq: pos.Seq, at: r.At.UnixNano(), by: r.By,
		site: r.Site, action: action, user: r.User, role: r.Role, detail: detail})
}

func (a *applier) apply(pos salamander.Position, r salamander.Record) error {
	switch r.Type {
	case salamander.RecSigningKey:
		changed := a.m.addKey(r.KeyID, r.Key, r.At, r.Rotate)
		a.db.keys = append(a.db.keys, changed...)
		// A rotation is an admin's action, in the audit trail with the
		// others; the first key (the cluster's creation) is not.
		switch {
		case len(changed) == 0 || !r.Rotate:
		case len(r.Key) > 0:
			a.auditDetail(pos, r, "rotate-key", r.KeyID)
		default:
			a.auditDetail(pos, r, "revoke-keys", "every key before "+r.KeyID)
		}
	case salamander.RecUserCreated:
		if _, ok := a.m.users[r.User]; !ok {
			dn := r.User
			if r.DisplayName != nil {
				dn = *r.DisplayName
			}
			a.m.addUser(&userState{name: r.User, displayName: dn, hash: r.PasswordHash, created: r.At})
			a.dirtyUsers[r.User] = true
		}
	case salamander.RecProfileChanged:
		if u := a.m.users[r.User]; u != nil {
			if r.DisplayName != nil {
				u.displayName = *r.DisplayName
			}
			if r.Status != nil {
				u.status = *r.Status
			}
			a.dirtyUsers[r.User] = true
		}
	case salamander.RecSessionRevoked:
		if a.m.revoke(r.Session, r.At.UnixNano()) {
			a.db.revoked = append(a.db.revoked, revokedRow{sid: r.Session, user: r.User, at: r.At.UnixNano()})
			a.sessionsEnded = append(a.sessionsEnded, r.User)
		}
	case salamander.RecUserRevoked:
		// By log position, not time: every site agrees on positions, not
		// on clocks. Someone else's sessions only an admin ends (checked
		// here too, as suspensions and roles are: one demoted a moment
		// before, at a site that had not applied the demotion yet, does
		// not).
		if r.By != "" && r.By != r.User && !a.byAdmin(r) {
			break
		}
		if u := a.m.users[r.User]; u != nil {
			u.revokedSeq = max(u.revokedSeq, pos.Seq)
			a.dirtyUsers[r.User] = true
			a.sessionsEnded = append(a.sessionsEnded, r.User)
			if r.Site != "" { // an admin's, not a user's own "log out everywhere"
				a.audit(pos, r, "revoke-sessions")
			}
		}
	case salamander.RecPasswordSet:
		a.passwordSet(pos, r)
	case salamander.RecUserSuspended, salamander.RecUserRestored:
		u := a.m.users[r.User]
		if u == nil || !a.byAdmin(r) || r.Type == salamander.RecUserSuspended && a.lastAdmin(u, r) {
			break
		}
		u.suspended = r.Type == salamander.RecUserSuspended
		a.dirtyUsers[r.User] = true
		if u.suspended {
			// A suspension ends every session and device token issued
			// before it for good, as a "log out everywhere" does: an
			// account is suspended because it was taken over, and its
			// restoration must not bring the thief's sessions back. Its
			// owner logs in again once restored.
			u.revokedSeq = max(u.revokedSeq, pos.Seq)
			a.sessionsEnded = append(a.sessionsEnded, r.User)
		}
		a.audit(pos, r, map[bool]string{true: "suspend", false: "restore"}[u.suspended])
	case salamander.RecRoleSet:
		u := a.m.users[r.User]
		if u == nil || salamander.RoleRank(r.Role) == 0 || !a.byAdmin(r) ||
			r.Role != salamander.RoleAdmin && a.lastAdmin(u, r) {
			break
		}
		u.role = r.Role
		if r.Role == salamander.RoleUser {
			u.role = ""
		}
		a.dirtyUsers[r.User] = true
		a.audit(pos, r, "set-role")
	case salamander.RecIncidentOpened, salamander.RecIncidentUpdated, salamander.RecReportFiled,
		salamander.RecReportAnswered, salamander.RecReportReviewed, salamander.RecDrillStarted, salamander.RecDrillFault, salamander.RecDrillEnded,
		salamander.RecSiteDrained, salamander.RecSiteUndrained, salamander.RecLeaderMoved:
		return a.applyOps(pos, r)
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
	case salamander.RecMerge:
		a.merged(r)
	}
	return nil // a record type from a newer version: skipped alike everywhere
}

// passwordSet replaces an account's password hash and ends every session
// and device token issued before it, as a "log out everywhere" does: by
// accounts-stream position (revokedSeq), so that whichever site applies
// it first, a token signed anywhere before it (naming an earlier
// position) ends everywhere, and one signed after it lives. The account
// changes its own (By itself) unless it is suspended at this point of the
// log (a site that had not applied the suspension yet took the request);
// anyone else's only an admin does (as byAdmin: the admin credential, or
// an admin not suspended here), and that reset is in the audit trail. An
// own change applies only while the hash its current password was judged
// against (PrevHash) is still the account's. A hash bcrypt cannot read
// is refused: it would lock the account.
func (a *applier) passwordSet(pos salamander.Position, r salamander.Record) {
	u := a.m.users[r.User]
	if u == nil {
		return
	}
	if _, err := bcrypt.Cost([]byte(r.PasswordHash)); err != nil {
		return
	}
	own := r.By == r.User
	if own && u.suspended || !own && !a.byAdmin(r) {
		return
	}
	if own && r.PrevHash != "" && r.PrevHash != u.hash {
		// Judged against a hash the account no longer has: the site that
		// took it had not applied a newer change or reset, which stands.
		return
	}
	a.m.setHash(u, r.PasswordHash)
	u.revokedSeq = max(u.revokedSeq, pos.Seq)
	a.dirtyUsers[r.User] = true
	a.sessionsEnded = append(a.sessionsEnded, r.User)
	if !own {
		a.audit(pos, r, "set-password")
	}
}

func (a *applier) friendAdded(pos salamander.Position, r salamander.Record) error {
	if a.m.users[r.User] == nil || a.m.users[r.Friend] == nil || r.User == r.Friend {
		return nil
	}
	if !a.m.addFriend(r.User, r.Friend, r.At) {
		return nil
	}
	a.db.friends = append(a.db.friends, friendRow{user: r.User, friend: r.Friend, at: r.At.UnixNano()})
	ev := salamander.Event{Type: salamander.EventFriend, Pos: &pos, User: r.Friend, At: r.At}
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	a.db.userEvents = append(a.db.userEvents, eventRow{key: r.User, stm: pos.Stream, seq: pos.Seq, body: string(body)})
	a.emitted = append(a.emitted, Emitted{Event: ev, Audience: []string{r.User}})
	return nil
}

func (a *applier) roomCreated(pos salamander.Position, r salamander.Record) error {
	members := uniqueMembers(r.Members)
	if a.m.rooms[r.Room] != nil || len(members) == 0 || (r.Kind == salamander.RoomDirect && len(members) != 2) {
		return nil
	}
	if a.partitions > 0 && pos.Stream != jsstore.RoomPartition(r.Room, a.partitions) {
		// Created in another partition than the room's (see roomOf):
		// two creations in two streams would be applied in either order.
		return nil
	}
	a.m.lastRoomNo++
	rs := &roomState{id: r.Room, no: a.m.lastRoomNo, stream: pos.Stream, kind: r.Kind, name: r.Name, created: r.At,
		idsLoaded: true}
	a.m.rooms[r.Room] = rs
	a.m.windows.put(rs, a.usedAt(r.At), false)
	for _, u := range members {
		a.join(rs, pos, u)
	}
	a.dirtyRooms[r.Room] = true
	return a.roomEvent(pos, r, rs, salamander.ActionCreated, r.By, nil, "")
}

func (a *applier) roomJoined(pos salamander.Position, r salamander.Record) error {
	rs := a.roomOf(pos, r.Room)
	if rs == nil || rs.kind != salamander.RoomGroup || !isMember(rs, r.By) {
		return nil
	}
	var added []string
	for _, u := range uniqueMembers(r.Members) {
		if rs.members.len() >= salamander.MaxGroupMembers {
			break
		}
		if isMember(rs, u) {
			continue
		}
		a.join(rs, pos, u)
		added = append(added, u)
	}
	if len(added) == 0 {
		return nil
	}
	return a.roomEvent(pos, r, rs, salamander.ActionJoined, r.By, added, "")
}

func (a *applier) roomLeft(pos salamander.Position, r salamander.Record) error {
	rs := a.roomOf(pos, r.Room)
	if rs == nil || rs.kind != salamander.RoomGroup || !isMember(rs, r.User) {
		return nil
	}
	a.m.removeMember(rs, r.User)
	a.dirtyMembers[memberKey{rs.id, r.User}] = true
	// The leaver is told too: their span ends at this record, inclusive.
	a.db.spans = append(a.db.spans, spanRow{user: r.User, room: rs.id, seq: pos.Seq, close: true})
	return a.roomEvent(pos, r, rs, salamander.ActionLeft, r.User, []string{r.User}, r.User)
}

func (a *applier) roomRenamed(pos salamander.Position, r salamander.Record) error {
	rs := a.roomOf(pos, r.Room)
	if rs == nil || rs.kind != salamander.RoomGroup || !isMember(rs, r.By) {
		return nil
	}
	rs.name = r.Name
	a.dirtyRooms[rs.id] = true
	return a.roomEvent(pos, r, rs, salamander.ActionRenamed, r.By, nil, "")
}

func (a *applier) messageSent(pos salamander.Position, r salamander.Record) error {
	rs := a.roomOf(pos, r.Room)
	if rs == nil || !isMember(rs, r.User) {
		return nil
	}
	if !rs.idsLoaded {
		if err := a.v.loadIDs(rs); err != nil {
			return err
		}
	}
	key := clientKeyOf(r.User, r.ClientID)
	if _, dup := rs.ids.seqOf(key); dup {
		return nil
	}
	rs.lastSeq++
	seq := rs.lastSeq
	size := rs.ids.bytes()
	rs.remember(key, seq)
	rs.win.lastStream, rs.win.lastPos = pos.Stream, pos.Seq
	a.m.windows.used(rs, a.usedAt(r.At), rs.ids.bytes()-size)
	// Sending marks the room read for the sender, as in every messenger.
	rs.members.setRead(r.User, seq)
	a.dirtyMembers[memberKey{rs.id, r.User}] = true
	msg := &salamander.Message{Room: r.Room, Seq: seq, Sender: r.User, ClientID: r.ClientID, Text: r.Text, SentAt: r.At}
	rs.last = msg
	a.m.addRecent(pos, msg)
	a.dirtyRooms[rs.id] = true
	a.db.messages = append(a.db.messages, msgRow{room: rs.no, seq: seq, pos: pos.Seq, key: key})
	out := *msg
	out.Unread = rs.unread(seq)
	ev := salamander.Event{Type: salamander.EventMessage, Pos: &pos, RoomID: r.Room, Message: &out, At: r.At}
	a.emitted = append(a.emitted, Emitted{Event: ev, Audience: memberNames(rs)})
	return nil
}

func (a *applier) messageRead(pos salamander.Position, r salamander.Record) error {
	rs := a.roomOf(pos, r.Room)
	if rs == nil || !isMember(rs, r.User) {
		return nil
	}
	seq := min(r.Seq, rs.lastSeq)
	if read, _ := rs.members.read(r.User); seq <= read {
		return nil
	}
	rs.members.setRead(r.User, seq)
	a.dirtyMembers[memberKey{rs.id, r.User}] = true
	ev := salamander.Event{Type: salamander.EventRead, Pos: &pos, RoomID: r.Room, User: r.User, Seq: seq, At: r.At}
	return a.storeRoomEvent(ev, memberNames(rs))
}

// join adds user to a room and opens their membership span at pos.
func (a *applier) join(rs *roomState, pos salamander.Position, user string) {
	a.m.addMember(rs, user, 0)
	a.dirtyMembers[memberKey{rs.id, user}] = true
	a.db.spans = append(a.db.spans, spanRow{user: user, stream: pos.Stream, room: rs.id, seq: pos.Seq})
}

// roomEvent emits a room event carrying the room as it is now, to its
// members plus extra (a member who just left).
func (a *applier) roomEvent(pos salamander.Position, r salamander.Record, rs *roomState, action, user string, users []string, extra string) error {
	room := rs.roomView("")
	ev := salamander.Event{Type: salamander.EventRoom, Pos: &pos, RoomID: rs.id, Room: &room, Action: action,
		User: user, Users: users, At: r.At}
	audience := room.Members
	if extra != "" {
		audience = append(slices.Clone(audience), extra)
	}
	return a.storeRoomEvent(ev, audience)
}

// storeRoomEvent stores ev for sync and queues it for live delivery. Its
// audience is the room's members at ev's position, which is what the
// membership spans give sync: a device that reconnects and syncs gets
// exactly what a connected one was pushed.
func (a *applier) storeRoomEvent(ev salamander.Event, audience []string) error {
	body, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	a.db.roomEvents = append(a.db.roomEvents, eventRow{key: ev.RoomID, seq: ev.Pos.Seq, body: string(body)})
	a.emitted = append(a.emitted, Emitted{Event: ev, Audience: audience})
	return nil
}

// snapshot records the end state of every room, member and user the batch
// touched, for the store.
func (a *applier) snapshot() {
	for id := range a.dirtyRooms {
		rs := a.m.rooms[id]
		row := roomRow{no: rs.no, id: id, stream: rs.stream, kind: string(rs.kind), name: rs.name, created: rs.created.UnixNano(), lastSeq: rs.lastSeq}
		if rs.last != nil {
			row.last = *rs.last
		}
		a.db.rooms[id] = row
	}
	for k := range a.dirtyMembers {
		a.db.members[k] = nil // no longer a member
		if rs := a.m.rooms[k.room]; rs != nil {
			if read, ok := rs.members.read(k.user); ok {
				a.db.members[k] = &read
			}
		}
	}
	for name := range a.dirtyUsers {
		a.db.users[name] = *a.m.users[name]
	}
}

// roomOf is the room a record at pos is about, nil if there is none or
// if pos is not in the room's partition. A room's records are ordered by
// its one stream; the sites tail streams independently, so a record in
// another stream (a message held in another partition's standby and
// placed by that partition's merge, or any record a writer put in the
// wrong partition) would be applied before or after the room's own
// records depending on each site's timing: its room's seqs and members
// would differ from site to site, and history would read its text from
// the room's stream at the wrong position. Such a record has no effect,
// alike everywhere.
func (a *applier) roomOf(pos salamander.Position, room string) *roomState {
	if rs := a.m.rooms[room]; rs != nil && rs.stream == pos.Stream {
		return rs
	}
	return nil
}

func isMember(rs *roomState, user string) bool { return rs.members.has(user) }

// memberNames is the room's members as an event's audience: shared with
// the room until its next join or leave, so never to be changed. Only
// the applier (under the model's write lock) hands it out.
func memberNames(rs *roomState) []string { return rs.members.audience() }

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

// held keeps a message read from a partition's standby until a merge
// record places it (the tail delivers the placed messages again, in the
// partition, as the merge record's entries). It reports whether the
// standby was read further.
func (a *applier) held(e jsstore.Entry) bool {
	s := e.Pos.Stream
	if e.Pos.Seq <= max(a.v.applied[s], a.v.heldEnd[s]) {
		return false // placed already, or read before
	}
	if e.Err == nil && e.Record.Type == salamander.RecMessageSent {
		// Held and HeldBy leave out a held message whose client id is
		// placed already (model.placed): its room's window must be loaded,
		// as it is not after a restart until the room is used. A failed
		// load is tried again when the room is.
		if rs := a.m.rooms[e.Record.Room]; rs != nil && !rs.idsLoaded {
			if err := a.v.loadIDs(rs); err != nil {
				a.v.log.Warn("held message: cannot load its room's client ids", "room", rs.id, "err", err)
			}
		}
		a.m.held[s] = append(a.m.held[s], heldMessage{pos: e.Pos, rec: e.Record})
	}
	reached := e.Pos.Seq
	if e.Last {
		reached = jsstore.End(e.Pos).Seq
	}
	a.v.heldEnd[s] = reached
	return true
}

// merged applies a merge record's own entry, after the messages it
// placed: the standby's records up to its To are placed, and the store
// remembers it (the standby is read again from there after a restart).
func (a *applier) merged(r salamander.Record) {
	if r.Merge == nil || !jsstore.IsStandby(r.Merge.Standby) {
		return
	}
	s := r.Merge.Standby
	end := jsstore.End(jsstore.PositionOf(s, r.Merge.To, 0)).Seq
	if end <= a.v.applied[s] {
		return
	}
	a.v.applied[s] = end
	a.db.reached[s] = end
	held := a.m.held[s]
	i := 0
	for i < len(held) && held[i].pos.Seq <= end {
		i++
	}
	a.m.held[s] = slices.Clone(held[i:])
}
