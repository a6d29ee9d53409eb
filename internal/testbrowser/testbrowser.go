// Package testbrowser finds the browser the browser tests drive (Debian's
// chromium) and where they keep their screenshots. It is for tests only.
package testbrowser

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Chromium returns the chromium to drive. Without one the test is skipped
// on a developer's machine, but fails in CI (CI set), which must have
// installed it (.ci/run does). what names the test, for the message.
func Chromium(t *testing.T, what string) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("no chromium on PATH, and CI is set: install it (apt-get install -y chromium)")
	}
	t.Skipf("no chromium on PATH: %s needs it (apt-get install -y chromium)", what)
	return ""
}

// ScreenshotDirs are where a browser test writes its screenshots:
// $SALAMANDER_ARTIFACTS (a temporary directory when unset) and, with
// SALAMANDER_UPDATE_SCREENSHOTS=1, docs/screenshots for the README (the
// test runs two directories below the repository's root).
func ScreenshotDirs(t *testing.T) []string {
	t.Helper()
	dir := os.Getenv("SALAMANDER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	dirs := []string{dir}
	if os.Getenv("SALAMANDER_UPDATE_SCREENSHOTS") == "1" {
		docs := filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(docs, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, docs)
	}
	return dirs
}
