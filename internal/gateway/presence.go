package gateway

// Presence across gateway processes.
//
// Every gateway process is an instance with a random id. An instance
// publishes each change of its own online set at once, as a delta numbered
// by a version that grows by one per change, and every beat a digest: that
// version, the set's size and an order-independent hash of it — about
// 150 bytes however many users are online. Every instance (itself
// included) mirrors every instance's set. A delta whose version follows
// the mirror's is applied in O(1). A gap in the versions, or a digest that
// disagrees with the mirror, marks the instance for a resync: the receiver
// asks the instance (request subject subjPresenceSync+id) for the hashes of
// its 1,024 buckets (users are bucketed by name hash), then for the users
// of the buckets that differ, in replies of at most syncReplyBudget bytes.
// Deltas that arrive meanwhile are held and applied on top by version, so
// the mirror converges while changes keep flowing.
//
// An instance silent for its TTL (announced in its digest) is dropped with
// all its users: a process that dies takes exactly its own users offline
// everywhere, and two processes of one site never erase each other's
// users. A user is online while any instance lists them.
//
// Departures are held back for a grace (Config.PresenceGrace, 5 s by
// default), so that a reconnect is not seen as offline then online. An
// instance keeps listing a user whose last device left it for the grace,
// and only then announces the departure (with when it happened, which
// becomes the user's last_seen): a device back at this instance meanwhile
// changes nothing, and one that connects to another instance, of this
// site or another, lists the user there before they leave here. Every
// mirror, and so GET /v1/presence, says online during the grace, as the
// events do. A process that stops says goodbye with its grace (at most its
// TTL): every instance keeps its users that long, while their devices
// reconnect elsewhere, and then drops them. A process that dies is
// dropped after its TTL, as before: its users' devices reconnect
// elsewhere well within it. At most
// maxRemoteInstances other instances are mirrored, and peers' instance ids
// and names, site names and user names are checked.
//
// Changes are pushed to the followers connected here, found in memory:
// when a user's first device connects here their friend list is read once
// and kept until their last device leaves (new friendships arrive through
// the view's apply hook). A resync that changes 100,000 users issues no
// query at all.
//
// Each process speaks on its own site's subject (subjPresenceAt + site),
// the only presence subject its NATS user may publish on, and answers
// resyncs on its site's (subjPresenceSync + site + "." + id); its id
// names its site (instanceID): a stolen gateway credential of one site
// can neither erase another site's users (a goodbye or delta in another
// site's instance's name), nor hide them from a process that starts later
// (speaking first in their instance's name), nor answer another site's
// resyncs.
//
// Rolling upgrades: messages of the earlier format (presenceMsg on
// subjPresence, a site's full list as its heartbeat) are honoured, each
// site's as one more instance with this process's TTL. With
// Config.PresenceV1 set, a process also speaks that format to older
// processes — its changes, and its list as a refresh that never erases
// other processes' users — while the list fits in one message (which
// needs a NATS permission that gateways of this version lack). Processes
// of versions before 2026-12-02 speak the current format on
// subjPresenceV2, which is honoured too; they do not hear this version's
// processes, whose users look offline to the followers connected to them
// until they are upgraded.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

const (
	// subjPresence carries the earlier (v1) format, presenceMsg.
	subjPresence = "sal.eph.presence"
	// subjPresenceAt + site carries the deltas, digests, hellos and
	// goodbyes of the site's processes; a process may publish on its own
	// site's only (jsstore.GatewayPermissions), and a message naming
	// another site than its subject's is ignored.
	subjPresenceAt = jsstore.SubjPresenceAt
	// subjPresenceSync + site + "." + instance id answers syncRequests.
	subjPresenceSync = jsstore.SubjPresenceSync
	// subjPresenceV2 carried the same messages for versions before
	// 2026-12-02, for every site: a rolling upgrade still hears them there
	// (instances of those versions), and asks them for resyncs on
	// subjPresenceSyncV2 + instance id. No gateway of this version may
	// publish on subjPresenceV2, and what comes there never changes an
	// instance heard on its site's subject.
	subjPresenceV2     = "sal.eph.presence.v2"
	subjPresenceSyncV2 = subjPresenceV2 + ".sync."
	// subjPresenceRoll is the roll call a starting process sends once,
	// before it listens there itself: every other process answers who it
	// is and which processes it mirrors (rollAnswer, see
	// ephemeral.settled).
	subjPresenceRoll = jsstore.SubjPresenceRoll
	// maxResyncUsers bounds what one instance's resync may collect (ten
	// times the 100,000 online users a process is built for).
	maxResyncUsers = 1_000_000

	kindDelta = "delta" // Ver, On, Off
	kindBeat  = "beat"  // Ver, Count, Hash, TTLms
	kindHello = "hello" // a new instance: every instance sends its digest now
	kindBye   = "bye"   // the instance stops: drop its users

	opDigest = "digest" // reply: Ver, Count, Hash, Sums
	opList   = "list"   // reply: Ver, Parts, Done, After

	presenceBucketBits = 10
	presenceBuckets    = 1 << presenceBucketBits
	// syncReplyBudget bounds the user names in one list reply, leaving
	// room for its other fields under 32 KiB.
	syncReplyBudget = 32<<10 - 256
	syncTimeout     = 2 * time.Second
	// syncPending bounds the requests waiting at an instance; more are
	// dropped and their senders retry on a later digest.
	syncPendingMsgs  = 256
	syncPendingBytes = 4 << 20
	// maxHeldDeltas bounds the deltas held for one instance during its
	// resync; past it the instance is resynced once more.
	maxHeldDeltas  = 1 << 16
	minPresenceTTL = 100 * time.Millisecond
	maxPresenceTTL = 10 * time.Minute
	// v1Overhead is room for a v1 message's fields besides its names.
	v1Overhead = 256
	// maxRemoteInstances bounds the other instances mirrored here (each
	// ~16 KB however few users it lists, kept up to maxPresenceTTL after
	// its last word); a deployment runs a few dozen. While the table is
	// full, messages of new instances are refused — their users are not
	// online here until some instance leaves or goes silent — and counted
	// (ephemeral.refusedInstances, salamander_presence_instances_refused_total),
	// logged at most once a minute. This
	// process's own mirror is never refused.
	maxRemoteInstances = 1024
	// maxInstanceName bounds a peer's instance name: a host's name (253
	// bytes at most) and a port.
	maxInstanceName = 253 + len(":65535")
)

// presenceMsg is the v1 presence message, spoken by earlier versions.
type presenceMsg struct {
	Site  string   `json:"site"`
	Users []string `json:"users,omitempty"`
	// Offline lists users whose last device here disconnected.
	Offline []string `json:"offline,omitempty"`
	// Full is true on v1 heartbeats: Users is every user online at Site.
	Full bool `json:"full,omitempty"`
	// Inst is set when a v2 instance speaks v1 for older processes (which
	// ignore the field); v2 receivers skip such messages and hear the
	// instance on subjPresenceV2.
	Inst string `json:"inst,omitempty"`
}

// presenceMsgV2 is one message on subjPresenceV2. Receivers ignore kinds
// and fields they do not know.
type presenceMsgV2 struct {
	Kind string `json:"kind"`
	Inst string `json:"inst"`
	// Name is the process's instance name (Config.Instance), on beats:
	// how a site's gateways list one another.
	Name string `json:"name,omitempty"`
	Site string `json:"site,omitempty"`
	// Ver is the instance's version after a delta, or at a digest.
	Ver uint64   `json:"ver,omitempty"`
	On  []string `json:"on,omitempty"`
	Off []string `json:"off,omitempty"`
	// Count and Hash describe the instance's online set at Ver (digest).
	Count int    `json:"count,omitempty"`
	Hash  uint64 `json:"hash,omitempty"`
	// TTLms is how long to keep the instance's users after its last word.
	TTLms int64 `json:"ttl_ms,omitempty"`
	// LeftMS is when the users of Off left the instance (Unix
	// milliseconds, its clock): their last_seen. A delta announces a
	// departure a grace after it.
	LeftMS int64 `json:"left_ms,omitempty"`
	// GraceMS, on a goodbye, is how long to keep the instance's users
	// (at most its TTL) while they reconnect elsewhere; none drops them at
	// once, as earlier versions ask.
	GraceMS int64 `json:"grace_ms,omitempty"`
}

// syncRequest asks an instance for its bucket hashes (opDigest) or for the
// users of Buckets (opList), the first of them from after the name After.
type syncRequest struct {
	Op      string `json:"op"`
	Buckets []int  `json:"buckets,omitempty"`
	After   string `json:"after,omitempty"`
}

// syncReply answers a syncRequest with the instance's state at Ver. A list
// reply covers Buckets[:Done] (the first from the request's After on), and
// when After is set, Buckets[Done] up to and including After.
type syncReply struct {
	Ver   uint64     `json:"ver"`
	Count int        `json:"count,omitempty"`
	Hash  uint64     `json:"hash,omitempty"`
	Sums  []uint64   `json:"sums,omitempty"`
	Parts []syncPart `json:"parts,omitempty"`
	Done  int        `json:"done,omitempty"`
	After string     `json:"after,omitempty"`
}

type syncPart struct {
	Bucket int      `json:"b"`
	Users  []string `json:"users"`
}

// remote is this process's mirror of one instance's online set.
type remote struct {
	site  string
	sited bool   // heard on its site's subject, not subjPresenceV2
	name  string // its instance name, from its beats
	v1    bool   // a site speaking v1: no versions, no resync
	ttl   time.Duration
	heard time.Time
	ver   uint64
	set   *userSet
	// stopping is set when the instance said goodbye: it is kept until
	// heard+ttl (ttl then its grace), as its users reconnect elsewhere,
	// and then dropped; they were last seen at stoppedAt.
	stopping  bool
	stoppedAt time.Time

	syncing  bool
	held     []presenceMsgV2 // deltas that arrived during the resync
	overflow bool
	// beaten is set once a digest (beat) of the instance was heard: what
	// it holds is then mirrored or being resynced (see settled).
	beaten bool
}

// rollAnswer is a roll call (Inst: the caller) and its answers: the
// answering instance, and the instances it mirrors that speak v2 and have
// not said goodbye.
type rollAnswer struct {
	Inst  string      `json:"inst"`
	Known []rollEntry `json:"known,omitempty"`
}

// rollEntry is an instance a roll call's answer names, with its site and
// instance name as its beats gave them.
type rollEntry struct {
	Inst string `json:"inst"`
	Site string `json:"site,omitempty"`
	Name string `json:"name,omitempty"`
}

// onRollCall answers another process's roll call (subjPresenceRoll).
func (e *ephemeral) onRollCall(msg *nats.Msg) {
	var c rollAnswer
	if msg.Reply == "" || len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &c) != nil || c.Inst == e.id {
		return
	}
	a := rollAnswer{Inst: e.id}
	e.mu.Lock()
	for id, r := range e.remotes {
		if id != e.id && !r.v1 && !r.stopping {
			a.Known = append(a.Known, rollEntry{Inst: id, Site: r.site, Name: r.name})
		}
	}
	e.mu.Unlock()
	b, _ := json.Marshal(a)
	_ = msg.Respond(b)
}

// onRollAnswer notes an answer to this process's roll call: the instances
// it names are expected (see settled); "no responders" says no other
// process listens. An instance of this site under this process's own
// instance name is not: it is this process before a restart (two
// processes do not share a name), which died without a goodbye and is
// mirrored until its TTL runs out, but will never be heard again (see
// waitingFor for one restarted under another name).
func (e *ephemeral) onRollAnswer(msg *nats.Msg) {
	if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
		e.mu.Lock()
		e.rollEmpty = true
		e.mu.Unlock()
		return
	}
	var a rollAnswer
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &a) != nil || !validInstance(a.Inst) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.rollHeard = true
	for _, k := range append(a.Known, rollEntry{Inst: a.Inst}) {
		earlierSelf := k.Site == e.site && k.Name != "" && k.Name == e.name
		if k.Inst != e.id && !earlierSelf && validInstance(k.Inst) && len(e.expected) < maxRemoteInstances {
			e.expected[k.Inst] = k
		}
	}
}

// presencePush is one presence change for the followers connected here.
type presencePush struct {
	to []string
	ev salamander.Event
}

// setOnline is called when a user's first device connects here or the last
// leaves. It asks the hub whether the user is connected: calls racing for
// one user's connect and disconnect leave the set as the hub ends up. A
// user whose last device left stays in the set for the grace (see
// departures); a device back meanwhile changes nothing.
func (e *ephemeral) setOnline(user string) {
	e.localMu.Lock()
	var changed bool
	if e.hub.connected(user) {
		delete(e.leaving, user)
		changed = e.changeLocal(user, true, time.Time{})
	} else if _, ok := e.leaving[user]; !ok && e.local.has(user) {
		at := e.now()
		e.leaving[user] = at
		e.leaveQ = append(e.leaveQ, seenAt{user, at})
	}
	e.localMu.Unlock()
	if changed {
		e.watch(user)
	}
}

// departures takes out of this instance's set, and announces, the users
// whose last device left at least the grace before now and who have none
// here now.
func (e *ephemeral) departures(now time.Time) {
	var gone []string
	e.localMu.Lock()
	for len(e.leaveQ) > 0 && !now.Before(e.leaveQ[0].at.Add(e.grace)) {
		q := e.leaveQ[0]
		e.leaveQ[0] = seenAt{}
		e.leaveQ = e.leaveQ[1:]
		if at, ok := e.leaving[q.user]; !ok || !at.Equal(q.at) {
			continue // back meanwhile (and maybe gone again since)
		}
		delete(e.leaving, q.user)
		// A device registered whose setOnline has not come yet: it finds
		// the user online, as they stayed.
		if !e.hub.connected(q.user) && e.changeLocal(q.user, false, q.at) {
			gone = append(gone, q.user)
		}
	}
	if len(e.leaveQ) == 0 {
		e.leaveQ = nil // let a burst's array go
	}
	e.localMu.Unlock()
	for _, u := range gone {
		e.unwatch(u)
	}
}

// changeLocal sets user's state in this instance's set and announces a
// change; a user taken offline left at left. localMu is held.
func (e *ephemeral) changeLocal(user string, on bool, left time.Time) bool {
	var changed bool
	if on {
		changed = e.local.add(user)
	} else {
		changed = e.local.remove(user)
	}
	if !changed || e.closed {
		return changed
	}
	e.ver++
	m := presenceMsgV2{Kind: kindDelta, Inst: e.id, Site: e.site, Ver: e.ver}
	old := presenceMsg{Site: e.site, Inst: e.id}
	if on {
		m.On, old.Users = []string{user}, []string{user}
	} else {
		m.Off, old.Offline, m.LeftMS = []string{user}, []string{user}, left.UnixMilli()
	}
	e.publishV2(m)
	if e.v1 && e.v1Fits() {
		e.publishV1(old)
	}
	return true
}

// publishBeat sends this instance's digest (and, speaking v1, its list if
// that fits one message).
func (e *ephemeral) publishBeat() {
	e.localMu.Lock()
	defer e.localMu.Unlock()
	if e.closed {
		return
	}
	e.publishV2(presenceMsgV2{Kind: kindBeat, Inst: e.id, Name: e.name, Site: e.site, Ver: e.ver, Count: e.local.n,
		Hash: e.local.sum, TTLms: e.ttl.Milliseconds()})
	if e.v1 && e.v1Fits() && e.local.n > 0 {
		e.publishV1(presenceMsg{Site: e.site, Users: e.local.all(), Inst: e.id})
	}
}

// goodbye tells every instance that this one stops, asking them to keep
// its users for the grace while their devices reconnect elsewhere, and
// publishes nothing after it. (Processes of earlier versions drop them at
// once, and so do those that hear the v1 message below.)
func (e *ephemeral) goodbye() {
	e.localMu.Lock()
	if !e.closed {
		e.publishV2(presenceMsgV2{Kind: kindBye, Inst: e.id, Site: e.site, GraceMS: e.grace.Milliseconds()})
		if e.v1 && e.v1Fits() && e.local.n > 0 {
			e.publishV1(presenceMsg{Site: e.site, Offline: e.local.all(), Inst: e.id})
		}
		e.closed = true
	}
	e.localMu.Unlock()
	_ = e.nc.FlushTimeout(time.Second)
}

// v1Fits reports whether this instance's whole list fits one v1 message.
// Older processes drop larger messages, so past that they are told nothing.
func (e *ephemeral) v1Fits() bool {
	return e.local.bytes+3*e.local.n+v1Overhead <= maxEphemeralMsg
}

func (e *ephemeral) publishV2(m presenceMsgV2) {
	b, _ := json.Marshal(m)
	_ = e.nc.Publish(subjPresenceAt+e.site, b)
}

func (e *ephemeral) publishV1(m presenceMsg) {
	b, _ := json.Marshal(m)
	_ = e.nc.Publish(subjPresence, b)
}

// onSyncRequest answers another instance's resync request from this
// instance's set.
func (e *ephemeral) onSyncRequest(msg *nats.Msg) {
	var req syncRequest
	if msg.Reply == "" || len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &req) != nil ||
		len(req.Buckets) > presenceBuckets {
		return
	}
	for _, b := range req.Buckets {
		if b < 0 || b >= presenceBuckets {
			return
		}
	}
	var rep syncReply
	e.localMu.Lock()
	rep.Ver = e.ver
	switch req.Op {
	case opDigest:
		rep.Count, rep.Hash, rep.Sums = e.local.n, e.local.sum, append([]uint64(nil), e.local.sums[:]...)
	case opList:
		rep.Parts, rep.Done, rep.After = e.local.list(req.Buckets, req.After, syncReplyBudget)
	default:
		e.localMu.Unlock()
		return
	}
	e.localMu.Unlock()
	b, _ := json.Marshal(rep)
	_ = msg.Respond(b)
}

// onPresence applies a v2 message to the mirror of its instance. A delta
// or beat must name the instance's site (every version sends it), as a
// site's name.
//
// One heard on a site's subject must name that site, and an instance of
// it (instanceOfSite); an instance heard there is changed from there only
// (see remote.mayChange).
func (e *ephemeral) onPresence(msg *nats.Msg) {
	var m presenceMsgV2
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &m) != nil || !validInstance(m.Inst) {
		return
	}
	site, sited := strings.CutPrefix(msg.Subject, subjPresenceAt)
	if sited && (m.Site != site || !instanceOfSite(m.Inst, site)) {
		return
	}
	if (m.Kind == kindDelta || m.Kind == kindBeat) && !salamander.ValidSiteName(m.Site) {
		return
	}
	if m.Kind == kindHello {
		select {
		case e.beatNow <- struct{}{}:
		default:
		}
		return
	}
	now := e.now()
	var out []presencePush
	e.mu.Lock()
	if r := e.remotes[m.Inst]; r != nil && !r.mayChange(site, sited) {
		e.mu.Unlock()
		return
	}
	switch m.Kind {
	case kindBye:
		r := e.remotes[m.Inst]
		switch {
		case r == nil || r.stopping:
		case m.GraceMS > 0:
			// Kept until heard+ttl, as one that went silent: never longer
			// than if it had died.
			r.stopping, r.stoppedAt, r.heard = true, now, now
			r.ttl = min(max(time.Duration(m.GraceMS)*time.Millisecond, minPresenceTTL), r.ttl)
		default:
			e.dropRemote(m.Inst, r, now, &out)
		}
	case kindDelta:
		if r := e.remoteFor(m.Inst, m.Site, sited, now); r != nil {
			e.applyDelta(m.Inst, r, m, now, &out)
		}
	case kindBeat:
		r := e.remoteFor(m.Inst, m.Site, sited, now)
		if r == nil {
			break
		}
		r.beaten = true
		r.ttl = clampTTL(m.TTLms, e.ttl)
		// The name is shown in GET /v1/ops/site: one no gateway
		// makes is not shown, though the beat counts.
		r.name = ""
		if validInstanceName(m.Name) {
			r.name = m.Name
		}
		if !r.syncing && (r.ver != m.Ver || r.set.n != m.Count || r.set.sum != m.Hash) {
			e.markDirty(m.Inst)
		}
	}
	e.mu.Unlock()
	e.push(out)
}

// onPresenceV1 honours a message from a process of an earlier version: its
// site counts as one instance whose heartbeat replaces its list. Its site
// and user names are checked as v2 messages' are.
func (e *ephemeral) onPresenceV1(msg *nats.Msg) {
	var p presenceMsg
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &p) != nil || !salamander.ValidSiteName(p.Site) ||
		p.Inst != "" {
		return
	}
	p.Users = slices.DeleteFunc(p.Users, invalidUserName)
	p.Offline = slices.DeleteFunc(p.Offline, invalidUserName)
	now := e.now()
	var out []presencePush
	e.mu.Lock()
	r := e.remoteFor("v1."+p.Site, p.Site, false, now)
	if r == nil {
		e.mu.Unlock()
		return
	}
	r.v1 = true
	if p.Full {
		e.replaceRemote(r, r.set.buckets[:], p.Users, now, &out)
	} else {
		for _, u := range p.Users {
			e.setRemote(r, u, true, now, &out)
		}
	}
	for _, u := range p.Offline {
		e.setRemote(r, u, false, now, &out)
	}
	e.mu.Unlock()
	e.push(out)
}

// mayChange reports whether a message heard on site's subject (sited), or
// on subjPresenceV2, may change r: an instance is changed only from where
// it was first heard, and one heard on its site's subject from there
// only. (subjPresenceV2 is open to any gateway of an earlier version's
// server, and another site's subject to that site's gateways.)
func (r *remote) mayChange(site string, sited bool) bool {
	return r.sited == sited && (!sited || r.site == site)
}

// remoteFor returns the mirror of instance id, created empty if new, and
// notes that it was heard from; nil for a new instance while
// maxRemoteInstances others are mirrored, and for one that said goodbye
// (it says nothing after it). mu is held.
func (e *ephemeral) remoteFor(id, site string, sited bool, now time.Time) *remote {
	r := e.remotes[id]
	if r != nil && r.stopping {
		return nil
	}
	if r == nil {
		if id != e.id && e.others() >= maxRemoteInstances {
			e.refusedInstances++
			if e.refusedMetric != nil {
				e.refusedMetric.Inc()
			}
			if now.Sub(e.refusedLogged) >= time.Minute {
				e.refusedLogged = now
				e.log.Warn("presence: too many gateway instances; refusing new ones until some leave or go silent",
					"max", maxRemoteInstances, "refused", e.refusedInstances, "from", id, "site", site)
			}
			return nil
		}
		r = &remote{site: site, sited: sited, ttl: e.ttl, set: newUserSet()}
		e.remotes[id] = r
	}
	r.heard = now
	return r
}

// applyDelta applies a delta in version order; a gap is applied too and
// corrected by a resync. mu is held.
func (e *ephemeral) applyDelta(id string, r *remote, m presenceMsgV2, now time.Time, out *[]presencePush) {
	if r.syncing {
		if len(r.held) < maxHeldDeltas {
			r.held = append(r.held, m)
		} else {
			r.overflow = true
		}
		return
	}
	if m.Ver <= r.ver {
		return // repeated or older than what a resync fetched
	}
	if m.Ver != r.ver+1 {
		e.markDirty(id)
	}
	r.ver = m.Ver
	for _, u := range m.On {
		if salamander.ValidateUserName(u) == nil { // as a resync's names are
			e.setRemote(r, u, true, now, out)
		}
	}
	left := leftAt(m.LeftMS, now)
	for _, u := range m.Off {
		if salamander.ValidateUserName(u) == nil {
			e.setRemote(r, u, false, left, out)
		}
	}
}

// leftAt is when users a delta takes offline left (their last_seen): the
// time it says, unless it is in the future or more than maxPresenceTTL ago
// (clocks apart, or a lie), and then now.
func leftAt(ms int64, now time.Time) time.Time {
	at := time.UnixMilli(ms)
	if ms <= 0 || at.After(now) || now.Sub(at) > maxPresenceTTL {
		return now
	}
	return at
}

// setRemote sets user's state in r and, when that changes whether the user
// is online anywhere, queues a push to their followers here, dated now.
// mu is held.
func (e *ephemeral) setRemote(r *remote, user string, on bool, now time.Time, out *[]presencePush) {
	if on && r.set.add(user) || !on && r.set.remove(user) {
		e.counted(user, on, now, out)
	}
}

// replaceRemote makes users exactly the members of r that are in buckets
// (some or all of r.set.buckets): it takes the others offline, then puts
// users online. mu is held.
func (e *ephemeral) replaceRemote(r *remote, buckets []map[string]struct{}, users []string, now time.Time, out *[]presencePush) {
	keep := make(map[string]struct{}, len(users))
	for _, u := range users {
		keep[u] = struct{}{}
	}
	var gone []string
	for _, bucket := range buckets {
		for u := range bucket {
			if _, ok := keep[u]; !ok {
				gone = append(gone, u)
			}
		}
	}
	for _, u := range gone {
		e.setRemote(r, u, false, now, out)
	}
	for _, u := range users {
		e.setRemote(r, u, true, now, out)
	}
}

// counted notes that one more (on) or one fewer instance lists user, and
// queues a push when that changes whether the user is online anywhere.
// mu is held.
func (e *ephemeral) counted(user string, on bool, now time.Time, out *[]presencePush) {
	if on {
		e.count[user]++
		if e.count[user] > 1 {
			return
		}
	} else {
		if e.count[user]--; e.count[user] > 0 {
			return
		}
		delete(e.count, user)
		e.lastSeen.set(user, now)
	}
	ws := e.watchers[user]
	if len(ws) == 0 {
		return
	}
	to := make([]string, 0, len(ws))
	for f := range ws {
		to = append(to, f)
	}
	*out = append(*out, presencePush{to: to,
		ev: salamander.Event{Type: salamander.EventPresence, User: user, Online: on, At: now.UTC()}})
}

// dropRemote forgets an instance and takes its users offline: last seen
// now, or when it said goodbye. mu is held.
func (e *ephemeral) dropRemote(id string, r *remote, now time.Time, out *[]presencePush) {
	if r.stopping {
		now = r.stoppedAt
	}
	for _, bucket := range r.set.buckets {
		for u := range bucket {
			e.counted(u, false, now, out)
		}
	}
	delete(e.remotes, id)
	delete(e.dirty, id)
}

// markDirty schedules a resync of instance id. mu is held.
func (e *ephemeral) markDirty(id string) {
	e.dirty[id] = true
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// sweep drops the instances silent for longer than their TTL.
func (e *ephemeral) sweep(now time.Time) {
	var out []presencePush
	e.mu.Lock()
	for id, r := range e.remotes {
		if now.Sub(r.heard) > r.ttl {
			e.dropRemote(id, r, now, &out)
		}
	}
	e.mu.Unlock()
	e.push(out)
}

func (e *ephemeral) push(out []presencePush) {
	for _, p := range out {
		e.hub.sendTo(p.to, p.ev)
	}
}

// resyncLoop fetches the sets of the instances marked dirty, one at a time,
// until ctx ends. A failed resync is retried when the instance's next
// digest or delta disagrees again.
func (e *ephemeral) resyncLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		}
		for ctx.Err() == nil {
			id, r, sums, ok := e.nextResync()
			if !ok {
				break
			}
			start := time.Now()
			requests, users, err := e.resync(ctx, id, r, sums)
			if err != nil {
				e.abortResync(id, r)
				if ctx.Err() == nil {
					e.log.Warn("presence resync failed", "from", id, "err", err)
				}
				continue
			}
			e.log.Debug("presence resynced", "from", id, "requests", requests, "users", users, "took", time.Since(start))
		}
	}
}

// nextResync picks a dirty instance, starts holding its deltas and returns
// a copy of its bucket hashes as mirrored here.
func (e *ephemeral) nextResync() (string, *remote, [presenceBuckets]uint64, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id := range e.dirty {
		delete(e.dirty, id)
		r := e.remotes[id]
		if r == nil || r.v1 || r.syncing || r.stopping {
			continue
		}
		r.syncing, r.held, r.overflow = true, nil, false
		return id, r, r.set.sums, true
	}
	return "", nil, [presenceBuckets]uint64{}, false
}

func (e *ephemeral) abortResync(id string, r *remote) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.remotes[id] == r {
		r.syncing, r.held, r.overflow = false, nil, false
	}
}

// segment says that the users of a bucket after lo (exclusive, "" = from
// the start) up to hi (inclusive, "" = to the end) were read at ver.
type segment struct {
	lo, hi string
	ver    uint64
}

// resync brings the mirror r of instance id up to date: it fetches the
// instance's bucket hashes, then the users of every bucket whose hash
// differs from ours, then applies them and the deltas held meanwhile.
func (e *ephemeral) resync(ctx context.Context, id string, r *remote, ours [presenceBuckets]uint64) (requests, users int, err error) {
	subj := subjPresenceSyncV2 + id
	if r.sited {
		subj = subjPresenceSync + r.site + "." + id
	}
	var d syncReply
	if err := e.request(ctx, subj, syncRequest{Op: opDigest}, &d); err != nil {
		return 1, 0, err
	}
	requests++
	if len(d.Sums) != presenceBuckets {
		return requests, 0, fmt.Errorf("presence digest of %s has %d buckets", id, len(d.Sums))
	}
	var want []int
	for b, s := range d.Sums {
		if s != ours[b] {
			want = append(want, b)
		}
	}
	got := make(map[int][]string, len(want))
	cover := make(map[int][]segment, len(want))
	lo, hi := d.Ver, d.Ver
	rest, after := want, ""
	for len(rest) > 0 {
		var rep syncReply
		err := e.request(ctx, subj, syncRequest{Op: opList, Buckets: rest, After: after}, &rep)
		requests++
		if err != nil {
			return requests, users, err
		}
		// Every page must move on: finish buckets, or move the cursor of
		// the bucket in hand forward (users are listed in order). An
		// instance that does not is refused, not followed forever.
		if rep.Done < 0 || rep.Done > len(rest) || rep.Done == len(rest) && rep.After != "" ||
			rep.Done == 0 && rep.After <= after {
			return requests, users, errors.New("presence list reply makes no progress")
		}
		for _, p := range rep.Parts {
			if !slices.Contains(rest, p.Bucket) {
				continue // not asked for
			}
			for _, u := range p.Users {
				if bucketOf(userHash(u)) == p.Bucket && salamander.ValidateUserName(u) == nil {
					got[p.Bucket] = append(got[p.Bucket], u)
					users++
				}
			}
		}
		if users > maxResyncUsers {
			return requests, users, fmt.Errorf("presence of %s lists over %d users", id, maxResyncUsers)
		}
		for i := 0; i < rep.Done; i++ {
			from := ""
			if i == 0 {
				from = after
			}
			cover[rest[i]] = append(cover[rest[i]], segment{lo: from, ver: rep.Ver})
		}
		if rep.After != "" {
			from := ""
			if rep.Done == 0 {
				from = after
			}
			cover[rest[rep.Done]] = append(cover[rest[rep.Done]], segment{lo: from, hi: rep.After, ver: rep.Ver})
		}
		lo, hi = min(lo, rep.Ver), max(hi, rep.Ver)
		rest, after = rest[rep.Done:], rep.After
	}
	e.finishResync(id, r, d.Ver, want, got, cover, lo, hi)
	return requests, users, nil
}

// finishResync replaces the fetched buckets of r and applies the deltas
// held meanwhile that are newer than what was fetched for their user. If
// a delta is missing among them (lost, or past maxHeldDeltas), the
// instance is resynced again.
func (e *ephemeral) finishResync(id string, r *remote, digestVer uint64, want []int, got map[int][]string,
	cover map[int][]segment, lo, hi uint64) {
	now := e.now()
	var out []presencePush
	e.mu.Lock()
	defer func() {
		e.mu.Unlock()
		e.push(out)
	}()
	if e.remotes[id] != r {
		return // dropped meanwhile
	}
	held, overflow := r.held, r.overflow
	r.syncing, r.held, r.overflow = false, nil, false
	for _, b := range want {
		e.replaceRemote(r, r.set.buckets[b:b+1], got[b], now, &out)
	}
	readAt := func(u string) uint64 {
		segs, ok := cover[bucketOf(userHash(u))]
		if !ok {
			return digestVer // a bucket that matched the digest
		}
		for _, s := range segs {
			if (s.lo == "" || u > s.lo) && (s.hi == "" || u <= s.hi) {
				return s.ver
			}
		}
		return 0
	}
	r.ver = hi
	next := lo + 1 // every version after lo must be among the held deltas
	gap := false
	for _, m := range held {
		for _, u := range m.On {
			if m.Ver > readAt(u) {
				e.setRemote(r, u, true, now, &out)
			}
		}
		for _, u := range m.Off {
			if m.Ver > readAt(u) {
				e.setRemote(r, u, false, leftAt(m.LeftMS, now), &out)
			}
		}
		r.ver = max(r.ver, m.Ver)
		if m.Ver < next {
			continue
		}
		if m.Ver != next {
			gap = true
		}
		next = m.Ver + 1
	}
	if gap || overflow || next <= r.ver {
		// Some change is missing: what was fetched still stands, and the
		// next resync fetches only the buckets that differ.
		e.markDirty(id)
	}
}

func (e *ephemeral) request(ctx context.Context, subj string, req syncRequest, rep *syncReply) error {
	b, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	msg, err := e.nc.RequestWithContext(ctx, subj, b)
	if err != nil {
		return fmt.Errorf("presence %s request to %s: %w", req.Op, subj, err)
	}
	if len(msg.Data) > maxEphemeralMsg {
		return fmt.Errorf("presence %s reply from %s too large: %d bytes", req.Op, subj, len(msg.Data))
	}
	if err := json.Unmarshal(msg.Data, rep); err != nil {
		return fmt.Errorf("presence %s reply from %s: %w", req.Op, subj, err)
	}
	return nil
}

// watch loads the friends of a user whose first device connected here, so
// that their presence changes are pushed to the user.
func (e *ephemeral) watch(user string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	friends, err := e.view.Friends(ctx, user)
	cancel()
	if err != nil {
		e.log.Warn("cannot load friends: their presence changes will not be pushed to this device", "user", user, "err", err)
		return
	}
	e.localMu.Lock()
	defer e.localMu.Unlock()
	if !e.local.has(user) {
		return // gone meanwhile
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range friends {
		e.follow(user, f.Name)
	}
}

// unwatch forgets whom a user followed once their last device left.
func (e *ephemeral) unwatch(user string) {
	e.localMu.Lock()
	defer e.localMu.Unlock()
	if e.local.has(user) {
		return // back meanwhile
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, f := range e.follows[user] {
		ws := e.watchers[f]
		delete(ws, user)
		if len(ws) == 0 {
			delete(e.watchers, f)
		}
	}
	delete(e.follows, user)
}

// follow makes local user a watcher of friend. mu is held.
func (e *ephemeral) follow(user, friend string) {
	ws := e.watchers[friend]
	if _, ok := ws[user]; ok {
		return
	}
	if ws == nil {
		ws = map[string]struct{}{}
		e.watchers[friend] = ws
	}
	ws[user] = struct{}{}
	e.follows[user] = append(e.follows[user], friend)
}

// onApply is the view's apply listener: a friend added by a user connected
// here is watched from now on.
func (e *ephemeral) onApply(batch []view.Emitted) {
	for _, em := range batch {
		if em.Event.Type != salamander.EventFriend {
			continue
		}
		e.localMu.Lock()
		for _, u := range em.Audience {
			if e.local.has(u) {
				e.mu.Lock()
				e.follow(u, em.Event.User)
				e.mu.Unlock()
			}
		}
		e.localMu.Unlock()
	}
}

// presence answers GET /v1/presence for one user.
func (e *ephemeral) presence(user string) salamander.Presence {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.count[user] > 0 {
		return salamander.Presence{User: user, Online: true, LastSeen: e.now()}
	}
	return salamander.Presence{User: user, LastSeen: e.lastSeen.get(user)}
}

// validInstance accepts the ids newEphemeral makes (instanceID: a site's
// name, "-" and lower-case hex) and those of earlier versions (lower-case
// hex), which are safe as a subject token.
func validInstance(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'z') && c != '-' {
			return false
		}
	}
	return true
}

// instanceID is the id of a process of site: the site's name, "-" and
// random, lower-case hex. It names the site so that the subject a message
// comes on vouches for the instance it names (instanceOfSite): otherwise a
// stolen gateway credential of site a, which hears site b's processes'
// ids, could speak first in their names on a's subject to a process that
// starts later, which would then mirror them from a's subject only and
// never hear b's users.
func instanceID(site, random string) string { return site + "-" + random }

// instanceOfSite reports whether id is an id instanceID makes for site.
// Site names contain '-' but random parts do not, so a site's id never
// has another site's shape ("a-b-0123" is not site a's).
func instanceOfSite(id, site string) bool {
	random, ok := strings.CutPrefix(id, site+"-")
	if !ok || random == "" {
		return false
	}
	for i := 0; i < len(random); i++ {
		if c := random[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validInstanceName accepts the names a gateway gives itself (Config.Instance:
// a host's name or address and a port, or --instance's word), or none: up
// to maxInstanceName bytes of ASCII letters, digits and "-._:[]%".
func validInstanceName(name string) bool {
	if len(name) > maxInstanceName {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', strings.IndexByte("-._:[]%", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// invalidUserName is true of a name no user can have.
func invalidUserName(u string) bool { return salamander.ValidateUserName(u) != nil }

// others is how many instances besides this one are mirrored. mu is held.
func (e *ephemeral) others() int {
	if e.remotes[e.id] != nil {
		return len(e.remotes) - 1
	}
	return len(e.remotes)
}

// clampTTL turns an announced TTL into a sane duration; def if none.
func clampTTL(ms int64, def time.Duration) time.Duration {
	if ms <= 0 {
		return def
	}
	return min(max(time.Duration(ms)*time.Millisecond, minPresenceTTL), maxPresenceTTL)
}

// sweepEvery is how often silent instances are looked for: often enough
// that an instance's users go offline soon after its TTL.
func sweepEvery(beat time.Duration) time.Duration {
	return min(max(beat/4, 10*time.Millisecond), time.Second)
}

// SiteGateway is one gateway process of a site, as the site's gateways
// hear one another's presence beats.
type SiteGateway struct {
	Instance string `json:"instance"`
	// Users is how many users it lists as online: with a device connected
	// to it, or whose last one left it less than its grace ago.
	Users int `json:"users"`
	// HeardMS is how long ago its last beat came (0 for this process).
	HeardMS int64 `json:"heard_ms"`
	This    bool  `json:"this,omitempty"`
}

// siteGateways lists this site's gateway processes — this one and those
// whose beats it hears, until their TTL passes — by instance name.
func (e *ephemeral) siteGateways(now time.Time) []SiteGateway {
	e.localMu.Lock() // before mu, as everywhere: local is localMu's
	local := e.local.n
	e.localMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	out := []SiteGateway{{Instance: e.name, Users: local, This: true}}
	for id, r := range e.remotes {
		// (A process hears its own beats too, and mirrors itself.)
		if id == e.id || r.site != e.site || r.v1 || r.stopping || now.Sub(r.heard) > r.ttl {
			continue
		}
		out = append(out, SiteGateway{Instance: r.name, Users: r.set.n, HeardMS: now.Sub(r.heard).Milliseconds()})
	}
	slices.SortFunc(out, func(a, b SiteGateway) int { return strings.Compare(a.Instance, b.Instance) })
	return out
}

// maxLastSeen bounds how many users' last-seen times one gateway process
// keeps (~100 B each): beyond it the longest gone are forgotten, and their
// presence answers no last_seen, as after a restart.
const maxLastSeen = 1 << 20

// seenTimes is when each user went offline, bounded by max: the oldest
// are forgotten first. order lists the times in the order they were set;
// an entry is stale once its user went offline again later, and stale
// entries are dropped whenever they outnumber the live ones.
type seenTimes struct {
	max   int
	at    map[string]time.Time
	order []seenAt
}

type seenAt struct {
	user string
	at   time.Time
}

func newSeenTimes(max int) *seenTimes {
	return &seenTimes{max: max, at: map[string]time.Time{}}
}

func (s *seenTimes) get(user string) time.Time { return s.at[user] }

func (s *seenTimes) set(user string, at time.Time) {
	s.at[user] = at
	s.order = append(s.order, seenAt{user, at})
	for len(s.at) > s.max {
		e := s.order[0]
		s.order = s.order[1:]
		if s.at[e.user].Equal(e.at) {
			delete(s.at, e.user)
		}
	}
	if len(s.order) > 2*max(len(s.at), 1024) {
		live := make([]seenAt, 0, 2*len(s.at))
		for _, e := range s.order {
			if s.at[e.user].Equal(e.at) {
				live = append(live, e)
			}
		}
		s.order = live
	}
}
