package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
		// What the gateway of site a needs.
		"sal.eph.hb.a", "sal.eph.presence.at.a", "sal.eph.presence.sync.b.x", "sal.eph.typing", "sal.eph.gather.b",
		"sal.acct.x", "sal.p0.x", "sal.s2.x")
	for _, subj := range []string{"sal.eph.hb.b", "sal.eph.hb.c", "sal.eph.presence", "sal.eph.presence.v2",
		"sal.eph.presence.at.b", "salc.p0.x", "$JS.API.META.LEADER.STEPDOWN"} {
		if !refusedPub[subj] {
			t.Errorf("gateway-a may publish to %s", subj)
		}
	}
	for _, subj := range []string{"sal.eph.hb.a", "sal.eph.presence.at.a", "sal.eph.presence.sync.b.x", "sal.eph.typing",
		"sal.eph.gather.b", "sal.acct.x", "sal.p0.x", "sal.s2.x"} {
		if refusedPub[subj] {
			t.Errorf("gateway-a may not publish to %s, which it needs", subj)
		}
	}
	refusedSub := refusals(t, 0, true, "sal.eph.presence.v2.sync.*", "sal.eph.presence.sync.b.*", "sal.eph.gather.b",
		"sal.eph.presence.sync.a.*", "sal.eph.presence.at.*", "sal.eph.hb.*")
	for _, subj := range []string{"sal.eph.presence.v2.sync.*", "sal.eph.presence.sync.b.*", "sal.eph.gather.b"} {
		if !refusedSub[subj] {
			t.Errorf("gateway-a may subscribe to %s", subj)
		}
	}
	for _, subj := range []string{"sal.eph.presence.sync.a.*", "sal.eph.presence.at.*", "sal.eph.hb.*"} {
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
