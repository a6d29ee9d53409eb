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
	"github.com/salamander-chat/salamander/internal/faultlink"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The last admin who can act is neither demoted nor suspended through the
// API: nobody could take an admin action afterwards, not even undo it,
// until someone with the admin credential ran `salamander admin
// set-role`. With another admin, either is taken.
func TestTheLastAdminIsNeitherDemotedNorSuspended(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	g, _, v := startLoneGateway(t, ctx, nil,
		salamander.Record{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "x"},
		salamander.Record{Type: salamander.RecUserCreated, User: "ann", PasswordHash: "x"},
		salamander.Record{Type: salamander.RecRoleSet, User: "boss", Role: salamander.RoleAdmin, Site: "cli"})
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v.Role("boss") != salamander.RoleAdmin || v.Role("ann") != salamander.RoleUser {
			return fmt.Errorf("boss is %s, ann %s", v.Role("boss"), v.Role("ann"))
		}
		return nil
	})
	boss := claims{User: "boss"}
	setRole := func(name, role string) int {
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/users/"+name+"/role", strings.NewReader(`{"role":"`+role+`"}`))
		r.Header.Set("Content-Type", "application/json")
		r.SetPathValue("name", name)
		w := httptest.NewRecorder()
		g.handleSetRole(w, r, boss)
		return w.Code
	}
	suspend := func(name string) int {
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/users/"+name+"/suspend", nil)
		r.SetPathValue("name", name)
		w := httptest.NewRecorder()
		g.userAction(salamander.RecUserSuspended)(w, r, boss)
		return w.Code
	}
	if code := setRole("boss", salamander.RoleOperator); code != http.StatusConflict {
		t.Fatalf("the last admin demoted themselves: %d", code)
	}
	if code := suspend("boss"); code != http.StatusConflict {
		t.Fatalf("the last admin suspended themselves: %d", code)
	}
	if v.Role("boss") != salamander.RoleAdmin || v.Suspended("boss") {
		t.Fatal("the refused changes were made")
	}
	if code := setRole("ann", salamander.RoleAdmin); code != http.StatusOK {
		t.Fatalf("a second admin: %d", code)
	}
	if code := setRole("boss", salamander.RoleUser); code != http.StatusOK || v.Role("boss") != salamander.RoleUser {
		t.Fatalf("an admin stepping down beside another: %d, %s", code, v.Role("boss"))
	}
}

// Two admins stepping down at two sites at once each pass their site's
// "not the last admin" check; the log ignores the second record, which
// would leave no admin, and its site answers 409 as it would have, had it
// known: not 200 for a change that did not happen, nor 403 "are you still
// an admin?" to someone who is. Here bo steps down at another site a
// moment before ann, whose site's read model applies the log 300 ms late.
func TestTwoAdminsSteppingDownAtOnceLeaveOne(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	url := presenceNATS(t)
	open := func(url string) *jsstore.Store {
		cfg := jsstore.DefaultConfig(url)
		cfg.Replicas, cfg.Partitions = 1, 1
		store, err := jsstore.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(store.Close)
		return store
	}
	store := open(url)
	if err := store.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	link, err := faultlink.Start(strings.TrimPrefix(url, "nats://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Close)
	v := runView(t, open("nats://"+link.Addr()))
	var last salamander.Position
	for _, r := range []salamander.Record{
		{Type: salamander.RecUserCreated, User: "ann", PasswordHash: "x"},
		{Type: salamander.RecUserCreated, User: "bo", PasswordHash: "x"},
		{Type: salamander.RecRoleSet, User: "ann", Role: salamander.RoleAdmin, Site: "cli"},
		{Type: salamander.RecRoleSet, User: "bo", Role: salamander.RoleAdmin, Site: "cli"},
	} {
		r.At = time.Now().UTC()
		if last, _, err = store.Append(ctx, jsstore.AccountsStream, string(r.Type), r, jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := v.WaitApplied(ctx, last); err != nil {
		t.Fatal(err)
	}
	g := New(DefaultConfig("a", store, v))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	// 100 ms each way keeps bo's record from this site's read model while
	// ann's request is checked, and a direct get's round trip (200 ms)
	// within the tail's reply timeout (250 ms): at 300 ms a tail that
	// probed the log while the link was slow retried its direct gets for
	// up to 10 s, past the handler's wait.
	link.SetDelay(100*time.Millisecond, 0)

	// bo, at another site.
	rec := salamander.Record{Type: salamander.RecRoleSet, User: "bo", Role: salamander.RoleOperator, By: "bo", Site: "b", At: time.Now().UTC()}
	if _, _, err := store.Append(ctx, jsstore.AccountsStream, "role.bo", rec, jsstore.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	// ann, here, where bo is still an admin.
	if n := v.Admins(); n != 2 {
		t.Fatalf("%d admins here before ann steps down: the read model is not behind", n)
	}
	r := httptest.NewRequestWithContext(ctx, "PUT", "/v1/ops/users/ann/role", strings.NewReader(`{"role":"user"}`))
	r.Header.Set("Content-Type", "application/json")
	r.SetPathValue("name", "ann")
	w := httptest.NewRecorder()
	g.handleSetRole(w, r, claims{User: "ann"})
	if w.Code != http.StatusConflict || !strings.Contains(w.Body.String(), "last admin") {
		t.Errorf("ann stepping down as bo did: %d %s; want 409, the last admin", w.Code, w.Body)
	}
	if v.Role("ann") != salamander.RoleAdmin || v.Role("bo") != salamander.RoleOperator || v.Admins() != 1 {
		t.Errorf("ann is %s, bo %s, %d admins; want ann the one admin left", v.Role("ann"), v.Role("bo"), v.Admins())
	}
}
