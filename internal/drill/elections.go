package drill

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// How the drill finds a partition's new leader after a fault: every
// electionPollEvery it asks the partition's stream info through a live
// site's admin connection, each request bounded by electionAskTimeout and
// several in flight (nobody answers while the partition elects). A leader
// that took over after the fault answers with the time it did (NATS's
// leader_since, by its own clock: the drill's machine's, as every site is
// on it), which dates the election; the drill learns of it within about
// electionPollEvery.
const (
	electionPollEvery  = 10 * time.Millisecond
	electionAskTimeout = 250 * time.Millisecond
	electionInFlight   = 32
)

// Election is a partition led again after a fault: when the drill first
// found a leader for it. Times are seconds since the load started.
type Election struct {
	// Fault is the fault's number in Report.Faults, from 1.
	Fault     int    `json:"fault"`
	Partition string `json:"partition"`
	// LeaderBefore is the site that led the partition just before the
	// fault; empty when the fault took the cluster's quorum, every
	// partition with it, and the drill did not know the leaders then.
	LeaderBefore string `json:"leader_before,omitempty"`
	// FromS is when the drill started looking: the fault, or, for a fault
	// that left no quorum, the return of the first site that restored one
	// (a partition cannot have a working leader before that).
	FromS float64 `json:"from_s"`
	// Leader is the site found leading it, AtS when it took over (its
	// leader_since; from a server that does not say, when the drill sent
	// the first request it answered). Empty and zero when none was found
	// before the next fault or the end of the load. FoundMS is how long
	// after AtS the drill learned of it.
	Leader string  `json:"leader,omitempty"`
	AtS    float64 `json:"at_s,omitempty"`
	// ElectedMS is AtS - FromS in ms; -1 when none was found.
	ElectedMS float64 `json:"elected_ms"`
	FoundMS   float64 `json:"found_ms,omitempty"`
	// Held counts the messages acknowledged held in the partition's standby
	// before this election that were placed after it (see
	// Report.HeldDeliveryAfterElectionMSMax); HeldUndelivered counts those
	// some other member of the room was never delivered.
	Held            int `json:"held"`
	HeldUndelivered int `json:"held_undelivered,omitempty"`
	// Rooms counts the workload's rooms whose messages the partition
	// carries (with a few rooms, a partition may carry none: then no send
	// waits for its election).
	Rooms int `json:"rooms"`
	// HeldDeliveryMSP50 and HeldDeliveryMSMax summarize, over those
	// messages, the time from this election to the delivery to the last of
	// the room's other members; HeldWorst is the room of the slowest.
	HeldDeliveryMSP50 float64 `json:"held_delivery_after_election_ms_p50"`
	HeldDeliveryMSMax float64 `json:"held_delivery_after_election_ms_max"`
	HeldWorst         string  `json:"held_worst_room,omitempty"`

	from, at time.Time
	// after is the fault: a leader that took over before it is not new
	// (one without a quorum may still answer).
	after time.Time
}

// electionWatch polls, for every partition a fault hit, until the
// partition has a leader again, and records when (Election). One watch
// runs per fault; the run stops it at the next fault or when the load
// stops.
type electionWatch struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	found  []*Election
}

// watchElections starts watching partitions after fault number n (from
// 1), from from on; leaders (may be nil) are the partitions' leaders just
// before the fault. It stops the previous fault's watch first. Without an
// admin connection (an attached cluster) it does nothing.
func (r *run) watchElections(n int, partitions []string, leaders map[string]string, from time.Time) {
	fault := r.faults[n-1].at
	r.stopElections()
	if len(partitions) == 0 {
		r.log.Warn("no partition to watch for a new leader", "fault", n, "leaders", leaders)
		return
	}
	if !r.cl.hasAdmin() {
		return // nothing to watch with
	}
	if r.cl.liveAdmin(0) == nil {
		// The watch asks whichever admin connection is up at each poll.
		r.log.Warn("no admin connection is up yet to watch the partitions' elections with", "fault", n)
	}
	r.log.Info("watching for new leaders", "fault", n, "partitions", partitions)
	ctx, cancel := context.WithCancel(r.ctx)
	ew := &electionWatch{cancel: cancel}
	r.watches = append(r.watches, ew)
	for k, p := range partitions {
		e := &Election{Fault: n, Partition: p, LeaderBefore: leaders[p], FromS: r.since(from), ElectedMS: -1, from: from, after: fault}
		ew.found = append(ew.found, e)
		ew.wg.Go(func() { ew.poll(ctx, r.cl, e, k) })
	}
}

// stopElections stops the running watch (if any) and waits for it.
func (r *run) stopElections() {
	if len(r.watches) == 0 {
		return
	}
	ew := r.watches[len(r.watches)-1]
	ew.cancel()
	ew.wg.Wait()
}

// elections returns every watch's elections, in fault and partition order.
func (r *run) elections() []*Election {
	var out []*Election
	for _, ew := range r.watches {
		ew.mu.Lock()
		out = append(out, ew.found...)
		ew.mu.Unlock()
	}
	return out
}

// elected returns the site leading partition since fault n's watch found
// it, and when; false while not found.
func (r *run) elected(n int, partition string) (string, time.Time, bool) {
	for _, ew := range r.watches {
		ew.mu.Lock()
		for _, e := range ew.found {
			if e.Fault == n && e.Partition == partition && !e.at.IsZero() {
				ew.mu.Unlock()
				return e.Leader, e.at, true
			}
		}
		ew.mu.Unlock()
	}
	return "", time.Time{}, false
}

// poll asks for e's partition's leader every electionPollEvery, several
// requests in flight, until one answers with a leader that took over
// after the fault. k spreads the partitions' requests over the live
// sites.
func (ew *electionWatch) poll(ctx context.Context, cl *Cluster, e *Election, k int) {
	tick := time.NewTicker(electionPollEvery)
	defer tick.Stop()
	slots := make(chan struct{}, electionInFlight)
	var asks sync.WaitGroup
	defer asks.Wait()
	for n := k; ; n++ {
		ew.mu.Lock()
		done := !e.at.IsZero()
		ew.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := cl.liveAdmin(n)
		if st == nil {
			continue
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // every slot waits for an answer: the partition elects
		}
		sent := time.Now()
		asks.Go(func() {
			defer func() { <-slots }()
			actx, cancel := context.WithTimeout(ctx, electionAskTimeout)
			ss, err := st.StatusOf(actx, e.Partition)
			cancel()
			if err != nil || ss.Leader == "" {
				return
			}
			took := sent
			if ss.LeaderSince != nil {
				if took = ss.LeaderSince.Local(); took.Before(e.after) {
					return // no new leader: one from before the fault
				}
			}
			if !cl.couldLead(jsstore.ServerSite(ss.Leader), took) {
				// A leadership handed to the burned site just as the fault
				// struck, which the survivors still report: the partition
				// has yet to elect.
				return
			}
			// The first answer counts at once; another may date the
			// election earlier (without leader_since: a request sent
			// earlier).
			ew.mu.Lock()
			defer ew.mu.Unlock()
			if e.at.IsZero() || took.Before(e.at) {
				e.at, e.Leader = took, jsstore.ServerSite(ss.Leader)
				e.AtS = e.FromS + took.Sub(e.from).Seconds()
				e.ElectedMS = ms(took.Sub(e.from))
				e.FoundMS = ms(time.Since(took))
			}
		})
	}
}

// heldWait is one held message's wait for its partition's election.
type heldWait struct {
	room      string
	ack, last time.Time // acknowledged held; delivered to every other member
	delivered bool
}

// measureElections attributes every message acknowledged held to the
// election it waited for and measures, per election and over all, the
// time from that election to its delivery to every other member (see
// Report.HeldDeliveryAfterElectionMSMax).
//
// A held message waited for the elections of its partition found after
// its acknowledgment; of those, it is counted against the latest one
// before its delivery (a second fault may have taken the leader the first
// election found before the message was placed: it then waited for the
// next one), or, if it was delivered before any (the drill found the
// leader a few ms late), against the first. A message held after its
// partition's last election found (its site did not know yet that the
// partition answered again) waited for none: it is counted in
// HeldAfterElection, and a held message in a partition no fault hit in
// HeldUnwatched.
func (r *Report) measureElections(w *workload, recs []sendRecord, elections []*Election) {
	r.Elections = elections
	r.HeldDeliveryAfterElectionMSMax, r.HeldDeliveryAfterElectionMSP50 = -1, -1
	if len(elections) == 0 {
		return
	}
	byPartition := map[string][]*Election{}
	for _, e := range elections {
		if !e.at.IsZero() {
			byPartition[e.Partition] = append(byPartition[e.Partition], e)
		}
	}
	for _, es := range byPartition {
		slices.SortFunc(es, func(a, b *Election) int { return a.at.Compare(b.at) })
	}
	partitionOf := map[string]string{}
	for _, rm := range w.rooms {
		partitionOf[rm.id] = w.roomStream(rm)
	}
	for _, e := range elections {
		for _, p := range partitionOf {
			if p == e.Partition {
				e.Rooms++
			}
		}
	}
	idx := deliveryIndex(w)
	lags := map[*Election][]float64{}
	var all []float64
	for _, rec := range recs {
		if !rec.acked || !rec.held {
			continue
		}
		es := byPartition[partitionOf[rec.room]]
		if len(es) == 0 {
			r.HeldUnwatched++
			continue
		}
		hw := heldWait{room: rec.room, ack: rec.end}
		hw.last, hw.delivered = idx.lastDelivery(w.users[rec.user], rec.room, rec.clientID, rec.end)
		e := waitedFor(es, hw)
		if e == nil {
			r.HeldAfterElection++
			continue
		}
		e.Held++
		r.HeldWaitedForElection++
		if !hw.delivered {
			e.HeldUndelivered++
			continue
		}
		lag := ms(hw.last.Sub(e.at))
		lags[e] = append(lags[e], lag)
		all = append(all, lag)
		if lag >= e.HeldDeliveryMSMax || e.HeldWorst == "" {
			e.HeldDeliveryMSMax, e.HeldWorst = lag, rec.room
		}
	}
	for _, e := range elections {
		if len(lags[e]) == 0 {
			e.HeldDeliveryMSP50, e.HeldDeliveryMSMax = -1, -1
			continue
		}
		e.HeldDeliveryMSP50 = latency(lags[e]).P50
	}
	if len(all) > 0 {
		l := latency(all)
		r.HeldDeliveryAfterElectionMSP50, r.HeldDeliveryAfterElectionMSMax = l.P50, l.Max
	}
}

// waitedFor returns the election (of es, sorted by time) that held
// message hw waited for, or nil when it was held after the last of them.
func waitedFor(es []*Election, hw heldWait) *Election {
	var first, latest *Election
	for _, e := range es {
		if e.at.Before(hw.ack) {
			continue
		}
		if first == nil {
			first = e
		}
		if hw.delivered && !e.at.After(hw.last) {
			latest = e
		}
	}
	if latest != nil {
		return latest
	}
	return first
}

// electionsText is the summary's lines on the elections after the faults
// and the held messages' delivery after them.
func (r *Report) electionsText() string {
	if len(r.Elections) == 0 {
		return ""
	}
	var b strings.Builder
	fault := 0
	var parts []string
	flush := func() {
		if len(parts) > 0 {
			fmt.Fprintf(&b, "    after fault %d: %s\n", fault, strings.Join(parts, "; "))
		}
		parts = nil
	}
	fmt.Fprintf(&b, "  partitions led again (the drill asks each one's leader every %s):\n", electionPollEvery)
	for _, e := range r.Elections {
		if e.Fault != fault {
			flush()
			fault = e.Fault
		}
		p := e.Partition + " "
		switch {
		case e.ElectedMS < 0:
			p += "no leader found"
		default:
			p += fmt.Sprintf("by site %s in %s", e.Leader, sec(e.ElectedMS))
		}
		if e.Held > 0 {
			p += fmt.Sprintf(", %d held", e.Held)
			if e.HeldDeliveryMSMax >= 0 {
				p += " delivered max " + waitText(e.HeldDeliveryMSMax) + " after it"
			}
			if e.HeldUndelivered > 0 {
				p += fmt.Sprintf(" (%d not delivered to everyone)", e.HeldUndelivered)
			}
		}
		parts = append(parts, p)
	}
	flush()
	if r.HeldDeliveryAfterElectionMSMax >= 0 {
		fmt.Fprintf(&b, "  held messages delivered to every other member after their partition's new leader was found: p50 %s, max %s (%d held waited for an election",
			waitText(r.HeldDeliveryAfterElectionMSP50), waitText(r.HeldDeliveryAfterElectionMSMax), r.HeldWaitedForElection)
	} else {
		fmt.Fprintf(&b, "  no held message was delivered after its partition's new leader was found (%d held waited for an election", r.HeldWaitedForElection)
	}
	fmt.Fprintf(&b, ", %d were held after it, %d in partitions no fault hit)\n", r.HeldAfterElection, r.HeldUnwatched)
	return b.String()
}
