package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

type rawResp struct {
	status int
	code   salamander.Code
	body   []byte
	header http.Header
}

// noContentType makes raw send a body without a Content-Type header.
const noContentType = "none"

// raw sends a request straight to site i with an optional bearer token. A
// body is sent as application/json unless contentType says otherwise;
// header adds header names and values, in pairs.
func raw(t *testing.T, i int, method, path, token, contentType string, body []byte, header ...string) rawResp {
	t.Helper()
	return rawTo(t, cluster.URL(i), method, path, token, contentType, body, header...)
}

// rawTo is raw for any base URL.
func rawTo(t *testing.T, base, method, path, token, contentType string, body []byte, header ...string) rawResp {
	t.Helper()
	req, err := http.NewRequest(method, base+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	switch {
	case contentType == noContentType:
	case contentType != "":
		req.Header.Set("Content-Type", contentType)
	case len(body) > 0:
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var e salamander.Error
	_ = json.Unmarshal(b, &e)
	return rawResp{status: res.StatusCode, code: e.Code, body: b, header: res.Header}
}

// Every kind of bad input gets its 4xx with a stable code and changes
// nothing: afterwards the room, its history and the account are as before.
func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "bad")
	_, bName := signedUp(t, 0, "bad")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Send(ctx, room.ID, "the only message"); err != nil {
		t.Fatal(err)
	}
	_, strangerName := signedUp(t, 0, "str")
	stranger := newClient(t, 0)
	sess, err := stranger.Login(ctx, strangerName, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	tok := a.Token()
	msgs := "/v1/rooms/" + room.ID + "/messages"
	big := strings.Repeat("x", salamander.MaxMessageBytes+1)
	huge := `{"client_id":"x","text":"` + strings.Repeat("y", salamander.MaxBodyBytes) + `"}`
	expired := tok[:len(tok)-4] + "AAAA"
	cases := []struct {
		name         string
		method, path string
		token, ct    string
		body         string
		status       int
		code         salamander.Code
	}{
		{"malformed json", "POST", msgs, tok, "application/json", `{"client_id": "1", "text": `, 400, salamander.CodeInvalid},
		{"trailing data", "POST", msgs, tok, "", `{"client_id":"1","text":"a"} {}`, 400, salamander.CodeInvalid},
		{"unknown field", "POST", msgs, tok, "", `{"client_id":"1","text":"a","evil":1}`, 400, salamander.CodeInvalid},
		{"empty body", "POST", msgs, tok, "", ``, 400, salamander.CodeInvalid},
		{"oversized body", "POST", msgs, tok, "", huge, 413, salamander.CodeTooLarge},
		{"message over limit", "POST", msgs, tok, "", `{"client_id":"1","text":"` + big + `"}`, 413, salamander.CodeTooLarge},
		{"blank message", "POST", msgs, tok, "", `{"client_id":"1","text":"   "}`, 400, salamander.CodeInvalid},
		{"invalid utf8", "POST", msgs, tok, "", "{\"client_id\":\"1\",\"text\":\"\xff\xfe\"}", 400, salamander.CodeInvalid},
		{"control chars", "POST", msgs, tok, "", `{"client_id":"1","text":"a\u0000b"}`, 400, salamander.CodeInvalid},
		{"bad client id", "POST", msgs, tok, "", `{"client_id":"no spaces allowed","text":"a"}`, 400, salamander.CodeInvalid},
		{"wrong content type", "POST", msgs, tok, "text/plain", `{"client_id":"1","text":"a"}`, 415, salamander.CodeUnsupportedMT},
		{"no token", "POST", msgs, "", "", `{"client_id":"1","text":"a"}`, 401, salamander.CodeUnauthorized},
		{"bad token", "POST", msgs, "not-a-token", "", `{"client_id":"1","text":"a"}`, 401, salamander.CodeUnauthorized},
		{"forged token", "POST", msgs, expired, "", `{"client_id":"1","text":"a"}`, 401, salamander.CodeUnauthorized},
		{"not a member", "POST", msgs, sess.Token, "", `{"client_id":"1","text":"a"}`, 404, salamander.CodeNotFound},
		{"not a member reads", "GET", msgs, sess.Token, "", ``, 404, salamander.CodeNotFound},
		{"no content type", "POST", msgs, tok, noContentType, `{"client_id":"1","text":"a"}`, 415, salamander.CodeUnsupportedMT},
		{"lone surrogate", "POST", msgs, tok, "", `{"client_id":"1","text":"a\ud800b"}`, 400, salamander.CodeInvalid},
		{"lone low surrogate", "POST", msgs, tok, "", `{"client_id":"1","text":"\udfff"}`, 400, salamander.CodeInvalid},
		{"surrogate display name", "PATCH", "/v1/me", tok, "", `{"display_name":"x\ud800"}`, 400, salamander.CodeInvalid},
		{"surrogate status", "PATCH", "/v1/me", tok, "", `{"status":"\udbff"}`, 400, salamander.CodeInvalid},
		{"surrogate room name", "POST", "/v1/rooms/group", tok, "", `{"name":"\ud800","members":[]}`, 400, salamander.CodeInvalid},
		{"name ends with dot", "POST", "/v1/signup", "", "", `{"name":"` + aName + `.","password":"longenough"}`, 400, salamander.CodeInvalid},
		{"name with two dots", "POST", "/v1/signup", "", "", `{"name":"a..` + aName + `","password":"longenough"}`, 400, salamander.CodeInvalid},
		{"unknown room", "POST", "/v1/rooms/g_00000000000000000000000000000000/messages", tok, "", `{"client_id":"1","text":"a"}`, 404, salamander.CodeNotFound},
		{"malformed room id", "GET", "/v1/rooms/..%2f..%2fetc/messages", tok, "", ``, 404, salamander.CodeNotFound},
		{"unknown user dm", "POST", "/v1/rooms/direct", tok, "", `{"with":"nobody-here-123"}`, 404, salamander.CodeNotFound},
		{"dm with self", "POST", "/v1/rooms/direct", tok, "", `{"with":"` + aName + `"}`, 400, salamander.CodeInvalid},
		{"unknown friend", "POST", "/v1/friends", tok, "", `{"name":"nobody-here-123"}`, 404, salamander.CodeNotFound},
		{"bad history cursor", "GET", msgs + "?before=abc", tok, "", ``, 400, salamander.CodeInvalid},
		{"history limit", "GET", msgs + "?limit=100000", tok, "", ``, 400, salamander.CodeInvalid},
		{"read beyond last", "POST", "/v1/rooms/" + room.ID + "/read", tok, "", `{"seq":99}`, 400, salamander.CodeInvalid},
		{"invite into dm", "POST", "/v1/rooms/" + room.ID + "/invite", tok, "", `{"users":["` + strangerName + `"]}`, 400, salamander.CodeInvalid},
		{"bad sync cursor", "GET", "/v1/sync?cursor=p0:x", tok, "", ``, 400, salamander.CodeInvalid},
		{"cursor seq too big", "GET", "/v1/sync?cursor=p0:9223372036854775808", tok, "", ``, 400, salamander.CodeInvalid},
		{"cursor unknown stream", "GET", "/v1/sync?cursor=nope:1", tok, "", ``, 400, salamander.CodeInvalid},
		{"cursor over 64 KiB", "GET", "/v1/sync?cursor=" + strings.Repeat("p0%3A1%2C", 14000), tok, "", ``, 413, salamander.CodeTooLarge},
		{"invisible display name", "PATCH", "/v1/me", tok, "", `{"display_name":"\u3164"}`, 400, salamander.CodeInvalid},
		{"reversed display name", "PATCH", "/v1/me", tok, "", `{"display_name":"\u202enimda"}`, 400, salamander.CodeInvalid},
		{"history seq too big", "GET", msgs + "?before=18446744073709551615", tok, "", ``, 400, salamander.CodeInvalid},
		{"ws unknown stream", "GET", "/v1/ws?cursor=zz:1", tok, "", ``, 400, salamander.CodeInvalid},
		{"group bad client id", "POST", "/v1/rooms/group", tok, "", `{"name":"x","members":[],"client_id":"a b"}`, 400, salamander.CodeInvalid},
		{"invented method", "FROB", "/v1/rooms", tok, "", ``, 405, salamander.CodeMethod},
		{"bad user name", "POST", "/v1/signup", "", "", `{"name":"A B","password":"longenough"}`, 400, salamander.CodeInvalid},
		{"short password", "POST", "/v1/signup", "", "", `{"name":"shorty","password":"x"}`, 400, salamander.CodeInvalid},
		{"taken name", "POST", "/v1/signup", "", "", `{"name":"` + aName + `","password":"another password"}`, 409, salamander.CodeConflict},
		{"wrong password", "POST", "/v1/login", "", "", `{"name":"` + aName + `","password":"wrong password"}`, 401, salamander.CodeUnauthorized},
		{"login without a name", "POST", "/v1/login", "", "", `{"password":"a password"}`, 400, salamander.CodeInvalid},
		{"login of nothing", "POST", "/v1/login", "", "", `{}`, 400, salamander.CodeInvalid},
		{"typing without typing", "POST", "/v1/rooms/" + room.ID + "/typing", tok, "", `{}`, 400, salamander.CodeInvalid},
		{"long display name", "PATCH", "/v1/me", tok, "", `{"display_name":"` + strings.Repeat("é", 65) + `"}`, 413, salamander.CodeTooLarge},
		{"unknown route", "GET", "/v1/nothing", tok, "", ``, 404, salamander.CodeNotFound},
		{"wrong method", "DELETE", "/v1/rooms", tok, "", ``, 405, salamander.CodeMethod},
		{"too many presence", "GET", "/v1/presence?users=" + strings.Repeat("abc,", 101) + "abc", tok, "", ``, 413, salamander.CodeTooLarge},
		{"reports page too long", "GET", "/v1/reports?limit=1001", tok, "", ``, 400, salamander.CodeInvalid},
		{"reports page empty", "GET", "/v1/reports?limit=0", tok, "", ``, 400, salamander.CodeInvalid},
	}
	for _, tc := range cases {
		res := raw(t, 0, tc.method, tc.path, tc.token, tc.ct, []byte(tc.body))
		if res.status != tc.status || res.code != tc.code {
			t.Errorf("%s: got %d %q (%s), want %d %q", tc.name, res.status, res.code, res.body, tc.status, tc.code)
		}
	}
	// Nothing changed: still one message, same profile, still one room each.
	page, err := a.History(ctx, room.ID, clientHistory(0, 0, 50))
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Messages) != 1 || page.Messages[0].Text != "the only message" {
		t.Fatalf("history changed: %+v", page.Messages)
	}
	me, err := a.Me(ctx)
	if err != nil || me.DisplayName != "User "+aName || me.Status != "" {
		t.Fatalf("profile changed: %+v %v", me, err)
	}
	rooms, err := a.Rooms(ctx)
	if err != nil || len(rooms) != 1 {
		t.Fatalf("rooms changed: %+v %v", rooms, err)
	}
	// A method another route takes at the path is 405, and says which.
	for path, allow := range map[string]string{"/v1/rooms": "GET", "/v1/ops/users/" + aName + "/role": "PUT", "/v1/me": "GET, PATCH"} {
		if r := raw(t, 0, "DELETE", path, tok, "", nil); r.status != 405 || r.code != salamander.CodeMethod || r.header.Get("Allow") != allow {
			t.Errorf("DELETE %s: %d %q, Allow %q, want 405 with Allow %q", path, r.status, r.code, r.header.Get("Allow"), allow)
		}
	}
	// Clients cannot mint metric label values.
	if m := raw(t, 0, "GET", "/metrics", "", "", nil); strings.Contains(string(m.body), "FROB") {
		t.Fatal("an invented HTTP method became a metric label")
	}
	// And every site is still up and serves its ops plane.
	for i := 0; i < 3; i++ {
		for _, path := range []string{"/healthz", "/readyz", "/v1/status", "/status", "/metrics", "/openapi.yaml", "/v1/sites"} {
			if r := raw(t, i, "GET", path, "", "", nil); r.status != 200 {
				t.Fatalf("site %d %s: %d %s", i, path, r.status, r.body)
			}
		}
	}
}

// Logging out revokes the token at every site; logging out everywhere
// revokes all of a user's tokens.
func TestLogoutTakesEffectAtEverySite(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, name := signedUp(t, 0, "out")
	second := newClient(t, 1)
	if _, err := second.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	tok := a.Token()
	if err := a.Logout(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if r := raw(t, i, "GET", "/v1/me", tok, "", nil); r.status != 401 {
				return &salamander.Error{Code: r.code, Message: string(r.body)}
			}
			return nil
		})
		if r := raw(t, i, "GET", "/v1/me", second.Token(), "", nil); r.status != 200 {
			t.Fatalf("site %d: other session revoked too: %d", i, r.status)
		}
	}
	if err := second.LogoutAll(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		checkFor(t, 5*time.Second, 20*time.Millisecond, func() error {
			if r := raw(t, i, "GET", "/v1/me", second.Token(), "", nil); r.status != 401 {
				return &salamander.Error{Code: r.code, Message: string(r.body)}
			}
			return nil
		})
	}
	// A new login still works.
	if _, err := second.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
}

// Strangers failing logins for an account do not lock its owner out: a
// login that brings the device token of an earlier session of the account
// is judged against that device's own budget of failures. A device token
// of another account, a session token in its place, or one from before a
// "log out everywhere" counts for nothing; an over-long one is refused.
func TestKnownDeviceLogsInDuringALockOut(t *testing.T) {
	owner, name := signedUp(t, 1, "device")
	device := owner.DeviceToken(name)
	if device == "" {
		t.Fatal("sign-up gave no device token")
	}
	login := func(password, device string) rawResp {
		body, err := json.Marshal(salamander.LoginRequest{Name: name, Password: password, Device: device})
		if err != nil {
			t.Fatal(err)
		}
		return raw(t, 1, "POST", "/v1/login", "", "", body)
	}
	for i := 0; ; i++ {
		r := login("not the password", "")
		if r.status == 429 {
			break
		}
		if r.status != 401 || i == 20 {
			t.Fatalf("wrong password %d without a device token: %d %s", i, r.status, r.body)
		}
	}
	if r := login("correct horse battery", ""); r.status != 429 {
		t.Fatalf("right password, no device token, during the lock-out: %d %s", r.status, r.body)
	}

	// The owner's device: judged on its own failures, and renewed.
	if r := login("not the password", device); r.status != 401 {
		t.Fatalf("the owner's device mistyping during the lock-out: %d %s, want 401", r.status, r.body)
	}
	r := login("correct horse battery", device)
	if r.status != 200 {
		t.Fatalf("the owner's device during the lock-out: %d %s", r.status, r.body)
	}
	var s salamander.Session
	if err := json.Unmarshal(r.body, &s); err != nil || s.Token == "" || s.Device == "" {
		t.Fatalf("session %s: %v", r.body, err)
	}
	if got, want := deviceID(t, s.Device), deviceID(t, device); got != want {
		t.Fatalf("a known device's login renamed it: %q, was %q", got, want)
	}
	ctx := testCtx(t, 30*time.Second)
	if _, err := owner.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatalf("the SDK's login brings the device token: %v", err)
	}

	// Nothing else passes for a device token.
	other, otherName := signedUp(t, 1, "device")
	for what, tok := range map[string]string{
		"another account's device token": other.DeviceToken(otherName),
		"a session token":                owner.Token(),
		"a tampered device token":        device[:len(device)-2] + "AA",
		"not a token":                    "hello",
	} {
		if r := login("correct horse battery", tok); r.status != 429 {
			t.Fatalf("%s during the lock-out: %d %s, want 429", what, r.status, r.body)
		}
	}
	if r := login("correct horse battery", strings.Repeat("a", 1025)); r.status != 400 || r.code != salamander.CodeInvalid {
		t.Fatalf("an over-long device token: %d %s, want 400", r.status, r.body)
	}

	// Logging out everywhere makes every device a stranger again.
	if err := owner.LogoutAll(ctx); err != nil {
		t.Fatal(err)
	}
	if r := login("correct horse battery", device); r.status != 429 {
		t.Fatalf("a device token from before logging out everywhere: %d %s, want 429", r.status, r.body)
	}
}

// deviceID is the device a device token names (its payload is not secret).
func deviceID(t *testing.T, token string) string {
	t.Helper()
	payload, _, _ := strings.Cut(token, ".")
	body, err := base64.RawURLEncoding.DecodeString(payload)
	var c struct {
		Device string `json:"dev"`
	}
	if err != nil || json.Unmarshal(body, &c) != nil || c.Device == "" {
		t.Fatalf("device token %q: %v", token, err)
	}
	return c.Device
}

// Password guessing is slowed: after a burst of failed logins for one
// account, a site answers 429 for it, even to the right password, until
// the budget refills; other accounts are unaffected.
func TestLoginGuessingIsRateLimited(t *testing.T) {
	_, name := signedUp(t, 1, "guess")
	wrong := []byte(`{"name":"` + name + `","password":"not the password"}`)
	limited := false
	for i := 0; i < 20 && !limited; i++ {
		r := raw(t, 1, "POST", "/v1/login", "", "", wrong)
		switch r.status {
		case 401:
		case 429:
			limited = r.code == salamander.CodeTooManyRequests
		default:
			t.Fatalf("attempt %d: %d %s", i, r.status, r.body)
		}
	}
	if !limited {
		t.Fatal("20 wrong passwords in a row were never limited")
	}
	right := []byte(`{"name":"` + name + `","password":"correct horse battery"}`)
	if r := raw(t, 1, "POST", "/v1/login", "", "", right); r.status != 429 {
		t.Fatalf("right password during the lock-out: %d", r.status)
	}
	_, other := signedUp(t, 1, "guess")
	if r := raw(t, 1, "POST", "/v1/login", "", "", []byte(`{"name":"`+other+`","password":"correct horse battery"}`)); r.status != 200 {
		t.Fatalf("another account was limited too: %d %s", r.status, r.body)
	}
}
