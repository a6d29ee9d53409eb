package drill

import (
	"strings"
	"testing"
	"time"
)

// TestWaits measures send waits and delivery lags on a synthetic timeline:
// a fault at 10 s; site a led stream P0 (room g, a group of three) and site
// b stream P1 (room d, a 1:1 room).
func TestWaits(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	u0 := &user{idx: 0, name: "u0", home: 0, got: map[string][]delivery{}, stream: map[string]string{"g": "P0"}}
	u1 := &user{idx: 1, name: "u1", home: 1, got: map[string][]delivery{}, stream: map[string]string{"d": "P1"}}
	u2 := &user{idx: 2, name: "u2", home: 2, got: map[string][]delivery{}}
	g := &room{id: "g", kind: "group", members: []*user{u0, u1, u2}}
	d := &room{id: "d", kind: "direct", members: []*user{u1, u2}}
	u0.rooms, u1.rooms, u2.rooms = []*room{g}, []*room{g, d}, []*room{g, d}
	w := &workload{users: []*user{u0, u1, u2}, rooms: []*room{g, d}}
	deliver := func(u *user, roomID, id string, s float64) {
		u.got[roomID] = append(u.got[roomID], delivery{clientID: id, at: at(s)})
	}
	recs := []sendRecord{
		// Before the fault, all delivered before it: not counted.
		{user: 0, room: "g", clientID: "m1", start: at(2), end: at(2.01), acked: true},
		// In flight at the fault: waited 3 s from it (not 4 s from its start).
		{user: 0, room: "g", clientID: "m2", start: at(9), end: at(13), acked: true},
		// Acknowledged before the fault, delivered to u2 after it: lags 1 s from the fault.
		{user: 1, room: "g", clientID: "m3", start: at(9.5), end: at(9.6), acked: true},
		// After the fault; u2's copy arrives before the ack: no lag.
		{user: 1, room: "d", clientID: "m4", start: at(12), end: at(12.2), acked: true},
		// After the fault; u1 was never delivered it.
		{user: 2, room: "d", clientID: "m5", start: at(14), end: at(14.1), acked: true},
		// Never acknowledged: waited from 15 s until the drill gave up at 45 s.
		{user: 2, room: "g", clientID: "m6", start: at(15), end: at(45), err: "abandoned"},
		// After the fault in g: the last of two other members got it 0.5 s after the ack.
		{user: 2, room: "g", clientID: "m7", start: at(16), end: at(16.2), acked: true},
	}
	deliver(u1, "g", "m1", 2.02)
	deliver(u2, "g", "m1", 2.03)
	deliver(u1, "g", "m2", 13.1)
	deliver(u2, "g", "m2", 13.4)
	deliver(u2, "g", "m2", 20) // a second delivery does not count
	deliver(u0, "g", "m3", 9.7)
	deliver(u2, "g", "m3", 11)
	deliver(u2, "d", "m4", 12.1)
	deliver(u0, "g", "m7", 16.3)
	deliver(u1, "g", "m7", 16.7)

	r := &Report{Scenario: ScenarioFire, Site: "a", LeadersAtFault: map[string]string{"P0": "a", "P1": "b"}}
	r.measure(w, recs, t0, []*Fault{{Kind: FaultKill, Site: "a", at: at(10), site: 0}})

	if r.SendGapMSMax != 30000 {
		t.Errorf("send_gap_ms_max %v, want 30000 (the unacknowledged send)", r.SendGapMSMax)
	}
	if r.DeliveryGapMSMax != 1000 {
		t.Errorf("delivery_gap_ms_max %v, want 1000 (m3, from the fault)", r.DeliveryGapMSMax)
	}
	want := Waits{
		Clients: WaitStats{N: 3, P50MS: 3000, P99MS: 30000, MaxMS: 30000, Worst: "u2", Unfinished: 1},
		// u0 is a client of the burned site a: its 3 s is not the others'.
		ClientsOtherSites: WaitStats{N: 2, P50MS: 200, P99MS: 30000, MaxMS: 30000, Worst: "u2", Unfinished: 1},
		Rooms:             WaitStats{N: 2, P50MS: 200, P99MS: 30000, MaxMS: 30000, Worst: "g", Unfinished: 1},
		// g's stream P0 was led by the burned site a, d's by b.
		RoomsLeaderBurned:   WaitStats{N: 1, P50MS: 30000, P99MS: 30000, MaxMS: 30000, Worst: "g", Unfinished: 1},
		RoomsLeaderSurvived: WaitStats{N: 1, P50MS: 200, P99MS: 200, MaxMS: 200, Worst: "d"},
	}
	if !approx(r.SendGap, want) {
		t.Errorf("send gap\n got %+v\nwant %+v", r.SendGap, want)
	}
	// Per sender: u0 m2 0.4 s; u1 m3 1 s, m4 0; u2 m7 0.5 s, m5 never delivered.
	// Per room: g m2 0.4, m3 1, m7 0.5; d m4 0, m5 never delivered.
	want = Waits{
		Clients:             WaitStats{N: 3, P50MS: 500, P99MS: 1000, MaxMS: 1000, Worst: "u1", Unfinished: 1},
		ClientsOtherSites:   WaitStats{N: 2, P50MS: 500, P99MS: 1000, MaxMS: 1000, Worst: "u1", Unfinished: 1},
		Rooms:               WaitStats{N: 2, P50MS: 0, P99MS: 1000, MaxMS: 1000, Worst: "g", Unfinished: 1},
		RoomsLeaderBurned:   WaitStats{N: 1, P50MS: 1000, P99MS: 1000, MaxMS: 1000, Worst: "g"},
		RoomsLeaderSurvived: WaitStats{N: 1, P50MS: 0, P99MS: 0, MaxMS: 0, Worst: "d", Unfinished: 1},
	}
	if !approx(r.DeliveryGap, want) {
		t.Errorf("delivery gap\n got %+v\nwant %+v", r.DeliveryGap, want)
	}
	byRoom := map[string]RoomGap{}
	for _, rg := range r.RoomGaps {
		byRoom[rg.Room] = rg
	}
	if g, d := byRoom["g"], byRoom["d"]; g.SendGapMS != 30000 || !near(g.DeliveryGapMS, 1000) || !near(d.SendGapMS, 200) || d.DeliveryGapMS != 0 {
		t.Errorf("room gaps: %+v", r.RoomGaps)
	}

	checkJSONKeys(t, r, "send_gap_ms_max", "delivery_gap_ms_max", "send_gap", "delivery_gap")
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"send wait after the fault", "max 30.00s (u2), 1 with a send never acknowledged",
		"of sites other than a (2): p50 200.0 ms p99 30.00s max 30.00s (u2)",
		"delivery lag after the fault", "whose stream site a led (1): p50 1.00s", "led elsewhere (1): p50 0.0 ms p99 0.0 ms max 0.0 ms (d), 1 with a message"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, text.String())
		}
	}

	// Without a fault every wait of the load counts, and rooms are not split.
	r = &Report{}
	r.measure(w, recs, t0, nil)
	if r.SendGapMSMax != 30000 || !near(r.DeliveryGapMSMax, 1400) || r.SendGap.RoomsLeaderBurned.N != 0 || r.SendGap.ClientsOtherSites.N != 0 {
		t.Errorf("no fault: send %v delivery %v (want 30000, 1400: m3's lag from its ack), split %+v",
			r.SendGapMSMax, r.DeliveryGapMSMax, r.SendGap.RoomsLeaderBurned)
	}
}

// near compares milliseconds computed from float seconds.
func near(a, b float64) bool { return a-b < 0.001 && b-a < 0.001 }

func approx(a, b Waits) bool {
	same := func(x, y WaitStats) bool {
		return x.N == y.N && x.Worst == y.Worst && x.Unfinished == y.Unfinished &&
			near(x.P50MS, y.P50MS) && near(x.P99MS, y.P99MS) && near(x.MaxMS, y.MaxMS)
	}
	return same(a.Clients, b.Clients) && same(a.ClientsOtherSites, b.ClientsOtherSites) && same(a.Rooms, b.Rooms) &&
		same(a.RoomsLeaderBurned, b.RoomsLeaderBurned) && same(a.RoomsLeaderSurvived, b.RoomsLeaderSurvived)
}

// A rolling restart or an upgrade names no site in the report's Site: the
// clients split off are those of the first fault's site, and the summary
// names it.
func TestWaitsTextNamesTheFirstFaultsSite(t *testing.T) {
	r := &Report{Faults: []*Fault{{Kind: "term", Site: "b"}, {Kind: "term", Site: "c"}}}
	r.SendGap.Clients = WaitStats{N: 3}
	r.SendGap.ClientsOtherSites = WaitStats{N: 2}
	if text := r.waitsText(); !strings.Contains(text, "of sites other than b (2)") {
		t.Errorf("the waits name no site:\n%s", text)
	}
}
