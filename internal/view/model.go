package view

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
)

// The model is the hot state every request needs — users and their
// credentials, revocations, friendships, rooms, members and read markers,
// each room's newest message and recent client message ids — held in
// memory and owned by the applier. Requests answer from it under a read
// lock; the applier changes it under the write lock, record by record, in
// log order. SQLite is written behind it (see store.go) and is what a
// restarted site loads the model from.

// DedupeWindow is how many of a room's newest messages a client message id
// is checked against: a resend of a message is recognized as long as fewer
// than this many messages were sent to the room after the original. The
// rule depends only on the log, so every site decides alike.
const DedupeWindow = 4096

// recentPerStream bounds the messages kept by log position for answering
// a send (MessageAt) without a query.
const recentPerStream = 16384

type model struct {
	users map[string]*userState
	// hashCosts counts the users' password hashes by their bcrypt cost
	// (HashCost).
	hashCosts [32]int
	revoked   map[string]int64 // logged-out session ids -> when (unix ns, the record's time)
	// revokedOrder is revoked's ids in the order they were applied, the
	// oldest first, so that those of tokens expired by now leave memory
	// without a scan of them all (pruneRevoked).
	revokedOrder revokedQueue
	friends      map[string]map[string]time.Time
	followers    map[string]map[string]struct{}
	rooms        map[string]*roomState
	// userRooms lists each user's rooms, in no order: a slice, as most
	// users are in few rooms and a map of one costs ~190 B.
	userRooms map[string][]*roomState
	// keys are the session-signing keys by id; current signs new tokens.
	keys    map[string]*SigningKey
	current string
	// recent holds each stream's recently applied messages by position.
	recent map[string]*recentMessages
	// ops is the ops plane's state: incidents, reports, drills, drains.
	ops opsModel
	// held are the messages read from each standby stream and not placed
	// yet, in the standby's order.
	held map[string][]heldMessage
	// lastRoomNo is the highest room number given out (roomState.no).
	lastRoomNo int64
	// windows are the rooms whose dedupe windows are in memory.
	windows windowSet
}

// heldMessage is a message held in a standby stream, at its position there.
type heldMessage struct {
	pos salamander.Position
	rec salamander.Record
}

type userState struct {
	name, displayName, status, hash string
	created                         time.Time
	revokedSeq                      uint64
	role                            string // "" = salamander.RoleUser
	suspended                       bool
}

type roomState struct {
	id string
	// no is the room's number in this site's store, where it keys the
	// room's message index instead of the id (an integer key makes each
	// message's index row less than half as large). Numbers are given out
	// in the order this site applied the rooms' creation; they mean
	// nothing outside its store.
	no      int64
	stream  string // the log stream that holds the room's records
	kind    salamander.RoomKind
	name    string
	created time.Time
	lastSeq uint64
	last    *salamander.Message // newest message; Unread not set
	members memberList
	// ids is the dedupe window: the client keys (clientKeyOf) of the
	// newest DedupeWindow messages with their seqs. Loaded from SQLite on
	// first use.
	ids       clientWindow
	idsLoaded bool
	win       windowLinks // the room's place among the windows in memory
}

// clientKeyOf is what the dedupe window knows a message by: the first 64
// bits of SHA-256 over its sender and client id. The store keeps this
// integer in each message's index row instead of both strings (they are in
// the log), and the window in memory is a quarter of the size. Two
// messages of a room are taken for one only if their keys collide within
// its window, which for ids nobody chose to collide is ~2^-64 per pair;
// choosing a colliding id for someone else's coming message means finding
// a preimage of a 64-bit SHA-256 prefix of an id not yet known. Every site
// computes the same key, so every site decides alike.
func clientKeyOf(sender, clientID string) uint64 {
	var buf [160]byte // names and client ids fit: no allocation per message
	sum := sha256.Sum256(append(append(append(buf[:0], sender...), 0), clientID...))
	return binary.BigEndian.Uint64(sum[:])
}

func newModel() *model {
	return &model{
		users:     map[string]*userState{},
		revoked:   map[string]int64{},
		friends:   map[string]map[string]time.Time{},
		followers: map[string]map[string]struct{}{},
		rooms:     map[string]*roomState{},
		userRooms: map[string][]*roomState{},
		recent:    map[string]*recentMessages{},
		keys:      map[string]*SigningKey{},
		ops:       newOpsModel(),
		held:      map[string][]heldMessage{},
	}
}

// SigningKey is a session-signing key as the log holds it.
type SigningKey struct {
	ID string
	// Sealed is the key as stored: sealed with the deployment's log key,
	// or plain when ID is "" (a key from before keys were sealed).
	Sealed []byte
	// Created is when it was proposed; Retired when the next key was (zero
	// while it is the current key), or an instant in 1970 once it is
	// revoked (see Revoked).
	// Both are the records' times (salamander.Record.At), so every site
	// dates them alike.
	Created, Retired time.Time
	// ord is the key's place in the order the keys were applied (from 1,
	// the store's signing_keys.ord): a revocation names a key and revokes
	// those before it.
	ord int
}

// keyRevokedNanos is the Retired of a revoked key (in unix nanoseconds):
// an instant before any key was made, so that any rule that reads Retired
// as a time trusts nothing the key signed, and the store keeps the mark in
// the column it has.
const keyRevokedNanos = 1

// Revoked says whether k was revoked: nothing it signed is valid any more.
func (k SigningKey) Revoked() bool {
	return !k.Retired.IsZero() && k.Retired.UnixNano() == keyRevokedNanos
}

// addKey applies a signing-key record. Its rules, which only read the log:
//   - the log's first key becomes current, sealed (with an id) or plain (no
//     id: deployments from before keys were sealed);
//   - after it, only rotations count, and only to a new sealed key: it
//     becomes current and the previous one is retired at the record's time
//     (never before that key's creation). A key without an id is never made
//     current by a rotation, so a credential that may append to the log but
//     cannot seal cannot install a key it knows;
//   - a rotation that names a sealed key and carries no key material
//     revokes every key made current before that one (admin rotate-key
//     --revoke-previous), also when another rotation landed between the
//     two: a second operator's, or one a stolen gateway credential appends
//     on seeing the first, which would otherwise leave a leaked key
//     trusted for its tokens' lifetime while the command said it was
//     revoked;
//   - a record without a time changes nothing.
//
// It returns the keys it changed (for the store), none if the record
// changes nothing.
func (m *model) addKey(id string, sealed []byte, at time.Time, rotate bool) []SigningKey {
	if !at.After(time.Unix(0, keyRevokedNanos)) {
		return nil
	}
	if k := m.keys[id]; rotate && len(sealed) == 0 && id != "" && k != nil {
		return m.revokeBefore(k)
	}
	if _, dup := m.keys[id]; dup || len(sealed) == 0 {
		return nil
	}
	if len(m.keys) > 0 && (!rotate || id == "") {
		return nil
	}
	var changed []SigningKey
	if prev := m.keys[m.current]; prev != nil {
		prev.Retired = at
		if at.Before(prev.Created) {
			prev.Retired = prev.Created
		}
		changed = append(changed, *prev)
	}
	k := &SigningKey{ID: id, Sealed: sealed, Created: at, ord: len(m.keys) + 1}
	m.keys[id] = k
	m.current = id
	return append(changed, *k)
}

// revokeBefore revokes every key made current before named (every other
// key when named is the current one) and returns those it changed.
func (m *model) revokeBefore(named *SigningKey) []SigningKey {
	var changed []SigningKey
	for _, k := range m.keys {
		if k.ord < named.ord && !k.Revoked() {
			k.Retired = time.Unix(0, keyRevokedNanos).UTC()
			changed = append(changed, *k)
		}
	}
	// In a fixed order: the store's writes are the same at every site.
	slices.SortFunc(changed, func(a, b SigningKey) int { return strings.Compare(a.ID, b.ID) })
	return changed
}

func (m *model) addFriend(user, friend string, at time.Time) bool {
	fs := m.friends[user]
	if fs == nil {
		fs = map[string]time.Time{}
		m.friends[user] = fs
	}
	if _, ok := fs[friend]; ok {
		return false
	}
	fs[friend] = at
	fl := m.followers[friend]
	if fl == nil {
		fl = map[string]struct{}{}
		m.followers[friend] = fl
	}
	fl[user] = struct{}{}
	return true
}

func (m *model) addMember(r *roomState, user string, readSeq uint64) {
	if r.members.add(user, readSeq) {
		m.userRooms[user] = append(m.userRooms[user], r)
	}
}

func (m *model) removeMember(r *roomState, user string) {
	if !r.members.remove(user) {
		return
	}
	rooms := m.userRooms[user]
	if i := slices.Index(rooms, r); i >= 0 {
		rooms[i] = rooms[len(rooms)-1]
		rooms[len(rooms)-1] = nil
		rooms = rooms[:len(rooms)-1]
	}
	if len(rooms) == 0 {
		delete(m.userRooms, user)
	} else {
		m.userRooms[user] = rooms
	}
}

// revokedQueue is a FIFO of revocations: a slice whose front moves on.
type revokedQueue struct {
	items []revocation
	head  int
}

type revocation struct {
	at  int64 // unix ns
	sid string
}

func (q *revokedQueue) push(r revocation) { q.items = append(q.items, r) }

// front is the oldest revocation left, if any.
func (q *revokedQueue) front() (revocation, bool) {
	if q.head == len(q.items) {
		return revocation{}, false
	}
	return q.items[q.head], true
}

// pop drops the front; the slice is compacted once half of it is gone.
func (q *revokedQueue) pop() {
	q.items[q.head] = revocation{}
	q.head++
	if q.head >= 1024 && q.head*2 >= len(q.items) {
		q.items = append([]revocation(nil), q.items[q.head:]...)
		q.head = 0
	}
}

func (q *revokedQueue) len() int { return len(q.items) - q.head }

// revoke records that session sid was logged out at at (unix ns).
func (m *model) revoke(sid string, at int64) bool {
	if _, ok := m.revoked[sid]; ok {
		return false
	}
	m.revoked[sid] = at
	m.revokedOrder.push(revocation{at: at, sid: sid})
	return true
}

// pruneRevoked forgets, oldest first and at most max of them, the
// revocations made before cutoff (unix ns); it returns how many. Their
// tokens have expired: the revocation no longer decides anything. The
// order is the log's, and the records' clocks may disagree by a little:
// one later than its successors only holds them back until it goes too.
func (m *model) pruneRevoked(cutoff int64, max int) int {
	n := 0
	for n < max {
		r, ok := m.revokedOrder.front()
		if !ok || r.at >= cutoff {
			break
		}
		if at, ok := m.revoked[r.sid]; ok && at == r.at {
			delete(m.revoked, r.sid)
		}
		m.revokedOrder.pop()
		n++
	}
	return n
}

// remember records a client id in the room's dedupe window.
func (r *roomState) remember(k, seq uint64) { r.ids.add(k, seq) }

// recentMessages are one stream's newest recentPerStream messages by
// position: a map keyed by the position's number (not by the whole
// Position, whose stream name every lookup would hash) and a ring of the
// positions in the order they came, the oldest next to go.
type recentMessages struct {
	byPos map[uint64]*salamander.Message
	ring  []uint64
	next  int // where the next position goes, over the oldest once full
}

// addRecent keeps msg findable by its log position for a while.
func (m *model) addRecent(pos salamander.Position, msg *salamander.Message) {
	r := m.recent[pos.Stream]
	if r == nil {
		r = &recentMessages{byPos: map[uint64]*salamander.Message{}}
		m.recent[pos.Stream] = r
	}
	if len(r.ring) < recentPerStream {
		r.ring = append(r.ring, pos.Seq)
	} else {
		delete(r.byPos, r.ring[r.next])
		r.ring[r.next] = pos.Seq
		r.next = (r.next + 1) % recentPerStream
	}
	r.byPos[pos.Seq] = msg
}

// recentAt is the recent message at pos (nil: none, or no longer recent).
func (m *model) recentAt(pos salamander.Position) *salamander.Message {
	if r := m.recent[pos.Stream]; r != nil {
		return r.byPos[pos.Seq]
	}
	return nil
}

// head is the room as viewer sees it without its members, their read
// markers and its newest message (View.RoomHead; roomView adds them).
func (r *roomState) head(viewer string) salamander.Room {
	room := salamander.Room{ID: r.id, Kind: r.kind, Name: r.name, LastSeq: r.lastSeq, CreatedAt: r.created}
	if viewer != "" {
		room.ReadSeq, _ = r.members.read(viewer)
		room.Unread = room.LastSeq - min(room.ReadSeq, room.LastSeq)
	}
	return room
}

// roomView is a room as viewer sees it ("" for no particular viewer).
func (r *roomState) roomView(viewer string) salamander.Room {
	room := r.head(viewer)
	room.Members, room.ReadMarkers = slices.Clone(r.members.names), make(map[string]uint64, r.members.len())
	for i, u := range r.members.names {
		room.ReadMarkers[u] = r.members.reads[i]
	}
	if r.last != nil {
		msg := *r.last
		msg.Unread = r.unread(msg.Seq)
		room.LastMessage = &msg
	}
	return room
}

// unread is how many members have not read the message at seq.
func (r *roomState) unread(seq uint64) int {
	n := 0
	for _, read := range r.members.reads {
		if read < seq {
			n++
		}
	}
	return n
}

// activity orders a member's room list: the newest message's time, or the
// room's creation.
func (r *roomState) activity() time.Time {
	if r.last != nil {
		return r.last.SentAt
	}
	return r.created
}

// placed says whether a held message's client id is already among its
// room's messages: its first copy landed in the partition after all.
func (m *model) placed(r salamander.Record) bool {
	rs := m.rooms[r.Room]
	if rs == nil {
		return false
	}
	_, ok := rs.ids.seqOf(clientKeyOf(r.User, r.ClientID))
	return ok
}

// addUser puts u into the model, counting its hash's cost.
// admins counts the accounts that are admins and not suspended, up to
// max (all when max is 0). It walks the accounts: it is asked on requests
// and records that change roles and suspensions, which are rare.
func (m *model) admins(max int) int {
	n := 0
	for _, u := range m.users {
		if u.role == salamander.RoleAdmin && !u.suspended {
			if n++; n == max {
				break
			}
		}
	}
	return n
}

func (m *model) addUser(u *userState) {
	m.users[u.name] = u
	m.countHash(u.hash, 1)
}

// setHash gives u a new password hash, moving its count to the new
// hash's cost (HashCost).
func (m *model) setHash(u *userState, hash string) {
	m.countHash(u.hash, -1)
	u.hash = hash
	m.countHash(hash, 1)
}

// countHash adds n to the count of hash's cost (nothing for a hash whose
// cost cannot be read).
func (m *model) countHash(hash string, n int) {
	if c, err := bcrypt.Cost([]byte(hash)); err == nil && c >= 0 && c < len(m.hashCosts) {
		m.hashCosts[c] += n
	}
}
