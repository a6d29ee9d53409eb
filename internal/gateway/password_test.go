package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A password change ends every session and device token issued before it
// (they name an earlier accounts position), at whichever site applies it,
// and those issued after it live: the device that changed it is answered
// with new ones.
func TestPasswordChangeEndsEarlierSessionsAndDeviceTokens(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	g := log.gateway(t)
	before, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	beforeDevice, err := g.issueDeviceToken("mina", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.authenticate(t.Context(), before); err != nil {
		t.Fatalf("a session before the change: %v", err)
	}
	if g.knownDevice(t.Context(), beforeDevice, "mina") == "" {
		t.Fatal("a device token before the change is not known")
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("a new password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecPasswordSet, At: log.next(), User: "mina", By: "mina",
		PasswordHash: string(hash)})
	g = log.gateway(t)
	if c, err := g.authenticate(t.Context(), before); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Errorf("a session from before the change: %+v, %v; want unauthorized", c, err)
	}
	if dev := g.knownDevice(t.Context(), beforeDevice, "mina"); dev != "" {
		t.Errorf("a device token from before the change is still known (device %s)", dev)
	}
	if bcrypt.CompareHashAndPassword([]byte(mustHash(t, g)), []byte("a new password")) != nil {
		t.Error("the new password does not match the account's hash")
	}
	after, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	afterDevice, err := g.issueDeviceToken("mina", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.authenticate(t.Context(), after); err != nil {
		t.Errorf("a session issued after the change: %v", err)
	}
	if g.knownDevice(t.Context(), afterDevice, "mina") == "" {
		t.Error("a device token issued after the change is not known")
	}
}

// noFailedLoginRefill gives g failed-login budgets that never refill while
// a test runs, before its first request: with the default refill (a unit
// every few seconds), a slow machine (CI under -race) gave a budget a unit
// back between the test spending it and its last request, and the right
// password that should have been refused got in.
func noFailedLoginRefill(g *Gateway) {
	limits := DefaultLimits()
	limits.LoginFailuresPerUser.Every, limits.LoginFailuresPerDevice.Every = time.Hour, time.Hour
	g.budgets = newBudgets(limits, len(g.cfg.Sites))
}

// mustHash is mina's password hash as g's view holds it.
func mustHash(t *testing.T, g *Gateway) string {
	t.Helper()
	hash, _, err := g.cfg.View.Credentials(t.Context(), "mina")
	if err != nil {
		t.Fatal(err)
	}
	return hash
}

// An admin's reset of another's password asks for the admin's own password
// (current_password), judged as their own change judges it: a stolen admin
// session alone resets nobody's password, and guessing the admin's
// password through it is held to the session's failed-login budget.
func TestAnAdminsResetNeedsTheirOwnPassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	bossHash, err := bcrypt.GenerateFromPassword([]byte("the boss's own"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g, _, v := startLoneGateway(t, ctx, nil,
		salamander.Record{Type: salamander.RecUserCreated, User: "boss", PasswordHash: string(bossHash)},
		salamander.Record{Type: salamander.RecUserCreated, User: "mina", PasswordHash: testHashMina},
		salamander.Record{Type: salamander.RecRoleSet, User: "boss", Role: salamander.RoleAdmin, Site: "cli"})
	noFailedLoginRefill(g)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if v.Role("boss") != salamander.RoleAdmin {
			return fmt.Errorf("boss is %s", v.Role("boss"))
		}
		return nil
	})
	reset := func(session, body string) (int, string) {
		r := httptest.NewRequestWithContext(ctx, "POST", "/v1/ops/users/mina/password", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.SetPathValue("name", "mina")
		w := httptest.NewRecorder()
		g.handleSetPassword(w, r, claims{User: "boss", Session: session})
		return w.Code, w.Body.String()
	}
	if code, body := reset("s1", `{"new_password":"reset by boss"}`); code != http.StatusBadRequest || !strings.Contains(body, "current_password") {
		t.Errorf("a reset without the admin's password: %d %s", code, body)
	}
	code, body := reset("s1", `{"current_password":"a guess","new_password":"reset by boss"}`)
	if code != http.StatusForbidden || !strings.Contains(body, "not your password") {
		t.Errorf("a reset with a wrong password: %d %s", code, body)
	}
	if mustHash(t, g) != testHashMina {
		t.Fatal("a refused reset changed mina's password")
	}
	// The session's budget of failures runs out; another session's is its
	// own (as a known device's at login).
	for i := 0; code != http.StatusTooManyRequests; i++ {
		if i == 20 {
			t.Fatalf("20 wrong passwords from one session and still %d", code)
		}
		code, _ = reset("s1", `{"current_password":"a guess","new_password":"reset by boss"}`)
	}
	if code, _ := reset("s1", `{"current_password":"the boss's own","new_password":"reset by boss"}`); code != http.StatusTooManyRequests {
		t.Errorf("the right password after the session's budget ran out: %d", code)
	}
	if code, body := reset("s2", `{"current_password":"the boss's own","new_password":"reset by boss"}`); code != http.StatusOK {
		t.Fatalf("a reset with the admin's password: %d %s", code, body)
	}
	if bcrypt.CompareHashAndPassword([]byte(mustHash(t, g)), []byte("reset by boss")) != nil {
		t.Error("mina's password is not the one the admin set")
	}
}

// testHashMina is mina's password hash before any reset (never logged in
// with here).
const testHashMina = "mina's hash"

// A password change answers with a device token of a new device id (the
// session does not know its device's), and that loses the device nothing:
// the only thing kept per device id is its budget of failed logins, which
// starts afresh; the new token is a known device's at once, so while
// strangers spend the account's budget of failed logins, this device
// still signs in. Its read and sync positions are the client's cursor,
// kept by the client, not per device at the sites.
func TestThePasswordChangesDeviceTokenIsAKnownDevice(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	hash, err := bcrypt.GenerateFromPassword([]byte("mina's own"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	g, _, v := startLoneGateway(t, ctx, nil,
		salamander.Record{Type: salamander.RecSigningKey, KeyID: "k1", Key: []byte("sealed:" + keyOf("k1"))},
		salamander.Record{Type: salamander.RecUserCreated, User: "mina", PasswordHash: string(hash)})
	g.cfg.Keys = fuzzKeyOpener{} // before its first request
	noFailedLoginRefill(g)
	g.SetCatchUp(map[string]uint64{})
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if !v.HasSigningKey() || mustHash(t, g) == "" || !g.CaughtUp() {
			return fmt.Errorf("no signing key or no mina yet, or not caught up")
		}
		return nil
	})
	call := func(path, token, body string) (int, salamander.Session) {
		r := httptest.NewRequestWithContext(ctx, "POST", path, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		if token != "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, r)
		var s salamander.Session
		_ = json.Unmarshal(w.Body.Bytes(), &s)
		if w.Code != http.StatusOK {
			t.Logf("%s: %d %s", path, w.Code, w.Body)
		}
		return w.Code, s
	}
	code, s := call("/v1/login", "", `{"name":"mina","password":"mina's own"}`)
	if code != http.StatusOK || s.Device == "" {
		t.Fatalf("login: %d %+v", code, s)
	}
	code, changed := call("/v1/me/password", s.Token, `{"current_password":"mina's own","new_password":"mina's new one"}`)
	if code != http.StatusOK || changed.Device == "" {
		t.Fatalf("change: %d %+v", code, changed)
	}
	if g.knownDevice(ctx, changed.Device, "mina") == "" {
		t.Fatal("the change's device token is not a known device's")
	}
	for i := 0; ; i++ {
		if code, _ := call("/v1/login", "", `{"name":"mina","password":"a stranger's guess"}`); code == http.StatusTooManyRequests {
			break
		} else if i == 30 {
			t.Fatalf("30 strangers' failed logins and still %d", code)
		}
	}
	body, _ := json.Marshal(salamander.LoginRequest{Name: "mina", Password: "mina's new one", Device: changed.Device})
	if code, _ := call("/v1/login", "", string(body)); code != http.StatusOK {
		t.Errorf("the device's login with the change's device token while strangers spent the account's budget: %d", code)
	}
	body, _ = json.Marshal(salamander.LoginRequest{Name: "mina", Password: "mina's new one", Device: s.Device})
	if code, _ := call("/v1/login", "", string(body)); code != http.StatusTooManyRequests {
		t.Errorf("a login with the device token from before the change (ended by it): %d, want 429 as a stranger's", code)
	}
}
