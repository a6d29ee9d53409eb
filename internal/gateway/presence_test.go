package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
	"github.com/salamander-chat/salamander/internal/view"
)

// Short timings keep these tests fast; production uses the defaults.
const (
	testBeat  = 200 * time.Millisecond
	testTTL   = time.Second
	testGrace = 300 * time.Millisecond
)

// presenceNATS starts a lone NATS server for the test.
func presenceNATS(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.ClusterAddr = ""
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return node.ClientURL()
}

// testInstance is one gateway process on the test's NATS server: a real
// Gateway with its own connection and an empty read model, whose devices
// are simulated (presence sees them through the devices seam).
type testInstance struct {
	g       *Gateway
	store   *jsstore.Store
	devices *testDevices
}

func startInstance(t *testing.T, url, site string) testInstance {
	t.Helper()
	return startInstanceAt(t, url, site, nil)
}

// startInstanceAt starts an instance whose presence reads clock (real
// time if nil).
func startInstanceAt(t *testing.T, url, site string, clock *testClock) testInstance {
	t.Helper()
	return startInstanceWith(t, url, site, clock, nil)
}

// startInstanceWith is startInstanceAt with tweak applied to the
// gateway's configuration (if not nil).
func startInstanceWith(t *testing.T, url, site string, clock *testClock, tweak func(*Config)) testInstance {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := jsstore.Open(ctx, jsstore.DefaultConfig(url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	v, err := view.Open(filepath.Join(t.TempDir(), "view.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	cfg := DefaultConfig(site, store, v)
	cfg.PresenceBeat, cfg.PresenceTTL, cfg.PresenceGrace = testBeat, testTTL, testGrace
	if os.Getenv("SALAMANDER_TEST_LOG") != "" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if tweak != nil {
		tweak(&cfg)
	}
	g := New(cfg)
	d := &testDevices{conns: map[string]int{}, events: map[string][]salamander.Event{}}
	g.eph.hub = d
	if clock != nil {
		g.eph.now = clock.now
	}
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return testInstance{g: g, store: store, devices: d}
}

// testClock is a clock the test moves. Instances sharing one take users
// offline after the grace, and drop silent instances, only when the test
// moves it; while it stands still, beats keep every live instance heard.
// It reads whole milliseconds, as departures travel.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock { return &testClock{t: time.Now().Truncate(time.Millisecond)} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// testDevices stands in for the hub: devices per user, and the ephemeral
// events sent to each user.
type testDevices struct {
	mu     sync.Mutex
	conns  map[string]int
	events map[string][]salamander.Event
}

func (d *testDevices) connected(user string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.conns[user] > 0
}

func (d *testDevices) sendTo(users []string, ev salamander.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, u := range users {
		d.events[u] = append(d.events[u], ev)
	}
}

func (d *testDevices) eventsOf(user string) []salamander.Event {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.events[user])
}

// connect registers a device of user at the instance, as the WebSocket
// handler does, and returns its disconnect.
func (in testInstance) connect(user string) (disconnect func()) {
	in.devices.mu.Lock()
	in.devices.conns[user]++
	in.devices.mu.Unlock()
	in.g.eph.setOnline(user)
	return func() {
		in.devices.mu.Lock()
		in.devices.conns[user]--
		in.devices.mu.Unlock()
		in.g.eph.setOnline(user)
	}
}

// addLocal puts users online at the instance directly, as if that many
// devices were connected, announcing each change like a connect does.
func (in testInstance) addLocal(users []string) {
	e := in.g.eph
	e.localMu.Lock()
	defer e.localMu.Unlock()
	for _, u := range users {
		e.changeLocal(u, true, time.Time{})
	}
}

// mirrorOf returns what in knows of instance id's users, sorted.
func (in testInstance) mirrorOf(id string) []string {
	e := in.g.eph
	e.mu.Lock()
	defer e.mu.Unlock()
	r := e.remotes[id]
	if r == nil {
		return nil
	}
	out := r.set.all()
	slices.Sort(out)
	return out
}

func (in testInstance) localUsers() []string {
	e := in.g.eph
	e.localMu.Lock()
	defer e.localMu.Unlock()
	out := e.local.all()
	slices.Sort(out)
	return out
}

func (in testInstance) online(user string) bool { return in.g.eph.presence(user).Online }

// befriend makes local user follow friend, as the view's apply hook
// reports a friend added.
func (in testInstance) befriend(user, friend string) {
	in.g.eph.onApply([]view.Emitted{{Event: salamander.Event{Type: salamander.EventFriend, User: friend},
		Audience: []string{user}}})
}

// version is the version of in's own set.
func (in testInstance) version() uint64 {
	e := in.g.eph
	e.localMu.Lock()
	defer e.localMu.Unlock()
	return e.ver
}

// heard waits until in has applied every change of from's set so far
// (from publishes them in order on one connection).
func (in testInstance) heard(t *testing.T, from testInstance) {
	t.Helper()
	want := from.version()
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		e := in.g.eph
		e.mu.Lock()
		defer e.mu.Unlock()
		r := e.remotes[from.g.eph.id]
		if r == nil || r.ver != want || r.syncing {
			return fmt.Errorf("%s not at version %d of %s", e.id, want, from.g.eph.id)
		}
		return nil
	})
}

// presenceEvents are the presence events about user pushed to follower.
func (in testInstance) presenceEvents(follower, user string) []salamander.Event {
	var out []salamander.Event
	for _, ev := range in.devices.eventsOf(follower) {
		if ev.Type == salamander.EventPresence && ev.User == user {
			out = append(out, ev)
		}
	}
	return out
}

// neverOffline fails the test if in ever showed user offline: to
// follower in an event, or to GET /v1/presence now.
func (in testInstance) neverOffline(t *testing.T, follower, user string) {
	t.Helper()
	for _, ev := range in.presenceEvents(follower, user) {
		if !ev.Online {
			t.Fatalf("%s was told %s went offline at %v", follower, user, ev.At)
		}
	}
	if !in.online(user) {
		t.Fatalf("%s shown offline", user)
	}
}

// onlineCount is how many users in knows to be online anywhere.
func (in testInstance) onlineCount() int {
	e := in.g.eph
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.count)
}

// wire records every message on the NATS server.
type wire struct {
	mu        sync.Mutex
	maxSize   int
	maxSubj   string
	beats     int
	beatBytes int
	syncMsgs  int // requests and replies of resyncs
	syncBytes int
}

func watchWire(t *testing.T, url string) *wire {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	w := &wire{}
	sub, err := nc.Subscribe(">", func(m *nats.Msg) {
		w.mu.Lock()
		defer w.mu.Unlock()
		if len(m.Data) > w.maxSize {
			w.maxSize, w.maxSubj = len(m.Data), m.Subject
		}
		switch {
		case strings.HasPrefix(m.Subject, subjPresenceAt) && strings.Contains(string(m.Data), `"kind":"beat"`):
			w.beats++
			w.beatBytes += len(m.Data)
		case strings.HasPrefix(m.Subject, subjPresenceSync) || strings.HasPrefix(m.Subject, "_INBOX."):
			w.syncMsgs++
			w.syncBytes += len(m.Data)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *wire) snapshot() wire {
	w.mu.Lock()
	defer w.mu.Unlock()
	return wire{maxSize: w.maxSize, maxSubj: w.maxSubj, beats: w.beats, beatBytes: w.beatBytes,
		syncMsgs: w.syncMsgs, syncBytes: w.syncBytes}
}

func checkFor(t *testing.T, d, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return
		}
		time.Sleep(every)
	}
	t.Fatalf("condition not met within %s: %v", d, err)
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%06d", prefix, i)
	}
	return out
}

// 100,000 users online at one instance: an instance that was listening
// gets them as deltas, one that starts later gets them by resync, no
// message is near 64 KiB, one user leaving propagates, and when the
// instance dies all of them go offline everywhere within its TTL.
func TestPresenceHundredThousandUsers(t *testing.T) {
	const n = 100000
	url := presenceNATS(t)
	w := watchWire(t, url)
	a := startInstance(t, url, "a")
	b := startInstance(t, url, "b")
	users := names("user", n)
	a.addLocal(users)
	want := a.localUsers()
	if len(want) != n {
		t.Fatalf("a lists %d users", len(want))
	}
	id := a.g.eph.id
	checkFor(t, 60*time.Second, 20*time.Millisecond, func() error {
		if got := len(b.mirrorOf(id)); got != n {
			return fmt.Errorf("b sees %d of a's users", got)
		}
		return nil
	})

	before := w.snapshot()
	start := time.Now()
	c := startInstance(t, url, "c")
	checkFor(t, 60*time.Second, 5*time.Millisecond, func() error {
		if got := len(c.mirrorOf(id)); got != n {
			return fmt.Errorf("c sees %d of a's users", got)
		}
		return nil
	})
	took := time.Since(start)
	// The count can be right a moment before the names are (a page of the
	// resync still replacing a bucket on a loaded machine): the mirror
	// must become exactly a's list.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if got := c.mirrorOf(id); !slices.Equal(got, want) {
			return fmt.Errorf("c's mirror of a differs from a's list (%d names)", len(got))
		}
		return nil
	})
	// Polled: with a TTL of 1 s, a beat of a's held back past it on a
	// loaded machine (CI under -race) expires a's users at b or c until
	// the next one brings them back.
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		for _, u := range users {
			if !b.online(u) || !c.online(u) {
				return fmt.Errorf("%s offline at b or c", u)
			}
		}
		return nil
	})
	after := w.snapshot()
	t.Logf("resync of %d users by a new instance: %v, %d sync messages, %d bytes", n, took,
		after.syncMsgs-before.syncMsgs, after.syncBytes-before.syncBytes)

	leave := a.connect("zed")
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !b.online("zed") || !c.online("zed") {
			return fmt.Errorf("zed not online at b and c")
		}
		return nil
	})
	leave()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if b.online("zed") || c.online("zed") {
			return fmt.Errorf("zed still online at b or c")
		}
		return nil
	})
	if !c.online(users[0]) {
		t.Fatal("others went offline with zed")
	}

	// Nothing left to repair: once the repairs of zed's leaving are over,
	// three beats pass without a sync message. (A machine loaded enough to
	// delay a beat past its peers' patience may cause one repair; a steady
	// stream of them, the bug this guards against, never leaves a quiet
	// window.)
	checkFor(t, 20*time.Second, testBeat, func() error {
		s0 := w.snapshot()
		time.Sleep(3 * testBeat) // three beats' worth of silence is the condition
		if s := w.snapshot(); s.syncMsgs != s0.syncMsgs {
			return fmt.Errorf("%d sync messages while nothing changed", s.syncMsgs-s0.syncMsgs)
		}
		return nil
	})
	s := w.snapshot()
	if s.maxSize >= 32<<10 {
		t.Fatalf("a %d-byte message on %s", s.maxSize, s.maxSubj)
	}
	t.Logf("largest message: %d bytes (%s); %d beats, %d bytes each on average", s.maxSize, s.maxSubj,
		s.beats, s.beatBytes/max(s.beats, 1))

	// a dies: its connection drops without a goodbye.
	a.store.Close()
	died := time.Now()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if b.onlineCount() != 0 || c.onlineCount() != 0 {
			return fmt.Errorf("b sees %d, c sees %d online", b.onlineCount(), c.onlineCount())
		}
		return nil
	})
	gone := time.Since(died)
	t.Logf("all %d users offline everywhere %v after their instance died (TTL %v)", n, gone, testTTL)
	// Expiry comes within TTL plus one sweep; taking 100,000 users offline
	// at two instances adds to that (a second or two under -race, ~4 s
	// on two loaded cores): the bound tells expiry from its absence, not
	// speed.
	if gone > testTTL+8*time.Second {
		t.Fatalf("users went offline after %v, TTL %v", gone, testTTL)
	}
}

// Changes keep flowing (about 2,000 a second) while an instance resyncs;
// the held deltas land on top of the fetched lists, so the mirror ends
// equal to the list. A
// mirror that drifts is repaired by fetching only the buckets that differ.
func TestPresenceResyncUnderChangesAndRepair(t *testing.T) {
	url := presenceNATS(t)
	w := watchWire(t, url)
	a := startInstance(t, url, "a")
	a.addLocal(names("base", 30000))
	flip := names("flip", 2000)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e := a.g.eph
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			e.localMu.Lock()
			e.changeLocal(flip[i%len(flip)], i/len(flip)%2 == 0, time.Now())
			e.localMu.Unlock()
			time.Sleep(500 * time.Microsecond) // pacing: ~2,000 changes a second
		}
	}()
	c := startInstance(t, url, "c")
	id := a.g.eph.id
	checkFor(t, 30*time.Second, 5*time.Millisecond, func() error {
		if len(c.mirrorOf(id)) < 30000 {
			return fmt.Errorf("c sees %d", len(c.mirrorOf(id)))
		}
		return nil
	})
	close(stop)
	wg.Wait()
	want := a.localUsers()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := c.mirrorOf(id); !slices.Equal(got, want) {
			return fmt.Errorf("c's mirror has %d users, a has %d", len(got), len(want))
		}
		return nil
	})

	// Drift: c loses ten of a's users (as if their deltas had been lost).
	e := c.g.eph
	e.mu.Lock()
	var out []presencePush
	for _, u := range want[:10] {
		e.setRemote(e.remotes[id], u, false, time.Now(), &out)
	}
	e.mu.Unlock()
	before := w.snapshot()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if got := c.mirrorOf(id); !slices.Equal(got, want) {
			return fmt.Errorf("c's mirror has %d users, a has %d", len(got), len(want))
		}
		return nil
	})
	after := w.snapshot()
	// A digest (≈21 KB) and the ten differing buckets (≈30 users each),
	// not the 31,000 names (≈400 KB).
	if bytes := after.syncBytes - before.syncBytes; bytes > 60000 {
		t.Fatalf("repairing 10 users moved %d bytes", bytes)
	}
	t.Logf("repairing 10 drifted users: %d sync messages, %d bytes", after.syncMsgs-before.syncMsgs,
		after.syncBytes-before.syncBytes)
}

// Two instances of one site never erase each other's users, and the death
// of one takes only its own users offline.
func TestPresenceTwoInstancesOneSite(t *testing.T) {
	url := presenceNATS(t)
	a1 := startInstance(t, url, "a")
	a2 := startInstance(t, url, "a")
	c := startInstance(t, url, "c")
	defer a1.connect("ann")()
	a2.connect("bob")
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !c.online("ann") || !c.online("bob") {
			return fmt.Errorf("ann %v bob %v", c.online("ann"), c.online("bob"))
		}
		return nil
	})
	for i := 0; i < 30; i++ { // 30 samples over 6 beats
		if !c.online("ann") || !c.online("bob") {
			t.Fatalf("sample %d: ann %v bob %v", i, c.online("ann"), c.online("bob"))
		}
		time.Sleep(testBeat / 5)
	}
	a2.store.Close()
	died := time.Now()
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !c.online("ann") {
			t.Fatal("ann went offline with the other instance")
		}
		if c.online("bob") {
			return fmt.Errorf("bob still online")
		}
		return nil
	})
	t.Logf("bob offline %v after his instance died (TTL %v)", time.Since(died), testTTL)
}

// A process that has just started (a rolling restart) is not caught up,
// so neither ready nor serving its users, before it has heard the other
// processes' users: a follower whose device reaches it as soon as it is
// ready is never told that a friend connected elsewhere is offline, then
// online as the new process learns of them. Its log is caught up at once
// here (as a restart on the same disk nearly is).
func TestPresenceNewProcessReadyOnceItKnowsTheOthers(t *testing.T) {
	url := presenceNATS(t)
	a1 := startInstance(t, url, "a")
	a1.addLocal(names("pre", 20000))
	a1.connect("ann")
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !a1.online("ann") {
			return fmt.Errorf("ann not online at her own process")
		}
		return nil
	})
	a2 := startInstance(t, url, "a")
	a2.g.SetCatchUp(map[string]uint64{})
	start := time.Now()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if !a2.g.CaughtUp() {
			return fmt.Errorf("not caught up")
		}
		if !a2.online("ann") || !a2.online("pre019999") {
			t.Fatalf("caught up %v after its start, and ann online %v, pre019999 %v: it would tell a follower they are offline",
				time.Since(start), a2.online("ann"), a2.online("pre019999"))
		}
		return nil
	})
	t.Logf("caught up %v after its start, knowing the other process's users", time.Since(start))
	// A gateway never started (a test's, serving the site's own model) has
	// no presence to wait for.
	g := New(DefaultConfig("a", a1.store, a1.g.cfg.View))
	t.Cleanup(g.Close)
	g.SetCatchUp(map[string]uint64{})
	if !g.CaughtUp() {
		t.Fatal("a gateway without presence waits for it")
	}
}

// A process that stops says goodbye: the others keep its users for its
// grace, while their devices reconnect elsewhere, and then drop them. A
// user back at another process meanwhile is never shown offline; one who
// is not goes offline once the grace has passed (well within the TTL),
// last seen when the process stopped. All instances read one clock the
// test moves.
func TestPresenceGoodbye(t *testing.T) {
	url := presenceNATS(t)
	clock := newTestClock()
	a1 := startInstanceAt(t, url, "a", clock)
	a2 := startInstanceAt(t, url, "a", clock)
	c := startInstanceAt(t, url, "c", clock)
	c.connect("bob")
	c.befriend("bob", "ann")
	c.befriend("bob", "cat")
	a1.connect("ann")
	a1.connect("cat")
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !c.online("ann") || !c.online("cat") {
			return fmt.Errorf("ann %v cat %v", c.online("ann"), c.online("cat"))
		}
		return nil
	})
	a1.g.Close()
	stopped := clock.now()
	id := a1.g.eph.id
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		e := c.g.eph
		e.mu.Lock()
		defer e.mu.Unlock()
		if r := e.remotes[id]; r == nil || !r.stopping {
			return fmt.Errorf("c has not heard a1's goodbye, or dropped its users at once")
		}
		return nil
	})
	c.neverOffline(t, "bob", "ann")
	c.neverOffline(t, "bob", "cat")

	// ann's device reconnects to the site's other process.
	a2.connect("ann")
	c.heard(t, a2)
	clock.add(testGrace + time.Millisecond) // kept while silent for up to the grace
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if c.online("cat") || c.mirrorOf(id) != nil {
			return fmt.Errorf("cat still online at c")
		}
		return nil
	})
	c.neverOffline(t, "bob", "ann")
	evs := c.presenceEvents("bob", "cat")
	if len(evs) != 2 || evs[1].Online || !evs[1].At.Equal(stopped) {
		t.Fatalf("bob was told of cat %+v; want online, then offline at %v", evs, stopped)
	}
	if seen := c.g.eph.presence("cat").LastSeen; !seen.Equal(stopped) {
		t.Fatalf("cat last seen %v, want %v (when a1 stopped)", seen, stopped)
	}
}

// A goodbye's grace is bounded by the instance's TTL (a stop never keeps
// users longer than a death would); a goodbye without one (earlier
// versions) drops the instance at once; an instance that said goodbye is
// not revived by a late message of its own.
func TestPresenceGoodbyeGraceBounded(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	now := time.Now()
	e.now = func() time.Time { return now }
	for _, inst := range []string{"b-a1", "b-a2"} {
		hearV2(e, presenceMsgV2{Kind: kindBeat, Inst: inst, Site: "b", TTLms: 3000})
		hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: inst, Site: "b", Ver: 1, On: []string{"carol"}})
	}
	hearV2(e, presenceMsgV2{Kind: kindBye, Inst: "b-a1", Site: "b", GraceMS: time.Hour.Milliseconds()})
	r := e.remotes["b-a1"]
	if r == nil || !r.stopping || r.ttl != 3*time.Second || e.count["carol"] != 2 {
		t.Fatalf("a1 after its goodbye: %+v, carol counted %d", r, e.count["carol"])
	}
	hearV2(e, presenceMsgV2{Kind: kindBeat, Inst: "b-a1", Site: "b", Ver: 1, Count: 1, TTLms: 600_000})
	hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: "b-a1", Site: "b", Ver: 2, On: []string{"dave"}})
	if r.ttl != 3*time.Second || !r.heard.Equal(now) || e.count["dave"] != 0 {
		t.Fatalf("a1 heard after its goodbye: ttl %v, dave counted %d", r.ttl, e.count["dave"])
	}
	hearV2(e, presenceMsgV2{Kind: kindBye, Inst: "b-a2", Site: "b"}) // an earlier version's
	if e.remotes["b-a2"] != nil || e.count["carol"] != 1 {
		t.Fatalf("a2 kept after a goodbye without grace: carol counted %d", e.count["carol"])
	}
	e.sweep(now.Add(3 * time.Second))
	if e.remotes["b-a1"] == nil {
		t.Fatal("a1 dropped before its TTL")
	}
	e.sweep(now.Add(3*time.Second + time.Millisecond))
	if e.remotes["b-a1"] != nil || e.count["carol"] != 0 {
		t.Fatal("a1 kept past its TTL after its goodbye")
	}
}

// A user whose only device leaves one process and connects to another 50
// ms later — of the same site, or of another — is never shown offline:
// the process they left keeps listing them for the grace, and the other
// lists them before that. All instances read one clock the test moves.
func TestPresenceReconnectElsewhereShowsNoOffline(t *testing.T) {
	url := presenceNATS(t)
	clock := newTestClock()
	a1 := startInstanceAt(t, url, "a", clock)
	a2 := startInstanceAt(t, url, "a", clock)
	b := startInstanceAt(t, url, "b", clock)
	c := startInstanceAt(t, url, "c", clock)
	c.connect("bob")
	c.befriend("bob", "ann")
	leave := a1.connect("ann")
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !c.online("ann") {
			return fmt.Errorf("ann offline at c")
		}
		return nil
	})
	for _, move := range []struct{ from, to testInstance }{{a1, a2}, {a2, b}} {
		leave()
		c.heard(t, move.from)
		c.neverOffline(t, "bob", "ann")
		leave = move.to.connect("ann")
		c.heard(t, move.to)
		clock.add(testGrace)
		checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
			if slices.Contains(c.mirrorOf(move.from.g.eph.id), "ann") {
				return fmt.Errorf("the process ann left still lists her")
			}
			return nil
		})
		c.neverOffline(t, "bob", "ann")
	}
	if evs := c.presenceEvents("bob", "ann"); len(evs) != 1 {
		t.Fatalf("bob was told %+v; want only that ann came online", evs)
	}
}

// A user who really leaves is shown offline once the grace has passed
// since their last device left, not sooner; their last_seen and the
// event's time are when it left, not when that was announced. A device
// back at the same process within the grace announces nothing at all.
func TestPresenceOfflineAfterGrace(t *testing.T) {
	url := presenceNATS(t)
	clock := newTestClock()
	a := startInstanceAt(t, url, "a", clock)
	c := startInstanceAt(t, url, "c", clock)
	c.connect("bob")
	c.befriend("bob", "ann")
	leave := a.connect("ann")
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !c.online("ann") {
			return fmt.Errorf("ann offline at c")
		}
		return nil
	})
	ver := a.version()
	leave()
	clock.add(testGrace / 2)
	a.g.eph.departures(clock.now())
	a.connect("ann")() // back, and gone again
	left := clock.now()
	clock.add(testGrace - time.Millisecond) // a grace after her first leaving
	a.g.eph.departures(clock.now())
	c.heard(t, a)
	c.neverOffline(t, "bob", "ann")
	if v := a.version(); v != ver {
		t.Fatalf("a announced %d changes within the grace", v-ver)
	}
	clock.add(time.Millisecond)
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if c.online("ann") {
			return fmt.Errorf("ann still online at c")
		}
		return nil
	})
	evs := c.presenceEvents("bob", "ann")
	if len(evs) != 2 || evs[1].Online || !evs[1].At.Equal(left) {
		t.Fatalf("bob was told %+v; want online, then offline at %v", evs, left)
	}
	if seen := c.g.eph.presence("ann").LastSeen; !seen.Equal(left) {
		t.Fatalf("ann last seen %v at c, want %v", seen, left)
	}
	if v := a.version(); v != ver+1 {
		t.Fatalf("a announced %d changes, want one", v-ver)
	}
}

// Followers connected here are told about a friend's changes from memory,
// including a friendship added while they are connected.
func TestPresencePushToFollowers(t *testing.T) {
	url := presenceNATS(t)
	a := startInstance(t, url, "a")
	c := startInstance(t, url, "c")
	// bob is connected at c and adds ann as a friend (as the view's apply
	// hook reports it).
	c.connect("bob")
	c.g.eph.onApply([]view.Emitted{{Event: salamander.Event{Type: salamander.EventFriend, User: "ann"}, Audience: []string{"bob"}}})
	told := func(online bool) error {
		for _, ev := range c.devices.eventsOf("bob") {
			if ev.Type == salamander.EventPresence && ev.User == "ann" && ev.Online == online {
				return nil
			}
		}
		return fmt.Errorf("bob was not told ann is online=%v", online)
	}
	leave := a.connect("ann")
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error { return told(true) })
	leave()
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error { return told(false) })
	if evs := a.devices.eventsOf("bob"); len(evs) != 0 {
		t.Fatalf("bob is not connected at a, yet a sent him %v", evs)
	}
}

// Processes of the earlier version are honoured (their heartbeat replaces
// their site's list), and are spoken to in their format without erasing
// anyone's users; v1 messages from v2 processes are not counted twice.
func TestPresenceV1Compat(t *testing.T) {
	url := presenceNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	var heard []presenceMsg
	sub, err := nc.Subscribe(subjPresence, func(m *nats.Msg) {
		var p presenceMsg
		if json.Unmarshal(m.Data, &p) == nil {
			mu.Lock()
			heard = append(heard, p)
			mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	c := startInstance(t, url, "c")
	publish := func(p presenceMsg) {
		b, _ := json.Marshal(p)
		if err := nc.Publish(subjPresence, b); err != nil {
			t.Fatal(err)
		}
	}
	publish(presenceMsg{Site: "old", Users: []string{"old1", "old2"}, Full: true})
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if !c.online("old1") || !c.online("old2") {
			return fmt.Errorf("old users not online")
		}
		return nil
	})
	publish(presenceMsg{Site: "old", Users: []string{"old2"}, Full: true})
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		if c.online("old1") || !c.online("old2") {
			return fmt.Errorf("old1 %v old2 %v", c.online("old1"), c.online("old2"))
		}
		return nil
	})

	// A v2 instance told to (Config.PresenceV1) tells old processes of its
	// users, never as a full list.
	a := startInstanceWith(t, url, "a", nil, func(c *Config) { c.PresenceV1 = true })
	a.connect("ann")
	checkFor(t, 5*time.Second, 10*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range heard {
			if p.Inst == a.g.eph.id && slices.Contains(p.Users, "ann") {
				if p.Full {
					t.Fatal("a v2 instance sent a v1 full list")
				}
				return nil
			}
		}
		return fmt.Errorf("no v1 message about ann")
	})
	c.g.eph.mu.Lock()
	_, twice := c.g.eph.remotes["v1.a"]
	c.g.eph.mu.Unlock()
	if twice {
		t.Fatal("a v2 instance's v1 messages were counted")
	}
}

// A bucket larger than a reply is cut in name order and resumed; the
// parts together are the set, each reply within budget.
func TestUserSetListPages(t *testing.T) {
	s := newUserSet()
	for _, u := range names("someone.with.a.long.name-", 20000) {
		s.add(u)
	}
	var all []int
	for b := range presenceBuckets {
		all = append(all, b)
	}
	const budget = 512 // smaller than one bucket of ~20 names of 31 bytes
	var got []string
	rest, after, replies := all, "", 0
	for len(rest) > 0 {
		parts, done, next := s.list(rest, after, budget)
		replies++
		size := 0
		for _, p := range parts {
			size += syncPartOverhead
			for _, u := range p.Users {
				size += len(u) + 3
				got = append(got, u)
			}
		}
		if size > budget {
			t.Fatalf("reply of %d bytes, budget %d", size, budget)
		}
		if done == 0 && next == "" {
			t.Fatal("no progress")
		}
		rest, after = rest[done:], next
	}
	want := s.all()
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("paged %d names, set has %d", len(got), len(want))
	}
	t.Logf("%d users in %d replies of at most %d bytes", len(want), replies, budget)
}

// The typing limiter holds at most its bound, whatever the flood.
func TestTypingLimiterBounded(t *testing.T) {
	l := newTypingLimiter(time.Second, 1000)
	now := time.Now()
	passed := 0
	for i := 0; i < 5000; i++ {
		if l.allow(fmt.Sprintf("r%d", i), "u", true, now) {
			passed++
		}
	}
	if len(l.last) > 1000 || passed != 1000 {
		t.Fatalf("%d remembered, %d passed", len(l.last), passed)
	}
	if l.allow("r1", "u", true, now.Add(500*time.Millisecond)) {
		t.Fatal("a repeat within the interval passed")
	}
	// A second later the stale pairs are forgotten and new ones pass.
	later := now.Add(time.Second)
	if !l.allow("fresh", "u", true, later) || len(l.last) != 1 {
		t.Fatalf("after the interval: %d remembered", len(l.last))
	}
	// A typing that was passed is stopped once.
	if !l.allow("fresh", "u", false, later) {
		t.Fatal("stopped typing was refused")
	}
	if l.allow("fresh", "u", false, later) {
		t.Fatal("a second stop of one typing was passed")
	}
	// Stops of typings passed elsewhere are remembered too, within the
	// bound: once it is full they are refused until the interval passes.
	for i := range 5000 {
		l.allow(fmt.Sprintf("s%d", i), "u", false, later)
	}
	if len(l.last) > 1000 {
		t.Fatalf("%d remembered after a flood of stops", len(l.last))
	}
}

// A "stopped typing" whose "typing" was passed by another gateway process
// (the client's requests are balanced over a site's processes, and go to
// another site after a failover) is passed on too, at most once an
// interval.
func TestTypingLimiterPassesAStopOfATypingPassedElsewhere(t *testing.T) {
	here, there := newTypingLimiter(time.Second, 1000), newTypingLimiter(time.Second, 1000)
	now := time.Now()
	if !there.allow("r", "u", true, now) {
		t.Fatal("typing refused")
	}
	if !here.allow("r", "u", false, now.Add(100*time.Millisecond)) {
		t.Fatal("a stop of a typing passed by another process was refused: the room shows u typing until its own timeout")
	}
	for _, d := range []time.Duration{100 * time.Millisecond, 500 * time.Millisecond, 1099 * time.Millisecond} {
		if here.allow("r", "u", false, now.Add(d)) {
			t.Fatalf("a repeated stop %v after the first passed again within the interval", d)
		}
	}
	// The user types again (elsewhere) and stops (here) an interval later.
	if !here.allow("r", "u", false, now.Add(1100*time.Millisecond)) {
		t.Fatal("the next interval's stop was refused")
	}
	// A typing passed here is stopped here as before.
	if !here.allow("r", "u", true, now.Add(1200*time.Millisecond)) || !here.allow("r", "u", false, now.Add(1250*time.Millisecond)) ||
		here.allow("r", "u", true, now.Add(1300*time.Millisecond)) || !here.allow("r", "u", true, now.Add(1500*time.Millisecond)) {
		t.Fatal("a typing here after a stop of one passed elsewhere, or its stop, went wrong")
	}
	// A flood that starts with a stop costs one signal more than one that
	// starts with a typing (TestTypingLimiterBoundsStartsAndStops).
	l, passed := newTypingLimiter(time.Second, 1000), 0
	for i := range 1000 {
		at := now.Add(time.Duration(i) * time.Millisecond)
		if l.allow("r", "u", false, at) {
			passed++
		}
		if l.allow("r", "u", i%2 == 1, at) {
			passed++
		}
	}
	if passed != 9 {
		t.Fatalf("%d signals passed in one interval, want a stop, then four typings and their stops", passed)
	}
}

// Neither stops nor starts and stops in turn get past the limiter more
// than eight times an interval (a start a quarter interval after a stop).
func TestTypingLimiterBoundsStartsAndStops(t *testing.T) {
	l := newTypingLimiter(time.Second, 1000)
	now := time.Now()
	passed := 0
	for i := range 1000 {
		at := now.Add(time.Duration(i) * time.Millisecond) // 1,000 signals over one second
		if l.allow("r", "u", i%2 == 0, at) {
			passed++
		}
		if l.allow("r", "u", false, at) {
			passed++
		}
	}
	if passed != 8 {
		t.Fatalf("%d signals passed in one interval, want four typings and their stops", passed)
	}
	// Typing again soon after a stop (the next message) shows at once.
	if !l.allow("again", "u", true, now) || !l.allow("again", "u", false, now) ||
		l.allow("again", "u", true, now.Add(100*time.Millisecond)) || !l.allow("again", "u", true, now.Add(250*time.Millisecond)) {
		t.Fatal("typing again a quarter interval after a stop was refused, or sooner passed")
	}
	// The next interval: typing again, stopped again.
	next := now.Add(time.Second)
	if !l.allow("r", "u", true, next) || !l.allow("r", "u", false, next) {
		t.Fatal("the next interval's typing and stop were refused")
	}
}

// An instance whose list replies do not move on (the same cursor again and
// again, with users each time) is refused, not followed until memory runs
// out; users of buckets not asked for are not taken.
func TestPresenceResyncRefusesRepliesThatMakeNoProgress(t *testing.T) {
	url := presenceNATS(t)
	in := startInstance(t, url, "a")
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	const id = "liar"
	var lists atomic.Int64
	names := make([]string, 100)
	for i := range names {
		names[i] = fmt.Sprintf("u%d", i)
	}
	sub, err := nc.Subscribe(subjPresenceSync+"b."+id, func(m *nats.Msg) {
		var req syncRequest
		_ = json.Unmarshal(m.Data, &req)
		var rep syncReply
		if req.Op == opDigest {
			rep = syncReply{Ver: 1, Sums: make([]uint64, presenceBuckets)}
			rep.Sums[0] = 1
		} else {
			lists.Add(1)
			rep = syncReply{Ver: 1, After: "x", Parts: []syncPart{{Bucket: 0, Users: names}, {Bucket: 7, Users: names}}}
		}
		b, _ := json.Marshal(rep)
		_ = m.Respond(b)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil { // the server knows the subscription
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r := &remote{site: "b", sited: true, set: newUserSet()}
	_, users, err := in.g.eph.resync(ctx, id, r, [presenceBuckets]uint64{})
	if err == nil || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("resync of a lying instance: %v", err)
	}
	if n := lists.Load(); n > 2 {
		t.Fatalf("followed %d list replies that made no progress", n)
	}
	if users > len(names) {
		t.Fatalf("took %d users; only bucket 0 was asked for, with at most %d", users, len(names))
	}
}

// Last-seen times are kept for at most max users, the longest gone
// forgotten first, whatever the order of comings and goings; the list of
// times set stays within a few times max.
func TestSeenTimesBounded(t *testing.T) {
	s := newSeenTimes(3)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tick := func() time.Time { at = at.Add(time.Second); return at }
	for _, u := range []string{"a", "b", "c"} {
		s.set(u, tick())
	}
	aAgain := tick()
	s.set("a", aAgain) // a went offline again: now the newest
	s.set("d", tick()) // four users: b, gone longest, is forgotten
	if !s.get("b").IsZero() || s.get("a") != aAgain || s.get("c").IsZero() || s.get("d").IsZero() {
		t.Fatalf("kept %v", s.at)
	}
	for range 100_000 { // the same two users coming and going
		s.set("c", tick())
		s.set("d", tick())
	}
	if len(s.at) != 3 || len(s.order) > 2*1024+2 {
		t.Fatalf("%d users, %d times in order", len(s.at), len(s.order))
	}
	if s.get("a") != aAgain {
		t.Fatal("a, never gone again, was forgotten while only two others came and went")
	}
}

// hearV2 and hearV1 hand e one presence message as NATS would (hearV2 on
// the subject of the site it names).
func hearV2(e *ephemeral, m presenceMsgV2) {
	b, _ := json.Marshal(m)
	e.onPresence(&nats.Msg{Subject: subjPresenceAt + m.Site, Data: b})
}

func hearV1(e *ephemeral, p presenceMsg) {
	b, _ := json.Marshal(p)
	e.onPresenceV1(&nats.Msg{Subject: subjPresence, Data: b})
}

// A process mirrors at most maxRemoteInstances other instances (~16 KB
// each, whatever they list, kept up to maxPresenceTTL): new ones are
// refused and counted while the table is full, its own mirror never is,
// and one that leaves makes room.
func TestPresenceRemoteInstancesBounded(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	e.refusedMetric = prometheus.NewCounter(prometheus.CounterOpts{Name: "refused"})
	const extra = 100
	for i := range maxRemoteInstances + extra {
		hearV2(e, presenceMsgV2{Kind: kindBeat, Inst: instanceID("b", fmt.Sprintf("%x", 0x10000+i)), Site: "b",
			TTLms: maxPresenceTTL.Milliseconds()})
	}
	if n := len(e.remotes); n != maxRemoteInstances {
		t.Fatalf("%d instances mirrored, want at most %d", n, maxRemoteInstances)
	}
	if e.refusedInstances != extra {
		t.Fatalf("%d instances counted as refused, want %d", e.refusedInstances, extra)
	}
	// A refused instance's users, and a new v1 site's, are not online here.
	hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: "b-beef", Site: "b", Ver: 1, On: []string{"carol"}})
	hearV1(e, presenceMsg{Site: "old", Users: []string{"carol"}, Full: true})
	if e.count["carol"] != 0 || e.remotes["b-beef"] != nil || e.remotes["v1.old"] != nil {
		t.Fatalf("a new instance was mirrored past the bound: carol counted %d", e.count["carol"])
	}
	if n := counterTotal(e.refusedMetric, nil); n != extra+2 {
		t.Fatalf("the refusals metric says %d, want %d", n, extra+2)
	}
	// This process's own mirror is never refused.
	hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: e.id, Site: e.site, Ver: 1, On: []string{"carol"}})
	if e.remotes[e.id] == nil || e.count["carol"] != 1 {
		t.Fatalf("this process's own mirror was refused: carol counted %d", e.count["carol"])
	}
	// An instance that leaves makes room for a new one.
	hearV2(e, presenceMsgV2{Kind: kindBye, Inst: "b-10000", Site: "b"})
	hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: "b-beef", Site: "b", Ver: 1, On: []string{"dave"}})
	if e.remotes["b-beef"] == nil || e.count["dave"] != 1 {
		t.Fatal("no room made by an instance that left")
	}
}

// A peer's beat names it on the public /v1/status (site_gateways): a name
// that is not one a gateway makes (a host and port, or --instance's kind
// of word) is not shown, though the beat still counts; a message whose
// site is not a site's name is refused, and mirrors nothing.
func TestPresenceBeatNameAndSiteValidated(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	inst := 0x100
	beat := func(site, name string) string {
		inst++
		id := fmt.Sprintf("%x", inst)
		if salamander.ValidSiteName(site) {
			id = instanceID(site, id)
		}
		hearV2(e, presenceMsgV2{Kind: kindBeat, Inst: id, Name: name, Site: site, Ver: 1, Count: 1})
		hearV2(e, presenceMsgV2{Kind: kindDelta, Inst: id, Site: site, Ver: 1, On: []string{"carol"}})
		// As an earlier version's process says it, on the subject that
		// names no site: there only the site's name is checked.
		hearOn(e, subjPresenceV2, presenceMsgV2{Kind: kindBeat, Inst: id, Name: name, Site: site, Ver: 1, Count: 1})
		return id
	}
	good := []string{"gw-a-2", "b2", "host.example.com:8080", "[::1]:8080", "[fe80::1%eth0]:80", "127.0.0.1:4222",
		"HOST_1.local:80", strings.Repeat("h", 253) + ":65535"}
	bad := []string{strings.Repeat("x", 60<<10), strings.Repeat("h", 300), "<script>alert(1)</script>", "gw a",
		"gw\n", "gw\x00", "이름", `"quoted"`}
	for _, name := range append(slices.Clone(good), bad...) {
		beat(e.site, name)
	}
	listed := map[string]int{}
	gws := e.siteGateways(time.Now())
	for _, g := range gws {
		listed[g.Instance]++
	}
	if len(gws) != 1+len(good)+len(bad) {
		t.Fatalf("%d gateways listed, want this one and %d beats'", len(gws), len(good)+len(bad))
	}
	for _, name := range good {
		if listed[name] != 1 {
			t.Errorf("gateway %q not listed by its name", name)
		}
	}
	for _, name := range bad {
		if listed[name] != 0 {
			t.Errorf("gateway listed as %.40q", name)
		}
	}
	if e.count["carol"] != len(good)+len(bad) {
		t.Errorf("carol counted %d times, want once per instance: a bad name refused the instance's users",
			e.count["carol"])
	}
	for _, site := range []string{"", "A", "a b", "-a", "<b>", "a.b", strings.Repeat("s", 33), strings.Repeat("s", 60<<10)} {
		if id := beat(site, "gw"); e.remotes[id] != nil || e.remotes[fmt.Sprintf("%x", inst)] != nil {
			t.Errorf("instance of site %.40q mirrored", site)
		}
	}
	if e.count["carol"] != len(good)+len(bad) {
		t.Errorf("carol counted %d times: instances of invalid sites were counted", e.count["carol"])
	}
}

// Messages of the earlier format are validated as the current ones are:
// a site's name, and user names (each invalid one skipped).
func TestPresenceV1Validated(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	for _, site := range []string{"Old Site", "<b>old</b>", strings.Repeat("o", 40<<10)} {
		hearV1(e, presenceMsg{Site: site, Users: []string{"carol"}, Full: true})
		hearV1(e, presenceMsg{Site: site, Users: []string{"dave"}})
		if e.remotes["v1."+site] != nil || e.count["carol"] != 0 || e.count["dave"] != 0 {
			t.Fatalf("v1 site %.40q mirrored: carol %d dave %d", site, e.count["carol"], e.count["dave"])
		}
	}
	bad := []string{"", "x", "Not A Name", "<img src=x>", strings.Repeat("z", 1000), "a..b", "이름"}
	for i, m := range []struct {
		p    presenceMsg
		want []string
	}{
		{presenceMsg{Site: "old", Users: append([]string{"carol"}, bad...), Full: true}, []string{"carol"}},
		{presenceMsg{Site: "old", Users: append(slices.Clone(bad), "dave")}, []string{"carol", "dave"}},
		{presenceMsg{Site: "old", Offline: append([]string{"carol"}, bad...)}, []string{"dave"}},
	} {
		hearV1(e, m.p)
		r := e.remotes["v1.old"]
		if r == nil {
			t.Fatalf("message %d: v1 site old not mirrored", i)
		}
		if r.set.n != len(m.want) {
			t.Fatalf("message %d: v1 site old lists %d users, want %v", i, r.set.n, m.want)
		}
		for _, u := range m.want {
			if !r.set.has(u) || e.count[u] != 1 {
				t.Fatalf("message %d: %q is not online", i, u)
			}
		}
	}
}

// hearOn hands e one v2 presence message on subj.
func hearOn(e *ephemeral, subj string, m presenceMsgV2) {
	b, _ := json.Marshal(m)
	e.onPresence(&nats.Msg{Subject: subj, Data: b})
}

// A gateway speaks for its own site's processes only: a message on one
// site's subject that names another site, or an instance heard on
// another site's subject, changes nothing (a stolen gateway credential
// of site a may publish on a's subject only, and would otherwise erase
// site b's users with a goodbye or a delta in the name of b's process).
// The subject of earlier versions is honoured for the instances heard
// there (a rolling upgrade), never for one heard on its site's subject.
func TestPresenceSpeaksForItsOwnSite(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	b1 := instanceID("b", "b1")
	hearOn(e, subjPresenceAt+"b", presenceMsgV2{Kind: kindBeat, Inst: b1, Site: "b", TTLms: 3000})
	hearOn(e, subjPresenceAt+"b", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "b", Ver: 1, On: []string{"bea"}})
	if e.count["bea"] != 1 {
		t.Fatalf("bea, online at b, counted %d", e.count["bea"])
	}
	// Site a's credential, in b1's name.
	for _, m := range []struct {
		subj string
		msg  presenceMsgV2
	}{
		{subjPresenceAt + "a", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "b", Ver: 2, Off: []string{"bea"}}},
		{subjPresenceAt + "a", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "a", Ver: 2, Off: []string{"bea"}}},
		{subjPresenceAt + "a", presenceMsgV2{Kind: kindBye, Inst: b1, Site: "a"}},
		{subjPresenceAt + "a", presenceMsgV2{Kind: kindBeat, Inst: b1, Site: "a", Ver: 9, TTLms: 100}},
		{subjPresenceV2, presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "b", Ver: 2, Off: []string{"bea"}}},
		{subjPresenceV2, presenceMsgV2{Kind: kindBye, Inst: b1, Site: "b"}},
		// A new instance claiming site b, from a's subject.
		{subjPresenceAt + "a", presenceMsgV2{Kind: kindDelta, Inst: "a-a9", Site: "b", Ver: 1, On: []string{"ghost"}}},
	} {
		hearOn(e, m.subj, m.msg)
	}
	r := e.remotes[b1]
	if r == nil || r.stopping || r.ver != 1 || r.ttl != 3*time.Second || e.count["bea"] != 1 || e.count["ghost"] != 0 ||
		e.remotes["a-a9"] != nil {
		t.Fatalf("forged messages changed the mirror: b1 %+v, bea counted %d, ghost %d", r, e.count["bea"], e.count["ghost"])
	}
	// A process of an earlier version, heard on the old subject.
	hearOn(e, subjPresenceV2, presenceMsgV2{Kind: kindDelta, Inst: "c1", Site: "c", Ver: 1, On: []string{"cyd"}})
	if e.count["cyd"] != 1 {
		t.Fatal("an earlier version's process is not heard")
	}
	hearOn(e, subjPresenceAt+"c", presenceMsgV2{Kind: kindBye, Inst: "c1", Site: "c"})
	if e.remotes["c1"] == nil {
		t.Fatal("an instance heard on the earlier versions' subject was dropped from a site's subject")
	}
	hearOn(e, subjPresenceV2, presenceMsgV2{Kind: kindBye, Inst: "c1", Site: "c"})
	if e.remotes["c1"] != nil || e.count["cyd"] != 0 {
		t.Fatal("an earlier version's goodbye was not heard")
	}
	// And b1 itself is heard.
	hearOn(e, subjPresenceAt+"b", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "b", Ver: 2, Off: []string{"bea"}})
	if e.count["bea"] != 0 {
		t.Fatal("b1's own delta was not applied")
	}
}

// A stolen gateway credential of site a cannot hide site b's users from a
// process that starts after it, either: it hears b's processes' ids and
// may beat in their names on its own site's subject before the new
// process hears them from b, but an instance's id names its site, so what
// a's subject says in the name of b's process is refused, and b's process
// is mirrored from b's subject as ever.
func TestPresenceStolenCredentialCannotSquatAnotherSitesInstance(t *testing.T) {
	e := newFuzzEphemeral(&fuzzDevices{})
	b1 := instanceID("b", "0123456789abcdef")
	// Site a's credential beats first, in b1's name, on the only subject
	// it may publish on.
	hearOn(e, subjPresenceAt+"a", presenceMsgV2{Kind: kindBeat, Inst: b1, Site: "a", Ver: 1 << 40, TTLms: 3000})
	hearOn(e, subjPresenceAt+"a", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "a", Ver: 1 << 40, On: []string{"ghost"}})
	// Then b1 itself.
	hearOn(e, subjPresenceAt+"b", presenceMsgV2{Kind: kindBeat, Inst: b1, Site: "b", TTLms: 3000})
	hearOn(e, subjPresenceAt+"b", presenceMsgV2{Kind: kindDelta, Inst: b1, Site: "b", Ver: 1, On: []string{"bea"}})
	if e.count["bea"] != 1 || e.count["ghost"] != 0 {
		t.Fatalf("after site a's credential beat in b1's name: bea (online at b1) counted %d, ghost %d",
			e.count["bea"], e.count["ghost"])
	}
	// Ids of a shape that starts like another site's are a's own only if
	// what follows "a-" is the random part.
	for _, id := range []string{"a-" + b1, "a-b-0123", "a-", "b-0123"} {
		if instanceOfSite(id, "a") {
			t.Errorf("%q passed as an instance of site a", id)
		}
	}
}
