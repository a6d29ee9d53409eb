package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
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
	bobName := uniqueName("prb")
	bob, err := client.New(client.Config{Sites: []string{a2.URL()}, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SignUp(ctx, bobName, "Bob", "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	// The observer at site c has added both as friends: presence is said
	// only to friends and to those sharing a room. A stranger is told
	// nothing, not even whether the user exists.
	obs, _ := signedUp(t, 2, "pro")
	for _, f := range []string{annName, bobName} {
		if _, err := obs.AddFriend(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
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

	// Each of site a's processes lists both in /v1/status: a site-wide
	// view of its gateways, with the users connected to each.
	for _, url := range []string{cluster.URL(0), a2.URL()} {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			res, err := http.Get(url + "/v1/status")
			if err != nil {
				return err
			}
			defer res.Body.Close()
			var st struct {
				Instance     string
				SiteGateways []gateway.SiteGateway `json:"site_gateways"`
			}
			if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
				return err
			}
			if len(st.SiteGateways) != 2 || st.SiteGateways[0].Instance == st.SiteGateways[1].Instance {
				return fmt.Errorf("%s lists %+v", url, st.SiteGateways)
			}
			for _, g := range st.SiteGateways {
				if g.This != (g.Instance == st.Instance) || g.Users < 1 {
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
