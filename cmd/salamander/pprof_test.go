package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// --pprof with a bare port serves the profiles on loopback only.
func TestPprofServesOnLoopback(t *testing.T) {
	stop, url, err := startPprof(":0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if !strings.HasPrefix(url, "http://127.0.0.1:") {
		t.Fatalf("profiles at %s, want loopback", url)
	}
	res, err := http.Get(url + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Fatalf("status %d: %.200s", res.StatusCode, body)
	}
	if _, _, err := startPprof("nonsense", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("an address without a port was accepted")
	}
}
