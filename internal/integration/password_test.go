package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

const (
	oldPassword = "correct horse battery"
	newPassword = "a brand new password"
)

// changeBody is a POST /v1/me/password body.
func changeBody(t *testing.T, current, next string) []byte {
	t.Helper()
	b, err := json.Marshal(salamander.ChangePasswordRequest{CurrentPassword: current, NewPassword: next})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A password changed at site a ends every other session of the account at
// every site, the changing device's old one too; the new session it is
// answered with, and the new password, work everywhere, and the old
// password nowhere. The SDK keeps signed in with the new session (its
// live events too, reconnected with it). A wrong current password, and
// each malformed request, is refused with a clear 4xx and changes nothing.
func TestPasswordChangeTakesEffectAtEverySite(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	a, name := signedUp(t, 0, "pwc")
	b := newClient(t, 1)
	if _, err := b.Login(ctx, name, oldPassword); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, 2)
	if _, err := c.Login(ctx, name, oldPassword); err != nil {
		t.Fatal(err)
	}
	oldTok, oldDevice := a.Token(), a.DeviceToken(name)

	// Refused, each with nothing changed.
	long := strings.Repeat("x", salamander.MaxPasswordBytes+1)
	for _, tc := range []struct {
		what   string
		token  string
		ctype  string
		body   []byte
		status int
		code   salamander.Code
	}{
		{"wrong current password", oldTok, "", changeBody(t, "not the password", newPassword), 403, salamander.CodeForbidden},
		{"over-long current password", oldTok, "", changeBody(t, long, newPassword), 403, salamander.CodeForbidden},
		{"no session", "", "", changeBody(t, oldPassword, newPassword), 401, salamander.CodeUnauthorized},
		{"new password too short", oldTok, "", changeBody(t, oldPassword, "short"), 400, salamander.CodeInvalid},
		{"new password too long", oldTok, "", changeBody(t, oldPassword, long), 400, salamander.CodeInvalid},
		{"new password the same", oldTok, "", changeBody(t, oldPassword, oldPassword), 400, salamander.CodeInvalid},
		{"no current password", oldTok, "", []byte(`{"new_password":"` + newPassword + `"}`), 400, salamander.CodeInvalid},
		{"no new password", oldTok, "", []byte(`{"current_password":"` + oldPassword + `"}`), 400, salamander.CodeInvalid},
		{"unknown field", oldTok, "", []byte(`{"current_password":"` + oldPassword + `","new_password":"` + newPassword +
			`","password":"x"}`), 400, salamander.CodeInvalid},
		{"not an object", oldTok, "", []byte(`["` + oldPassword + `"]`), 400, salamander.CodeInvalid},
		{"not JSON", oldTok, "text/plain", []byte("current=" + oldPassword), 415, ""},
		{"body over 64 KiB", oldTok, "", append(changeBody(t, oldPassword, newPassword), bytes.Repeat([]byte(" "), 65<<10)...),
			413, salamander.CodeTooLarge},
	} {
		r := raw(t, 0, "POST", "/v1/me/password", tc.token, tc.ctype, tc.body)
		if r.status != tc.status || tc.code != "" && r.code != tc.code {
			t.Errorf("%s: %d %s %s, want %d %s", tc.what, r.status, r.code, r.body, tc.status, tc.code)
		}
	}
	for i := range 3 {
		if r := raw(t, i, "GET", "/v1/me", oldTok, "", nil); r.status != 200 {
			t.Fatalf("site %d: after refused changes, the session: %d %s", i, r.status, r.body)
		}
		if _, err := pinned(t, i, "").Login(ctx, name, oldPassword); err != nil {
			t.Fatalf("site %d: after refused changes, the password: %v", i, err)
		}
	}

	// Live events through the SDK: they go on after the change.
	sub := a.Subscribe(ctx)
	defer sub.Close()
	waitReady(t, sub.Events())
	friend, _ := signedUp(t, 1, "pwf")
	room, err := friend.DirectRoom(ctx, name)
	if err != nil {
		t.Fatal(err)
	}

	s, err := a.ChangePassword(ctx, oldPassword, newPassword)
	if err != nil {
		t.Fatal(err)
	}
	if s.Token == "" || a.Token() != s.Token || s.Token == oldTok {
		t.Fatalf("after the change the client holds token %q, answered %q (old %q)", a.Token(), s.Token, oldTok)
	}
	if s.Device == "" || a.DeviceToken(name) != s.Device || s.Device == oldDevice {
		t.Fatalf("after the change the client's device token is %q, answered %q (old %q)", a.DeviceToken(name), s.Device, oldDevice)
	}
	for i := range 3 {
		for who, tok := range map[string]string{"the changing device's old": oldTok, "site b's": b.Token(), "site c's": c.Token()} {
			checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
				if r := raw(t, i, "GET", "/v1/me", tok, "", nil); r.status != 401 {
					return fmt.Errorf("site %d still takes %s session: %d", i, who, r.status)
				}
				return nil
			})
		}
		if r := raw(t, i, "GET", "/v1/me", s.Token, "", nil); r.status != 200 {
			t.Errorf("site %d: the new session: %d %s", i, r.status, r.body)
		}
		if _, err := pinned(t, i, "").Login(ctx, name, newPassword); err != nil {
			t.Errorf("site %d: the new password: %v", i, err)
		}
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if _, err := pinned(t, i, "").Login(ctx, name, oldPassword); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
				return fmt.Errorf("site %d: the old password: %v", i, err)
			}
			return nil
		})
	}
	// The changed password is the current one now: a second change with
	// the old one is refused.
	if r := raw(t, 0, "POST", "/v1/me/password", a.Token(), "", changeBody(t, oldPassword, "yet another password")); r.status != 403 {
		t.Errorf("a change with the replaced password: %d %s", r.status, r.body)
	}

	// The SDK's live events reconnected with the new session.
	if _, err := friend.Send(ctx, room.ID, "after the change"); err != nil {
		t.Fatal(err)
	}
	if got := collect(t, name, sub.Events(), room.ID, 1, 20*time.Second); got[0] != "after the change" {
		t.Fatalf("live events after the change: %q", got)
	}
	if err := sub.Err(); err != nil {
		t.Fatalf("the subscription ended: %v", err)
	}
}

// An admin resets a forgotten password from the ops API or the CLI (which
// reads it from stdin, never its arguments): every session of the user
// ends at every site, only the new password works, and the audit trail
// says who did it. A non-admin cannot.
func TestAdminSetsAForgottenPassword(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	boss, bossName := signedUp(t, 0, "pwboss")
	user, name := signedUp(t, 1, "pwuser")
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(0), "--creds", cluster.AdminFile(),
		"set-role", bossName, "admin").CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role: %v\n%s", err, out)
	}
	if code, body := opsCall(t, 1, "POST", "/v1/ops/users/"+bossName+"/password", user.Token(),
		salamander.SetPasswordRequest{CurrentPassword: oldPassword, NewPassword: "taken over!"}); code != http.StatusForbidden {
		t.Fatalf("a user reset an admin's password: %d %s", code, body)
	}
	if code, _ := opsCall(t, 2, "POST", "/v1/ops/users/"+name+"/password", boss.Token(),
		salamander.SetPasswordRequest{CurrentPassword: oldPassword, NewPassword: "short"}); code != http.StatusBadRequest {
		t.Fatalf("a reset to a too short password: %d", code)
	}
	if code, _ := opsCall(t, 2, "POST", "/v1/ops/users/nobody-"+name+"/password", boss.Token(),
		salamander.SetPasswordRequest{CurrentPassword: oldPassword, NewPassword: newPassword}); code != http.StatusNotFound {
		t.Fatalf("a reset for no such user: %d", code)
	}
	if code, body := opsCall(t, 2, "POST", "/v1/ops/users/"+bossName+"/password", boss.Token(),
		salamander.SetPasswordRequest{CurrentPassword: oldPassword, NewPassword: newPassword}); code != http.StatusBadRequest {
		t.Fatalf("an admin reset their own password, not through their own change: %d %s", code, body)
	}
	// A stolen admin session alone resets nobody's password: the reset
	// asks for the admin's own (judged as their own change judges it).
	if code, body := opsCall(t, 2, "POST", "/v1/ops/users/"+name+"/password", boss.Token(),
		salamander.SetPasswordRequest{NewPassword: newPassword}); code != http.StatusBadRequest {
		t.Fatalf("a reset without the admin's own password: %d %s", code, body)
	}
	if code, body := opsCall(t, 2, "POST", "/v1/ops/users/"+name+"/password", boss.Token(),
		salamander.SetPasswordRequest{CurrentPassword: "a thief's guess", NewPassword: newPassword}); code != http.StatusForbidden {
		t.Fatalf("a reset with a wrong password of the admin's: %d %s", code, body)
	}
	old := user.Token()
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, body := opsCall(t, 2, "POST", "/v1/ops/users/"+name+"/password", boss.Token(),
			salamander.SetPasswordRequest{CurrentPassword: oldPassword, NewPassword: newPassword}); code != http.StatusOK {
			return fmt.Errorf("reset: %d %s", code, body)
		}
		return nil
	})
	loginsOnlyWith(ctx, t, name, newPassword, oldPassword, old)

	// The CLI, the password piped in (another user: each site allows an
	// account a few failed logins, and each check above spent one).
	other, otherName := signedUp(t, 2, "pwcli")
	cmd := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile(),
		"set-password", "--bcrypt-cost", "4", otherName)
	cmd.Stdin = strings.NewReader("from the command line\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "password of "+otherName+" set") {
		t.Fatalf("admin set-password: %v\n%s", err, out)
	}
	loginsOnlyWith(ctx, t, otherName, "from the command line", oldPassword, other.Token())
	cmd = exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile(),
		"set-password", otherName)
	cmd.Stdin = strings.NewReader("short\n")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("admin set-password took a too short password:\n%s", out)
	}

	// A suspended account changes nothing: refused, and once restored its
	// password is the one it had.
	held, heldName := signedUp(t, 0, "pwsus")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, body := opsCall(t, 0, "POST", "/v1/ops/users/"+heldName+"/suspend", boss.Token(), nil); code != http.StatusOK {
			return fmt.Errorf("suspend: %d %s", code, body)
		}
		return nil
	})
	if r := raw(t, 0, "POST", "/v1/me/password", held.Token(), "", changeBody(t, oldPassword, newPassword)); r.status != 403 ||
		!strings.Contains(string(r.body), "suspended") {
		t.Fatalf("a suspended account's password change: %d %s", r.status, r.body)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, body := opsCall(t, 0, "POST", "/v1/ops/users/"+heldName+"/restore", boss.Token(), nil); code != http.StatusOK {
			return fmt.Errorf("restore: %d %s", code, body)
		}
		return nil
	})
	if _, err := pinned(t, 0, "").Login(ctx, heldName, newPassword); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("restored, the refused change's password: %v, want unauthorized", err)
	}
	if _, err := pinned(t, 0, "").Login(ctx, heldName, oldPassword); err != nil {
		t.Fatalf("restored, the account's own password: %v", err)
	}

	code, body := opsCall(t, 0, "GET", "/v1/ops/audit?limit=1000", boss.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("audit: %d %s", code, body)
	}
	for _, who := range []string{`"by":"` + bossName + `","site":"c","action":"set-password","user":"` + name + `"`,
		`"by":"","site":"cli","action":"set-password","user":"` + otherName + `"`} {
		if !strings.Contains(string(body), who) {
			t.Errorf("audit trail lacks %s: %s", who, body)
		}
	}
}

// loginsOnlyWith waits until, at every site, the session token old (if
// any) is refused, name logs in with password and not with replaced.
func loginsOnlyWith(ctx context.Context, t *testing.T, name, password, replaced, old string) {
	t.Helper()
	for i := range 3 {
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if old != "" {
				if r := raw(t, i, "GET", "/v1/me", old, "", nil); r.status != 401 {
					return fmt.Errorf("site %d still takes the session from before: %d", i, r.status)
				}
			}
			if _, err := pinned(t, i, "").Login(ctx, name, replaced); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
				return fmt.Errorf("site %d: the replaced password: %v", i, err)
			}
			return nil
		})
		if _, err := pinned(t, i, "").Login(ctx, name, password); err != nil {
			t.Fatalf("site %d: the new password: %v", i, err)
		}
	}
}

// Guessing the current password through a password change spends a
// budget of failed logins, the session's own (as a known device's at
// login), and the same 429 with Retry-After comes: a stolen session
// guesses no faster than a device at login. Refused, it changes nothing,
// and the account's login is not locked by it.
func TestPasswordChangeGuessesSpendTheLoginBudget(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, name := signedUp(t, 2, "pwrate")
	var r rawResp
	for i := 0; ; i++ {
		r = raw(t, 2, "POST", "/v1/me/password", a.Token(), "", changeBody(t, fmt.Sprintf("guess number %d", i), newPassword))
		if r.status == 429 {
			break
		}
		if r.status != 403 || i == 20 {
			t.Fatalf("guess %d: %d %s", i, r.status, r.body)
		}
	}
	if r.code != salamander.CodeTooManyRequests || r.header.Get("Retry-After") == "" {
		t.Fatalf("over the budget: %s %q, Retry-After %q", r.code, r.body, r.header.Get("Retry-After"))
	}
	if r := raw(t, 2, "POST", "/v1/me/password", a.Token(), "", changeBody(t, oldPassword, newPassword)); r.status != 429 {
		t.Fatalf("the right current password over the budget: %d %s", r.status, r.body)
	}
	if _, err := pinned(t, 2, "").Login(ctx, name, oldPassword); err != nil {
		t.Fatalf("a login at the site where a session's guesses spent its own budget: %v", err)
	}
	// Nothing changed: the session and the password are those of before.
	if r := raw(t, 0, "GET", "/v1/me", a.Token(), "", nil); r.status != 200 {
		t.Fatalf("the session after refused changes: %d", r.status)
	}
	if _, err := pinned(t, 0, "").Login(ctx, name, oldPassword); err != nil {
		t.Fatalf("the password after refused changes: %v", err)
	}
}

// Strangers who guess an account's password at /v1/login spend its budget
// of failed logins, which anyone may spend; they must not keep its owner,
// signed in, from changing the password (the moment they most want to):
// the change's guesses spend the session's own budget, as a known
// device's spend its own at login. Nor do a stolen session's guesses
// through the change spend the account's: they do not lock its owner out
// of login.
func TestGuessesAtLoginDoNotLockThePasswordChange(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, name := signedUp(t, 1, "pwlock")
	for i := 0; ; i++ {
		_, err := pinned(t, 1, "").Login(ctx, name, fmt.Sprintf("a stranger's guess %d", i))
		if salamander.ErrorCode(err) == salamander.CodeTooManyRequests {
			break
		}
		if salamander.ErrorCode(err) != salamander.CodeUnauthorized || i == 20 {
			t.Fatalf("guess %d at login: %v", i, err)
		}
	}
	if r := raw(t, 1, "POST", "/v1/me/password", a.Token(), "", changeBody(t, oldPassword, newPassword)); r.status != 200 {
		t.Fatalf("the owner's change, signed in, after strangers spent the account's failed logins: %d %s", r.status, r.body)
	}

	// The other way: a stolen session's guesses through the change.
	b, other := signedUp(t, 1, "pwlock")
	for i := 0; ; i++ {
		r := raw(t, 1, "POST", "/v1/me/password", b.Token(), "", changeBody(t, fmt.Sprintf("a thief's guess %d", i), newPassword))
		if r.status == 429 {
			break
		}
		if r.status != 403 || i == 20 {
			t.Fatalf("guess %d through the change: %d %s", i, r.status, r.body)
		}
	}
	if _, err := pinned(t, 1, "").Login(ctx, other, oldPassword); err != nil {
		t.Fatalf("the owner's login after a stolen session's guesses through the change: %v", err)
	}
}

// A thief's open WebSocket with a stolen session, at another site than
// the change, is closed once that site applies the change: it delivers
// nothing more.
func TestPasswordChangeClosesAStolenSessionsSocket(t *testing.T) {
	a, _ := signedUp(t, 0, "pwws")
	thief := dialWS(t, 2, a.Token())
	if r := raw(t, 0, "POST", "/v1/me/password", a.Token(), "", changeBody(t, oldPassword, newPassword)); r.status != 200 {
		t.Fatalf("the change: %d %s", r.status, r.body)
	}
	if code := thief.closed(10 * time.Second); code != websocket.StatusPolicyViolation {
		t.Fatalf("the stolen session's socket closed with %v, want policy violation", code)
	}
}
