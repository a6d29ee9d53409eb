package drill

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Waits breaks one wait a user sees — the send wait or the delivery lag,
// see Report.SendGapMSMax — down by client and by room: each client's or
// room's longest, summarized over them.
type Waits struct {
	// Clients is over the sending clients, Rooms over the rooms.
	Clients WaitStats `json:"clients"`
	// ClientsOtherSites is Clients without the clients of the first
	// fault's site (whose sends also wait for that site to refuse them and
	// for their move): what the fault costs those it did not strike. Left
	// out when there was no fault.
	ClientsOtherSites WaitStats `json:"clients_other_sites,omitzero"`
	Rooms             WaitStats `json:"rooms"`
	// RoomsLeaderBurned and RoomsLeaderSurvived split Rooms as
	// room_gap_leader_burned and room_gap_leader_survived do: by whether
	// the site of the first fault led the room's stream. Left out when
	// there was no fault.
	RoomsLeaderBurned   WaitStats `json:"rooms_leader_burned,omitzero"`
	RoomsLeaderSurvived WaitStats `json:"rooms_leader_survived,omitzero"`
}

// WaitStats summarizes the longest wait of each of a set of clients or
// rooms.
type WaitStats struct {
	// N counts the clients or rooms with a wait counted or unfinished.
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
	// Worst is the client (user name) or room (id) that waited MaxMS.
	Worst string `json:"worst,omitempty"`
	// Unfinished counts those with a send never acknowledged (send wait:
	// it counts until the drill stopped waiting for it) or a message some
	// other member was never delivered (delivery lag: it does not count).
	Unfinished int `json:"unfinished"`
}

// waitSet is one wait as measured from a moment on: the longest of all,
// and per client and per room.
type waitSet struct {
	maxMS          float64
	clients, rooms longest
}

// longest is, per client or room, its longest wait in ms and whether one
// of its waits never ended.
type longest struct {
	ms   map[string]float64
	open map[string]bool
}

func newWaitSet() waitSet {
	return waitSet{
		clients: longest{ms: map[string]float64{}, open: map[string]bool{}},
		rooms:   longest{ms: map[string]float64{}, open: map[string]bool{}},
	}
}

// add counts a wait of client in room.
func (s *waitSet) add(client, room string, wait float64) {
	s.maxMS = max(s.maxMS, wait)
	s.clients.add(client, wait)
	s.rooms.add(room, wait)
}

// unfinished notes a wait of client in room that never ended.
func (s *waitSet) unfinished(client, room string) {
	s.clients.open[client] = true
	s.rooms.open[room] = true
}

// summary summarizes the set; ledThere tells the rooms whose stream the
// first fault's site led, and struck the clients of that site (nil: there
// was no fault, no split).
func (s *waitSet) summary(ledThere, struck map[string]bool) Waits {
	ws := Waits{Clients: s.clients.stats(nil), Rooms: s.rooms.stats(nil)}
	if struck != nil {
		ws.ClientsOtherSites = s.clients.stats(func(name string) bool { return !struck[name] })
	}
	if ledThere != nil {
		ws.RoomsLeaderBurned = s.rooms.stats(func(id string) bool { return ledThere[id] })
		ws.RoomsLeaderSurvived = s.rooms.stats(func(id string) bool { return !ledThere[id] })
	}
	return ws
}

func (l longest) add(key string, wait float64) {
	if cur, ok := l.ms[key]; !ok || wait > cur {
		l.ms[key] = wait
	}
}

// of returns key's longest wait, -1 when none was counted.
func (l longest) of(key string) float64 {
	if v, ok := l.ms[key]; ok {
		return v
	}
	return -1
}

// stats summarizes the keys keep admits (nil: all).
func (l longest) stats(keep func(string) bool) WaitStats {
	var s WaitStats
	var xs []float64
	for _, k := range slices.Sorted(maps.Keys(l.ms)) {
		if keep != nil && !keep(k) {
			continue
		}
		v := l.ms[k]
		xs = append(xs, v)
		if s.Worst == "" || v > s.MaxMS {
			s.Worst, s.MaxMS = k, v
		}
	}
	s.N = len(xs)
	for k := range l.open {
		if keep != nil && !keep(k) {
			continue
		}
		s.Unfinished++
		if _, counted := l.ms[k]; !counted {
			s.N++
		}
	}
	lat := latency(xs)
	s.P50MS, s.P99MS = lat.P50, lat.P99
	return s
}

// tallyWaits measures, from from on, how long each send waited for its
// acknowledgment and how long each acknowledged message then took to
// reach every other member of its room (see Report.SendGapMSMax), by
// sending client and by room.
func tallyWaits(w *workload, recs []sendRecord, from time.Time) (send, delivery waitSet) {
	idx := deliveryIndex(w)
	send, delivery = newWaitSet(), newWaitSet()
	for _, rec := range recs {
		sender := w.users[rec.user]
		if wait, ok := waitFrom(rec.start, rec.end, from); ok {
			send.add(sender.name, rec.room, wait)
			if !rec.acked {
				send.unfinished(sender.name, rec.room)
			}
		}
		if !rec.acked || idx.rooms[rec.room] == nil {
			continue
		}
		// A delivery before the acknowledgment was no wait.
		last, complete := idx.lastDelivery(sender, rec.room, rec.clientID, rec.end)
		if !complete {
			delivery.unfinished(sender.name, rec.room)
			continue
		}
		if wait, ok := waitFrom(rec.end, last, from); ok {
			delivery.add(sender.name, rec.room, wait)
		}
	}
	return send, delivery
}

// deliveries indexes, per room and member, when the member was first
// delivered each message (by client id).
type deliveries struct {
	rooms map[string]*room
	at    map[string]map[*user]map[string]time.Time
}

// deliveryIndex indexes every delivery the workload's users got.
func deliveryIndex(w *workload) deliveries {
	d := deliveries{rooms: map[string]*room{}, at: map[string]map[*user]map[string]time.Time{}}
	for _, r := range w.rooms {
		d.rooms[r.id] = r
		d.at[r.id] = map[*user]map[string]time.Time{}
		for _, m := range r.members {
			at := map[string]time.Time{}
			m.mu.Lock()
			for _, dl := range m.got[r.id] {
				if _, ok := at[dl.clientID]; !ok {
					at[dl.clientID] = dl.at
				}
			}
			m.mu.Unlock()
			d.at[r.id][m] = at
		}
	}
	return d
}

// lastDelivery returns when the last of the room's members other than
// sender was delivered the message (not before since), and false when
// some member never was.
func (d deliveries) lastDelivery(sender *user, roomID, clientID string, since time.Time) (time.Time, bool) {
	rm := d.rooms[roomID]
	if rm == nil {
		return since, false
	}
	last := since
	for _, m := range rm.members {
		if m == sender {
			continue
		}
		at, ok := d.at[roomID][m][clientID]
		if !ok {
			return since, false
		}
		last = latest(last, at)
	}
	return last, true
}

// waitFrom is how long a wait from start to end lasted from from on, in
// ms; false when it had ended before from.
func waitFrom(start, end, from time.Time) (float64, bool) {
	if end.Before(from) {
		return 0, false
	}
	return ms(end.Sub(latest(start, from))), true
}

// waitsText is the summary's lines on the send wait and delivery lag.
func (r *Report) waitsText() string {
	after := "after the fault"
	switch {
	case len(r.Faults) == 0:
		after = "over the load"
	case len(r.Faults) > 1:
		after = "after the first fault"
	}
	// The split is by the first fault's site (a rolling restart or an
	// upgrade strikes every site in turn and names none in r.Site).
	site := r.Site
	if len(r.Faults) > 0 {
		site = r.Faults[0].Site
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  send wait %s (a send's start, or the fault, to its ack): max %s\n", after, waitText(r.SendGapMSMax))
	b.WriteString(r.SendGap.text("clients", site, "with a send never acknowledged"))
	fmt.Fprintf(&b, "  delivery lag %s (ack, or the fault, to the last other member's delivery): max %s\n", after, waitText(r.DeliveryGapMSMax))
	b.WriteString(r.DeliveryGap.text("sending clients", site, "with a message not delivered to every member"))
	return b.String()
}

// text is the per-client and per-room lines of one wait.
func (ws Waits) text(clients, site, unfinished string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "    %s (%d): %s\n", clients, ws.Clients.N, ws.Clients.text(unfinished))
	if ws.ClientsOtherSites.N > 0 {
		fmt.Fprintf(&b, "      of sites other than %s (%d): %s\n", site, ws.ClientsOtherSites.N, ws.ClientsOtherSites.text(unfinished))
	}
	fmt.Fprintf(&b, "    rooms (%d): %s\n", ws.Rooms.N, ws.Rooms.text(unfinished))
	if ws.RoomsLeaderBurned.N+ws.RoomsLeaderSurvived.N > 0 {
		fmt.Fprintf(&b, "      whose stream site %s led (%d): %s\n", site, ws.RoomsLeaderBurned.N, ws.RoomsLeaderBurned.text(unfinished))
		fmt.Fprintf(&b, "      led elsewhere (%d): %s\n", ws.RoomsLeaderSurvived.N, ws.RoomsLeaderSurvived.text(unfinished))
	}
	return b.String()
}

// text is e.g. "p50 8.1 ms p99 0.90s max 1.20s (d1234u007)".
func (s WaitStats) text(unfinished string) string {
	t := fmt.Sprintf("p50 %s p99 %s max %s", waitText(s.P50MS), waitText(s.P99MS), waitText(s.MaxMS))
	if s.Worst != "" {
		t += " (" + s.Worst + ")"
	}
	if s.Unfinished > 0 {
		t += fmt.Sprintf(", %d %s", s.Unfinished, unfinished)
	}
	return t
}

// waitText is a wait in ms below a second (most delivery lags are a few
// ms), else in seconds.
func waitText(msv float64) string {
	if msv < 1000 {
		return fmt.Sprintf("%.1f ms", msv)
	}
	return sec(msv)
}
