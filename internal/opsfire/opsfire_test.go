package opsfire

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/testbin"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/drill"
)

// binary is the salamander executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testbin.Main(m, "opsfire", &binary))
}

// Site indexes in the cluster: c burns, a and b survive.
const (
	siteA, siteB, siteC = 0, 1, 2
)

// fire is the state the survivor test carries from step to step.
type fire struct {
	t   *testing.T
	ctx context.Context
	cl  *drill.Cluster
	// Accounts: an admin, an operator, a user connected throughout
	// (alice), one away while the site burns (bob), and one the admins
	// act on (victim).
	admin, op, alice, bob, victim *client.Client
	routes                        []route

	events chan salamander.Event // alice's incident and ready events
	sub    *client.Subscription
	subWG  sync.WaitGroup

	incident string // the incident announced after the fire
}

func (f *fire) url(i int) string { return f.cl.URL(i) }

// survivors are the sites left after the fire.
var survivors = []int{siteA, siteB}

// With one site SIGKILLed, every ops-plane function works from each
// surviving site: the console's data (every site's state, this site's
// detail, the live overview), every admin action (roles, suspending,
// restoring and revoking accounts, moving stream leaders, draining and
// undraining a site), incidents (announced at one survivor, updated at the
// other, on both status pages in Korean and English, live to a connected
// client and in the sync and ready event of a returning one), damage
// reports from filing to the CSV export, drill records (a console drill
// run before the fire) and the audit trail of all of it. Every ops
// endpoint refuses anonymous callers and callers whose role is too low,
// and no user sees another's damage report.
func TestOpsPlaneSurvivesAFire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes, runs a 25-40 s console drill and burns a site")
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 170*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	cl, err := drill.StartCluster(ctx, drill.ClusterConfig{Binary: binary, Dir: t.TempDir(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		if t.Failed() {
			for i := range cl.N() {
				t.Logf("site %s's log (%s):\n%s", cl.Name(i), cl.LogPath(i), logTail(cl.LogPath(i), 3000))
			}
		}
	})
	f := &fire{t: t, ctx: ctx, cl: cl, routes: opsRoutes(t), events: make(chan salamander.Event, 64)}
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))

	f.makeAccounts()
	drillID := f.consoleDrill()
	f.connectAlice()

	t.Log("SIGKILL site c")
	if err := cl.Kill(siteC); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitLeaders(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("every stream has a leader at a survivor, %s in", time.Since(start).Round(time.Millisecond))

	f.consoleData()
	f.incidentReachesEveryone()
	f.adminActions()
	f.moveLeaders()
	f.drainAndUndrain()
	report := f.damageReport()
	f.drillRecords(drillID)
	f.auditTrail(report, drillID)
	f.authorizationMatrix(report)
	t.Logf("done in %s", time.Since(start).Round(time.Millisecond))
}

// makeAccounts signs every account up; the admin is made with the admin
// credential (`salamander admin set-role`), the operator by the admin from
// the API.
func (f *fire) makeAccounts() {
	t := f.t
	f.admin = signUp(t, f.ctx, f.url(siteA), "boss")
	f.op = signUp(t, f.ctx, f.url(siteB), "oper")
	f.alice = signUp(t, f.ctx, f.url(siteA), "alice")
	f.bob = signUp(t, f.ctx, f.url(siteB), "bob")
	f.victim = signUp(t, f.ctx, f.url(siteB), "victim")
	out, err := f.adminCLI("set-role", "boss", salamander.RoleAdmin)
	if err != nil {
		t.Fatalf("salamander admin set-role: %v\n%s", err, out)
	}
	f.waitRole(f.admin, salamander.RoleAdmin, siteA, siteB, siteC)
	code, body := call(f.ctx, f.url(siteB), "PUT", "/v1/ops/users/oper/role", f.admin.Token(),
		salamander.RoleRequest{Role: salamander.RoleOperator})
	if code != http.StatusOK {
		t.Fatalf("the admin promoting the operator at b: %d %s", code, body)
	}
	f.waitRole(f.op, salamander.RoleOperator, siteA, siteB, siteC)
	t.Log("accounts made: boss is admin, oper is operator")
}

// adminCLI runs `salamander admin` with the admin credential, through
// every site's NATS server.
func (f *fire) adminCLI(args ...string) (string, error) {
	natsURLs := []string{}
	for i := range f.cl.N() {
		natsURLs = append(natsURLs, f.cl.NATSURL(i))
	}
	full := append([]string{"admin", "--nats", strings.Join(natsURLs, ","), "--creds", f.cl.AdminFile()}, args...)
	out, err := exec.CommandContext(f.ctx, binary, full...).CombinedOutput()
	return string(out), err
}

// waitRole polls until the account of c has role at every given site.
func (f *fire) waitRole(c *client.Client, role string, sites ...int) {
	f.t.Helper()
	for _, i := range sites {
		checkFor(f.t, 15*time.Second, 50*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/me", c.Token(), nil)
			me, err := decodeAs[salamander.User](code, http.StatusOK, body)
			if err != nil || me.Role != role {
				return fmt.Errorf("at site %s: %+v %v", f.cl.Name(i), me, err)
			}
			return nil
		})
	}
}

// consoleDrill runs a console drill of site c from site a while every site
// is up and waits until it has passed.
func (f *fire) consoleDrill() string {
	t := f.t
	code, body := call(f.ctx, f.url(siteA), "POST", "/v1/ops/drills", f.op.Token(),
		salamander.DrillRequest{Site: "c", Seconds: salamander.MinDrillSeconds})
	d := mustDecode[salamander.Drill](t, code, http.StatusAccepted, body)
	t.Logf("console drill %s started at a (isolating c for %d s)", d.ID, d.Seconds)
	begun := time.Now()
	// The admin CLI keeps the console's rule: no drain while a drill runs.
	if out, err := f.adminCLI("drain", "b"); err == nil || !strings.Contains(out, "drill "+d.ID+" is running") {
		t.Fatalf("admin drain during the console drill: %v\n%s", err, out)
	}
	// While c is cut off, its status page says it may be behind, and
	// points to the others'.
	checkFor(t, 60*time.Second, 100*time.Millisecond, func() error {
		code, body := call(f.ctx, f.url(siteC), "GET", "/v1/status/incidents", "", nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"up_to_date":false`) {
			return fmt.Errorf("c's incidents while cut off: %d %.200s", code, body)
		}
		code, page := call(f.ctx, f.url(siteC), "GET", "/status", "", nil, "Accept-Language", "en")
		if code != http.StatusOK || !strings.Contains(string(page), "not up to date") || strings.Contains(string(page), "operating normally") ||
			!strings.Contains(string(page), f.url(siteA)+"/status") {
			return fmt.Errorf("c's status page while cut off: %d", code)
		}
		return nil
	})
	checkFor(t, 90*time.Second, time.Second, func() error {
		code, body := call(f.ctx, f.url(siteA), "GET", "/v1/ops/drills/"+d.ID, f.op.Token(), nil)
		got, err := decodeAs[salamander.Drill](code, http.StatusOK, body)
		if err != nil {
			return err
		}
		switch got.State {
		case salamander.DrillPassed:
			t.Logf("drill %s passed in %s: %s", d.ID, time.Since(begun).Round(time.Second), got.Summary)
			return nil
		case salamander.DrillFailed:
			t.Fatalf("drill %s failed: %s", d.ID, got.Summary)
		}
		return fmt.Errorf("drill %s is %s", d.ID, got.State)
	})
	// The isolated site is back; the fire must not come while it is
	// still catching up.
	if err := f.cl.WaitReady(f.ctx, siteC); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cl.WaitCaughtUp(f.ctx, siteC, true); err != nil {
		t.Fatal(err)
	}
	return d.ID
}

// connectAlice subscribes alice at site a and waits for her ready event.
func (f *fire) connectAlice() {
	t := f.t
	c, err := client.New(client.Config{Sites: f.cl.URLs(), Prefer: siteA, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(f.alice.Token())
	f.alice = c
	f.sub = c.Subscribe(f.ctx)
	f.subWG.Add(1)
	go func() {
		defer f.subWG.Done()
		for ev := range f.sub.Events() {
			if ev.Type == salamander.EventIncident || ev.Type == salamander.EventReady {
				select {
				case f.events <- ev:
				default: // the test reads promptly; never block the subscription
				}
			}
		}
	}()
	t.Cleanup(func() {
		_ = f.sub.Close()
		f.subWG.Wait()
	})
	select {
	case ev := <-f.events:
		if ev.Type != salamander.EventReady {
			t.Fatalf("alice's first event is %s, not ready", ev.Type)
		}
	case <-f.ctx.Done():
		t.Fatal("alice's subscription never got ready")
	}
	if s := f.sub.Site(); !strings.HasPrefix(s, f.url(siteA)) {
		t.Fatalf("alice is subscribed at %q, not at site a", s)
	}
	t.Log("alice is connected at a; bob is away")
}

// consoleData: from each survivor, the console sees a and b ready and c
// unreachable — GET /v1/ops/sites, GET /v1/ops/site (this site's detail,
// no stream led by c) and the first overview of GET /v1/ops/stream.
func (f *fire) consoleData() {
	t := f.t
	for _, i := range survivors {
		name := f.cl.Name(i)
		checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/ops/sites", f.op.Token(), nil)
			v, err := decodeAs[opsSites](code, http.StatusOK, body)
			if err != nil {
				return err
			}
			if v.Site != name {
				return fmt.Errorf("/v1/ops/sites at %s answered as %q", name, v.Site)
			}
			if err := v.survivorsView("c", "a", "b"); err != nil {
				return fmt.Errorf("/v1/ops/sites at %s: %w", name, err)
			}
			return nil
		})
		checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/ops/site", f.op.Token(), nil)
			d, err := decodeAs[struct {
				Site    string `json:"site"`
				Ready   bool   `json:"ready"`
				Streams []struct {
					Stream, Leader string
				} `json:"streams"`
			}](code, http.StatusOK, body)
			if err != nil {
				return err
			}
			if d.Site != name || !d.Ready || len(d.Streams) == 0 {
				return fmt.Errorf("/v1/ops/site at %s: %.300s", name, body)
			}
			for _, s := range d.Streams {
				if s.Leader == "" || s.Leader == "site-c" {
					return fmt.Errorf("/v1/ops/site at %s: stream %s led by %q", name, s.Stream, s.Leader)
				}
			}
			return nil
		})
		checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
			data, err := firstOverview(f.ctx, f.url(i), f.op.Token())
			if err != nil {
				return err
			}
			var v opsSites
			if err := json.Unmarshal([]byte(data), &v); err != nil {
				return fmt.Errorf("overview at %s: %v: %.300s", name, err, data)
			}
			if v.Site != name {
				return fmt.Errorf("overview at %s answered as %q", name, v.Site)
			}
			if err := v.survivorsView("c", "a", "b"); err != nil {
				return fmt.Errorf("overview at %s: %w", name, err)
			}
			return nil
		})
	}
	t.Log("console data at a and b: /v1/ops/sites, /v1/ops/site and /v1/ops/stream show a and b ready, c unreachable")
}

// awaitIncident waits until alice's subscription delivers the incident in
// state.
func (f *fire) awaitIncident(id, state string) {
	f.t.Helper()
	timeout := time.NewTimer(20 * time.Second)
	defer timeout.Stop()
	for {
		select {
		case ev := <-f.events:
			if ev.Type == salamander.EventIncident && ev.Incident != nil && ev.Incident.ID == id && ev.Incident.State == state {
				return
			}
		case <-timeout.C:
			f.t.Fatalf("alice got no live incident event for %s in state %s (subscribed at %q, err %v)", id, state,
				f.sub.Site(), f.sub.Err())
		}
	}
}

// incidentReachesEveryone: an incident announced at a and updated at b is
// on both survivors' status pages (Korean and English) and JSON, reaches
// the connected client live, and a client coming back at b learns of it
// by sync and in its ready event; resolved, it leaves both.
func (f *fire) incidentReachesEveryone() {
	t := f.t
	req := salamander.IncidentRequest{
		Title:    salamander.Localized{EN: "Site c burned", KO: "c 사이트 화재"},
		Message:  salamander.Localized{EN: "Clients moved to the other sites.", KO: "클라이언트는 다른 사이트로 옮겼습니다."},
		Impact:   salamander.ImpactMinor,
		Services: []string{salamander.ServiceMessaging}}
	code, body := call(f.ctx, f.url(siteA), "POST", "/v1/ops/incidents", f.op.Token(), req)
	inc := mustDecode[salamander.Incident](t, code, http.StatusCreated, body)
	f.incident = inc.ID
	if inc.State != salamander.IncidentInvestigating || len(inc.Updates) != 1 || inc.Updates[0].Site != "a" {
		t.Fatalf("announced at a: %+v", inc)
	}
	f.awaitIncident(inc.ID, salamander.IncidentInvestigating)
	t.Logf("incident %s announced at a; alice got it live", inc.ID)

	// The update is taken at b once b has the incident.
	up := salamander.IncidentUpdateRequest{State: salamander.IncidentIdentified,
		Message: salamander.Localized{EN: "Site c is down for good; a and b serve everyone.",
			KO: "c 사이트는 복구되지 않습니다. a와 b가 모두를 서비스합니다."}}
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		code, body := call(f.ctx, f.url(siteB), "POST", "/v1/ops/incidents/"+inc.ID+"/updates", f.op.Token(), up)
		got, err := decodeAs[salamander.Incident](code, http.StatusOK, body)
		if err != nil {
			if code == http.StatusNotFound {
				return err // b has not applied the announcement yet
			}
			t.Fatalf("update at b: %v", err)
		}
		if len(got.Updates) != 2 || got.Updates[1].Site != "b" || got.State != salamander.IncidentIdentified {
			t.Fatalf("updated at b: %+v", got)
		}
		return nil
	})
	f.awaitIncident(inc.ID, salamander.IncidentIdentified)
	t.Log("updated at b; alice got the update live")

	for _, i := range survivors {
		name := f.cl.Name(i)
		checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/status/incidents", "", nil)
			lists, err := decodeAs[struct{ Open, History []salamander.Incident }](code, http.StatusOK, body)
			if err != nil {
				return err
			}
			if len(lists.Open) != 1 || lists.Open[0].ID != inc.ID || lists.Open[0].State != salamander.IncidentIdentified {
				return fmt.Errorf("/v1/status/incidents at %s: %.500s", name, body)
			}
			for lang, want := range map[string][]string{
				"ko-KR,ko;q=0.9,en;q=0.8": {`lang="ko"`, "c 사이트 화재", "a와 b가 모두를 서비스합니다"},
				"en-US,en;q=0.9":          {`lang="en"`, "Site c burned", "a and b serve everyone"},
			} {
				code, page := call(f.ctx, f.url(i), "GET", "/status", "", nil, "Accept-Language", lang)
				if code != http.StatusOK {
					return fmt.Errorf("/status at %s in %s: %d", name, lang, code)
				}
				for _, w := range want {
					if !strings.Contains(string(page), w) {
						return fmt.Errorf("/status at %s in %s lacks %q", name, lang, w)
					}
				}
			}
			return nil
		})
	}
	t.Log("the status pages (ko, en) and /v1/status/incidents of a and b show it")

	// Bob comes back at b: sync hands him the open incident, and so does
	// his socket's ready event.
	if _, err := f.bob.Login(f.ctx, "bob", password); err != nil {
		t.Fatalf("bob logging in at b: %v", err)
	}
	res, err := f.bob.Sync(f.ctx, "", 10)
	if err != nil || !slices.ContainsFunc(res.Incidents, func(i salamander.Incident) bool { return i.ID == inc.ID }) {
		t.Fatalf("bob's sync at b: %+v %v", res.Incidents, err)
	}
	bsub := f.bob.Subscribe(f.ctx)
	timeout := time.After(15 * time.Second)
	var ready *salamander.Event
	for ready == nil {
		select {
		case ev := <-bsub.Events():
			if ev.Type == salamander.EventReady {
				ready = &ev
			}
		case <-timeout:
			t.Fatalf("bob's subscription at b: no ready event (%v)", bsub.Err())
		}
	}
	if !slices.ContainsFunc(ready.Incidents, func(i salamander.Incident) bool { return i.ID == inc.ID }) {
		t.Fatalf("bob's ready event at b lacks the incident: %+v", ready.Incidents)
	}
	_ = bsub.Close()
	t.Log("bob, back at b, learned of it by sync and in his ready event")

	// Resolved at b: it leaves the banner, sync and the open list.
	done := salamander.IncidentUpdateRequest{State: salamander.IncidentResolved,
		Message: salamander.Localized{EN: "Service is whole on two sites.", KO: "두 사이트로 정상 서비스 중입니다."}}
	code, body = call(f.ctx, f.url(siteB), "POST", "/v1/ops/incidents/"+inc.ID+"/updates", f.op.Token(), done)
	if got := mustDecode[salamander.Incident](t, code, http.StatusOK, body); got.ResolvedAt.IsZero() {
		t.Fatalf("resolved at b: %+v", got)
	}
	f.awaitIncident(inc.ID, salamander.IncidentResolved)
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if res, err := f.bob.Sync(f.ctx, "", 10); err != nil || len(res.Incidents) != 0 {
			return fmt.Errorf("bob's sync after resolving: %+v %v", res.Incidents, err)
		}
		for _, i := range survivors {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/status/incidents", "", nil)
			lists, err := decodeAs[struct{ Open, History []salamander.Incident }](code, http.StatusOK, body)
			if err != nil {
				return err
			}
			if len(lists.Open) != 0 || !slices.ContainsFunc(lists.History, func(x salamander.Incident) bool { return x.ID == inc.ID }) {
				return fmt.Errorf("/v1/status/incidents at %s after resolving: %.500s", f.cl.Name(i), body)
			}
		}
		return nil
	})
	t.Log("resolved at b: alice got it live; it left sync and the open lists")
}

// adminActions: the admin changes a role at b, suspends at a, restores at
// b and revokes at a; each takes effect at both survivors.
func (f *fire) adminActions() {
	t := f.t
	act := func(i int, method, path string, body any) {
		t.Helper()
		if code, b := call(f.ctx, f.url(i), method, path, f.admin.Token(), body); code != http.StatusOK {
			t.Fatalf("%s %s at %s: %d %s", method, path, f.cl.Name(i), code, b)
		}
	}
	act(siteB, "PUT", "/v1/ops/users/victim/role", salamander.RoleRequest{Role: salamander.RoleOperator})
	f.waitRole(f.victim, salamander.RoleOperator, survivors...)
	act(siteA, "PUT", "/v1/ops/users/victim/role", salamander.RoleRequest{Role: salamander.RoleUser})
	f.waitRole(f.victim, salamander.RoleUser, survivors...)
	t.Log("set-role at b and a took effect at both")

	old := f.victim.Token()
	act(siteA, "POST", "/v1/ops/users/victim/suspend", nil)
	for _, i := range survivors {
		checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			if code, body := call(f.ctx, f.url(i), "GET", "/v1/rooms", old, nil); code != http.StatusForbidden {
				return fmt.Errorf("a suspended account's session at %s: %d %s", f.cl.Name(i), code, body)
			}
			_, err := pinnedClient(t, f.url(i)).Login(f.ctx, "victim", password)
			if salamander.ErrorCode(err) != salamander.CodeForbidden {
				return fmt.Errorf("a suspended account logging in at %s: %v", f.cl.Name(i), err)
			}
			return nil
		})
	}
	act(siteB, "POST", "/v1/ops/users/victim/restore", nil)
	again := pinnedClient(t, f.url(siteA))
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		_, err := again.Login(f.ctx, "victim", password)
		return err
	})
	t.Log("suspended at a (refused at a and b), restored at b (logs in at a)")

	act(siteA, "POST", "/v1/ops/users/victim/revoke", nil)
	for _, i := range survivors {
		checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			if code, body := call(f.ctx, f.url(i), "GET", "/v1/rooms", again.Token(), nil); code != http.StatusUnauthorized {
				return fmt.Errorf("a revoked session at %s: %d %s", f.cl.Name(i), code, body)
			}
			return nil
		})
	}
	t.Log("revoked at a: the session is refused at a and b")
}

// streamLeaders returns each stream's leading site as site i reports it.
func (f *fire) streamLeaders(i int) (map[string]string, error) {
	code, body := call(f.ctx, f.url(i), "GET", "/v1/ops/site", f.op.Token(), nil)
	st, err := decodeAs[struct {
		Streams []struct{ Stream, Leader string }
	}](code, http.StatusOK, body)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range st.Streams {
		out[s.Stream] = strings.TrimPrefix(s.Leader, "site-")
	}
	return out, nil
}

// moveLeaders: from each survivor an operator moves a stream's leader to
// the other survivor; a move to the dead site is refused.
func (f *fire) moveLeaders() {
	t := f.t
	if code, body := call(f.ctx, f.url(siteA), "POST", "/v1/ops/streams/acct/leader", f.op.Token(),
		map[string]string{"site": "c"}); code != http.StatusConflict {
		t.Fatalf("a leader moved to the dead site: %d %s", code, body)
	}
	for _, i := range survivors {
		from := f.cl.Name(i)
		var moved string
		checkFor(t, 30*time.Second, 250*time.Millisecond, func() error {
			leaders, err := f.streamLeaders(i)
			if err != nil {
				return err
			}
			// A stream led by the other survivor moves to this one, or
			// (none) one led here moves away.
			stream, to := "", ""
			for _, s := range slices.Sorted(maps.Keys(leaders)) {
				if l := leaders[s]; l != "" && l != from && stream == "" {
					stream, to = s, from
				}
			}
			if stream == "" {
				stream, to = "acct", map[string]string{"a": "b", "b": "a"}[from]
			}
			code, body := call(f.ctx, f.url(i), "POST", "/v1/ops/streams/"+stream+"/leader", f.op.Token(),
				map[string]string{"site": to})
			// Moved false: the leaders read above were older than the
			// gateway's (an election after the fire placed it there
			// already); nothing moved, nothing is audited; pick again.
			if code != http.StatusOK || !strings.Contains(string(body), `"leader":"site-`+to+`"`) ||
				!strings.Contains(string(body), `"moved":true`) {
				return fmt.Errorf("moving %s's leader to %s from %s: %d %s", stream, to, from, code, body)
			}
			moved = stream + " → " + to
			return nil
		})
		t.Logf("from %s: moved %s", from, moved)
	}
}

// drainAndUndrain: an operator at a drains b (one drained site of three is
// allowed, the dead one not counting); b stops being ready and leads
// nothing; draining a as well is refused; undrained from b, it is ready
// again.
func (f *fire) drainAndUndrain() {
	t := f.t
	code, body := call(f.ctx, f.url(siteA), "POST", "/v1/ops/sites/b/drain", f.op.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("draining b from a: %d %s", code, body)
	}
	undrained := false
	t.Cleanup(func() {
		if !undrained {
			call(context.Background(), f.url(siteA), "POST", "/v1/ops/sites/b/undrain", f.op.Token(), nil)
		}
	})
	if code, body := call(f.ctx, f.url(siteB), "POST", "/v1/ops/sites/a/drain", f.op.Token(), nil); code != http.StatusConflict {
		t.Fatalf("draining a as well, from b: %d %s", code, body)
	}
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		if code, body := call(f.ctx, f.url(siteB), "GET", "/readyz", "", nil); code != http.StatusServiceUnavailable {
			return fmt.Errorf("b's readyz while drained: %d %s", code, body)
		}
		// Why it is not ready is for operators.
		code, body := call(f.ctx, f.url(siteB), "GET", "/v1/ops/site", f.op.Token(), nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"drained":true`) {
			return fmt.Errorf("b's ops/site while drained: %d %.300s", code, body)
		}
		leaders, err := f.streamLeaders(siteA)
		if err != nil {
			return err
		}
		for s, l := range leaders {
			if l != "a" {
				return fmt.Errorf("while b is drained and c dead, %s is led by %q", s, l)
			}
		}
		code, body = call(f.ctx, f.url(siteA), "GET", "/v1/ops/sites", f.op.Token(), nil)
		v, err := decodeAs[opsSites](code, http.StatusOK, body)
		if err != nil {
			return err
		}
		for _, s := range v.Sites {
			if s.Name == "b" && (!s.Reachable || s.Ready) {
				return fmt.Errorf("a's console shows the drained b as reachable %v, ready %v", s.Reachable, s.Ready)
			}
		}
		return nil
	})
	t.Log("b drained from a: not ready, leads nothing; draining a too was refused")
	code, body = call(f.ctx, f.url(siteB), "POST", "/v1/ops/sites/b/undrain", f.op.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("undraining b from b: %d %s", code, body)
	}
	undrained = true
	checkFor(t, 20*time.Second, 200*time.Millisecond, func() error {
		if code, body := call(f.ctx, f.url(siteB), "GET", "/readyz", "", nil); code != http.StatusOK {
			return fmt.Errorf("b's readyz after undrain: %d %s", code, body)
		}
		return nil
	})
	t.Log("b undrained from b: ready again")
}

// damageReport: alice files a report at b; the admin asks for details at
// a; alice answers at b; the admin approves at a; the CSV export at b has
// it. Bob sees none of it.
func (f *fire) damageReport() string {
	t := f.t
	file := salamander.DamageReportRequest{Incident: f.incident, Category: salamander.HarmLostSales,
		Description: "No orders came in by chat while site c burned.", AmountClaimed: 500_000, ClientID: "fire-claim-1"}
	var rep salamander.DamageReport
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		code, body := call(f.ctx, f.url(siteB), "POST", "/v1/reports", f.alice.Token(), file)
		var err error
		if code == http.StatusOK { // a retry that found the report its first try filed
			rep, err = decodeAs[salamander.DamageReport](code, http.StatusOK, body)
		} else {
			rep, err = decodeAs[salamander.DamageReport](code, http.StatusCreated, body)
		}
		return err
	})
	if rep.State != salamander.ReportSubmitted || rep.User != "alice" {
		t.Fatalf("filed at b: %+v", rep)
	}
	t.Logf("alice filed %s at b", rep.ID)

	// state waits until site i shows the report in state to its owner.
	state := func(i int, want string) {
		t.Helper()
		checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/reports/"+rep.ID, f.alice.Token(), nil)
			got, err := decodeAs[salamander.DamageReport](code, http.StatusOK, body)
			if err != nil || got.State != want {
				return fmt.Errorf("report %s at %s: %+v %v", rep.ID, f.cl.Name(i), got.State, err)
			}
			return nil
		})
	}
	review := func(i int, r salamander.ReviewRequest, want string) {
		t.Helper()
		code, body := call(f.ctx, f.url(i), "POST", "/v1/ops/reports/"+rep.ID+"/review", f.admin.Token(), r)
		if got := mustDecode[salamander.DamageReport](t, code, http.StatusOK, body); got.State != want {
			t.Fatalf("review %s at %s: %+v", r.Decision, f.cl.Name(i), got)
		}
	}
	state(siteA, salamander.ReportSubmitted)
	review(siteA, salamander.ReviewRequest{Decision: salamander.DecisionAskDetails, Note: "How much do you sell a day?"},
		salamander.ReportNeedsDetails)
	state(siteB, salamander.ReportNeedsDetails)
	claim := int64(450_000)
	code, body := call(f.ctx, f.url(siteB), "POST", "/v1/reports/"+rep.ID+"/details", f.alice.Token(),
		salamander.ReportDetailsRequest{Text: "About 150,000 won an hour; three hours.", AmountClaimed: &claim})
	if got := mustDecode[salamander.DamageReport](t, code, http.StatusOK, body); got.State != salamander.ReportSubmitted ||
		got.AmountClaimed != claim {
		t.Fatalf("alice's answer at b: %+v", got)
	}
	state(siteA, salamander.ReportSubmitted)
	review(siteA, salamander.ReviewRequest{Decision: salamander.DecisionApprove, AmountApproved: 400_000, Note: "Approved."},
		salamander.ReportApproved)
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		code, body := call(f.ctx, f.url(siteB), "GET", "/v1/ops/reports.csv?state=approved", f.admin.Token(), nil)
		if code != http.StatusOK || !strings.Contains(string(body), rep.ID+",alice,"+f.incident+",lost_sales") ||
			!strings.Contains(string(body), ",450000,KRW,approved,400000,") {
			return fmt.Errorf("the CSV export at b: %d %.500s", code, body)
		}
		return nil
	})
	t.Log("asked for details at a, answered at b, approved at a; in b's CSV export")

	for _, i := range survivors {
		if code, body := call(f.ctx, f.url(i), "GET", "/v1/reports/"+rep.ID, f.bob.Token(), nil); code != http.StatusNotFound {
			t.Fatalf("bob reading alice's report at %s: %d %s", f.cl.Name(i), code, body)
		}
		code, body := call(f.ctx, f.url(i), "GET", "/v1/reports", f.bob.Token(), nil)
		if mine := mustDecode[struct{ Reports []salamander.DamageReport }](t, code, http.StatusOK, body); len(mine.Reports) != 0 {
			t.Fatalf("bob's report list at %s: %+v", f.cl.Name(i), mine.Reports)
		}
		code, body = call(f.ctx, f.url(i), "GET", "/v1/reports", f.alice.Token(), nil)
		mine := mustDecode[struct{ Reports []salamander.DamageReport }](t, code, http.StatusOK, body)
		if len(mine.Reports) != 1 || mine.Reports[0].ID != rep.ID {
			t.Fatalf("alice's report list at %s: %+v", f.cl.Name(i), mine.Reports)
		}
		if code, body := call(f.ctx, f.url(i), "POST", "/v1/reports/"+rep.ID+"/details", f.bob.Token(),
			salamander.ReportDetailsRequest{Text: "mine now"}); code != http.StatusNotFound {
			t.Fatalf("bob answering for alice's report at %s: %d %s", f.cl.Name(i), code, body)
		}
	}
	t.Log("bob cannot see, list or answer alice's report at a or b")
	return rep.ID
}

// drillRecords: at both survivors the drill run before the fire is listed,
// counts towards the year's simulation drills, and is in the CSV.
func (f *fire) drillRecords(id string) {
	t := f.t
	for _, i := range survivors {
		name := f.cl.Name(i)
		code, body := call(f.ctx, f.url(i), "GET", "/v1/ops/drills", f.op.Token(), nil)
		v := mustDecode[struct {
			Drills     []salamander.Drill         `json:"drills"`
			Compliance salamander.DrillCompliance `json:"compliance"`
		}](t, code, http.StatusOK, body)
		if !slices.ContainsFunc(v.Drills, func(d salamander.Drill) bool {
			return d.ID == id && d.State == salamander.DrillPassed && d.Kind == salamander.DrillSimulation && d.Site == "c" &&
				d.By == "oper" && d.FromSite == "a" && !d.Ended.IsZero()
		}) {
			t.Fatalf("/v1/ops/drills at %s lacks the passed drill %s: %.1000s", name, id, body)
		}
		if v.Compliance.Simulation < 1 || v.Compliance.Year != time.Now().UTC().Year() {
			t.Fatalf("/v1/ops/drills at %s does not count drill %s as a simulation drill: %+v", name, id, v.Compliance)
		}
		code, body = call(f.ctx, f.url(i), "GET", "/v1/ops/drills/"+id, f.op.Token(), nil)
		if d := mustDecode[salamander.Drill](t, code, http.StatusOK, body); len(d.Report) == 0 {
			t.Fatalf("drill %s at %s has no report", id, name)
		}
		code, body = call(f.ctx, f.url(i), "GET", "/v1/ops/drills.csv", f.op.Token(), nil)
		if code != http.StatusOK || !strings.Contains(string(body), id+",isolate,simulation,c,") ||
			!strings.Contains(string(body), ",passed,oper,a,") {
			t.Fatalf("/v1/ops/drills.csv at %s: %d %.1000s", name, code, body)
		}
	}
	t.Log("the drill record, its compliance count and its CSV row are at a and b")
}

// auditTrail: at both survivors the trail, as JSON and CSV, has every
// action taken above.
func (f *fire) auditTrail(report, drillID string) {
	t := f.t
	type want struct{ action, by, site, user, detail string }
	wants := []want{
		{"set-role", "", "cli", "boss", ""},
		{"set-role", "boss", "b", "oper", ""},
		{"set-role", "boss", "b", "victim", ""},
		{"set-role", "boss", "a", "victim", ""},
		{"suspend", "boss", "a", "victim", ""},
		{"restore", "boss", "b", "victim", ""},
		{"revoke-sessions", "boss", "a", "victim", ""},
		{"drill-start", "oper", "a", "", drillID},
		{"drill-fault", "oper", "a", "", drillID},
		{"drill-end", "oper", "a", "", drillID},
		{"incident-open", "oper", "a", "", f.incident},
		{"incident-update", "oper", "b", "", f.incident + " identified"},
		{"incident-update", "oper", "b", "", f.incident + " resolved"},
		{"move-leader", "oper", "a", "", ""},
		{"move-leader", "oper", "b", "", ""},
		{"drain", "oper", "a", "", "b"},
		{"undrain", "oper", "b", "", "b"},
		{"report-ask_details", "boss", "a", "alice", report},
		{"report-approve", "boss", "a", "alice", report},
	}
	for _, i := range survivors {
		name := f.cl.Name(i)
		checkFor(t, 15*time.Second, 200*time.Millisecond, func() error {
			code, body := call(f.ctx, f.url(i), "GET", "/v1/ops/audit?limit=1000", f.op.Token(), nil)
			trail, err := decodeAs[struct{ Entries []salamander.AuditEntry }](code, http.StatusOK, body)
			if err != nil {
				return err
			}
			for _, w := range wants {
				if !slices.ContainsFunc(trail.Entries, func(e salamander.AuditEntry) bool {
					return e.Action == w.action && e.By == w.by && e.Site == w.site && (w.user == "" || e.User == w.user) &&
						strings.Contains(e.Detail, w.detail) && !e.At.IsZero() && e.Pos != ""
				}) {
					return fmt.Errorf("the audit trail at %s lacks %+v: %.2000s", name, w, body)
				}
			}
			code, body = call(f.ctx, f.url(i), "GET", "/v1/ops/audit.csv", f.admin.Token(), nil)
			if code != http.StatusOK {
				return fmt.Errorf("audit.csv at %s: %d %s", name, code, body)
			}
			for _, w := range wants {
				by := w.by
				if by == "" {
					by = "(admin credential)"
				}
				if !strings.Contains(string(body), ","+by+","+w.site+","+w.action+",") {
					return fmt.Errorf("audit.csv at %s lacks %+v: %.2000s", name, w, body)
				}
			}
			return nil
		})
	}
	t.Logf("the audit trail (JSON and CSV) at a and b has all %d actions", len(wants))
}

// authorizationMatrix: at each survivor, every ops route refuses anonymous
// callers (401) and callers below its role (403) and lets the others
// through (wildcards name nothing, so nothing changes); admin-only routes
// refuse operators. The public status endpoints and the console's page
// need no session.
func (f *fire) authorizationMatrix(report string) {
	t := f.t
	callers := []struct {
		who, token, role string
	}{
		{"anonymous", "", ""},
		{"user", f.bob.Token(), salamander.RoleUser},
		{"operator", f.op.Token(), salamander.RoleOperator},
		{"admin", f.admin.Token(), salamander.RoleAdmin},
	}
	n := 0
	for _, i := range survivors {
		for _, r := range f.routes {
			var body any
			if r.Method != "GET" {
				body = map[string]any{}
			}
			for _, c := range callers {
				code, err := statusOnly(f.ctx, f.url(i), r.Method, r.Path(), c.token, body)
				if err != nil {
					t.Fatalf("%s %s at %s as %s: %v", r.Method, r.Path(), f.cl.Name(i), c.who, err)
				}
				n++
				switch {
				case c.role == "":
					if code != http.StatusUnauthorized {
						t.Errorf("%s %s at %s as %s: %d, want 401", r.Method, r.Path(), f.cl.Name(i), c.who, code)
					}
				case salamander.RoleRank(c.role) < salamander.RoleRank(r.Role):
					if code != http.StatusForbidden {
						t.Errorf("%s %s at %s as %s: %d, want 403 (needs %s)", r.Method, r.Path(), f.cl.Name(i), c.who, code, r.Role)
					}
				default:
					if code == http.StatusUnauthorized || code == http.StatusForbidden || code >= 500 {
						t.Errorf("%s %s at %s as %s: %d, want it let through (needs %s)", r.Method, r.Path(),
							f.cl.Name(i), c.who, code, r.Role)
					}
				}
			}
		}
		// A real report id, not only one that names nothing: still
		// nobody's but its owner's and the admins'.
		for _, c := range callers[:3] {
			want := map[string]int{"anonymous": 401, "user": 404, "operator": 404}[c.who]
			if code, _ := statusOnly(f.ctx, f.url(i), "GET", "/v1/reports/"+report, c.token, nil); code != want {
				t.Errorf("GET /v1/reports/%s at %s as %s: %d, want %d", report, f.cl.Name(i), c.who, code, want)
			}
			want = map[string]int{"anonymous": 401, "user": 403, "operator": 403}[c.who]
			if code, _ := statusOnly(f.ctx, f.url(i), "POST", "/v1/ops/reports/"+report+"/review", c.token,
				salamander.ReviewRequest{Decision: salamander.DecisionReject, Note: "no"}); code != want {
				t.Errorf("reviewing %s at %s as %s: %d, want %d", report, f.cl.Name(i), c.who, code, want)
			}
		}
		// The console page holds no data (it asks the API above with the
		// operator's session), so it is served to anyone, like the status page.
		for _, p := range []string{"/status", "/v1/status/incidents", "/ops"} {
			if code, _ := statusOnly(f.ctx, f.url(i), "GET", p, "", nil); code != http.StatusOK {
				t.Errorf("GET %s at %s without a session: %d", p, f.cl.Name(i), code)
			}
		}
	}
	t.Logf("authorization matrix: %d ops routes × %d callers at a and b (%d calls)", len(f.routes), len(callers), n)
}

// logTail returns the last n bytes of a file.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
