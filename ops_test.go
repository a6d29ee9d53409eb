package salamander

import (
	"strings"
	"testing"
	"time"
)

func TestLocalizedFallsBack(t *testing.T) {
	both := Localized{EN: "Delayed", KO: "지연"}
	if both.In("ko") != "지연" || both.In("en") != "Delayed" || both.In("fr") != "Delayed" {
		t.Fatal(both)
	}
	if (Localized{KO: "지연"}).In("en") != "지연" || (Localized{EN: "Delayed"}).In("ko") != "Delayed" {
		t.Fatal("no fallback to the other language")
	}
	if (Localized{EN: "   ", KO: "지연"}).In("en") != "지연" || (Localized{EN: "Delayed", KO: " "}).In("ko") != "Delayed" {
		t.Fatal("a blank text shown instead of the other language's")
	}
}

// Every ops request refuses what it cannot take, with a coded error.
func TestOpsRequestsValidate(t *testing.T) {
	good := IncidentRequest{Title: Localized{EN: "t"}, Message: Localized{KO: "m"}, Impact: ImpactMinor, Services: []string{ServiceLogin}}
	if err := good.Validate(); err != nil || good.State != IncidentInvestigating {
		t.Fatalf("%v %+v", err, good)
	}
	bad := []interface{ Validate() error }{
		&IncidentRequest{Title: Localized{EN: "t\x00"}, Message: Localized{EN: "m"}, Impact: ImpactMinor, Services: []string{ServiceLogin}},
		&IncidentRequest{Title: Localized{EN: "t"}, Message: Localized{EN: strings.Repeat("m", MaxIncidentMessageRune+1)}, Impact: ImpactMinor, Services: []string{ServiceLogin}},
		&IncidentRequest{Title: Localized{EN: "t"}, Message: Localized{EN: "m"}, Impact: ImpactMinor},
		&IncidentUpdateRequest{State: "fixed", Message: Localized{EN: "m"}},
		&IncidentUpdateRequest{State: IncidentResolved},
		&DamageReportRequest{Incident: "inc-12345678", Category: HarmOther, Description: "d", AmountClaimed: MaxAmount + 1},
		&DamageReportRequest{Incident: "../etc", Category: HarmOther, Description: "d"},
		&DamageReportRequest{Incident: "inc-12345678", Category: HarmOther, Description: "d", ClientID: "bad id"},
		&ReportDetailsRequest{Text: strings.Repeat("x", MaxReportDescRune+1)},
		&ReviewRequest{Decision: DecisionReject},
		&ReviewRequest{Decision: DecisionAskDetails, Note: "n", AmountApproved: 5},
		&ReviewRequest{Decision: "pay"},
		&DrillRequest{Site: "c", Seconds: MaxDrillSeconds + 1},
		&DrillRequest{Site: "C!"},
	}
	for _, r := range bad {
		err := r.Validate()
		if c := ErrorCode(err); c != CodeInvalid && c != CodeTooLarge {
			t.Errorf("%+v: %v", r, err)
		}
	}
	d := DrillRequest{Site: "b"}
	if err := d.Validate(); err != nil || d.Seconds != DefaultDrillSeconds {
		t.Fatalf("%v %+v", err, d)
	}
}

func TestComplianceCountsPassedDrillsOfTheYear(t *testing.T) {
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	drills := []Drill{
		{Kind: DrillRecovery, State: DrillPassed, Started: at},
		{Kind: DrillSimulation, State: DrillPassed, Started: at},
		{Kind: DrillSimulation, State: DrillFailed, Started: at},
		{Kind: DrillSimulation, State: DrillPassed, Started: at.AddDate(-1, 0, 0)},
	}
	if c := Compliance(drills, 2026); c.Recovery != 1 || c.Simulation != 1 || c.Met {
		t.Fatalf("%+v", c)
	}
	drills = append(drills, Drill{Kind: DrillSimulation, State: DrillPassed, Started: at})
	if c := Compliance(drills, 2026); !c.Met {
		t.Fatalf("%+v", c)
	}
}

// A drill counts as running until an hour after its start, or after its
// fault's isolation ended when that is later; an ended one never.
func TestDrillLive(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		what string
		d    Drill
		want bool
	}{
		{"just started", Drill{State: DrillRunning, Started: now.Add(-time.Minute)}, true},
		{"abandoned", Drill{State: DrillRunning, Started: now.Add(-DrillAbandonedAfter - time.Second)}, false},
		{"isolating lately", Drill{State: DrillRunning, Started: now.Add(-70 * time.Minute), FaultAt: now.Add(-5 * time.Minute), Seconds: 60}, true},
		{"ended", Drill{State: DrillPassed, Started: now.Add(-time.Minute)}, false},
	} {
		if got := tc.d.Live(now); got != tc.want {
			t.Errorf("%s: Live = %v, want %v", tc.what, got, tc.want)
		}
	}
}
