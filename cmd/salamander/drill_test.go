package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// A mistyped drill of a running deployment is refused before its start is
// recorded (the regulator's log would count it as a failed drill): the
// refusal names the scenario, not the cluster it never reached.
func TestDrillTypoIsNotRecorded(t *testing.T) {
	var out, errOut strings.Builder
	err := runDrill(t.Context(), []string{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
		"--scenario", "partiton", "--nats", "nats://127.0.0.1:1", "--creds", filepath.Join(t.TempDir(), "admin.json")}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), `unknown scenario "partiton"`) {
		t.Fatalf("a mistyped scenario: %v\n%s", err, errOut.String())
	}
}

// A partition of a running deployment without an operator's token cannot
// run (it waits for the cut site to catch up, in GET /v1/ops/site): it is
// refused before its start is recorded, saying what to do — not recorded as
// a failed drill and then refused.
func TestDrillPartitionWithoutOpsTokenIsRefusedFirst(t *testing.T) {
	t.Setenv(opsTokenEnv, "")
	var out, errOut strings.Builder
	err := runDrill(t.Context(), []string{"--sites", "http://127.0.0.1:1,http://127.0.0.1:2,http://127.0.0.1:3",
		"--scenario", "partition", "--cut-for", "5s", "--fault-at", "3s", "--duration", "12s",
		"--nats", "nats://127.0.0.1:1", "--creds", filepath.Join(t.TempDir(), "admin.json")}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "no operator's session token") || !strings.Contains(err.Error(), "$"+opsTokenEnv) {
		t.Fatalf("a partition without a token: %v\n%s", err, errOut.String())
	}
	if strings.Contains(errOut.String(), "recording the drill") {
		t.Fatalf("recorded before it was refused:\n%s", errOut.String())
	}
}
