//go:build unix

package site

import (
	"strings"
	"testing"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A data directory is owned by one site at a time; closing releases it.
func TestDataDirIsLockedWhileInUse(t *testing.T) {
	dir := t.TempDir()
	first, err := lockDataDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lockDataDir(dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second lock: %v", err)
	}
	first.Close()
	again, err := lockDataDir(dir)
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again.Close()
}

func TestCredentialsAreRedactedFromLoggedURLs(t *testing.T) {
	got := jsstore.RedactURLs([]string{"nats://gw:s3cret@h1:4222", "tls://h2:4222", "nats://x:y@%zz"})
	for _, u := range got {
		if strings.Contains(u, "s3cret") || strings.Contains(u, ":y@") {
			t.Fatalf("credentials logged: %v", got)
		}
	}
	if got[1] != "tls://h2:4222" {
		t.Fatalf("a URL without credentials changed: %v", got)
	}
}

// A log problem raises the alarm only when the same one is seen in
// logAlarmChecks checks in a row.
func TestLogAlarmNeedsTheSameProblemInARow(t *testing.T) {
	var l logProblems
	backwards := logProblem{"backwards:p5", "stream p5 went backwards"}
	if l.observe(backwards) != "" || l.observe(logProblem{}) != "" || l.observe(backwards) != "" ||
		l.observe(logProblem{"missing", "gone"}) != "" || l.observe(backwards) != "" || l.observe(backwards) != "" {
		t.Fatal("alarm raised for a problem that did not persist")
	}
	if got := l.observe(backwards); got != backwards.reason {
		t.Fatalf("third check in a row: %q, want the alarm", got)
	}
}
