package view

import (
	"context"
	"maps"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The ops plane's records take effect only from accounts holding the role
// they need at that point of the log; a damage report moves only along its
// states and only its filer answers it; a reopened read model holds the
// same incidents, reports, drills and drains.
func TestOpsRecordsFollowTheRules(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	log := &memLog{}
	amount := func(n int64) *int64 { return &n }
	inc := func(id, state string) *salamander.IncidentChange {
		return &salamander.IncidentChange{ID: id, Title: salamander.Localized{EN: "t"}, State: state, Impact: "major",
			Services: []string{"login"}, Message: salamander.Localized{EN: "m"}}
	}
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "op", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "carol", PasswordHash: "h"},
		{Type: salamander.RecIncidentOpened, By: "op", Incident: inc("inc-early0001", "investigating")}, // op is no operator yet
		{Type: salamander.RecRoleSet, User: "op", Role: "operator"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin"},
		{Type: salamander.RecIncidentOpened, By: "op", Site: "a", Incident: inc("inc-first0001", "investigating")},
		{Type: salamander.RecIncidentOpened, By: "op", Incident: inc("inc-first0001", "investigating")}, // the id again
		{Type: salamander.RecReportFiled, User: "carol", By: "carol", Report: &salamander.ReportChange{ID: "rep-000000001",
			Incident: "inc-first0001", Category: "other", Description: "d", Currency: "KRW", Amount: amount(100)}},
		{Type: salamander.RecReportFiled, User: "carol", By: "carol", Report: &salamander.ReportChange{ID: "rep-000000002",
			Incident: "inc-nosuch0001", Category: "other", Description: "d", Currency: "KRW", Amount: amount(100)}}, // no incident
		{Type: salamander.RecReportReviewed, User: "carol", By: "op", Report: &salamander.ReportChange{ID: "rep-000000001",
			Decision: "approve", Amount: amount(100)}}, // operators do not decide money
		{Type: salamander.RecReportAnswered, User: "carol", By: "carol", Report: &salamander.ReportChange{ID: "rep-000000001",
			Note: "unasked"}}, // nobody asked
		{Type: salamander.RecReportReviewed, User: "carol", By: "boss", Report: &salamander.ReportChange{ID: "rep-000000001",
			Decision: "ask_details", Note: "how much?"}},
		{Type: salamander.RecReportAnswered, User: "op", By: "op", Report: &salamander.ReportChange{ID: "rep-000000001",
			Note: "not mine"}}, // not the filer
		{Type: salamander.RecReportAnswered, User: "carol", By: "carol", Report: &salamander.ReportChange{ID: "rep-000000001",
			Note: "this much", Amount: amount(80)}},
		{Type: salamander.RecReportReviewed, User: "carol", By: "boss", Report: &salamander.ReportChange{ID: "rep-000000001",
			Decision: "approve", Amount: amount(70)}},
		{Type: salamander.RecReportReviewed, User: "carol", By: "boss", Report: &salamander.ReportChange{ID: "rep-000000001",
			Decision: "reject", Note: "no"}}, // decided already
		{Type: salamander.RecIncidentUpdated, By: "op", Incident: &salamander.IncidentChange{ID: "inc-first0001", State: "resolved",
			Message: salamander.Localized{KO: "해결"}}},
		{Type: salamander.RecIncidentUpdated, By: "op", Incident: &salamander.IncidentChange{ID: "inc-first0001", State: "monitoring",
			Message: salamander.Localized{EN: "late"}}}, // resolved already
		{Type: salamander.RecDrillStarted, By: "carol", Drill: &salamander.Drill{ID: "drl-notallowed", Kind: "simulation"}},
		{Type: salamander.RecDrillStarted, By: "op", Site: "a", Drill: &salamander.Drill{ID: "drl-000000001", Scenario: "isolate",
			Kind: "simulation", Site: "c", Seconds: 5}},
		{Type: salamander.RecDrillFault, By: "op", Drill: &salamander.Drill{ID: "drl-000000001"}},
		{Type: salamander.RecDrillEnded, By: "op", Drill: &salamander.Drill{ID: "drl-000000001", State: "passed", Summary: "ok"}},
		{Type: salamander.RecSiteDrained, By: "carol", Target: "b"}, // users do not drain
		{Type: salamander.RecSiteDrained, By: "op", Target: "c", Members: []string{"a", "b", "c"}},
		// Checked at another site at the same moment, against a log with
		// nothing drained: the log's own majority check refuses it.
		{Type: salamander.RecSiteDrained, By: "boss", Target: "a", Members: []string{"a", "b", "c"}},
		// A drill whose starter lost the operator role while it ran: its
		// end is still recorded (or it would stay running for good); a
		// drill's end by someone else who is no operator is not.
		{Type: salamander.RecDrillStarted, By: "op", Drill: &salamander.Drill{ID: "drl-000000002", Scenario: "isolate",
			Kind: "simulation", Site: "b", Seconds: 5}},
		{Type: salamander.RecRoleSet, User: "op", Role: "user"},
		{Type: salamander.RecDrillEnded, By: "op", Drill: &salamander.Drill{ID: "drl-000000002", State: "failed", Summary: "cut short"}},
		{Type: salamander.RecDrillStarted, By: "boss", Drill: &salamander.Drill{ID: "drl-000000003", Scenario: "isolate",
			Kind: "simulation", Site: "b", Seconds: 5}},
		{Type: salamander.RecDrillEnded, By: "carol", Drill: &salamander.Drill{ID: "drl-000000003", State: "passed", Summary: "fake"}},
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	entries := acctEntries(recs, at)
	apply(t, v, log, entries)
	check := func(v *View) {
		t.Helper()
		all := v.Incidents(true)
		if len(all) != 1 || all[0].ID != "inc-first0001" || all[0].State != "resolved" || len(all[0].Updates) != 2 ||
			all[0].ResolvedAt.IsZero() || all[0].Updates[0].Site != "a" {
			t.Fatalf("incidents %+v", all)
		}
		if open := v.Incidents(false); len(open) != 0 {
			t.Fatalf("open incidents %+v", open)
		}
		reps, err := v.Reports(context.Background(), ReportFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(reps) != 1 {
			t.Fatalf("reports %+v", reps)
		}
		r := reps[0]
		if r.State != "approved" || r.AmountClaimed != 80 || r.AmountApproved != 70 || len(r.History) != 4 ||
			r.History[1].State != "needs_details" || r.History[2].Note != "this much" || r.History[3].By != "boss" {
			t.Fatalf("report %+v", r)
		}
		if mine, _ := v.Reports(context.Background(), ReportFilter{User: "op"}); len(mine) != 0 {
			t.Fatalf("op's reports %+v", mine)
		}
		drills := v.Drills()
		states := map[string]string{}
		for _, d := range drills {
			states[d.ID] = d.State
		}
		if len(drills) != 3 || states["drl-000000001"] != "passed" || states["drl-000000002"] != "failed" ||
			states["drl-000000003"] != "running" {
			t.Fatalf("drills %+v", drills)
		}
		for _, d := range drills {
			if d.ID == "drl-000000001" && (d.FaultAt.IsZero() || d.FromSite != "a") {
				t.Fatalf("drill %+v", d)
			}
		}
		if c := salamander.Compliance(drills, 2026); c.Simulation != 1 || c.Recovery != 0 || c.Met {
			t.Fatalf("compliance %+v", c)
		}
		if d := v.Drained(); len(d) != 1 || d["c"].By != "op" {
			t.Fatalf("drained %+v", d)
		}
	}
	check(v)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	again := openAt(t, path)
	defer again.Close()
	check(again)
}

// A page of reports holds the newest, each with its own whole history.
func TestReportsPageIsTheNewestWithTheirHistories(t *testing.T) {
	v := openTemp(t)
	amount := int64(100)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "op", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "dave", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "op", Role: "operator"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin"},
		{Type: salamander.RecIncidentOpened, By: "op", Incident: &salamander.IncidentChange{ID: "inc-page00001",
			Title: salamander.Localized{EN: "t"}, State: "investigating", Impact: "major", Services: []string{"login"},
			Message: salamander.Localized{EN: "m"}}},
	}
	for _, id := range []string{"rep-000000011", "rep-000000012", "rep-000000013"} {
		recs = append(recs, salamander.Record{Type: salamander.RecReportFiled, User: "dave", By: "dave",
			Report: &salamander.ReportChange{ID: id, Incident: "inc-page00001", Category: "other", Description: "d",
				Currency: "KRW", Amount: &amount}})
	}
	recs = append(recs, salamander.Record{Type: salamander.RecReportReviewed, User: "dave", By: "boss",
		Report: &salamander.ReportChange{ID: "rep-000000013", Decision: salamander.DecisionAskDetails, Note: "which?"}})
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	entries := acctEntries(recs, at)
	apply(t, v, &memLog{}, entries)
	page, err := v.Reports(context.Background(), ReportFilter{User: "dave", Limit: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(page) != 2 || page[0].ID != "rep-000000013" || page[1].ID != "rep-000000012" {
		t.Fatalf("page %+v: want reports 13 and 12", page)
	}
	if len(page[0].History) != 2 || page[0].History[1].Note != "which?" || len(page[1].History) != 1 {
		t.Fatalf("histories %+v and %+v", page[0].History, page[1].History)
	}
}

// The log keeps the console's rules for drills and drains itself: one
// drill at a time, no drain while a drill runs, and a drill that cuts a
// site off must leave a majority serving with the drained ones — so that
// two starts checked at once at two sites (each against a log with none
// of the other) do not both take effect. A drill that has run for
// DrillAbandonedAfter no longer counts as running.
func TestDrillsAndDrainsOneAtATimeInTheLog(t *testing.T) {
	v := openTemp(t)
	sites := []string{"a", "b", "c"}
	drill := func(id, site string) *salamander.Drill {
		return &salamander.Drill{ID: id, Scenario: "isolate", Kind: "simulation", Site: site, Seconds: 5}
	}
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "op", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "op", Role: "operator"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin"},
		{Type: salamander.RecDrillStarted, By: "boss", Members: sites, Drill: drill("drl-00000000a", "c")},
		{Type: salamander.RecDrillStarted, By: "op", Members: sites, Drill: drill("drl-00000000b", "b")}, // a runs
		{Type: salamander.RecSiteDrained, By: "boss", Target: "b", Members: sites},                       // a runs
		{Type: salamander.RecDrillEnded, By: "boss", Drill: &salamander.Drill{ID: "drl-00000000a", State: "passed"}},
		{Type: salamander.RecSiteDrained, By: "boss", Target: "b", Members: sites},
		{Type: salamander.RecDrillStarted, By: "op", Members: sites, Drill: drill("drl-00000000c", "c")}, // b drained: a alone would serve
		{Type: salamander.RecDrillStarted, By: "op", Drill: &salamander.Drill{ID: "drl-00000000d", Scenario: "none", Kind: "simulation"}},
		{Type: salamander.RecDrillStarted, By: "op", Drill: &salamander.Drill{ID: "drl-00000000e", Scenario: "none", Kind: "simulation"}}, // d runs
	}
	entries := acctEntries(recs, at)
	// d's runner died: an hour after its start it no longer blocks another.
	late := salamander.Record{Type: salamander.RecDrillStarted, By: "op", At: at.Add(salamander.DrillAbandonedAfter + time.Minute),
		Drill: &salamander.Drill{ID: "drl-00000000f", Scenario: "none", Kind: "simulation"}}
	entries = append(entries, jsstore.Entry{Pos: salamander.Position{Stream: "acct", Seq: uint64(len(recs) + 1)}, Record: late})
	apply(t, v, &memLog{}, entries)
	got := map[string]string{}
	for _, d := range v.Drills() {
		got[d.ID] = d.State
	}
	want := map[string]string{"drl-00000000a": "passed", "drl-00000000d": "running", "drl-00000000f": "running"}
	if !maps.Equal(got, want) {
		t.Errorf("drills %v, want %v", got, want)
	}
	if d := v.Drained(); len(d) != 1 || d["b"].By != "boss" || !d["b"].At.Equal(at.Add(8*time.Second)) {
		t.Errorf("drained %+v: want b, by the drain after drill a ended", d)
	}
}

// Only an admin ends someone else's sessions, checked where the log
// applies it; anyone ends their own (log out everywhere).
func TestRevokingAnothersSessionsTakesAnAdmin(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "carol", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin"},
		{Type: salamander.RecUserRevoked, User: "bob", By: "carol", Site: "a"}, // 5: no admin
		{Type: salamander.RecUserRevoked, User: "carol"},                       // 6: her own
		{Type: salamander.RecUserRevoked, User: "bob", By: "boss", Site: "a"},  // 7
		{Type: salamander.RecRoleSet, User: "boss", Role: "user"},
		{Type: salamander.RecUserRevoked, User: "carol", By: "boss", Site: "b"}, // 9: demoted
	}
	entries := acctEntries(recs, at)
	apply(t, v, &memLog{}, entries)
	if got := v.m.users["bob"].revokedSeq; got != 7 {
		t.Errorf("bob's sessions revoked up to %d, want 7 (the admin's, not carol's)", got)
	}
	if got := v.m.users["carol"].revokedSeq; got != 6 {
		t.Errorf("carol's sessions revoked up to %d, want 6 (her own, not the demoted admin's)", got)
	}
}

// acctEntries places recs in the accounts stream from seq 1, one second
// apart from at.
func acctEntries(recs []salamander.Record, at time.Time) []jsstore.Entry {
	var entries []jsstore.Entry
	for i, r := range recs {
		r.At = at.Add(time.Duration(i) * time.Second)
		entries = append(entries, jsstore.Entry{Pos: salamander.Position{Stream: "acct", Seq: uint64(i + 1)}, Record: r})
	}
	return entries
}

// A suspended admin takes no admin action: the log refuses their role
// changes, suspensions, restorations (their own among them) and
// revocations of others' sessions, as it refuses a suspended operator's
// incidents and drains. A site that had not applied the suspension yet
// accepts such a request from the admin's session, and its record lands
// after the suspension in the log: every site must refuse it there.
func TestASuspendedAdminTakesNoAdminAction(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "exboss", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "carol", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "mallory", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin", Site: "cli"},
		{Type: salamander.RecRoleSet, User: "exboss", Role: "admin", Site: "cli"},
		{Type: salamander.RecUserSuspended, User: "exboss", By: "boss", Site: "a"}, // 7
		// Taken at site b before it applied 7:
		{Type: salamander.RecUserRestored, User: "exboss", By: "exboss", Site: "b"},
		{Type: salamander.RecRoleSet, User: "mallory", Role: "admin", By: "exboss", Site: "b"},
		{Type: salamander.RecUserSuspended, User: "boss", By: "exboss", Site: "b"},
		{Type: salamander.RecUserRevoked, User: "carol", By: "exboss", Site: "b"},
		{Type: salamander.RecUserRevoked, User: "exboss", By: "exboss", Site: "b"}, // 12: their own, as anyone may
	}
	apply(t, v, &memLog{}, acctEntries(recs, at))
	if !v.Suspended("exboss") {
		t.Error("exboss restored themselves while suspended")
	}
	if got := v.Role("mallory"); got != "user" {
		t.Errorf("mallory is %s, made so by a suspended admin", got)
	}
	if v.Suspended("boss") {
		t.Error("boss suspended by a suspended admin")
	}
	if got := v.m.users["carol"].revokedSeq; got != 0 {
		t.Errorf("carol's sessions revoked up to %d by a suspended admin, want 0", got)
	}
	if got := v.m.users["exboss"].revokedSeq; got != 12 {
		t.Errorf("exboss's own sessions revoked up to %d, want 12", got)
	}
	if got := v.m.users["boss"].revokedSeq; got != 0 {
		t.Errorf("boss's sessions revoked up to %d by a suspended admin's suspension, want 0", got)
	}
	trail, err := v.Audit(context.Background(), time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range trail {
		if e.By == "exboss" && e.User != "exboss" || e.Action == "restore" {
			t.Errorf("audit trail has a suspended admin's refused action: %+v", e)
		}
	}
}

// The log never leaves the cluster without an admin who can act. Two
// admins stepping down (or suspending themselves) at two sites at once each
// pass their gateway's "not the last admin" check; the second record in
// the log, which would demote or suspend the last one, has no effect at
// every site and is not in the audit trail. (Two admins demoting each
// other are safe already: the second is no admin when their record is
// applied.) The admin credential may still: it is the way back in anyway.
func TestTheLogKeepsTheLastAdmin(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	setup := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "ann", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "bo", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "ann", Role: "admin", Site: "cli"},
		{Type: salamander.RecRoleSet, User: "bo", Role: "admin", Site: "cli"},
	}
	for _, c := range []struct {
		name   string
		bo     salamander.Record // on bo, first in the log
		ann    salamander.Record // on ann, taken before its site applied bo's
		annIs  func(v *View) bool
		boIs   func(v *View) bool
		action string
	}{
		{name: "demotions",
			bo:    salamander.Record{Type: salamander.RecRoleSet, User: "bo", Role: "operator", By: "bo", Site: "a"},
			ann:   salamander.Record{Type: salamander.RecRoleSet, User: "ann", Role: "user", By: "ann", Site: "b"},
			annIs: func(v *View) bool { return v.Role("ann") == "admin" }, boIs: func(v *View) bool { return v.Role("bo") == "operator" },
			action: "set-role"},
		{name: "suspensions",
			bo:    salamander.Record{Type: salamander.RecUserSuspended, User: "bo", By: "bo", Site: "a"},
			ann:   salamander.Record{Type: salamander.RecUserSuspended, User: "ann", By: "ann", Site: "b"},
			annIs: func(v *View) bool { return !v.Suspended("ann") }, boIs: func(v *View) bool { return v.Suspended("bo") },
			action: "suspend"},
		{name: "a demotion and a suspension",
			bo:    salamander.Record{Type: salamander.RecRoleSet, User: "bo", Role: "user", By: "bo", Site: "a"},
			ann:   salamander.Record{Type: salamander.RecUserSuspended, User: "ann", By: "ann", Site: "b"},
			annIs: func(v *View) bool { return !v.Suspended("ann") }, boIs: func(v *View) bool { return v.Role("bo") == "user" },
			action: "set-role"},
		{name: "the last demoting themselves",
			bo:    salamander.Record{Type: salamander.RecRoleSet, User: "bo", Role: "user", By: "ann", Site: "a"},
			ann:   salamander.Record{Type: salamander.RecRoleSet, User: "ann", Role: "operator", By: "ann", Site: "a"},
			annIs: func(v *View) bool { return v.Role("ann") == "admin" }, boIs: func(v *View) bool { return v.Role("bo") == "user" },
			action: "set-role"},
	} {
		t.Run(c.name, func(t *testing.T) {
			v := openTemp(t)
			apply(t, v, &memLog{}, acctEntries(append(slices.Clone(setup), c.bo, c.ann), at))
			if !c.annIs(v) || !c.boIs(v) {
				t.Errorf("ann is %s (suspended %v), bo %s (suspended %v)", v.Role("ann"), v.Suspended("ann"), v.Role("bo"), v.Suspended("bo"))
			}
			if n := v.Admins(); n != 1 {
				t.Errorf("%d admins who can act, want 1", n)
			}
			trail, err := v.Audit(context.Background(), time.Time{}, 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(trail) != 3 || trail[0].Pos != "acct:5" || trail[0].Action != c.action {
				t.Errorf("audit trail %+v; want the two promotions and the first change, not the ignored one", trail)
			}
		})
	}
	t.Run("admin credential", func(t *testing.T) {
		v := openTemp(t)
		apply(t, v, &memLog{}, acctEntries(append(slices.Clone(setup),
			salamander.Record{Type: salamander.RecRoleSet, User: "bo", Role: "user", By: "ann", Site: "a"},
			salamander.Record{Type: salamander.RecRoleSet, User: "ann", Role: "user", Site: "cli"}), at))
		if n := v.Admins(); n != 0 || v.Role("ann") != "user" {
			t.Errorf("the admin credential's demotion of the last admin: ann is %s, %d admins", v.Role("ann"), n)
		}
	})
}

// Real bcrypt hashes (cost 4) of "new password 1" and "new password 2":
// a password record with a hash bcrypt cannot read has no effect.
const (
	testHash1 = "$2a$04$65a5QkiZN2X26/AfqWusS.XaPkTshZ25XJQRZiDs6qXK8BOvMlk6W"
	testHash2 = "$2a$04$LpNsOzIMLDQa6Pwqg3O.juPAAYBzI8n7/SWUOF19tYMPYYiACJ/Bm"
)

// A password change replaces the account's hash and ends every session
// and device token naming an accounts position before it, as "log out
// everywhere" does, at whichever site applies it: revokedSeq moves to its
// position. The account changes its own unless suspended there (a site
// that had not applied the suspension took the request); another's only
// an admin changes, and that reset is in the audit trail. A hash bcrypt
// cannot read changes nothing.
func TestPasswordSetReplacesTheHashAndEndsEarlierSessions(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "carol", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "dave", PasswordHash: "h0"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin", Site: "cli"},
		{Type: salamander.RecPasswordSet, User: "carol", By: "carol", PasswordHash: testHash1},          // 6: her own
		{Type: salamander.RecPasswordSet, User: "bob", By: "carol", Site: "a", PasswordHash: testHash1}, // 7: no admin
		{Type: salamander.RecPasswordSet, User: "bob", By: "boss", Site: "b", PasswordHash: testHash2},  // 8: an admin's reset
		{Type: salamander.RecPasswordSet, User: "bob", By: "bob", PasswordHash: "not bcrypt"},           // 9: no hash
		{Type: salamander.RecUserSuspended, User: "dave", By: "boss", Site: "a"},                        // 10
		{Type: salamander.RecPasswordSet, User: "dave", By: "dave", PasswordHash: testHash1},            // 11: suspended
		{Type: salamander.RecPasswordSet, User: "dave", PasswordHash: testHash2, Site: "cli"},           // 12: the admin credential
		{Type: salamander.RecPasswordSet, User: "nobody", By: "nobody", PasswordHash: testHash1},        // 13: no account
	}
	var ended []string
	v.OnSessionsEnded(func(users []string) { ended = append(ended, users...) })
	apply(t, v, &memLog{}, acctEntries(recs, at))
	ctx := context.Background()
	for _, c := range []struct {
		user    string
		hash    string
		revoked uint64
	}{
		{"carol", testHash1, 6},
		{"bob", testHash2, 8},
		{"dave", testHash2, 12},
		{"boss", "h0", 0},
	} {
		hash, revoked, err := v.Credentials(ctx, c.user)
		if err != nil {
			t.Fatal(err)
		}
		if hash != c.hash || revoked != c.revoked {
			t.Errorf("%s: hash %q, sessions revoked up to %d; want %q, %d", c.user, hash, revoked, c.hash, c.revoked)
		}
	}
	if _, _, err := v.Credentials(ctx, "nobody"); salamander.ErrorCode(err) != salamander.CodeNotFound {
		t.Errorf("a password record made an account: %v", err)
	}
	if want := []string{"carol", "bob", "dave", "dave"}; !slices.Equal(ended, want) {
		t.Errorf("sessions ended of %v, want %v (their sockets re-check at once)", ended, want)
	}
	trail, err := v.Audit(ctx, time.Time{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var resets []string
	for _, e := range trail {
		if e.Action == "set-password" {
			resets = append(resets, e.User+" by "+e.By+" at "+e.Site)
		}
	}
	if want := []string{"dave by  at cli", "bob by boss at b"}; !slices.Equal(resets, want) {
		t.Errorf("audit trail's resets %q, want %q (newest first; her own change is not an admin action)", resets, want)
	}
	if got := v.HashCost(); got != 4 {
		t.Errorf("HashCost %d, want 4: the changed hashes' cost is counted, the replaced ones' no longer", got)
	}
}

// A suspension ends the sessions and device tokens issued before it for
// good: an account is suspended because it was taken over, and restoring
// it must not bring the thief's sessions back. Those issued after the
// restoration live.
func TestASuspensionEndsTheSessionsBeforeItForGood(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "dana", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin", Site: "cli"},
		{Type: salamander.RecUserSuspended, User: "dana", By: "boss", Site: "a"}, // 4
		{Type: salamander.RecUserRestored, User: "dana", By: "boss", Site: "a"},  // 5
	}
	apply(t, v, &memLog{}, acctEntries(recs, at))
	if v.Suspended("dana") {
		t.Fatal("dana still suspended after her restoration")
	}
	_, revokedSeq, err := v.Credentials(context.Background(), "dana")
	if err != nil || revokedSeq != 4 {
		t.Fatalf("dana's sessions revoked up to %d (%v), want 4: those from before the suspension end for good", revokedSeq, err)
	}
}

// An account's change of its own password applies only while the hash
// its current password was judged against is still the account's: a site
// that had not applied a newer change or an admin's reset judged the old
// password right, and its change must not undo that one (a thief who
// knows the old password, at a lagging site, would take the account back
// from the user who changed it, or from the admin who reset it). A
// record without PrevHash (written before it was) applies as it did.
func TestAStaleOwnPasswordChangeDoesNotUndoANewerOne(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "boss", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "erin", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "finn", PasswordHash: "h0"},
		{Type: salamander.RecUserCreated, User: "gus", PasswordHash: "h0"},
		{Type: salamander.RecRoleSet, User: "boss", Role: "admin", Site: "cli"},
		// erin changes hers at one site; the thief, at a site that has
		// not applied it, judged the old one right.
		{Type: salamander.RecPasswordSet, User: "erin", By: "erin", PrevHash: "h0", PasswordHash: testHash1}, // 6
		{Type: salamander.RecPasswordSet, User: "erin", By: "erin", PrevHash: "h0", PasswordHash: testHash2}, // 7: stale
		// An admin resets finn's; the thief's change judged before it.
		{Type: salamander.RecPasswordSet, User: "finn", By: "boss", Site: "a", PasswordHash: testHash1},      // 8
		{Type: salamander.RecPasswordSet, User: "finn", By: "finn", PrevHash: "h0", PasswordHash: testHash2}, // 9: stale
		// gus's two changes, each judged against the hash before it.
		{Type: salamander.RecPasswordSet, User: "gus", By: "gus", PrevHash: "h0", PasswordHash: testHash1},      // 10
		{Type: salamander.RecPasswordSet, User: "gus", By: "gus", PrevHash: testHash1, PasswordHash: testHash2}, // 11
	}
	apply(t, v, &memLog{}, acctEntries(recs, at))
	for _, c := range []struct {
		user    string
		hash    string
		revoked uint64
	}{
		{"erin", testHash1, 6},
		{"finn", testHash1, 8},
		{"gus", testHash2, 11},
	} {
		hash, revoked, err := v.Credentials(context.Background(), c.user)
		if err != nil {
			t.Fatal(err)
		}
		if hash != c.hash || revoked != c.revoked {
			t.Errorf("%s: hash %q, sessions revoked up to %d; want %q, %d", c.user, hash, revoked, c.hash, c.revoked)
		}
	}
}
