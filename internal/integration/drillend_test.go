package integration

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A drill whose runner died (its start recorded, no end ever) must not
// block drains for good: the ops API and `salamander admin drain` refuse
// while it runs and say how to end it; an operator ends it from the API,
// an admin from the CLI, each with a reason kept in its record and the
// audit trail; an ended drill cannot be ended again. The CLI refuses what
// the log would ignore: an action on an unknown account, an update of an
// unknown incident.
func TestADrillWhoseRunnerDiedIsEndedByHand(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	op, _ := withRole(t, ctx, 0, "drillop", salamander.RoleOperator)
	cli := func(args ...string) (string, error) { return adminCLI(ctx, 1, args...) }
	// A drill's start, as a runner that then died wrote it.
	stuck := func() string {
		id := salamander.NewOpsID("drl")
		rec := salamander.Record{Type: salamander.RecDrillStarted, Site: "a", At: time.Now().UTC(),
			Drill: &salamander.Drill{ID: id, Scenario: "none", Kind: salamander.DrillSimulation, State: salamander.DrillRunning}}
		if _, _, err := cluster.Site(0).Store().Append(ctx, jsstore.AccountsStream, "drill."+id, rec, jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			code, body := opsCall(t, 1, "GET", "/v1/ops/drills/"+id, op.Token(), nil)
			if code != http.StatusOK || decode[salamander.Drill](t, http.StatusOK, code, body).State != salamander.DrillRunning {
				return fmt.Errorf("drill %s at b: %d %s", id, code, body)
			}
			return nil
		})
		return id
	}

	id := stuck()
	if out, err := cli("drain", "b"); err == nil || !strings.Contains(out, "drill "+id+" is running") ||
		!strings.Contains(out, "salamander admin drill end "+id) {
		t.Fatalf("admin drain during a drill: %v\n%s", err, out)
	}
	if code, body := opsCall(t, 1, "POST", "/v1/ops/sites/b/drain", op.Token(), nil); code != http.StatusConflict ||
		!strings.Contains(string(body), "/v1/ops/drills/"+id+"/end") {
		t.Fatalf("API drain during a drill: %d %s", code, body)
	}
	if out, err := cli("drill", "end", id); err == nil || !strings.Contains(out, "reason") {
		t.Fatalf("drill end without a reason: %v\n%s", err, out)
	}
	if out, err := cli("drill", "end", id, "--reason", "its runner was killed"); err != nil {
		t.Fatalf("admin drill end: %v\n%s", err, out)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 2, "GET", "/v1/ops/drills/"+id, op.Token(), nil)
		d := decode[salamander.Drill](t, http.StatusOK, code, body)
		if d.State != salamander.DrillFailed || !strings.Contains(d.Summary, "its runner was killed") {
			return fmt.Errorf("the ended drill at c: %+v", d)
		}
		return nil
	})
	if out, err := cli("drill", "end", id, "--reason", "again"); err == nil || !strings.Contains(out, "is over") {
		t.Fatalf("ending an ended drill: %v\n%s", err, out)
	}

	id = stuck()
	if code, body := opsCall(t, 1, "POST", "/v1/ops/drills/"+id+"/end", op.Token(), map[string]string{}); code != http.StatusBadRequest {
		t.Fatalf("API end without a reason: %d %s", code, body)
	}
	code, body := opsCall(t, 1, "POST", "/v1/ops/drills/"+id+"/end", op.Token(), map[string]string{"reason": "the gateway running it burned"})
	if d := decode[salamander.Drill](t, http.StatusOK, code, body); d.State != salamander.DrillFailed ||
		!strings.Contains(d.Summary, "the gateway running it burned") {
		t.Fatalf("API end: %+v", d)
	}
	if code, body := opsCall(t, 0, "POST", "/v1/ops/drills/"+id+"/end", op.Token(), map[string]string{"reason": "again"}); code != http.StatusConflict {
		t.Fatalf("API end of an ended drill: %d %s", code, body)
	}
	if code, body := opsCall(t, 0, "POST", "/v1/ops/drills/drl-0000000000000000/end", op.Token(), map[string]string{"reason": "x"}); code != http.StatusNotFound {
		t.Fatalf("API end of no drill: %d %s", code, body)
	}
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 0, "GET", "/v1/ops/audit?limit=1000", op.Token(), nil)
		if code != http.StatusOK || strings.Count(string(body), `"action":"drill-end"`) < 2 || !strings.Contains(string(body), id) {
			return fmt.Errorf("audit: %d %.300s", code, body)
		}
		return nil
	})

	// What the log would ignore, the CLI refuses.
	if out, err := cli("set-role", "nosuchuser-zz", "admin"); err == nil || !strings.Contains(out, `no user "nosuchuser-zz"`) {
		t.Fatalf("set-role of no user: %v\n%s", err, out)
	}
	if out, err := cli("incident", "update", "inc-0000000000000000", "--state", "resolved", "--message", "x"); err == nil ||
		!strings.Contains(out, "no incident") {
		t.Fatalf("update of no incident: %v\n%s", err, out)
	}
}
