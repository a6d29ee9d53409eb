package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/faultlink"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/site"
)

// opsCall calls an ops endpoint at site i with token ("" for none) and
// returns the status and body.
func opsCall(t *testing.T, i int, method, path, token string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, err := http.NewRequest(method, cluster.URL(i)+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(res.Body)
	return res.StatusCode, buf.Bytes()
}

// Roles: the first admin is made with the admin credential; admins promote
// others from any site; the ops endpoints refuse anonymous callers (401)
// and accounts whose role is too low (403); every change is in the audit
// trail with who made it, when and from which site.
func TestRolesAndTheAuditTrail(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	boss, bossName := signedUp(t, 0, "boss")
	op, opName := signedUp(t, 1, "oper")
	user, _ := signedUp(t, 2, "plain")

	// Nobody but operators may read the audit trail; nobody but admins
	// may change a role.
	for i := range 3 {
		if code, _ := opsCall(t, i, "GET", "/v1/ops/audit", "", nil); code != http.StatusUnauthorized {
			t.Fatalf("site %d: anonymous audit: %d", i, code)
		}
		if code, _ := opsCall(t, i, "GET", "/v1/ops/audit", user.Token(), nil); code != http.StatusForbidden {
			t.Fatalf("site %d: a user's audit: %d", i, code)
		}
		if code, _ := opsCall(t, i, "PUT", "/v1/ops/users/"+opName+"/role", user.Token(),
			salamander.RoleRequest{Role: "admin"}); code != http.StatusForbidden {
			t.Fatalf("site %d: a user set a role: %d", i, code)
		}
	}
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(2), "--creds", cluster.AdminFile(),
		"set-role", bossName, "admin").CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role: %v\n%s", err, out)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		me, err := pinned(t, 1, boss.Token()).Me(ctx)
		if err != nil || me.Role != salamander.RoleAdmin {
			return fmt.Errorf("boss at site b: %+v %v", me, err)
		}
		return nil
	})
	// The admin promotes an operator from site b; the operator reads the
	// trail from site c, but may not change roles.
	if code, body := opsCall(t, 1, "PUT", "/v1/ops/users/"+opName+"/role", boss.Token(),
		salamander.RoleRequest{Role: "operator"}); code != http.StatusOK {
		t.Fatalf("admin promoting: %d %s", code, body)
	}
	if code, _ := opsCall(t, 1, "PUT", "/v1/ops/users/"+opName+"/role", op.Token(),
		salamander.RoleRequest{Role: "admin"}); code != http.StatusForbidden {
		t.Fatalf("an operator made itself admin: %d", code)
	}
	var trail struct {
		Entries []salamander.AuditEntry `json:"entries"`
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 2, "GET", "/v1/ops/audit?limit=1000", op.Token(), nil)
		if code != http.StatusOK {
			return fmt.Errorf("operator's audit at site c: %d %s", code, body)
		}
		trail.Entries = nil
		if err := json.Unmarshal(body, &trail); err != nil {
			return err
		}
		var cli, promo bool
		for _, e := range trail.Entries {
			cli = cli || e.Action == "set-role" && e.User == bossName && e.By == "" && e.Site == "cli" && e.Role == "admin"
			promo = promo || e.Action == "set-role" && e.User == opName && e.By == bossName && e.Site == "b" &&
				e.Role == "operator" && !e.At.IsZero()
		}
		if !cli || !promo {
			return fmt.Errorf("audit trail lacks the changes: %+v", trail.Entries)
		}
		return nil
	})
	if code, body := opsCall(t, 0, "GET", "/v1/ops/audit?limit=0", op.Token(), nil); code != http.StatusBadRequest ||
		!strings.Contains(string(body), "limit") {
		t.Fatalf("a bad limit: %d %s", code, body)
	}
}

// An admin suspends an account from one site: its sessions stop working
// (but may log out) and it cannot log in at any site; restored, it logs
// in again, without the session it logged out. Revoking
// its sessions from the API ends the old ones. Each is in the audit trail.
func TestAdminSuspendsRestoresAndRevokes(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	boss, bossName := signedUp(t, 0, "sboss")
	victim, victimName := signedUp(t, 1, "svic")
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(0), "--creds", cluster.AdminFile(),
		"set-role", bossName, "admin").CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role: %v\n%s", err, out)
	}
	act := func(action string) {
		t.Helper()
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if code, body := opsCall(t, 2, "POST", "/v1/ops/users/"+victimName+"/"+action, boss.Token(), nil); code != http.StatusOK {
				return fmt.Errorf("%s: %d %s", action, code, body)
			}
			return nil
		})
	}
	old := victim.Token()
	live := dialWS(t, 1, old)
	leaving := pinned(t, 0, "")
	if _, err := leaving.Login(ctx, victimName, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	act("suspend")
	// Its open WebSocket is closed too (sessions are checked every 5 s),
	// not left receiving the rooms' events.
	if code := live.closed(15 * time.Second); code != websocket.StatusPolicyViolation {
		t.Fatalf("a suspended account's WebSocket closed with %v, want policy violation", code)
	}
	for i := range 3 {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if _, err := pinned(t, i, old).Rooms(ctx); salamander.ErrorCode(err) != salamander.CodeForbidden {
				return fmt.Errorf("site %d: a suspended account's session: %v", i, err)
			}
			if _, err := pinned(t, i, "").Login(ctx, victimName, "correct horse battery"); salamander.ErrorCode(err) != salamander.CodeForbidden {
				return fmt.Errorf("site %d: a suspended account logged in: %v", i, err)
			}
			// A wrong password is answered alike: the answer does not tell
			// a guesser that the right one was right.
			if _, err := pinned(t, i, "").Login(ctx, victimName, "wrong horse battery"); salamander.ErrorCode(err) != salamander.CodeForbidden {
				return fmt.Errorf("site %d: a suspended account's wrong password: %v", i, err)
			}
			return nil
		})
	}
	// Logging out is never refused: a suspended account ends a session.
	if err := pinned(t, 2, leaving.Token()).Logout(ctx); err != nil {
		t.Fatalf("a suspended account's log-out: %v", err)
	}
	act("restore")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := pinned(t, 0, leaving.Token()).Rooms(ctx); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
			return fmt.Errorf("a session logged out while suspended, after the restore: %v", err)
		}
		// The restoration brings back no session from before the
		// suspension (a thief's, had the account been taken over).
		for i := range 3 {
			if _, err := pinned(t, i, old).Rooms(ctx); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
				return fmt.Errorf("site %d: a session from before the suspension, after the restore: %v", i, err)
			}
		}
		return nil
	})
	again := pinned(t, 1, "")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		_, err := again.Login(ctx, victimName, "correct horse battery")
		return err
	})
	act("revoke")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if _, err := pinned(t, 0, again.Token()).Rooms(ctx); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
			return fmt.Errorf("a revoked session: %v", err)
		}
		return nil
	})
	code, body := opsCall(t, 0, "GET", "/v1/ops/audit?limit=1000", boss.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("audit: %d %s", code, body)
	}
	for _, action := range []string{"suspend", "restore", "revoke-sessions"} {
		if !strings.Contains(string(body), `"action":"`+action+`","user":"`+victimName+`"`) {
			t.Errorf("audit trail lacks %s of %s: %s", action, victimName, body)
		}
	}
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/users/"+bossName+"/suspend", victim.Token(), nil); code != http.StatusUnauthorized &&
		code != http.StatusForbidden {
		t.Fatalf("a user suspended an admin: %d", code)
	}
}

// From any site an operator sees every site's readiness and status; users
// and anonymous callers see nothing.
func TestOpsSitesShowsEverySite(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	_, opName := signedUp(t, 0, "osop")
	op := newClient(t, 0)
	user, _ := signedUp(t, 1, "osuser")
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(0), "--creds", cluster.AdminFile(),
		"set-role", opName, "operator").CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role: %v\n%s", err, out)
	}
	if _, err := op.Login(ctx, opName, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if code, _ := opsCall(t, 1, "GET", "/v1/ops/sites", "", nil); code != http.StatusUnauthorized {
		t.Fatalf("anonymous: %d", code)
	}
	if code, _ := opsCall(t, 1, "GET", "/v1/ops/sites", user.Token(), nil); code != http.StatusForbidden {
		t.Fatalf("a user: %d", code)
	}
	for i := range 3 {
		checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
			code, body := opsCall(t, i, "GET", "/v1/ops/sites", op.Token(), nil)
			if code != http.StatusOK {
				return fmt.Errorf("site %d: %d %s", i, code, body)
			}
			var got struct {
				Sites []struct {
					Name      string          `json:"name"`
					Reachable bool            `json:"reachable"`
					Ready     bool            `json:"ready"`
					Status    json.RawMessage `json:"status"`
				} `json:"sites"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				return err
			}
			if len(got.Sites) != 3 {
				return fmt.Errorf("site %d lists %d sites", i, len(got.Sites))
			}
			for _, s := range got.Sites {
				if !s.Reachable || !s.Ready || !strings.Contains(string(s.Status), `"site":"`+s.Name+`"`) {
					return fmt.Errorf("site %d sees %s as %+v", i, s.Name, s)
				}
			}
			return nil
		})
	}
}

// A gateway started without --sites answers the ops plane's questions
// about itself in-process: never by asking the host a request's Host
// header names (an operator's token went there, in the clear).
func TestOpsWithoutASiteListAsksNoOtherHost(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	lone := extraGateway(t, ctx, cluster.Site(0).Node().ClientURL())
	var asked atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { asked.Add(1) }))
	defer elsewhere.Close()
	op, _ := operator(t, ctx, 0, "onl")
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		req, _ := http.NewRequestWithContext(ctx, "GET", lone.URL()+"/v1/ops/sites", nil)
		req.Host = strings.TrimPrefix(elsewhere.URL, "http://")
		req.Header.Set("Authorization", "Bearer "+op.Token())
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		var got struct {
			Sites []struct {
				Name      string          `json:"name"`
				Reachable bool            `json:"reachable"`
				Status    json.RawMessage `json:"status"`
			} `json:"sites"`
		}
		if err := json.NewDecoder(res.Body).Decode(&got); err != nil {
			return err
		}
		if len(got.Sites) != 1 || !got.Sites[0].Reachable || !strings.Contains(string(got.Sites[0].Status), `"site":"a"`) {
			return fmt.Errorf("%d: %+v", res.StatusCode, got)
		}
		return nil
	})
	if n := asked.Load(); n != 0 {
		t.Fatalf("the host named by the Host header was asked %d times", n)
	}
}

// extraGateway starts one more gateway process of site a (sharing its
// credential), without a site list, on NATS at natsURL, with what adjust
// changes of its configuration, and waits until it is ready; it is killed
// by t.Cleanup.
func extraGateway(t *testing.T, ctx context.Context, natsURL string, adjust ...func(*site.Config)) *site.Site {
	t.Helper()
	cfg := site.DefaultConfig("a", filepath.Join(t.TempDir(), "a-extra"))
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATSURLs = []string{natsURL}
	sec, err := secrets.LoadSite(cluster.SiteFile(0))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Secrets, cfg.BcryptCost = sec, bcrypt.MinCost
	for _, f := range adjust {
		f(&cfg)
	}
	s, err := site.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Kill)
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// A site cut off from the log still answers an operator's GET
// /v1/ops/site — why it refuses is what the operator asks it — but it
// cannot confirm the session against the log's newest accounts records
// (a revocation or a demotion it has not read), so it answers only what
// the public status shows, and says so; once the link heals, in full
// again. The cut is silent (bytes held, connections open), as most real
// partitions are, between one extra gateway of site a and its NATS
// server, so that the shared cluster is not touched.
func TestOpsSiteOfASiteCutOffAnswersLimited(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	u, err := url.Parse(cluster.Site(0).Node().ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	link, err := faultlink.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(link.Close)
	u.Host = link.Addr()
	gw := extraGateway(t, ctx, u.String())
	op, _ := operator(t, ctx, 0, "cutop")
	user, _ := signedUp(t, 1, "cutuser")

	type opsSiteAnswer struct {
		consoleSite
		NotServing string `json:"not_serving"`
		Limited    string `json:"limited"`
	}
	ask := func(token string) (int, opsSiteAnswer, error) {
		var got opsSiteAnswer
		req, err := http.NewRequestWithContext(ctx, "GET", gw.URL()+"/v1/ops/site", nil)
		if err != nil {
			return 0, got, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, got, err
		}
		defer res.Body.Close()
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return res.StatusCode, got, err
		}
		if res.StatusCode == http.StatusOK {
			err = json.Unmarshal(body, &got)
		}
		return res.StatusCode, got, err
	}
	full := func() error {
		code, got, err := ask(op.Token())
		switch {
		case err != nil:
			return err
		case code != http.StatusOK:
			return fmt.Errorf("operator: %d", code)
		case got.Limited != "" || got.NotServing != "" || !got.NATS.Connected || got.NATS.Server == "":
			return fmt.Errorf("operator, linked: %+v", got)
		}
		return nil
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, full)
	if code, _, err := ask(user.Token()); err != nil || code != http.StatusForbidden {
		t.Fatalf("a user's GET /v1/ops/site: %d, %v; want 403", code, err)
	}

	link.CutSilently()
	checkFor(t, 30*time.Second, 100*time.Millisecond, func() error {
		code, got, err := ask(op.Token())
		switch {
		case err != nil:
			return err
		case code != http.StatusOK:
			return fmt.Errorf("operator, cut off: %d", code)
		case got.NotServing == "" || got.Limited == "":
			return fmt.Errorf("operator, cut off: not yet refusing, or answered in full: %+v", got)
		case got.Site != "a" || got.NATS.Server != "" || got.NATS.Connected || len(got.RecentErrors) != 0 || got.Counters.HTTPRequests != 0:
			return fmt.Errorf("operator, cut off: the limited answer shows more than the public status: %+v", got)
		}
		return nil
	})
	if code, _, err := ask(user.Token()); err != nil || code != http.StatusForbidden {
		t.Fatalf("a user's GET /v1/ops/site while cut off: %d, %v; want 403", code, err)
	}

	link.Heal()
	checkFor(t, 30*time.Second, 100*time.Millisecond, full)
}
