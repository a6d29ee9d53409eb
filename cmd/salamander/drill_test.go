package main

import (
	"os"
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

// An upgrade drill with a binary it cannot run, or a new binary for a
// scenario that restarts no site on it, is refused at the flags, before
// any site starts, saying which flag is wrong.
func TestDrillUpgradeFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	self := filepath.Join(dir, "script") // executable, but not a salamander
	if err := os.WriteFile(self, []byte("#!/bin/sh\necho salamander\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--scenario", "upgrade"}, "needs the new binary (--upgrade-bin)"},
		{[]string{"--scenario", "rolling", "--upgrade-bin", self}, `--upgrade-bin) is for the upgrade scenario`},
		{[]string{"--scenario", "fire,none", "--upgrade-bin", self}, `"fire,none" restarts none on it`},
		{[]string{"--scenario", "upgrade", "--upgrade-bin", filepath.Join(dir, "missing")}, "--upgrade-bin " + filepath.Join(dir, "missing") + ": no such file"},
		{[]string{"--scenario", "upgrade", "--upgrade-bin", plain}, "--upgrade-bin " + plain + ": not executable"},
		{[]string{"--scenario", "upgrade", "--bin", dir, "--upgrade-bin", self}, "--bin " + dir + ": not a regular file"},
		{[]string{"--scenario", "upgrade,upgrade", "--upgrade-bin", self}, "runs once in a sequence"},
		{[]string{"--scenario", "upgrade", "--bin", self, "--upgrade-bin", self}, "is not a salamander binary"},
		{[]string{"--scenario", "upgrade", "--upgrade-bin", self, "--sites", "http://127.0.0.1:1,http://127.0.0.1:2", "--record=false"},
			"not possible on a cluster the drill attached to"},
	} {
		var out, errOut strings.Builder
		err := runDrill(t.Context(), append(c.args, "--data", filepath.Join(dir, "data")), &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("drill %q: %v, want %q\n%s", c.args, err, c.want, errOut.String())
		}
		if _, err := os.Stat(filepath.Join(dir, "data")); err == nil {
			t.Fatalf("drill %q started something in its data directory before refusing", c.args)
		}
	}
}
