package drill

import (
	"strings"
	"testing"
	"time"
)

// TestMeasureElections attributes held messages to the elections they
// waited for on a synthetic timeline: a fire at 10 s hit partitions P0
// (room g) and P1 (room d); P0 was led again at 15 s, P1 at 16 s; a second
// fire at 20 s took the quorum, and from the first return at 30 s P0 was
// led again at 33 s. Room e is in P2, which no fault hit.
func TestMeasureElections(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	u0 := &user{idx: 0, name: "u0", got: map[string][]delivery{}, stream: map[string]string{"g": "P0", "d": "P1", "e": "P2"}}
	u1 := &user{idx: 1, name: "u1", got: map[string][]delivery{}}
	u2 := &user{idx: 2, name: "u2", got: map[string][]delivery{}}
	g := &room{id: "g", members: []*user{u0, u1, u2}}
	d := &room{id: "d", members: []*user{u0, u1}}
	e := &room{id: "e", members: []*user{u0, u1}}
	w := &workload{users: []*user{u0, u1, u2}, rooms: []*room{g, d, e}}
	deliver := func(u *user, roomID, id string, s float64) {
		u.got[roomID] = append(u.got[roomID], delivery{clientID: id, at: at(s)})
	}
	held := func(user int, roomID, id string, ack float64) sendRecord {
		return sendRecord{user: user, room: roomID, clientID: id, start: at(ack - 1), end: at(ack), acked: true, held: true}
	}
	recs := []sendRecord{
		// Held at 11 s, placed after P0's election at 15 s: the last of u1
		// and u2 got it at 15.4 s.
		held(0, "g", "h1", 11),
		// Held at 12 s, delivered 0.1 s after P0's election.
		held(0, "g", "h2", 12),
		// Held at 19 s, after P0's election (its site had not seen it
		// answer): waited for none of the first fire's, but for the one
		// after the return.
		held(0, "g", "h3", 19),
		// Held at 14 s and not placed before the second fire: it waited
		// for the election after the return (33 s), delivered at 33.5 s.
		held(0, "g", "h4", 14),
		// Held at 13 s in P1, led again at 16 s; u1 never got it.
		held(0, "d", "h5", 13),
		// Held in P2, which no fault hit.
		held(0, "e", "h6", 12),
		// Held at 40 s, after every election found.
		held(0, "g", "h7", 40),
		// Not held: not counted.
		{user: 0, room: "g", clientID: "m1", start: at(16), end: at(16.1), acked: true},
	}
	deliver(u1, "g", "h1", 15.2)
	deliver(u2, "g", "h1", 15.4)
	deliver(u1, "g", "h2", 15.1)
	deliver(u2, "g", "h2", 15.1)
	deliver(u1, "g", "h3", 33.2)
	deliver(u2, "g", "h3", 33.3)
	deliver(u1, "g", "h4", 33.5)
	deliver(u2, "g", "h4", 33.4)
	deliver(u1, "e", "h6", 12.1)
	deliver(u1, "g", "h7", 40.1)
	deliver(u2, "g", "h7", 40.1)

	el := func(fault int, p string, from, elected float64) *Election {
		return &Election{Fault: fault, Partition: p, Leader: "b", FromS: from, AtS: elected, ElectedMS: (elected - from) * 1000,
			from: at(from), at: at(elected)}
	}
	p0a, p1, p0b := el(1, "P0", 10, 15), el(1, "P1", 10, 16), el(2, "P0", 30, 33)
	unfound := &Election{Fault: 2, Partition: "P1", FromS: 30, ElectedMS: -1, from: at(30)}
	r := &Report{}
	r.measureElections(w, recs, []*Election{p0a, p1, p0b, unfound})

	if p0a.Held != 2 || !near(p0a.HeldDeliveryMSMax, 400) || !near(p0a.HeldDeliveryMSP50, 100) || p0a.HeldWorst != "g" {
		t.Errorf("P0 after the first fire: %+v, want h1 (0.4 s) and h2 (0.1 s)", p0a)
	}
	if p0b.Held != 2 || !near(p0b.HeldDeliveryMSMax, 500) || !near(p0b.HeldDeliveryMSP50, 300) {
		t.Errorf("P0 after the return: %+v, want h3 (0.3 s) and h4 (0.5 s)", p0b)
	}
	if p1.Held != 1 || p1.HeldUndelivered != 1 || p1.HeldDeliveryMSMax != -1 {
		t.Errorf("P1: %+v, want h5, undelivered", p1)
	}
	if unfound.Held != 0 || unfound.HeldDeliveryMSMax != -1 {
		t.Errorf("an election never found: %+v", unfound)
	}
	if !near(r.HeldDeliveryAfterElectionMSMax, 500) || !near(r.HeldDeliveryAfterElectionMSP50, 300) ||
		r.HeldWaitedForElection != 5 || r.HeldAfterElection != 1 || r.HeldUnwatched != 1 {
		t.Errorf("over all: p50 %v max %v, waited %d, after %d, unwatched %d; want 300, 500, 5, 1, 1",
			r.HeldDeliveryAfterElectionMSP50, r.HeldDeliveryAfterElectionMSMax, r.HeldWaitedForElection, r.HeldAfterElection, r.HeldUnwatched)
	}
	checkJSONKeys(t, r, "held_delivery_after_election_ms_max", "held_delivery_after_election_ms_p50", "elections")
	text := r.electionsText()
	for _, s := range []string{"after fault 1: P0 by site b in 5.00s, 2 held delivered max 400.0 ms after it; P1 by site b in 6.00s, 1 held (1 not delivered to everyone)",
		"after fault 2: P0 by site b in 3.00s, 2 held delivered max 500.0 ms after it; P1 no leader found",
		"p50 300.0 ms, max 500.0 ms (5 held waited for an election, 1 were held after it, 1 in partitions no fault hit)"} {
		if !strings.Contains(text, s) {
			t.Errorf("summary lacks %q:\n%s", s, text)
		}
	}

	// Without a watched election nothing is measured.
	r = &Report{}
	r.measureElections(w, recs, nil)
	if r.HeldDeliveryAfterElectionMSMax != -1 || r.HeldWaitedForElection != 0 || r.electionsText() != "" {
		t.Errorf("no elections: %+v", r)
	}
}

// A leadership reported at a site that is down, or that its running
// processes took before they started, is no election: it was handed over
// as the fault struck (a CI run once counted "p2 by site a in 0.03s" for
// the site it had just burned); nor is one at a site running without a
// majority of the sites. A site running since before, with a majority,
// counts, and an attached cluster's sites always do.
func TestCouldLeadOnlyWhileRunning(t *testing.T) {
	t0 := time.Now()
	running := &process{done: make(chan struct{}), started: t0}
	before := &process{done: make(chan struct{}), started: t0.Add(-time.Minute)}
	exited := &process{done: make(chan struct{}), started: t0.Add(-time.Minute), ended: t0.Add(-time.Second)}
	close(exited.done)
	cl := &Cluster{sites: []*siteProc{
		{name: "a"},                             // burned: no processes
		{name: "b", procs: []*process{running}}, // (re)started at t0
		{name: "c", procs: []*process{before}},  // running all along
	}}
	cases := []struct {
		site string
		at   time.Time
		want bool
	}{
		{"a", t0, false},
		{"b", t0.Add(time.Second), true},
		{"b", t0.Add(-time.Second), false}, // before its restart
		{"c", t0, true},
		{"n-x1", t0, true}, // not one of the drill's sites
	}
	for _, c := range cases {
		if got := cl.couldLead(c.site, c.at); got != c.want {
			t.Errorf("couldLead(%s, t0%+v) = %v, want %v", c.site, c.at.Sub(t0), got, c.want)
		}
	}
	// c's process ended: it cannot lead, and b, the lone survivor, goes on
	// reporting the leaderships it held when the two others burned (a
	// fire-merge drill counted "p1 by site b in 0.38s" with a and c down)
	// without a quorum: no election either.
	cl.sites[2].procs = []*process{exited}
	for _, site := range []string{"b", "c"} {
		if cl.couldLead(site, t0.Add(time.Second)) {
			t.Errorf("couldLead(%s) with a and c down", site)
		}
	}
	// What counts is who ran at the moment of the leadership, not now: a
	// site killed after it (the fire-merge drill's second fire, a few ms
	// after an election it may still be reading) was part of the majority.
	later := &process{done: make(chan struct{}), started: t0.Add(-time.Minute), ended: t0.Add(2 * time.Second)}
	close(later.done)
	cl.sites[2].procs, cl.sites[2].stopped = nil, []*process{later}
	if !cl.couldLead("b", t0.Add(time.Second)) {
		t.Error("a leadership taken while c still ran did not count once c was killed")
	}
	if cl.couldLead("b", t0.Add(3*time.Second)) {
		t.Error("a leadership taken after c was killed counted")
	}
	cl.attached = true
	if !cl.couldLead("a", t0) {
		t.Error("an attached cluster's site was judged by processes the drill does not run")
	}
}
