package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/site"
)

// Two gateway processes serve site a on one NATS cluster, as in production
// (`salamander serve --site a --nats …` twice). A user connected to each
// shows online at site c in every sample, and when the second process dies
// only its user goes offline, within its TTL.
func TestPresenceTwoProcessesOneSite(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	const beat, ttl = 200 * time.Millisecond, time.Second
	a2 := extraGateway(t, ctx, cluster.Site(0).Node().ClientURL(), func(cfg *site.Config) {
		cfg.PresenceBeat, cfg.PresenceTTL = beat, ttl
	})

	// ann is at site a's first process, bob at its second (and only there).
	ann, annName := signedUp(t, 0, "pra")
	bob, bobName := signedUpAt(t, "prb", a2.URL())
	// The observer at site c has added both as friends: presence is said
	// only to friends and to those sharing a room. A stranger is told
	// nothing, not even whether the user exists.
	obs, _ := signedUp(t, 2, "pro")
	befriend(t, ctx, obs, annName, bobName)
	stranger, _ := signedUp(t, 2, "prs")
	ps, err := stranger.Presence(ctx, annName, "nosuchuser")
	if err != nil || len(ps) != 2 || !ps[0].Hidden || ps[0].Online || !ps[0].LastSeen.IsZero() || !ps[1].Hidden {
		t.Fatalf("a stranger asked for ann's presence and got %+v %v", ps, err)
	}
	subAnn := ann.Subscribe(ctx)
	defer subAnn.Close()
	waitReady(t, subAnn.Events())
	subBob := bob.Subscribe(ctx)
	defer subBob.Close()
	waitReady(t, subBob.Events())

	// Each of site a's processes lists both to an operator (GET
	// /v1/ops/site): a site-wide view of its gateways, with the users
	// connected to each.
	op, _ := operator(t, ctx, 0, "presop")
	type siteView struct {
		Instance     string
		SiteGateways []gateway.SiteGateway `json:"site_gateways"`
	}
	opsSite := func(url string) (siteView, error) {
		var st siteView
		req, err := http.NewRequestWithContext(ctx, "GET", url+"/v1/ops/site", nil)
		if err != nil {
			return st, err
		}
		req.Header.Set("Authorization", "Bearer "+op.Token())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return st, err
		}
		defer res.Body.Close()
		err = json.NewDecoder(res.Body).Decode(&st)
		return st, err
	}
	urls := []string{cluster.URL(0), a2.URL()}
	var instances []string
	for _, url := range urls {
		st, err := opsSite(url)
		if err != nil || st.Instance == "" {
			t.Fatalf("%s/v1/ops/site: %+v, %v", url, st, err)
		}
		instances = append(instances, st.Instance)
	}
	if instances[0] == instances[1] {
		t.Fatalf("both of site a's processes call themselves %s", instances[0])
	}
	// Both list both, each with its users. A process an earlier test
	// stopped at site a may still be listed until its beats expire: the
	// list is checked for these two, not for its length.
	for _, url := range urls {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			st, err := opsSite(url)
			if err != nil {
				return err
			}
			for _, inst := range instances {
				i := slices.IndexFunc(st.SiteGateways, func(g gateway.SiteGateway) bool { return g.Instance == inst })
				if i < 0 {
					return fmt.Errorf("%s does not list %s: %+v", url, inst, st.SiteGateways)
				}
				if g := st.SiteGateways[i]; g.This != (inst == st.Instance) || g.Users < 1 {
					return fmt.Errorf("%s lists %+v", url, st.SiteGateways)
				}
			}
			return nil
		})
	}

	online := func() (map[string]bool, error) {
		ps, err := obs.Presence(ctx, annName, bobName)
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, p := range ps {
			out[p.User] = p.Online
		}
		return out, nil
	}
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		on, err := online()
		if err != nil || !on[annName] || !on[bobName] {
			return fmt.Errorf("at site c: %v %v", on, err)
		}
		return nil
	})
	// 30 samples over 6 s: 30 digests of the second process and at least
	// one of the first (every 5 s); neither may erase the other's user.
	for i := 0; i < 30; i++ {
		on, err := online()
		if err != nil || !on[annName] || !on[bobName] {
			t.Fatalf("sample %d at site c: %v %v", i, on, err)
		}
		time.Sleep(200 * time.Millisecond) // the sampling period
	}

	// The second process dies: its NATS connection drops, no goodbye.
	a2.Store().Close()
	died := time.Now()
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		on, err := online()
		if err != nil {
			return err
		}
		if !on[annName] {
			t.Fatalf("ann went offline at site c with the other process: %v", on)
		}
		if on[bobName] {
			return fmt.Errorf("bob still online at site c")
		}
		return nil
	})
	gone := time.Since(died)
	t.Logf("bob offline at site c %v after his process died (TTL %v; site c sweeps every second)", gone, ttl)
	if gone > ttl+3*time.Second {
		t.Fatalf("bob went offline after %v, TTL %v", gone, ttl)
	}
	if ps, err := obs.Presence(ctx, bobName); err != nil || len(ps) != 1 || ps[0].LastSeen.IsZero() {
		t.Fatalf("bob's last seen: %+v %v (%s)", ps, err, salamander.ErrorCode(err))
	}
}

// A device that reconnects elsewhere, and a graceful restart of the
// gateway process a device is connected to, show the user's followers no
// offline: the process a user's last device left keeps listing them for
// its grace, and a stopping one asks the others to keep its users as long.
// bob closes his only socket at site b and opens one at site c; ann's
// process (site a's second) stops and her device moves to site a's first.
// A user who really leaves is shown offline once the grace has passed, and
// not before, last seen when they left.
func TestPresenceReconnectAndRestartShowNoOffline(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	const grace = gateway.DefaultPresenceGrace
	a2 := extraGateway(t, ctx, cluster.Site(0).Node().ClientURL())
	ann, annName := signedUpAt(t, "pga", a2.URL(), cluster.URL(0))
	bob, bobName := signedUp(t, 1, "pgb")
	obs, _ := signedUp(t, 2, "pgo")
	befriend(t, ctx, obs, annName, bobName)
	subObs := obs.Subscribe(ctx)
	defer subObs.Close()
	waitReady(t, subObs.Events())
	var mu sync.Mutex
	var offline []salamander.Event // what obs is told of ann and bob going offline
	go func() {
		for ev := range subObs.Events() {
			if ev.Type == salamander.EventPresence && !ev.Online && (ev.User == annName || ev.User == bobName) {
				mu.Lock()
				offline = append(offline, ev)
				mu.Unlock()
			}
		}
	}()
	toldOffline := func() []salamander.Event {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(offline)
	}
	online := func() (map[string]salamander.Presence, error) {
		ps, err := obs.Presence(ctx, annName, bobName)
		if err != nil {
			return nil, err
		}
		out := map[string]salamander.Presence{}
		for _, p := range ps {
			out[p.User] = p
		}
		return out, nil
	}
	subAnn := ann.Subscribe(ctx)
	defer subAnn.Close()
	waitReady(t, subAnn.Events())
	subBob := bob.Subscribe(ctx)
	waitReady(t, subBob.Events())
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		on, err := online()
		if err != nil || !on[annName].Online || !on[bobName].Online {
			return fmt.Errorf("at site c: %v %v", on, err)
		}
		return nil
	})

	// bob's device closes its socket, then opens one at site c.
	if err := subBob.Close(); err != nil {
		t.Fatal(err)
	}
	bob2 := newClient(t, 2)
	bob2.SetToken(bob.Token())
	subBob2 := bob2.Subscribe(ctx)
	defer subBob2.Close()
	waitReady(t, subBob2.Events())
	// ann's process restarts: it stops gracefully, and her device moves to
	// the site's other process.
	a2.Close()
	waitReady(t, subAnn.Events())
	if site := subAnn.Site(); site != cluster.URL(0) {
		t.Fatalf("ann reconnected to %q, want site a's other process %s", site, cluster.URL(0))
	}
	// Past the grace, and a sweep, of both: never shown offline.
	for start := time.Now(); time.Since(start) < grace+2*time.Second; time.Sleep(200 * time.Millisecond) {
		on, err := online()
		if err != nil || !on[annName].Online || !on[bobName].Online {
			t.Fatalf("at site c: %v %v", on, err)
		}
		if evs := toldOffline(); len(evs) > 0 {
			t.Fatalf("site c told its follower %+v", evs)
		}
	}

	// bob really leaves: shown offline after the grace, last seen then.
	left := time.Now().Truncate(time.Millisecond) // as departures travel
	if err := subBob2.Close(); err != nil {
		t.Fatal(err)
	}
	checkFor(t, grace+10*time.Second, 20*time.Millisecond, func() error {
		if len(toldOffline()) == 0 {
			return fmt.Errorf("bob not shown offline at site c")
		}
		return nil
	})
	took := time.Since(left)
	t.Logf("bob shown offline %v after he left (grace %v)", took, grace)
	ev := toldOffline()[0]
	if ev.User != bobName || took < grace || ev.At.Before(left) || ev.At.After(left.Add(time.Second)) {
		t.Fatalf("told %+v %v after bob left at %v; want bob, a grace (%v) later, dated when he left", ev, took, left, grace)
	}
	on, err := online()
	if err != nil || on[bobName].Online || !on[bobName].LastSeen.Equal(ev.At) || !on[annName].Online {
		t.Fatalf("at site c: %+v %v; want bob offline, last seen %v, and ann online", on, err, ev.At)
	}
}

// A rolling restart of one of site a's two gateway processes — it stops
// gracefully and starts again on the same address and disk while the other
// serves — shows no follower a flap, of the users of the restarted process
// (ann, whose device moves to the other process) or of the other (carl):
// a follower at site c is told nothing at all, past the grace. A follower
// whose device reaches the restarted process as soon as it is ready is
// told both are online from its first answer, not offline and then online
// as the new process learns the others' users.
func TestPresenceRollingRestartShowsNoFlap(t *testing.T) {
	ctx := testCtx(t, 150*time.Second)
	const grace = gateway.DefaultPresenceGrace
	ports, err := freeport.Loopback(1)
	if err != nil {
		t.Fatal(err)
	}
	addr, dir := fmt.Sprintf("127.0.0.1:%d", ports[0]), filepath.Join(t.TempDir(), "a2")
	start := func() *site.Site {
		return extraGateway(t, ctx, cluster.Site(0).Node().ClientURL(), func(cfg *site.Config) {
			cfg.HTTPAddr, cfg.DataDir = addr, dir
		})
	}
	a2 := start()
	ann, annName := signedUpAt(t, "rra", a2.URL(), cluster.URL(0))
	carl, carlName := signedUp(t, 0, "rrc")
	obs, _ := signedUp(t, 2, "rro")
	befriend(t, ctx, obs, annName, carlName)
	subObs := obs.Subscribe(ctx)
	defer subObs.Close()
	waitReady(t, subObs.Events())
	var mu sync.Mutex
	var told []salamander.Event // what obs is told of ann and carl
	go func() {
		for ev := range subObs.Events() {
			if ev.Type == salamander.EventPresence && (ev.User == annName || ev.User == carlName) {
				mu.Lock()
				told = append(told, ev)
				mu.Unlock()
			}
		}
	}()
	toldNow := func() []salamander.Event {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(told)
	}
	online := func(c *client.Client) (map[string]bool, error) {
		ps, err := c.Presence(ctx, annName, carlName)
		if err != nil {
			return nil, err
		}
		out := map[string]bool{}
		for _, p := range ps {
			out[p.User] = p.Online
		}
		return out, nil
	}
	subAnn := ann.Subscribe(ctx)
	defer subAnn.Close()
	waitReady(t, subAnn.Events())
	subCarl := carl.Subscribe(ctx)
	defer subCarl.Close()
	waitReady(t, subCarl.Events())
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		on, err := online(obs)
		if err != nil || !on[annName] || !on[carlName] {
			return fmt.Errorf("at site c: %v %v", on, err)
		}
		return nil
	})
	// Both came online, and the follower was told: from here on, nothing
	// more is said of them.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		seen := map[string]bool{}
		for _, ev := range toldNow() {
			seen[ev.User] = ev.Online
		}
		if !seen[annName] || !seen[carlName] {
			return fmt.Errorf("site c told its follower %v", seen)
		}
		return nil
	})
	mu.Lock()
	told = nil
	mu.Unlock()

	a2.Close()
	waitReady(t, subAnn.Events())
	if s := subAnn.Site(); s != cluster.URL(0) {
		t.Fatalf("ann reconnected to %q, want site a's other process %s", s, cluster.URL(0))
	}
	a2 = start()
	// A follower's device reaches the restarted process at once.
	obs2, err := client.New(client.Config{Sites: []string{a2.URL()}, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	obs2.SetToken(obs.Token())
	if on, err := online(obs2); err != nil || !on[annName] || !on[carlName] {
		t.Errorf("the restarted process's first answer: %v %v; want ann and carl online", on, err)
	}
	// Past the grace, and a sweep, of the stopped process: nothing said.
	for start := time.Now(); time.Since(start) < grace+2*time.Second; time.Sleep(200 * time.Millisecond) {
		for _, c := range []*client.Client{obs, obs2} {
			if on, err := online(c); err != nil || !on[annName] || !on[carlName] {
				t.Fatalf("at %s: %v %v", c.Site(), on, err)
			}
		}
		if evs := toldNow(); len(evs) > 0 {
			t.Fatalf("site c told its follower %+v during the restart", evs)
		}
	}
}
