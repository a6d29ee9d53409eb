package web

import (
	"bytes"
	"io/fs"
	"slices"
	"strings"
	"testing"
)

// The shell lists every file at the URL the gateway serves it from, and
// the service worker carries the shell's version.
func TestAppShell(t *testing.T) {
	s := AppShell()
	for _, want := range []string{"/", "/app/app.css", "/app/icon.svg", "/app/js/main.js", "/app/js/views/room.js"} {
		if !slices.Contains(s.Files, want) {
			t.Errorf("shell %v lacks %s", s.Files, want)
		}
	}
	n := 0
	_ = fs.WalkDir(Files(), ".", func(_ string, d fs.DirEntry, _ error) error {
		if !d.IsDir() {
			n++
		}
		return nil
	})
	if len(s.Files) != n {
		t.Errorf("shell lists %d files, the app has %d", len(s.Files), n)
	}
	if len(s.Version) != 16 || AppShell().Version != s.Version {
		t.Errorf("version %q: want 16 hex digits, the same each time", s.Version)
	}
	sw := ServiceWorker(s)
	if !bytes.HasPrefix(sw, []byte(`const SHELL = {"version":"`+s.Version+`"`)) || !bytes.Contains(sw, []byte(`addEventListener("fetch"`)) {
		t.Errorf("service worker starts %q", sw[:min(len(sw), 120)])
	}
}

// The page asks for every script module at once (modulepreload, or the
// one script it runs): none waits for the module importing it, which from
// a hung site would cost the service worker's wait once per level.
func TestPageLoadsEveryModuleAtOnce(t *testing.T) {
	page, err := fs.ReadFile(Files(), "index.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range AppShell().Files {
		if !strings.HasSuffix(f, ".js") {
			continue
		}
		if !bytes.Contains(page, []byte(`<link rel="modulepreload" href="`+f+`">`)) &&
			!bytes.Contains(page, []byte(`<script type="module" src="`+f+`">`)) {
			t.Errorf("index.html does not ask for %s at once", f)
		}
	}
}
