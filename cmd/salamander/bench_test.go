package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander/internal/bench"
	"github.com/salamander-chat/salamander/internal/drill"
)

// Bench's flags reach bench.Config; combinations that cannot work are
// refused before anything starts.
func TestBenchFlags(t *testing.T) {
	f, err := parseBenchFlags([]string{"--scenario", "group", "--users", "300", "--rate", "500", "--inflight", "4",
		"--duration", "5s", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := f.cfg
	if c.Scenario != bench.ScenarioGroup || c.Users != 300 || c.Rate != 500 || c.Inflight != 4 || c.GroupSize != 50 ||
		c.Size != 100 || c.Duration.Seconds() != 5 || !f.json || len(c.Sites) != 0 || f.catchupSet {
		t.Fatalf("parsed %+v", f)
	}
	f, err = parseBenchFlags([]string{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2", "--scenario", "idle", "--pid", "7"}, io.Discard)
	if err != nil || len(f.cfg.Sites) != 2 || !slices.Equal(f.pids, []int{7, 7}) {
		t.Fatalf("attached: %+v %v", f, err)
	}
	f, err = parseBenchFlags([]string{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2", "--pid", "7,8"}, io.Discard)
	if err != nil || len(f.pids) != 2 || f.pids[1] != 8 {
		t.Fatalf("a process per site: %+v %v", f, err)
	}
	if f, err = parseBenchFlags([]string{"--record-slots", "1"}, io.Discard); err != nil || f.recordSlots != 1 {
		t.Fatalf("--record-slots: %+v %v", f, err)
	}
	for _, bad := range [][]string{
		{"--sites", "http://127.0.0.1:1", "--catchup"}, // cannot restart sites it does not own
		{"--pid", "7"}, // a started cluster's processes are known
		{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3", "--pid", "7,8"}, // neither one nor one per site
		{"--sites", "http://127.0.0.1:1", "--pid", "seven"},
		{"--record-slots", "-1"}, {"--record-slots", "1025"},
		{"--sites", "http://127.0.0.1:1", "--record-slots", "1"}, // the bench does not configure sites it did not start
		{"extra"},
	} {
		if _, err := parseBenchFlags(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	for s, want := range map[string]int{"a": 0, "c": 2, "1": 1} {
		if i, err := siteIndex(s, 3); err != nil || i != want {
			t.Errorf("siteIndex(%q) = %d, %v", s, i, err)
		}
	}
	if _, err := siteIndex("d", 3); err == nil {
		t.Error("site d of 3 accepted")
	}
}

// The bench knows every role the drill gives a started site's processes:
// the production layout's nats-server is not taken for a gateway.
func TestBenchKnowsTheDrillsProcessRoles(t *testing.T) {
	want := map[drill.ProcessRole]bench.Role{drill.RoleSite: bench.RoleSite, drill.RoleGateway: bench.RoleGateway,
		drill.RoleNATSServer: bench.RoleNATSServer}
	for role, b := range want {
		got := benchProcesses([]drill.Process{{PID: 7, Role: role, URL: "http://g"}})
		if len(got) != 1 || got[0].Role != b || got[0].PID != 7 || got[0].URL != "http://g" {
			t.Errorf("%s: %+v", role, got)
		}
	}
}

// A running cluster's log positions are an operator's to read: bench
// --sites without an operator's token is refused at once, saying where
// the token goes.
func TestBenchSitesNeedAnOpsToken(t *testing.T) {
	t.Setenv(opsTokenEnv, "")
	err := runBench(context.Background(), []string{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3"},
		io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), opsTokenEnv) {
		t.Fatalf("bench --sites without a token: %v; want the refusal to name $%s", err, opsTokenEnv)
	}
}
