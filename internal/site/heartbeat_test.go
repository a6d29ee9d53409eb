package site

import (
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
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

// The silence while a site's own server restarts (a JetStream resume) is
// excused for the sites it heard just before; a site already silent then
// stays silent.
func TestHeartbeatsExcuseTheSitesOwnRestart(t *testing.T) {
	const timeout = time.Second
	start := time.Now().Add(-3 * timeout) // the restart took longer than the timeout
	end := time.Now()
	h := &heartbeats{self: "a", armed: true, heard: map[string]time.Time{
		"b": start.Add(-heartbeatEvery), // talking when the restart began
		"c": start.Add(-10 * timeout),   // long silent
	}}
	if !h.silent(3, timeout) {
		t.Fatal("set-up: before the excuse the site should count as cut off")
	}
	h.excuse(start, end)
	if h.silent(3, timeout) {
		t.Fatal("the site's own restart counted as its peers' silence")
	}
	if !h.heard["c"].Equal(start.Add(-10 * timeout)) {
		t.Fatalf("a site silent before the restart was excused: heard at %v", h.heard["c"])
	}
}

// Replicas must be at distinct sites (a server listed twice is one
// replica); a replica on a server that was not read cannot be checked and
// says so.
func TestPlacementProblems(t *testing.T) {
	siteOf := map[string]string{"n-a1": "a", "n-a2": "a", "n-b1": "b", "n-c1": "c"}
	good := jsstore.StreamStatus{Stream: "p0", Leader: "n-a1", Replicas: []string{"n-b1", "n-c1"}}
	twoAtA := jsstore.StreamStatus{Stream: "p1", Leader: "n-a1", Replicas: []string{"n-a2", "n-c1"}}
	unread := jsstore.StreamStatus{Stream: "p2", Leader: "n-b1", Replicas: []string{"n-x9", "n-c1"}}
	// Seen in the drill on a fresh external cluster: mid-election, the new
	// leader is listed among the replicas as well.
	electing := jsstore.StreamStatus{Stream: "p3", Leader: "n-b1", Replicas: []string{"n-a1", "n-b1", "n-c1"}}
	bad, unknown := placementProblems([]jsstore.StreamStatus{good, twoAtA, unread, electing}, siteOf)
	if len(bad) != 1 || !strings.Contains(bad[0], "p1") || !strings.Contains(bad[0], "site a") {
		t.Fatalf("bad placements %q, want p1's two replicas at site a", bad)
	}
	if len(unknown) != 1 || !strings.Contains(unknown[0], "n-x9") {
		t.Fatalf("unchecked %q, want p2's replica on n-x9", unknown)
	}
}
