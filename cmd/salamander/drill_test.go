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
