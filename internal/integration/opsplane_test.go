package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// withRole signs a user up at site i and gives it role with the admin
// credential, returning a client logged in after the change.
func withRole(t *testing.T, ctx context.Context, i int, prefix, role string) (*client.Client, string) {
	t.Helper()
	c, name := signedUp(t, i, prefix)
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(i), "--creds", cluster.AdminFile(),
		"set-role", name, role).CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role: %v\n%s", err, out)
	}
	for j := range 3 {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			me, err := pinned(t, j, c.Token()).Me(ctx)
			if err != nil || me.Role != role {
				return fmt.Errorf("%s at site %d: %+v %v", name, j, me, err)
			}
			return nil
		})
	}
	return c, name
}

// decode unmarshals an ops answer or fails the test.
func decode[T any](t *testing.T, want, code int, body []byte) T {
	t.Helper()
	var v T
	if code != want {
		t.Fatalf("status %d, want %d: %s", code, want, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	return v
}

// An operator announces an incident at one site: every site's status page
// and JSON show it, connected clients get it live, a client that syncs
// gets it; updates add to its timeline; resolving it takes the banner
// down. Users may not announce one; bad input changes nothing.
func TestIncidentsReachEverySiteAndEveryClient(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	op, _ := withRole(t, ctx, 0, "incop", salamander.RoleOperator)
	user, _ := signedUp(t, 2, "incuser")
	sub := user.Subscribe(ctx)
	defer sub.Close()
	events := make(chan salamander.Event, 64)
	go func() {
		for ev := range sub.Events() {
			if ev.Type == salamander.EventIncident || ev.Type == salamander.EventReady {
				events <- ev
			}
		}
	}()
	select {
	case <-events: // ready
	case <-ctx.Done():
		t.Fatal("no ready event")
	}

	req := salamander.IncidentRequest{Title: salamander.Localized{EN: "Messages delayed", KO: "메시지 지연"},
		Message: salamander.Localized{EN: "We are looking into it.", KO: "원인을 조사하고 있습니다."},
		Impact:  salamander.ImpactMajor, Services: []string{salamander.ServiceMessaging}}
	if code, _ := opsCall(t, 1, "POST", "/v1/ops/incidents", user.Token(), req); code != http.StatusForbidden {
		t.Fatalf("a user announced an incident: %d", code)
	}
	if code, _ := opsCall(t, 1, "POST", "/v1/ops/incidents", "", req); code != http.StatusUnauthorized {
		t.Fatalf("anonymous announcement: %d", code)
	}
	for _, bad := range []salamander.IncidentRequest{
		{Title: salamander.Localized{}, Message: req.Message, Impact: "major", Services: req.Services},
		{Title: req.Title, Message: req.Message, Impact: "apocalyptic", Services: req.Services},
		{Title: req.Title, Message: req.Message, Impact: "major", Services: []string{"teleport"}},
		{Title: req.Title, Message: req.Message, Impact: "major", Services: []string{"login", "login"}},
		{Title: salamander.Localized{EN: strings.Repeat("x", salamander.MaxIncidentTitleRune+1)}, Message: req.Message,
			Impact: "major", Services: req.Services},
		{Title: req.Title, Message: req.Message, State: "resolved", Impact: "major", Services: req.Services},
	} {
		if code, body := opsCall(t, 1, "POST", "/v1/ops/incidents", op.Token(), bad); code != http.StatusBadRequest &&
			code != http.StatusRequestEntityTooLarge {
			t.Fatalf("bad incident %+v: %d %s", bad, code, body)
		}
	}
	code, body := opsCall(t, 1, "POST", "/v1/ops/incidents", op.Token(), req)
	inc := decode[salamander.Incident](t, http.StatusCreated, code, body)
	if !salamander.ValidOpsID(inc.ID) || inc.State != salamander.IncidentInvestigating || len(inc.Updates) != 1 ||
		inc.Updates[0].Site != "b" {
		t.Fatalf("announced %+v", inc)
	}
	awaitIncident := func(state string) {
		t.Helper()
		for {
			select {
			case ev := <-events:
				if ev.Type == salamander.EventIncident && ev.Incident.ID == inc.ID && ev.Incident.State == state {
					return
				}
			case <-ctx.Done():
				t.Fatalf("no live incident event in state %s", state)
			}
		}
	}
	awaitIncident(salamander.IncidentInvestigating)
	for i := range 3 {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			code, body := opsCall(t, i, "GET", "/v1/status/incidents", "", nil)
			if code != http.StatusOK || !strings.Contains(string(body), inc.ID) || !strings.Contains(string(body), `"partial_outage"`) {
				return fmt.Errorf("site %d: %d %s", i, code, body)
			}
			return nil
		})
		for lang, want := range map[string]string{"ko": "메시지 지연", "en": "Messages delayed"} {
			req, _ := http.NewRequest("GET", cluster.URL(i)+"/status", nil)
			req.Header.Set("Accept-Language", map[string]string{"ko": "ko-KR,ko;q=0.9,en;q=0.8", "en": "en-US"}[lang])
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var page strings.Builder
			_, _ = fmt.Fprint(&page, readAll(res))
			if res.StatusCode != http.StatusOK || !strings.Contains(page.String(), want) ||
				!strings.Contains(page.String(), `lang="`+lang+`"`) {
				t.Fatalf("site %d /status in %s: %d lacks %q", i, lang, res.StatusCode, want)
			}
		}
	}
	// A client that syncs learns of it.
	other, _ := signedUp(t, 1, "incaway")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		res, err := other.Sync(ctx, "", 10)
		if err != nil || !hasIncident(res.Incidents, inc.ID) {
			return fmt.Errorf("sync: %+v %v", res.Incidents, err)
		}
		return nil
	})

	up := salamander.IncidentUpdateRequest{State: salamander.IncidentIdentified,
		Message: salamander.Localized{EN: "A site burned; clients moved.", KO: "한 사이트에 화재가 났고 클라이언트는 이동했습니다."}}
	code, body = opsCall(t, 2, "POST", "/v1/ops/incidents/"+inc.ID+"/updates", op.Token(), up)
	if got := decode[salamander.Incident](t, http.StatusOK, code, body); len(got.Updates) != 2 || got.Updates[1].Site != "c" {
		t.Fatalf("updated %+v", got)
	}
	awaitIncident(salamander.IncidentIdentified)
	up = salamander.IncidentUpdateRequest{State: salamander.IncidentResolved, Message: salamander.Localized{EN: "Fixed."}}
	code, body = opsCall(t, 0, "POST", "/v1/ops/incidents/"+inc.ID+"/updates", op.Token(), up)
	if got := decode[salamander.Incident](t, http.StatusOK, code, body); got.ResolvedAt.IsZero() {
		t.Fatalf("resolved %+v", got)
	}
	awaitIncident(salamander.IncidentResolved)
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/incidents/"+inc.ID+"/updates", op.Token(), up); code != http.StatusConflict {
		t.Fatalf("update of a resolved incident: %d", code)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if res, err := other.Sync(ctx, "", 10); err != nil || hasIncident(res.Incidents, inc.ID) {
			return fmt.Errorf("sync after resolving: %+v %v", res.Incidents, err)
		}
		return nil
	})
	code, body = opsCall(t, 1, "GET", "/v1/status/incidents", "", nil)
	lists := decode[struct{ Open, History []salamander.Incident }](t, http.StatusOK, code, body)
	if hasIncident(lists.Open, inc.ID) || !hasIncident(lists.History, inc.ID) {
		t.Fatalf("lists after resolving: %s", body)
	}
}

func hasIncident(list []salamander.Incident, id string) bool {
	for _, inc := range list {
		if inc.ID == id {
			return true
		}
	}
	return false
}

func readAll(res *http.Response) string {
	defer res.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := res.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			return b.String()
		}
	}
}

// A user files a damage report about an incident; only they and admins see
// it; an admin asks for details, the user answers, the admin approves with
// an amount; the CSV export has it; decided reports do not change. Every
// step is in the report's history and the admins' steps in the audit trail.
func TestDamageReports(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	admin, _ := withRole(t, ctx, 0, "repadm", salamander.RoleAdmin)
	op, _ := withRole(t, ctx, 1, "repop", salamander.RoleOperator)
	user, userName := signedUp(t, 1, "repuser")
	nosy, _ := signedUp(t, 2, "repnosy")
	code, body := opsCall(t, 0, "POST", "/v1/ops/incidents", op.Token(), salamander.IncidentRequest{
		Title: salamander.Localized{EN: "Outage"}, Message: salamander.Localized{EN: "Down."}, Impact: "critical",
		Services: []string{"messaging", "login"}})
	inc := decode[salamander.Incident](t, http.StatusCreated, code, body)
	t.Cleanup(func() {
		opsCall(t, 0, "POST", "/v1/ops/incidents/"+inc.ID+"/updates", op.Token(), salamander.IncidentUpdateRequest{
			State: salamander.IncidentResolved, Message: salamander.Localized{EN: "Over."}})
	})

	file := salamander.DamageReportRequest{Incident: inc.ID, Category: salamander.HarmLostSales,
		Description: "No orders came in by chat for three hours.", AmountClaimed: 1_200_000, ClientID: "claim-1"}
	for _, bad := range []salamander.DamageReportRequest{
		{Incident: inc.ID, Category: "bad luck", Description: "x", AmountClaimed: 1},
		{Incident: inc.ID, Category: salamander.HarmOther, Description: " ", AmountClaimed: 1},
		{Incident: inc.ID, Category: salamander.HarmOther, Description: "x", AmountClaimed: -5},
		{Incident: inc.ID, Category: salamander.HarmOther, Description: "x", AmountClaimed: 1, Currency: "won"},
		{Incident: "inc-doesnotexist", Category: salamander.HarmOther, Description: "x", AmountClaimed: 1},
	} {
		if code, body := opsCall(t, 2, "POST", "/v1/reports", user.Token(), bad); code != http.StatusBadRequest &&
			code != http.StatusNotFound {
			t.Fatalf("bad report %+v: %d %s", bad, code, body)
		}
	}
	if code, _ := opsCall(t, 2, "POST", "/v1/reports", "", file); code != http.StatusUnauthorized {
		t.Fatalf("anonymous report: %d", code)
	}
	code, body = opsCall(t, 2, "POST", "/v1/reports", user.Token(), file)
	rep := decode[salamander.DamageReport](t, http.StatusCreated, code, body)
	if rep.State != salamander.ReportSubmitted || rep.Currency != "KRW" || rep.User != userName || len(rep.History) != 1 {
		t.Fatalf("filed %+v", rep)
	}
	code, body = opsCall(t, 0, "POST", "/v1/reports", user.Token(), file) // a retry, at another site
	if again := decode[salamander.DamageReport](t, http.StatusOK, code, body); again.ID != rep.ID {
		t.Fatalf("a retry filed a second report: %s vs %s", again.ID, rep.ID)
	}
	// Nobody else sees it; users and operators cannot review.
	if code, _ := opsCall(t, 0, "GET", "/v1/reports/"+rep.ID, nosy.Token(), nil); code != http.StatusNotFound {
		t.Fatalf("another user's report: %d", code)
	}
	code, body = opsCall(t, 0, "GET", "/v1/reports", nosy.Token(), nil)
	if mine := decode[struct{ Reports []salamander.DamageReport }](t, http.StatusOK, code, body); len(mine.Reports) != 0 {
		t.Fatalf("another user lists %+v", mine.Reports)
	}
	for _, tok := range []string{"", nosy.Token(), op.Token()} {
		if code, _ := opsCall(t, 1, "GET", "/v1/ops/reports", tok, nil); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Fatalf("reports list for a non-admin: %d", code)
		}
		if code, _ := opsCall(t, 1, "POST", "/v1/ops/reports/"+rep.ID+"/review", tok,
			salamander.ReviewRequest{Decision: "approve", AmountApproved: 10}); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Fatalf("a non-admin reviewed: %d", code)
		}
	}
	if code, _ := opsCall(t, 1, "POST", "/v1/reports/"+rep.ID+"/details", user.Token(),
		salamander.ReportDetailsRequest{Text: "unasked"}); code != http.StatusConflict {
		t.Fatalf("details nobody asked for: %d", code)
	}
	if code, _ := opsCall(t, 1, "POST", "/v1/ops/reports/"+rep.ID+"/review", admin.Token(),
		salamander.ReviewRequest{Decision: "reject"}); code != http.StatusBadRequest {
		t.Fatalf("a rejection without a note: %d", code)
	}
	code, body = opsCall(t, 1, "POST", "/v1/ops/reports/"+rep.ID+"/review", admin.Token(),
		salamander.ReviewRequest{Decision: salamander.DecisionAskDetails, Note: "Please attach your usual daily sales."})
	if got := decode[salamander.DamageReport](t, http.StatusOK, code, body); got.State != salamander.ReportNeedsDetails {
		t.Fatalf("asked for details: %+v", got)
	}
	claim := int64(900_000)
	code, body = opsCall(t, 2, "POST", "/v1/reports/"+rep.ID+"/details", user.Token(),
		salamander.ReportDetailsRequest{Text: "About 300,000 won a day; three hours is 900,000.", AmountClaimed: &claim})
	if got := decode[salamander.DamageReport](t, http.StatusOK, code, body); got.State != salamander.ReportSubmitted ||
		got.AmountClaimed != claim {
		t.Fatalf("answered: %+v", got)
	}
	code, body = opsCall(t, 0, "POST", "/v1/ops/reports/"+rep.ID+"/review", admin.Token(),
		salamander.ReviewRequest{Decision: salamander.DecisionApprove, AmountApproved: 850_000, Note: `=HYPERLINK("x")`})
	got := decode[salamander.DamageReport](t, http.StatusOK, code, body)
	if got.State != salamander.ReportApproved || got.AmountApproved != 850_000 || len(got.History) != 4 {
		t.Fatalf("approved: %+v", got)
	}
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/reports/"+rep.ID+"/review", admin.Token(),
		salamander.ReviewRequest{Decision: salamander.DecisionReject, Note: "changed my mind"}); code != http.StatusConflict {
		t.Fatalf("a decided report changed: %d", code)
	}
	// The user sees the decision at every site.
	for i := range 3 {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			code, body := opsCall(t, i, "GET", "/v1/reports/"+rep.ID, user.Token(), nil)
			if code != http.StatusOK || !strings.Contains(string(body), `"state":"approved"`) {
				return fmt.Errorf("site %d: %d %s", i, code, body)
			}
			return nil
		})
	}
	code, body = opsCall(t, 2, "GET", "/v1/ops/reports.csv?state=approved", admin.Token(), nil)
	if code != http.StatusOK || !strings.Contains(string(body), rep.ID+","+userName+","+inc.ID+",lost_sales") ||
		!strings.Contains(string(body), `'=HYPERLINK`) {
		t.Fatalf("CSV export: %d %s", code, body)
	}
	code, body = opsCall(t, 2, "GET", "/v1/ops/audit.csv", admin.Token(), nil)
	if code != http.StatusOK || !strings.Contains(string(body), "report-approve") || !strings.Contains(string(body), "report-ask_details") {
		t.Fatalf("audit CSV: %d %s", code, body)
	}
}

// Draining a site from another: its readiness fails, its clients are told
// to move and do, no stream keeps its leader there (and no partition's
// leader shares a site with its standby's), and new WebSockets are
// refused; undrained, it serves again. An operator moves a stream's leader
// to a named site. Users can do neither.
func TestDrainAndLeaderMoves(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	op, _ := withRole(t, ctx, 0, "drop", salamander.RoleOperator)
	user, _ := signedUp(t, 2, "druser")
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/sites/c/drain", user.Token(), nil); code != http.StatusForbidden {
		t.Fatalf("a user drained a site: %d", code)
	}
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/sites/nowhere/drain", op.Token(), nil); code != http.StatusNotFound {
		t.Fatalf("drained an unknown site: %d", code)
	}
	sub := user.Subscribe(ctx)
	defer sub.Close()
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if !strings.Contains(sub.Site(), cluster.URL(2)) {
			return fmt.Errorf("subscribed at %q", sub.Site())
		}
		return nil
	})
	code, body := opsCall(t, 0, "POST", "/v1/ops/sites/c/drain", op.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("drain: %d %s", code, body)
	}
	t.Cleanup(func() { opsCall(t, 1, "POST", "/v1/ops/sites/c/undrain", op.Token(), nil) })
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error { // 503 while a leader moves: try again
		if code, body := opsCall(t, 1, "POST", "/v1/ops/sites/b/drain", op.Token(), nil); code != http.StatusConflict {
			if code == http.StatusOK {
				t.Fatalf("drained a second site of three: %s", body)
			}
			return fmt.Errorf("a second drain: %d %s", code, body)
		}
		return nil
	})
	// Nor may a drill cut off another site meanwhile: the drained one and
	// the one cut off would leave one site of three serving.
	if code, body := opsCall(t, 0, "POST", "/v1/ops/drills", op.Token(), map[string]any{"site": "b", "seconds": 5}); code != http.StatusConflict ||
		!strings.Contains(string(body), "majority") {
		t.Fatalf("a drill while a site is drained: %d %s", code, body)
	}
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if s := sub.Site(); s == "" || strings.Contains(s, cluster.URL(2)) {
			return fmt.Errorf("the client is still at %q", s)
		}
		if code, body := opsCall(t, 2, "GET", "/readyz", "", nil); code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz at the drained site: %d %s", code, body)
		}
		code, body := opsCall(t, 2, "GET", "/v1/ops/site", op.Token(), nil)
		if !strings.Contains(string(body), `"drained":true`) {
			return fmt.Errorf("ops/site at the drained site: %d %s", code, body)
		}
		if err := readinessMetrics(t, 2, 0, "drained"); err != nil {
			return err
		}
		code, body = opsCall(t, 0, "GET", "/v1/ops/site", op.Token(), nil)
		st := decode[struct {
			Streams  []struct{ Stream, Leader string }
			Standbys []struct {
				Stream, Leader string
				StandbyOf      string `json:"standby_of"`
			}
		}](t, http.StatusOK, code, body)
		leader := map[string]string{}
		for _, s := range st.Streams {
			if s.Leader == "" || s.Leader == "site-c" {
				return fmt.Errorf("%s led by %q", s.Stream, s.Leader)
			}
			leader[s.Stream] = s.Leader
		}
		// Two sites remain, and each partition's standby is led at the
		// one its partition is not.
		for _, s := range st.Standbys {
			if s.Leader == "" || s.Leader == "site-c" || s.Leader == leader[s.StandbyOf] {
				return fmt.Errorf("standby %s led by %q, its partition by %q", s.Stream, s.Leader, leader[s.StandbyOf])
			}
		}
		return nil
	})
	if code, _ := opsCall(t, 0, "POST", "/v1/ops/streams/acct/leader", op.Token(), map[string]string{"site": "c"}); code != http.StatusConflict {
		t.Fatalf("moved a leader to a drained site: %d", code)
	}
	code, body = opsCall(t, 1, "POST", "/v1/ops/sites/c/undrain", op.Token(), nil)
	if code != http.StatusOK {
		t.Fatalf("undrain: %d %s", code, body)
	}
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if code, body := opsCall(t, 2, "GET", "/readyz", "", nil); code != http.StatusOK {
			return fmt.Errorf("readyz after undrain: %d %s", code, body)
		}
		return readinessMetrics(t, 2, 1)
	})
	if code, _ := opsCall(t, 2, "POST", "/v1/ops/streams/acct/leader", user.Token(), map[string]string{"site": "c"}); code != http.StatusForbidden {
		t.Fatalf("a user moved a leader: %d", code)
	}
	// The sites may have moved acct to c by themselves since the undrain
	// (a stream goes back to its home site): it is moved away first then,
	// so that a move to c is made, and recorded.
	checkFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		code, body := opsCall(t, 2, "POST", "/v1/ops/streams/acct/leader", op.Token(), map[string]string{"site": "c"})
		if code != http.StatusOK || !strings.Contains(string(body), `"leader":"site-c"`) {
			return fmt.Errorf("move leader: %d %s", code, body)
		}
		if !strings.Contains(string(body), `"moved":true`) {
			opsCall(t, 2, "POST", "/v1/ops/streams/acct/leader", op.Token(), map[string]string{"site": "a"})
			return fmt.Errorf("acct was led at c already: %s", body)
		}
		return nil
	})
	// Asked again, where it is led already: 200, not "no healthy replica
	// at site c" (the leader is not among its stream's followers).
	if code, body := opsCall(t, 2, "POST", "/v1/ops/streams/acct/leader", op.Token(), map[string]string{"site": "c"}); code != http.StatusOK {
		t.Fatalf("move leader where it is: %d %s", code, body)
	}
	// Read at another site than the move's, which applies its record
	// moments later (the move is recorded once done).
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 0, "GET", "/v1/ops/audit?limit=1000", op.Token(), nil)
		for _, want := range []string{`"action":"drain"`, `"action":"undrain"`, `"action":"move-leader"`} {
			if code != http.StatusOK || !strings.Contains(string(body), want) {
				return fmt.Errorf("audit lacks %s: %d", want, code)
			}
		}
		return nil
	})
}

// The admin CLI announces and updates incidents and drains sites with the
// admin credential, through any site's NATS server; every site shows the
// result.
func TestAdminCLIIncidentsAndDrains(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	admin := func(args ...string) string {
		t.Helper()
		full := append([]string{"admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile()}, args...)
		out, err := exec.CommandContext(ctx, salamanderBin, full...).CombinedOutput()
		if err != nil {
			t.Fatalf("salamander %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	out := admin("incident", "announce", "--impact", "minor", "--services", "login", "--title", "Slow logins",
		"--title-ko", "로그인 지연", "--message", "Logins take longer than usual.")
	var id string
	if _, err := fmt.Sscanf(lineStarting(out, "incident "), "incident %s", &id); err != nil {
		t.Fatalf("no id in %q", out)
	}
	id = strings.TrimSuffix(id, ":")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 2, "GET", "/v1/status/incidents", "", nil)
		if code != http.StatusOK || !strings.Contains(string(body), id) {
			return fmt.Errorf("%d %s", code, body)
		}
		return nil
	})
	admin("incident", "update", id, "--state", "resolved", "--message", "Back to normal.", "--message-ko", "정상화되었습니다.")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 0, "GET", "/v1/status/incidents", "", nil)
		lists := decode[struct{ Open, History []salamander.Incident }](t, http.StatusOK, code, body)
		if hasIncident(lists.Open, id) || !hasIncident(lists.History, id) {
			return fmt.Errorf("not resolved: %s", body)
		}
		return nil
	})
	if out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile(),
		"incident", "announce", "--impact", "cosmic", "--services", "login", "--title", "x", "--message", "y").CombinedOutput(); err == nil {
		t.Fatalf("a bad impact was taken: %s", out)
	}
	// A text of two words unquoted: the flag package stops at "stray", and
	// the Korean title after it would be dropped unread.
	if out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile(),
		"incident", "announce", "--impact", "minor", "--services", "login", "--title", "x", "--message", "late", "stray",
		"--title-ko", "지연").CombinedOutput(); err == nil || !strings.Contains(string(out), `unexpected "stray"`) {
		t.Fatalf("an announcement with a stray word: %v\n%s", err, out)
	}
	// The CLI drains by the ops API's rules: a known site, not twice, and
	// a majority always in service. A refused drain changes nothing.
	refused := func(want string, args ...string) {
		t.Helper()
		full := append([]string{"admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile()}, args...)
		out, err := exec.CommandContext(ctx, salamanderBin, full...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), want) {
			t.Fatalf("salamander %v: %v, want a refusal saying %q:\n%s", args, err, want, out)
		}
	}
	refused("not drained", "undrain", "b")
	refused(`no site "x"`, "drain", "x")
	admin("drain", "b")
	undrained := false
	t.Cleanup(func() {
		if !undrained {
			admin("undrain", "b")
		}
	})
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if code, body := opsCall(t, 1, "GET", "/readyz", "", nil); code != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz at drained b: %d %s", code, body)
		}
		return nil
	})
	refused("drained already", "drain", "b")
	refused("site b is drained", "step-down", "acct", "b") // as the ops API refuses it
	refused("less than a majority of the 3 sites", "drain", "c")
	if code, body := opsCall(t, 2, "GET", "/readyz", "", nil); code != http.StatusOK {
		t.Fatalf("site c after a refused drain: %d %s", code, body)
	}
	admin("undrain", "b")
	undrained = true
	checkFor(t, 15*time.Second, 100*time.Millisecond, func() error {
		if code, body := opsCall(t, 1, "GET", "/readyz", "", nil); code != http.StatusOK {
			return fmt.Errorf("readyz at undrained b: %d %s", code, body)
		}
		return nil
	})
}

// `salamander drill --sites … --scenario partition --record` isolates a
// site of a running cluster through the log, runs its checks, and keeps
// its record: the console lists it as a passed simulation drill.
func TestRecordedIsolationDrill(t *testing.T) {
	if testing.Short() {
		t.Skip("isolates a site for 5 s under load")
	}
	ctx := testCtx(t, 3*time.Minute)
	op, _ := withRole(t, ctx, 0, "drillop", salamander.RoleOperator)
	cmd := exec.CommandContext(ctx, salamanderBin, "drill", "--sites", strings.Join(cluster.URLs(), ","),
		"--scenario", "partition", "--site", "c", "--cut-for", "5s", "--users", "8", "--duration", "18s", "--fault-at", "4s",
		"--record", "--nats", cluster.NATSURL(0), "--creds", cluster.AdminFile(), "--log-level", "warn")
	// The drill reads the sites' log positions as this operator.
	cmd.Env = append(os.Environ(), "SALAMANDER_OPS_TOKEN="+op.Token())
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// While it refuses its users, the cut-off site still tells an operator
	// why (the console's view of it) — but, unless it could confirm the
	// session against the log's head, only what its public status shows
	// (limited).
	var seen string
	for deadline := time.Now().Add(17 * time.Second); seen == "" && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		code, body := opsCall(t, 2, "GET", "/v1/ops/site", op.Token(), nil)
		if code == http.StatusOK {
			var d struct {
				NotServing   string            `json:"not_serving"`
				Limited      string            `json:"limited"`
				RecentErrors []json.RawMessage `json:"recent_errors"`
				NATS         *struct{ Server string }
				Applied      map[string]uint64 `json:"applied"`
			}
			if json.Unmarshal(body, &d) == nil {
				seen = d.NotServing
				if d.Limited != "" && (d.RecentErrors != nil || d.NATS != nil || d.Applied != nil) {
					t.Errorf("a limited answer shows details: %s", body)
				}
				if seen != "" {
					t.Logf("site c while cut off: not_serving %q, limited %q", d.NotServing, d.Limited)
				}
			}
		}
	}
	err := cmd.Wait()
	out := output.Bytes()
	if err != nil {
		t.Fatalf("drill: %v\n%s", err, out)
	}
	if seen == "" {
		t.Errorf("site c never answered /v1/ops/site with not_serving while the drill cut it off")
	}
	var drills struct {
		Drills     []salamander.Drill
		Compliance salamander.DrillCompliance
	}
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		code, body := opsCall(t, 1, "GET", "/v1/ops/drills", op.Token(), nil)
		drills = decode[struct {
			Drills     []salamander.Drill
			Compliance salamander.DrillCompliance
		}](t, http.StatusOK, code, body)
		for _, d := range drills.Drills {
			if d.FromSite == "cli" && d.Site == "c" && d.State == salamander.DrillPassed && d.Kind == salamander.DrillSimulation &&
				!d.FaultAt.IsZero() && d.Seconds == 5 {
				return nil
			}
		}
		return fmt.Errorf("no passed drill of site c: %s", body)
	})
	if drills.Compliance.Simulation < 1 || drills.Compliance.Year != time.Now().UTC().Year() {
		t.Fatalf("compliance %+v", drills.Compliance)
	}
	if !strings.Contains(string(out), "refused") && !strings.Contains(string(out), "cut") {
		t.Logf("drill output:\n%s", out)
	}
}

// readinessMetrics checks what site i's /metrics says of its readiness:
// salamander_ready is ready, and salamander_not_ready is 1 for exactly the
// reasons given and 0 for every other condition.
func readinessMetrics(t *testing.T, i int, ready float64, reasons ...string) error {
	t.Helper()
	m := scrape(t, i)
	if v, n := m.sum("salamander_ready"); n != 1 || v != ready {
		return fmt.Errorf("salamander_ready at site %d: %v (%d series), want %v", i, v, n, ready)
	}
	if _, n := m.sum("salamander_not_ready"); n != 8 {
		return fmt.Errorf("salamander_not_ready at site %d: %d series, want one per condition (8)", i, n)
	}
	if v, _ := m.sum("salamander_not_ready"); v != float64(len(reasons)) {
		return fmt.Errorf("salamander_not_ready at site %d: %v conditions hold, want %v", i, v, reasons)
	}
	for _, r := range reasons {
		if v, n := m.sum("salamander_not_ready", `reason="`+r+`"`); n != 1 || v != 1 {
			return fmt.Errorf("salamander_not_ready{reason=%q} at site %d: %v", r, i, v)
		}
	}
	return nil
}
