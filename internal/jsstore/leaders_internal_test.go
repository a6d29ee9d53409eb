package jsstore

import (
	"slices"
	"testing"
	"time"
)

// Draining a site moves every leadership off it, and never onto the site
// that leads the stream's pair (a partition's standby, a standby's
// partition) while another healthy replica can take it: a fire in the
// seconds after a drain must not take a partition and the standby that
// holds its sends.
func TestDrainKeepsPartitionsAndStandbysApart(t *testing.T) {
	replicas := []string{"site-a", "site-b", "site-c"}
	stream := func(name, leader string, unhealthy ...string) StreamStatus {
		return StreamStatus{Stream: name, Leader: leader, Replicas: replicas, Unhealthy: unhealthy}
	}
	offB := func(server string) bool { return ServerSite(server) == "b" }
	cases := []struct {
		name      string
		streams   []StreamStatus
		wantMoves []leaderMove
		wantStuck []string
	}{
		{
			// The fewest-led server would be site-a (it leads nothing),
			// but a leads p0's standby.
			name:      "a partition goes where its standby is not",
			streams:   []StreamStatus{stream("p0", "site-b"), stream("s0", "site-a"), stream("p1", "site-c"), stream("s1", "site-b")},
			wantMoves: []leaderMove{{"p0", "site-c"}, {"s1", "site-a"}},
		},
		{
			name:      "a standby goes where its partition is not",
			streams:   []StreamStatus{stream("p0", "site-a"), stream("p1", "site-a"), stream("s0", "site-b"), stream("acct", "site-c")},
			wantMoves: []leaderMove{{"s0", "site-c"}},
		},
		{
			// Both at the drained site (as after an election): the
			// partition moves first, and its standby then avoids it.
			name:      "a pair led together is parted",
			streams:   []StreamStatus{stream("p0", "site-b"), stream("s0", "site-b")},
			wantMoves: []leaderMove{{"p0", "site-a"}, {"s0", "site-c"}},
		},
		{
			// The one other site is down: moving off the drained site
			// beats staying, even next to the standby.
			name:      "together rather than at the drained site",
			streams:   []StreamStatus{stream("p0", "site-b", "site-c"), stream("s0", "site-a")},
			wantMoves: []leaderMove{{"p0", "site-a"}},
		},
		{
			name:      "no healthy replica elsewhere",
			streams:   []StreamStatus{stream("p0", "site-b", "site-a", "site-c"), stream("acct", "site-a")},
			wantStuck: []string{"p0"},
		},
		{
			name:    "nothing led at the drained site",
			streams: []StreamStatus{stream("p0", "site-a"), stream("s0", "site-c"), stream("p1", "")},
		},
	}
	for _, c := range cases {
		moves, stuck := planMovesOff(c.streams, ServerSite, offB)
		if !slices.Equal(moves, c.wantMoves) || !slices.Equal(stuck, c.wantStuck) {
			t.Errorf("%s: moves %v stuck %v, want %v and %v", c.name, moves, stuck, c.wantMoves, c.wantStuck)
		}
	}
}

func TestPairSite(t *testing.T) {
	leader := map[string]string{"p3": "site-a", "s3": "site-c", "s4": ""}
	for stream, want := range map[string]string{"p3": "c", "s3": "a", "p4": "", "acct": "", "s9": ""} {
		if got := pairSite(stream, leader, ServerSite); got != want {
			t.Errorf("pairSite(%s) = %q, want %q", stream, got, want)
		}
	}
}

// The balancing hands a partition to the least-loaded server at another
// site than its standby's leader when that evens the count out, to the
// standby's site only when nothing else would (PlaceStandbys then moves
// the standby), and nowhere when no move evens it out.
func TestBalanceKeepsPartitionsAwayFromTheirStandbys(t *testing.T) {
	p0 := StreamStatus{Stream: "p0", Leader: "site-a", Replicas: []string{"site-a", "site-b", "site-c"}}
	mine := func(r string) bool { return ServerSite(r) == "a" }
	cases := []struct {
		name  string
		count map[string]int
		apart string
		want  string
	}{
		{"the fewest-led is the standby's site; the other evens out too", map[string]int{"site-a": 4, "site-b": 1, "site-c": 0}, "c", "site-b"},
		{"only the standby's site evens out", map[string]int{"site-a": 3, "site-b": 3, "site-c": 0}, "c", "site-c"},
		{"no standby known", map[string]int{"site-a": 3, "site-b": 1, "site-c": 0}, "", "site-c"},
		{"nothing evens out", map[string]int{"site-a": 2, "site-b": 2, "site-c": 1}, "b", ""},
	}
	for _, c := range cases {
		if got := balanceTarget(p0, c.count, mine, c.apart, ServerSite); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
	unhealthy := p0
	unhealthy.Unhealthy = []string{"site-b"}
	if got := balanceTarget(unhealthy, map[string]int{"site-a": 4, "site-b": 0, "site-c": 1}, mine, "c", ServerSite); got != "site-c" {
		t.Errorf("with b unhealthy: %q, want site-c", got)
	}
}

// A publish caught in a leader handover (its proposal dropped by the
// leader that stepped down) is answered only by its retry, one attempt
// later. Attempts as long as HoldAfter held every such send: in rolling
// restarts, 4 of 12 restarts had a ~1 s send and held messages with 1 s
// attempts, none with 300 ms. The retry must come well before HoldAfter.
//
// A batch whose forward went unanswered (forward.go) is appended by its
// own site in what is left of HoldAfter after forwardWait: that too must
// leave room for an attempt and its retry (after a pause of up to 100 ms).
func TestAppendAttemptsEndWellBeforeHoldAfter(t *testing.T) {
	hold := DefaultConfig("").HoldAfter
	if appendAttemptTimeout > hold/3 {
		t.Fatalf("an append attempt lasts %v, HoldAfter %v: a send whose proposal a handover dropped is held before it is retried",
			appendAttemptTimeout, hold)
	}
	if left := hold - forwardWait(hold); appendAttemptTimeout+100*time.Millisecond >= left {
		t.Fatalf("after a forward not answered, an append has %v before it is held: no room for a retry after a %v attempt",
			left, appendAttemptTimeout)
	}
}
