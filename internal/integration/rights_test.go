package integration

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
)

// sentinel is a subject no gateway may publish or subscribe to: a
// refusal of it, which the server sends after those of everything asked
// before it, marks the end of what one check asked.
const sentinel = "_INBOX.sentinel"

// refusals connects with site i's gateway credential and reports, for
// each subject, whether the server refused to publish to it (sub false)
// or subscribe to it (sub true).
func refusals(t *testing.T, i int, sub bool, subjects ...string) map[string]bool {
	t.Helper()
	errs := make(chan error, 64)
	nc, err := natsAs(t, i, append(siteCreds(t, i),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { errs <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx := testCtx(t, 20*time.Second)
	out := map[string]bool{}
	for _, subj := range subjects {
		for _, s := range []string{subj, sentinel} {
			var err error
			if sub {
				_, err = nc.SubscribeSync(s)
			} else {
				err = nc.Publish(s, []byte("{}"))
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := nc.FlushWithContext(ctx); err != nil {
			t.Fatal(err)
		}
		for done := false; !done; {
			select {
			case err := <-errs:
				msg := err.Error()
				if !strings.Contains(strings.ToLower(msg), "permissions violation") {
					t.Fatalf("%s failed otherwise: %v", subj, err)
				}
				switch {
				case strings.Contains(msg, `"`+sentinel+`"`):
					done = true
				case strings.Contains(msg, `"`+subj+`"`):
					out[subj] = true
				}
			case <-ctx.Done():
				t.Fatalf("the server did not refuse %s", sentinel)
			}
		}
	}
	return out
}

// A stolen gateway credential speaks for its own site only: it cannot
// send another site's heartbeats (a cut-off site would think it heard a
// majority), or presence on the subjects that carry no site or another
// site's (erasing another site's online users, or listing gateways it
// does not run), nor answer another site's processes' presence resyncs,
// nor announce commits (every site would apply what no one appended), nor
// move the meta leader.
func TestGatewayCredentialSpeaksOnlyForItsSite(t *testing.T) {
	refusedPub := refusals(t, 0, false,
		"sal.eph.hb.b", "sal.eph.hb.c", "sal.eph.presence", "sal.eph.presence.v2", "sal.eph.presence.at.b",
		"salc.p0.x", "$JS.API.META.LEADER.STEPDOWN",
		// What the gateway of site a needs (and nothing hears: the log's
		// subjects and the gatherers' are left alone, every send shows them
		// open).
		"sal.eph.hb.a", "sal.eph.presence.at.a", "sal.eph.presence.sync.b.x", "sal.eph.typing", "sal.eph.presence.roll")
	for _, subj := range []string{"sal.eph.hb.b", "sal.eph.hb.c", "sal.eph.presence", "sal.eph.presence.v2",
		"sal.eph.presence.at.b", "salc.p0.x", "$JS.API.META.LEADER.STEPDOWN"} {
		if !refusedPub[subj] {
			t.Errorf("gateway-a may publish to %s", subj)
		}
	}
	for _, subj := range []string{"sal.eph.hb.a", "sal.eph.presence.at.a", "sal.eph.presence.sync.b.x", "sal.eph.typing",
		"sal.eph.presence.roll"} {
		if refusedPub[subj] {
			t.Errorf("gateway-a may not publish to %s, which it needs", subj)
		}
	}
	refusedSub := refusals(t, 0, true, "sal.eph.presence.v2.sync.*", "sal.eph.presence.sync.b.*", "sal.eph.gather.b",
		"sal.eph.presence.sync.a.*", "sal.eph.presence.at.*", "sal.eph.hb.*", "sal.eph.presence.roll")
	for _, subj := range []string{"sal.eph.presence.v2.sync.*", "sal.eph.presence.sync.b.*", "sal.eph.gather.b"} {
		if !refusedSub[subj] {
			t.Errorf("gateway-a may subscribe to %s", subj)
		}
	}
	for _, subj := range []string{"sal.eph.presence.sync.a.*", "sal.eph.presence.at.*", "sal.eph.hb.*", "sal.eph.presence.roll"} {
		if refusedSub[subj] {
			t.Errorf("gateway-a may not subscribe to %s, which it needs", subj)
		}
	}
}

// A stolen gateway credential makes no stream of its own — one that
// captures other gateways' replies, read back with direct gets, or
// presence and heartbeats — and moves the leaders of Salamander's
// streams only.
func TestGatewayCredentialMakesNoStreams(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	nc, err := natsAs(t, 0, siteCreds(t, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := jetStream(t, nc)
	anc, err := cluster.AdminNATS(0)
	if err != nil {
		t.Fatal(err)
	}
	defer anc.Close()
	ajs := jetStream(t, anc)
	for _, cfg := range []jetstream.StreamConfig{
		{Name: "SPY", Subjects: []string{"_INBOX.gateway-b.>"}},
		// A partition this cluster (3 partitions) does not have.
		{Name: "SAL_P7", Subjects: []string{"sal.eph.>"}},
	} {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := js.CreateStream(c, cfg)
		cancel()
		if err == nil {
			_ = ajs.DeleteStream(ctx, cfg.Name)
			t.Errorf("gateway-a created stream %s on %v", cfg.Name, cfg.Subjects)
		}
	}
	// Another application's stream (an account should hold Salamander's
	// only, but the credential must not reach past them).
	if _, err := ajs.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER_APP", Subjects: []string{"other.>"},
		Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = ajs.DeleteStream(context.Background(), "OTHER_APP") }()
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		st, err := ajs.Stream(ctx, "OTHER_APP")
		if err != nil {
			return err
		}
		if st.CachedInfo().Cluster == nil || st.CachedInfo().Cluster.Leader == "" {
			return context.DeadlineExceeded
		}
		return nil
	})
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := nc.RequestWithContext(c, "$JS.API.STREAM.LEADER.STEPDOWN.OTHER_APP", nil)
	if err == nil && strings.Contains(string(res.Data), `"success":true`) {
		t.Error("gateway-a stepped down the leader of another application's stream")
	}
}

// A stolen gateway credential of site a cannot take site b's users
// offline: it hears b's processes' ids, but a goodbye in their name is
// refused on the subject that names no site, and ignored on its own
// site's subject (and it may not publish on b's).
func TestStolenGatewayCannotEraseAnotherSitesUsers(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	bob, bobName := signedUp(t, 1, "erb")
	_, ghostName := signedUp(t, 0, "erg")
	obs, _ := signedUp(t, 2, "ero")
	befriend(t, ctx, obs, bobName, ghostName)
	sub := bob.Subscribe(ctx)
	defer sub.Close()
	waitReady(t, sub.Events())
	online := func(user string) error {
		ps, err := obs.Presence(ctx, user)
		if err != nil {
			return err
		}
		if len(ps) != 1 || !ps[0].Online {
			return fmt.Errorf("%s at site c: %+v", user, ps)
		}
		return nil
	}
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error { return online(bobName) })

	// The thief listens for site b's processes.
	nc, err := natsAs(t, 0, siteCreds(t, 0)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var mu sync.Mutex
	ids := map[string]bool{}
	for _, subj := range []string{"sal.eph.presence.v2", "sal.eph.presence.at.*"} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			var p struct{ Inst, Site string }
			if json.Unmarshal(m.Data, &p) == nil && p.Site == "b" && p.Inst != "" {
				mu.Lock()
				ids[p.Inst] = true
				mu.Unlock()
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(ids) == 0 {
			return errors.New("no presence message of site b heard")
		}
		return nil
	})
	publish := func(subj string, m map[string]any) {
		b, _ := json.Marshal(m)
		if err := nc.Publish(subj, b); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	for id := range ids {
		publish("sal.eph.presence.v2", map[string]any{"kind": "bye", "inst": id, "site": "b"})
		publish("sal.eph.presence.at.a", map[string]any{"kind": "bye", "inst": id, "site": "a"})
		publish("sal.eph.presence.at.a", map[string]any{"kind": "delta", "inst": id, "site": "a", "ver": 1 << 40,
			"off": []string{bobName}})
	}
	mu.Unlock()
	// Then, after them on each subject, what a gateway of site a may say:
	// ghost is online at a process of its own. Once site c has heard it,
	// it has heard what came before.
	const ghostInst = "a-feedface0001" // an id of site a's (gateway.instanceID)
	for _, subj := range []string{"sal.eph.presence.v2", "sal.eph.presence.at.a"} {
		publish(subj, map[string]any{"kind": "delta", "inst": ghostInst, "site": "a", "ver": 1, "on": []string{ghostName}})
	}
	checkFor(t, 15*time.Second, 20*time.Millisecond, func() error { return online(ghostName) })
	if err := online(bobName); err != nil {
		t.Fatalf("site a's credential took site b's user offline: %v", err)
	}
	publish("sal.eph.presence.at.a", map[string]any{"kind": "bye", "inst": ghostInst, "site": "a"})
}

// What the servers refuse a site's own connection for want of permission
// (its NATS user configured for another version, or for fewer partitions
// than the cluster has) is counted in /metrics and named in the
// operators' GET /v1/ops/site: the site stays ready, and only its users'
// presence or its sends to some rooms would fail.
func TestARefusedPermissionIsReported(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	op, _ := withRole(t, ctx, 2, "refop", salamander.RoleOperator)
	before, _ := scrape(t, 2).sum("salamander_nats_permission_errors_total")
	nc := cluster.Site(2).Store().Conn()
	if err := nc.Publish("sal.eph.presence.v2", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := nc.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if n, _ := scrape(t, 2).sum("salamander_nats_permission_errors_total"); n <= before {
			return fmt.Errorf("salamander_nats_permission_errors_total %v, was %v", n, before)
		}
		code, body := opsCall(t, 2, "GET", "/v1/ops/site", op.Token(), nil)
		st := decode[struct{ Warnings []string }](t, http.StatusOK, code, body)
		for _, w := range st.Warnings {
			if strings.Contains(w, "refused this gateway's user") && strings.Contains(w, "sal.eph.presence.v2") {
				return nil
			}
		}
		return fmt.Errorf("no warning of the refusal: %q", st.Warnings)
	})
}
