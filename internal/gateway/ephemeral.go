package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/view"
)

// Typing and presence are ephemeral: plain NATS subjects shared by every
// gateway process of every site, never stored. Typing is fanned out as it
// comes. Presence is kept per gateway process (an "instance"): see
// presence.go for the protocol.
const (
	subjTyping = "sal.eph.typing"
	// maxEphemeralMsg is the largest ephemeral message a receiver accepts
	// and the bound every message this package publishes stays under.
	maxEphemeralMsg = 64 << 10

	// DefaultPresenceBeat is how often a gateway process repeats the digest
	// of its online users by default.
	DefaultPresenceBeat = 5 * time.Second
	// DefaultPresenceTTL is how long, by default, other processes keep a
	// silent process's users online.
	DefaultPresenceTTL = 16 * time.Second
	// DefaultPresenceGrace is how long, by default, a user whose last
	// device left a process is still announced online by it, and how long
	// other processes keep a stopped process's users: a reconnect within
	// it, to any process, is not seen as offline then online.
	DefaultPresenceGrace = 5 * time.Second
)

// typingEvery is the most often one user's "typing" in one room is passed
// on; clients repeat it every few seconds while the user types, so more is
// noise that every site would fan out to every member.
const typingEvery = time.Second

// maxTypingKeys bounds the typing rate limiter's memory: past it, new
// (user, room) pairs are refused until stale ones can be forgotten.
const maxTypingKeys = 100000

// typingPendingMsgs and typingPendingBytes bound the typing signals waiting
// for a room's member list: a flood beyond them is dropped (a lost "typing"
// is harmless), instead of queueing in memory.
const (
	typingPendingMsgs  = 4096
	typingPendingBytes = 4 << 20
)

// devices is what typing and presence need from the hub: whether a user
// has a device connected to this process, and a way to reach them that
// drops a "typing" a device cannot take and disconnects a device that
// cannot take a presence change (see hub.sendTo).
type devices interface {
	connected(user string) bool
	sendTo(users []string, ev salamander.Event)
}

var _ devices = (*hub)(nil)

type typingMsg struct {
	Room   string `json:"room"`
	User   string `json:"user"`
	Typing bool   `json:"typing"`
}

// ephemeral is one gateway process's typing and presence. Lock order:
// localMu before mu.
type ephemeral struct {
	nc     *nats.Conn
	site   string
	id     string // this instance, unique per process start
	name   string // its instance name (Config.Instance)
	beat   time.Duration
	ttl    time.Duration
	grace  time.Duration    // see Config.PresenceGrace
	v1     bool             // also speak the presence format of older versions
	now    func() time.Time // the clock: time.Now, or a test's
	log    *slog.Logger
	hub    devices
	view   *view.View
	typing *typingLimiter

	// What this instance tells others.
	localMu sync.Mutex
	local   *userSet // users with a device connected to this instance, or gone for less than grace
	ver     uint64   // bumped on every change of local
	closed  bool     // said goodbye: publish nothing more
	// leaving[u] is when the last device of local user u left; such users
	// are taken offline grace after it (see departures). leaveQ lists
	// those times in order; an entry is stale once its user came back.
	leaving map[string]time.Time
	leaveQ  []seenAt

	// What this instance knows of every instance, itself included.
	mu       sync.Mutex
	remotes  map[string]*remote
	count    map[string]int  // user -> number of instances listing the user
	lastSeen *seenTimes      // when users went offline (bounded)
	dirty    map[string]bool // instances whose list must be fetched again
	// follows[u] lists whom local user u follows; watchers[f] is the set of
	// local users following f: who is told about f's presence changes.
	follows  map[string][]string
	watchers map[string]map[string]struct{}
	// refusedInstances counts the messages of new instances refused while
	// maxRemoteInstances were mirrored; refusedLogged is when that was
	// last logged.
	refusedInstances uint64
	refusedMetric    prometheus.Counter // nil in tests without metrics
	refusedLogged    time.Time

	kick    chan struct{} // wakes the resync worker
	beatNow chan struct{} // asks for a digest now (another instance said hello)

	// startedAt is when start subscribed (Unix nanoseconds; 0: never),
	// just before the hello; settledOnce is set once the mirror holds
	// what the others answered it (see settled).
	startedAt   atomic.Int64
	settledOnce atomic.Bool
	// What the roll call at start told (see settled), guarded by mu:
	// rollEmpty once no other process listened, rollHeard once one
	// answered; expected names every instance the answers named.
	rollEmpty, rollHeard bool
	expected             map[string]rollEntry
}

// presenceSettle is how long a new process whose roll call no other
// process answers waits after its hello for the digests of processes that
// started at the same moment (each called before the other listened;
// they answer the hello) before it counts what it mirrors as complete.
// Processes of versions before 2026-12-02 hear neither the roll call nor
// the hello: they are heard at their next beat. presenceSettleMax bounds
// every wait, the resyncs the digests start included (100,000 users take
// ~0.2 s), so that a process that cannot resync, or is named but never
// heard, still comes up.
const (
	presenceSettle    = 300 * time.Millisecond
	presenceSettleMax = 5 * time.Second
)

// settled reports whether this process has heard the other processes'
// users since it started (or presenceSettleMax has passed). Until then
// its mirror may lack users online elsewhere, and a follower it served
// would be told they are offline, then online (see Gateway.CaughtUp). It
// knows whom to wait for from its roll call: every process that answered
// and every process they mirror must have been heard (a digest, or a
// goodbye), and the resyncs the digests started be done — however long
// their answers take under load, up to presenceSettleMax. Until an answer
// comes (or "no responders": no other process listens yet, and then it
// waits presenceSettle for processes that started at the same moment) it
// is not settled. A process whose presence never started has nothing to
// wait for.
func (e *ephemeral) settled(now time.Time) bool {
	if e.settledOnce.Load() {
		return true
	}
	started := e.startedAt.Load()
	if started == 0 {
		return true
	}
	since := now.Sub(time.Unix(0, started))
	if since < presenceSettleMax {
		e.mu.Lock()
		waiting := e.waitingFor(since)
		e.mu.Unlock()
		if waiting {
			return false
		}
	}
	e.settledOnce.Store(true)
	return true
}

// restarted reports whether instance k was heard again under a new id:
// its site and instance name on another instance's beat (the process
// restarted, as every gateway of a burned site does, after it died
// without a goodbye; the others mirror the dead one until its TTL runs
// out). mu is held.
func (e *ephemeral) restarted(k rollEntry) bool {
	if k.Name == "" {
		return false
	}
	for id, r := range e.remotes {
		if id != k.Inst && r.beaten && r.site == k.Site && r.name == k.Name {
			return true
		}
	}
	return false
}

// waitingFor reports whether, since after the start, this process still
// waits for others' users (see settled). mu is held.
func (e *ephemeral) waitingFor(since time.Duration) bool {
	if len(e.dirty) > 0 {
		return true
	}
	for _, r := range e.remotes {
		if r.syncing {
			return true
		}
	}
	switch {
	case e.rollHeard:
		for id, k := range e.expected {
			if r := e.remotes[id]; r != nil && (r.beaten || r.stopping) || e.restarted(k) {
				continue
			}
			return true
		}
		return false
	case e.rollEmpty:
		return since < presenceSettle
	}
	return true // the answers are on their way
}

func newEphemeral(g *Gateway) *ephemeral {
	e := &ephemeral{
		refusedMetric: g.metrics.presenceRefused,
		nc:            g.cfg.Store.Conn(),
		site:          g.cfg.Site,
		id:            instanceID(g.cfg.Site, randomHex(8)),
		name:          g.cfg.Instance,
		beat:          g.cfg.PresenceBeat,
		ttl:           g.cfg.PresenceTTL,
		grace:         g.cfg.PresenceGrace,
		v1:            g.cfg.PresenceV1,
		now:           time.Now,
		hub:           g.hub,
		view:          g.cfg.View,
		typing:        newTypingLimiter(typingEvery, maxTypingKeys),
		local:         newUserSet(),
		leaving:       map[string]time.Time{},
		remotes:       map[string]*remote{},
		count:         map[string]int{},
		lastSeen:      newSeenTimes(maxLastSeen),
		dirty:         map[string]bool{},
		follows:       map[string][]string{},
		watchers:      map[string]map[string]struct{}{},
		expected:      map[string]rollEntry{},
		kick:          make(chan struct{}, 1),
		beatNow:       make(chan struct{}, 1),
	}
	e.log = g.log.With("instance", e.id)
	if e.grace > e.ttl {
		e.log.Warn("presence grace is over the TTL: other processes keep a stopped process's users only for its TTL",
			"grace", e.grace, "ttl", e.ttl)
	}
	if e.ttl < 2*e.beat {
		e.log.Warn("presence TTL is under two beats: one late digest takes this process's users offline",
			"beat", e.beat, "ttl", e.ttl)
	}
	// Peers check what this process says of itself (see onPresence).
	if !salamander.ValidSiteName(e.site) {
		e.log.Warn("site name is not a site's name (a-z, 0-9, '-'): other gateways refuse this process's presence",
			"site", e.site)
	}
	if !validInstanceName(e.name) {
		e.log.Warn("instance name is not a host's name or address and a port, or a word of letters, digits and \"-._:[]%\": "+
			"other gateways list this process without it", "instance", e.name)
	}
	g.cfg.View.OnApply(e.onApply)
	return e
}

// start subscribes to the ephemeral subjects and runs the presence digest,
// expiry and resync loops until ctx ends; wg tracks them.
func (e *ephemeral) start(ctx context.Context, wg *sync.WaitGroup) error {
	var subs []*nats.Subscription
	unsubscribe := func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}
	for _, s := range []struct {
		subj string
		fn   nats.MsgHandler
	}{
		{subjTyping, e.onTyping},
		{subjPresence, e.onPresenceV1},
		{subjPresenceV2, e.onPresence},
		{subjPresenceSync + e.site + "." + e.id, e.onSyncRequest},
		{subjPresenceAt + "*", e.onPresence},
	} {
		sub, err := e.nc.Subscribe(s.subj, s.fn)
		if err != nil {
			unsubscribe()
			return err
		}
		subs = append(subs, sub)
	}
	// The roll call goes out before this process listens for roll calls
	// itself: "no responders" then means no other process listens.
	inbox := e.nc.NewInbox()
	answers, err := e.nc.Subscribe(inbox, e.onRollAnswer)
	if err != nil {
		unsubscribe()
		return err
	}
	subs = append(subs, answers)
	call, _ := json.Marshal(rollAnswer{Inst: e.id})
	if err := e.nc.PublishRequest(subjPresenceRoll, inbox, call); err != nil {
		unsubscribe()
		return err
	}
	roll, err := e.nc.Subscribe(subjPresenceRoll, e.onRollCall)
	if err != nil {
		unsubscribe()
		return err
	}
	subs = append(subs, roll)
	e.startedAt.Store(time.Now().UnixNano())
	_ = subs[0].SetPendingLimits(typingPendingMsgs, typingPendingBytes)
	_ = subs[3].SetPendingLimits(syncPendingMsgs, syncPendingBytes)
	// Once the server holds the subscriptions, whatever is published next
	// reaches them (while disconnected, they are sent on reconnect).
	_ = e.nc.FlushTimeout(2 * time.Second)
	wg.Add(2)
	go func() {
		defer wg.Done()
		e.resyncLoop(ctx)
	}()
	go func() {
		defer wg.Done()
		defer unsubscribe()
		e.presenceLoop(ctx)
	}()
	return nil
}

// presenceLoop says hello (so every instance sends its digest now rather
// than within a beat), then sends this instance's digest every beat,
// takes offline the users gone from here for the grace and expires silent
// instances, until ctx ends; then it says goodbye, so every instance keeps
// this one's users for the grace and then drops them.
func (e *ephemeral) presenceLoop(ctx context.Context) {
	e.publishV2(presenceMsgV2{Kind: kindHello, Inst: e.id, Site: e.site})
	e.publishBeat()
	beat := time.NewTicker(e.beat)
	defer beat.Stop()
	sweep := time.NewTicker(sweepEvery(e.beat))
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			e.goodbye()
			return
		case <-beat.C:
			e.publishBeat()
		case <-e.beatNow:
			e.publishBeat()
		case <-sweep.C:
			now := e.now()
			e.departures(now)
			e.sweep(now)
		}
	}
}

// allowTyping rate-limits "typing" signals per user and room, and passes a
// "stopped typing" once after each "typing" it passed, or at most once an
// interval when the "typing" went through another process (see
// typingLimiter).
func (e *ephemeral) allowTyping(room, user string, typing bool) bool {
	return e.typing.allow(room, user, typing, time.Now())
}

func (e *ephemeral) publishTyping(room, user string, typing bool) {
	b, _ := json.Marshal(typingMsg{Room: room, User: user, Typing: typing})
	_ = e.nc.Publish(subjTyping, b)
}

// onTyping passes a typing signal to the room's other members connected
// here. Signals wait in a bounded queue (see typingPendingMsgs).
func (e *ephemeral) onTyping(msg *nats.Msg) {
	var t typingMsg
	if len(msg.Data) > maxEphemeralMsg || json.Unmarshal(msg.Data, &t) != nil || !salamander.ValidRoomID(t.Room) ||
		salamander.ValidateUserName(t.User) != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	members, err := e.view.Members(ctx, t.Room)
	cancel()
	if err != nil || !slices.Contains(members, t.User) {
		return // only a member types in a room
	}
	others := members[:0]
	for _, m := range members {
		if m != t.User {
			others = append(others, m)
		}
	}
	ev := salamander.Event{Type: salamander.EventTyping, RoomID: t.Room, User: t.User, Typing: t.Typing, At: time.Now().UTC()}
	e.hub.sendTo(others, ev)
}

// typingLimiter passes at most one "typing" per user and room every
// interval — or a quarter of one after a stop, so that typing again after
// sending shows at once — and a "stopped typing" once after each "typing"
// it passed. A stop with no "typing" passed here to stop is passed too, at
// most once an interval: its "typing" most likely went through another
// gateway process (a client's HTTP requests are balanced over a site's
// processes, and go to another site after a failover), and refusing it
// would leave the room showing the user typing until each device's own
// timeout. A flood of starts, of stops, or of both in turn passes at most
// eight signals an interval at one process, plus one such stop. It
// remembers at most max pairs.
type typingLimiter struct {
	every time.Duration
	max   int

	mu     sync.Mutex
	last   map[string]typingPassed // "user\x00room" -> what was last passed
	purged time.Time
}

// typingPassed is when a pair's last "typing" was passed (zero if none
// here), and whether (and when) a "stopped typing" has been passed since.
type typingPassed struct {
	at, stoppedAt time.Time
	stopped       bool
}

// latest is when the pair last passed a signal.
func (p typingPassed) latest() time.Time {
	if p.stoppedAt.After(p.at) {
		return p.stoppedAt
	}
	return p.at
}

func newTypingLimiter(every time.Duration, max int) *typingLimiter {
	return &typingLimiter{every: every, max: max, last: map[string]typingPassed{}}
}

func (l *typingLimiter) allow(room, user string, typing bool, now time.Time) bool {
	key := user + "\x00" + room
	l.mu.Lock()
	defer l.mu.Unlock()
	p, ok := l.last[key]
	if !typing {
		// A typing passed here is stopped once; a stop of one passed
		// elsewhere (none here, or stopped here already) once an interval.
		if ok && p.stopped && now.Sub(p.stoppedAt) < l.every || !ok && !l.roomFor(now) {
			return false
		}
		p.stopped, p.stoppedAt = true, now
		l.last[key] = p
		return true
	}
	if ok && now.Sub(p.at) < l.every && !(p.stopped && now.Sub(p.stoppedAt) >= l.every/4) {
		return false
	}
	if !ok && !l.roomFor(now) {
		return false
	}
	l.last[key] = typingPassed{at: now}
	return true
}

// roomFor reports whether a new pair may be remembered. Past max it
// forgets stale pairs, at most once an interval so that a flood does not
// turn every call into a scan, and refuses while still full. l.mu is held.
func (l *typingLimiter) roomFor(now time.Time) bool {
	if len(l.last) < l.max {
		return true
	}
	if now.Sub(l.purged) >= l.every {
		l.purged = now
		for k, p := range l.last {
			if now.Sub(p.latest()) >= l.every {
				delete(l.last, k)
			}
		}
	}
	return len(l.last) < l.max
}
