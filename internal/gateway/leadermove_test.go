package gateway

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode/natsnodetest"
)

// Every leader move that is made is in the audit trail with who made it.
// An operator demoted a moment ago at a site that had not applied the
// demotion yet passes that site's role check (the handler is called here
// as that check would let it be); the log, where the demotion comes first,
// does not take their move-leader record, and so the leader does not move.
// Then, an operator again, their move is made and recorded.
func TestALeaderMoveIsMadeOnlyOnceTheLogTookItsRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	store := threeSiteStore(t, ctx)
	for i, r := range []salamander.Record{
		{Type: salamander.RecUserCreated, User: "op", PasswordHash: "x"},
		{Type: salamander.RecRoleSet, User: "op", Role: salamander.RoleOperator, Site: "cli"},
		{Type: salamander.RecRoleSet, User: "op", Role: salamander.RoleUser, Site: "cli"},
	} {
		r.At = time.Now().UTC()
		if _, _, err := store.Append(ctx, jsstore.AccountsStream, string(r.Type), r, jsstore.AppendOptions{MsgID: fmt.Sprint("setup-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	v := runView(t, store)
	cfg := DefaultConfig("a", store, v)
	cfg.Sites = []SiteInfo{{Name: "a"}, {Name: "b"}, {Name: "c"}}
	g := New(cfg)
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)

	stream := store.Streams()[0]
	move := func() (int, string, string) {
		t.Helper()
		st, err := store.StatusOf(ctx, stream)
		if err != nil || st.Leader == "" {
			t.Fatalf("%s: leader %q, %v", stream, st.Leader, err)
		}
		to := "a"
		if jsstore.ServerSite(st.Leader) == to {
			to = "b"
		}
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/streams/"+stream+"/leader", strings.NewReader(`{"site":"`+to+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.SetPathValue("stream", stream)
		w := httptest.NewRecorder()
		err = g.handleMoveLeader(w, r, claims{User: "op"})
		if err != nil {
			writeError(w, g.log, r, err)
		}
		return w.Code, st.Leader, to
	}
	leaderOf := func() string {
		st, err := store.StatusOf(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		return st.Leader
	}
	trail := func() []salamander.AuditEntry {
		entries, err := v.Audit(ctx, time.Time{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		return entries
	}

	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if n := len(trail()); n != 2 {
			return fmt.Errorf("%d audit entries, want the promotion and the demotion", n)
		}
		return nil
	})
	code, was, _ := move()
	if code != http.StatusForbidden {
		t.Errorf("the demoted operator's move: %d, want 403", code)
	}
	if now := leaderOf(); now != was {
		t.Errorf("the demoted operator moved %s's leader from %s to %s", stream, was, now)
	}
	for _, e := range trail() {
		if e.Action == "move-leader" {
			t.Errorf("the refused move is in the audit trail: %+v", e)
		}
	}

	r := salamander.Record{Type: salamander.RecRoleSet, User: "op", Role: salamander.RoleOperator, Site: "cli", At: time.Now().UTC()}
	pos, _, err := store.Append(ctx, jsstore.AccountsStream, "role.op", r, jsstore.AppendOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WaitApplied(ctx, pos); err != nil {
		t.Fatal(err)
	}
	// A replica just sent the records above may not count as healthy for
	// a moment (409, no healthy replica at the site): nothing is recorded
	// or moved then, and the operator tries again.
	var to string
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		var code int
		if code, _, to = move(); code != http.StatusOK {
			return fmt.Errorf("the operator's move: %d", code)
		}
		return nil
	})
	if now := leaderOf(); jsstore.ServerSite(now) != to {
		t.Errorf("%s led by %s after a move to site %s", stream, now, to)
	}
	if e := trail()[0]; e.Action != "move-leader" || e.By != "op" || e.Detail != stream+" → "+to {
		t.Errorf("the newest audit entry is %+v, want op's move of %s to %s", e, stream, to)
	}
}

// threeSiteStore starts three NATS servers clustered, one per site (a, b,
// c), and opens a store on them with one partition, every stream R3.
func threeSiteStore(t *testing.T, ctx context.Context) *jsstore.Store {
	t.Helper()
	var urls []string
	for _, node := range natsnodetest.StartThree(t, ctx) {
		urls = append(urls, node.ClientURL())
	}
	cfg := jsstore.DefaultConfig(urls...)
	cfg.Partitions = 1
	store, err := jsstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	return store
}
