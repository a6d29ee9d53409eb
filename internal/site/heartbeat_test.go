package site

import (
	"testing"
	"time"
)

// A site is silent-cut when, after it has once heard a majority, fewer
// than a majority (itself included) were heard within the timeout.
func TestHeartbeatsTellASilentCut(t *testing.T) {
	h := &heartbeats{self: "a", heard: map[string]time.Time{}}
	const timeout = time.Second
	if h.silent(3, timeout) {
		t.Fatal("a site that has not heard anyone yet (starting) counts as cut off")
	}
	now := time.Now()
	h.heard["b"], h.armed = now, true
	if h.silent(3, timeout) {
		t.Fatal("a site that hears one of two others (a majority with itself) counts as cut off")
	}
	h.heard["b"] = now.Add(-2 * timeout)
	h.heard["c"] = now.Add(-2 * timeout)
	if !h.silent(3, timeout) {
		t.Fatal("a site that heard no one within the timeout is not cut off")
	}
	h.heard["c"] = now
	if h.silent(3, timeout) {
		t.Fatal("a site that hears c again still counts as cut off")
	}
	if !h.silent(5, timeout) {
		t.Fatal("of five sites, hearing one other is not a majority")
	}
}
