package drill

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// Report is the outcome of one scenario: the checker's verdict and what
// the drill measured. Its JSON form is the `--json` document of a
// one-scenario run.
type Report struct {
	Scenario string `json:"scenario"`
	// Site is the site that was burned (fire, return) or cut off
	// (partition); empty for rolling, upgrade, latency and none.
	Site  string `json:"site,omitempty"`
	Users int    `json:"users"`
	// Devices is how many idle devices the users had beside their own
	// (Config.Devices).
	Devices     int     `json:"devices"`
	Rooms       int     `json:"rooms"`
	RatePerUser float64 `json:"rate_per_user"`
	// Times are seconds since the load started.
	DurationS float64 `json:"duration_s"`
	FaultAtS  float64 `json:"fault_at_s"`
	// DrainMS is how long the sends in flight when the load stopped took
	// to be answered (or to give up, at Config.Drain).
	DrainMS float64 `json:"drain_ms"`
	// ReturnAtS is when the site came back: a cut-off site reconnected
	// (partition: under load, or after the load once the other two were
	// checked) or a burned site restarted on its old disk (fire with
	// return, after the load once the other two were checked).
	ReturnAtS float64 `json:"return_at_s,omitempty"`
	// CatchUpMS is how long from its return after the load the site took
	// to pass the check against the other two (same histories, same unread
	// counts); a partition that heals under load reports the fault's
	// ready_ms and caught_up_ms instead.
	CatchUpMS float64 `json:"catch_up_ms,omitempty"`
	// CutStats (partition) is how the cut-off site noticed its cut, and
	// HealStats (partition healed under load) what the heal cost the
	// majority's clients. Their fields sit at the top level of the JSON
	// (cut, cut_refuse_ms, heal_gap_ms_max, …); nil leaves them out.
	*CutStats
	*HealStats
	// LeadersAtFault maps each stream to the site leading it just before
	// the first fault.
	LeadersAtFault map[string]string `json:"leaders_at_fault,omitempty"`
	// UnhealthyAtFault lists, per stream, the replicas that were offline or
	// behind just before the first fault: a stream with one there can lose
	// its quorum when a second replica's site burns.
	UnhealthyAtFault map[string][]string `json:"unhealthy_replicas_at_fault,omitempty"`
	// Faults lists every fault the drill caused, in order, with the site's
	// return and the write gap each caused.
	Faults []*Fault `json:"faults,omitempty"`
	// Injected is the route latency the proxies added, if any.
	Injected *InjectedLatency `json:"injected_latency,omitempty"`
	// LatencyPhases (latency, none) compares send latency over parts of the
	// run, overall and by the sender's preferred site.
	LatencyPhases []LatencyPhase `json:"latency_phases,omitempty"`

	Verdict
	// MajorityCheck is the verdict against the other two sites taken while
	// the third was still cut off or down, when it came back afterwards (the
	// top-level verdict then covers all three). For a partition it proves
	// the cut-off site acknowledged nothing the majority does not hold.
	MajorityCheck *Verdict `json:"majority_check,omitempty"`

	Sends int `json:"sends"`
	// SendFailures counts sends that ended unacknowledged, by error.
	SendFailures map[string]int `json:"send_failures,omitempty"`
	ReadMarks    int64          `json:"read_marks"`
	ReadMarkErrs int64          `json:"read_mark_errors"`

	// WriteGapMSP50 and WriteGapMSMax are over every client: the time from
	// the fault to the client's first acknowledged send after it. With
	// several faults (return, rolling) they are the worst fault's; with
	// none (latency, none) they are zero.
	WriteGapMSP50 float64 `json:"write_gap_ms_p50"`
	WriteGapMSMax float64 `json:"write_gap_ms_max"`
	// ReconnectMSP50 and ReconnectMSMax are the worst fault's: from the
	// fault until the devices connected to its site were live again (see
	// Fault.Reconnect).
	ReconnectMSP50 float64 `json:"reconnect_ms_p50"`
	ReconnectMSMax float64 `json:"reconnect_ms_max"`
	// The rest of the gap measures are for the first fault.
	// GapSurvivors is over the clients whose preferred site survived,
	// GapBurned over those of the burned (or cut off) site.
	GapSurvivors GapStats `json:"write_gap_survivors"`
	GapBurned    GapStats `json:"write_gap_burned"`
	// GapRooms is the same measure per room (fault to the room's first
	// acknowledged message after it), split by whether the room's stream
	// was led by the burned site; RoomGaps lists every room.
	GapRooms         GapStats  `json:"room_gap"`
	GapRoomsLedThere GapStats  `json:"room_gap_leader_burned"`
	GapRoomsLedElse  GapStats  `json:"room_gap_leader_survived"`
	RoomGaps         []RoomGap `json:"room_gaps"`

	// What a user waits for after the first fault, however often they
	// type. SendGapMSMax is the longest any send waited for its
	// acknowledgment: from its start, or from the fault for a send in
	// flight at it (a send never acknowledged counts until the drill
	// stopped waiting for it). DeliveryGapMSMax is the longest any
	// acknowledged message took from its acknowledgment, or from the fault
	// if later, to its delivery to the last of the room's other members
	// (over the messages every other member was delivered). Only waits
	// still running at the first fault or later count; with several faults
	// (return, rolling) they cover all of them, from the first; with none
	// (latency, none) they cover the whole load.
	SendGapMSMax     float64 `json:"send_gap_ms_max"`
	DeliveryGapMSMax float64 `json:"delivery_gap_ms_max"`
	// SendGap and DeliveryGap break them down by sending client and by
	// room.
	SendGap     Waits `json:"send_gap"`
	DeliveryGap Waits `json:"delivery_gap"`

	// Elections lists, for every fault that killed a site, each partition
	// it led (every partition, for a fault that left no quorum) and when
	// the drill found it led again (elections.go).
	Elections []*Election `json:"elections,omitempty"`
	// HeldDeliveryAfterElectionMSMax and P50 are over the messages
	// acknowledged held before their partition's new leader was found:
	// from that election (see measureElections for which one, when there
	// were several) to the message's delivery to the last of the room's
	// other members. -1 when there was none (no fault, or no election
	// watched).
	HeldDeliveryAfterElectionMSP50 float64 `json:"held_delivery_after_election_ms_p50"`
	HeldDeliveryAfterElectionMSMax float64 `json:"held_delivery_after_election_ms_max"`
	// HeldWaitedForElection counts those messages; HeldAfterElection the
	// messages held after their partition's last election found (their
	// site had not seen it answer yet); HeldUnwatched those held in a
	// partition whose elections were not watched.
	HeldWaitedForElection int `json:"held_waited_for_election"`
	HeldAfterElection     int `json:"held_after_election"`
	HeldUnwatched         int `json:"held_unwatched"`

	// Presence (rolling, upgrade) is what the users' followers were told
	// of the users' presence: with every user connected throughout, an
	// "offline" is a flap.
	Presence *PresenceStats `json:"presence,omitempty"`
	// SiteLogs (rolling, upgrade) is what each site's salamander processes
	// warned of from the first restart until the check ended.
	SiteLogs []SiteLog `json:"site_logs,omitempty"`

	// MergeFire (fire-merge) says what the scenario found and did when.
	MergeFire *MergeFire `json:"merge_fire,omitempty"`

	// LatencyMS is the send latency (start to acknowledgement, retries
	// included) over the whole run.
	LatencyMS Latency `json:"latency_ms"`
	// Timeline has one entry per second of the run.
	Timeline []Second `json:"timeline"`

	// OK is false when anything acknowledged was lost, duplicated or
	// reordered, or the sites did not converge; Failures says why.
	OK       bool     `json:"ok"`
	Failures []string `json:"failures,omitempty"`
}

// Fault kinds.
const (
	FaultKill = "kill" // SIGKILL: a fire
	FaultTerm = "term" // SIGTERM: a planned restart
	// FaultUpgrade is a planned restart (SIGTERM) on another binary.
	FaultUpgrade = "upgrade"
	FaultCut     = "cut" // routes cut: a partition
)

// Fault is one fault the drill caused and, if the site came back during
// the scenario, how its return went. Times are seconds since the load
// started.
type Fault struct {
	Kind string `json:"kind"`
	Site string `json:"site"`
	// Led is how many streams the site led just before (-1: unknown).
	Led int     `json:"led_streams"`
	AtS float64 `json:"at_s"`
	// DownMS (term, upgrade) is how long the site took to stop after
	// SIGTERM.
	DownMS float64 `json:"stopped_ms,omitempty"`
	// BackAtS is when the site was restarted or reconnected (0: it was not).
	BackAtS float64 `json:"back_at_s,omitempty"`
	// Disk is the disk the site was restarted with: "old" or "empty".
	Disk string `json:"disk,omitempty"`
	// ReadyMS is from the restart to the site's /readyz answering 200.
	ReadyMS float64 `json:"ready_ms,omitempty"`
	// CaughtUpMS is from the restart (or the heal) until the site's read
	// model had applied every stream up to the log's last seq as a survivor
	// reported it (rolling: and every stream replica was current; fire with
	// return, and partition healed after the load: until the check of all
	// three sites passed).
	CaughtUpMS float64 `json:"caught_up_ms,omitempty"`
	// ComparedWith is the survivor whose room histories were compared with
	// the returned site's right after it caught up, up to the newest seq
	// both held; DivergedRooms counts rooms that differed; ComparedMS is
	// from the restart to the end of that comparison.
	ComparedWith  string  `json:"compared_with,omitempty"`
	DivergedRooms int     `json:"diverged_rooms"`
	ComparedMS    float64 `json:"compared_ms,omitempty"`
	// ReplicasCurrentMS (return) is from the restart until no stream
	// listed a replica offline or behind (the site's NATS store caught up).
	ReplicasCurrentMS float64 `json:"replicas_current_ms,omitempty"`
	// WriteGap is over every client, WriteGapOthers over the clients of
	// the other sites: from the fault to the client's first acknowledged
	// send after it.
	WriteGap       GapStats `json:"write_gap"`
	WriteGapOthers GapStats `json:"write_gap_other_sites"`
	// Of the sends started from the fault until the next one (or the end
	// of the load): how many took over a second to be acknowledged, the
	// slowest's latency, and when it started, in seconds after the fault
	// (a stall may come with the site's return rather than its loss).
	SlowSends     int     `json:"slow_sends"`
	SlowestMS     float64 `json:"slowest_ms"`
	SlowestAfterS float64 `json:"slowest_started_after_s"`
	// Held counts the sends acknowledged held from the fault until the
	// next one (or the end of the load).
	Held int `json:"held"`
	// Reconnect is how soon the devices connected to the site when the
	// fault struck were live again, at whatever site.
	Reconnect ReconnectStats `json:"reconnect"`
	// Before and After (upgrade) are the binaries the site ran before the
	// restart and after it.
	Before *BinaryInfo `json:"before,omitempty"`
	After  *BinaryInfo `json:"after,omitempty"`
	// NotReady (term, upgrade) is what the site said kept it from being
	// ready, when it took over 2 s (GET /v1/ops/site).
	NotReady string `json:"not_ready,omitempty"`
	// ReadModel (term, upgrade) is what became of the site's read model as
	// it started again: "kept", or "rebuilt from the log: WHY" (a new
	// schema version, as the site logged it).
	ReadModel string `json:"read_model,omitempty"`

	at      time.Time
	site    int
	leaders map[string]string // the stream leaders just before (nil: unknown)
}

// InjectedLatency is the delay the route proxies added to inter-site round
// trips (half in each direction).
type InjectedLatency struct {
	RTTMS    float64 `json:"rtt_ms"`
	JitterMS float64 `json:"jitter_ms"`
	FarSite  string  `json:"far_site,omitempty"`
	FarRTTMS float64 `json:"far_rtt_ms,omitempty"`
	// FromS is when it was switched on (0: for the whole load); FarFromS
	// when the far site's latency was (latency scenario: half-way through
	// the injected time).
	FromS    float64 `json:"from_s"`
	FarFromS float64 `json:"far_from_s,omitempty"`
}

// String describes the injected latency, e.g. "RTT 2ms ± 1ms, site c 30ms".
func (l *InjectedLatency) String() string {
	s := fmt.Sprintf("route RTT +%gms ± %gms", l.RTTMS, l.JitterMS)
	if l.FarSite != "" {
		s += fmt.Sprintf(", links to site %s +%gms", l.FarSite, l.FarRTTMS)
	}
	return s
}

// LatencyPhase is the send latency of the acknowledged sends that started
// and ended within [FromS, ToS).
type LatencyPhase struct {
	Label string  `json:"label"`
	FromS float64 `json:"from_s"`
	ToS   float64 `json:"to_s"`
	Sends int     `json:"sends"`
	Latency
	// ByHomeSite splits them by the sender's preferred site.
	ByHomeSite map[string]Latency `json:"by_home_site"`
}

// GapStats summarizes write gaps over a set of clients or rooms.
type GapStats struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	MaxMS float64 `json:"max_ms"`
	// Never counts those with no acknowledged send after the fault.
	Never int `json:"never"`
}

// ReconnectStats is how soon the devices connected to a fault's site (the
// users' own subscriptions and Config.Devices more) were live again: from
// the fault to each one's next "ready" event — its new connection had
// replayed what it missed — at whatever site (a site back by then counts).
type ReconnectStats struct {
	// Devices were connected to the site when the fault struck; Back of
	// them were live again when the drill looked (after its checks).
	Devices int     `json:"devices"`
	Back    int     `json:"back"`
	P50MS   float64 `json:"p50_ms"`
	P99MS   float64 `json:"p99_ms"`
	MaxMS   float64 `json:"max_ms"`
}

// measureReconnects sets each fault's Reconnect and the worst of them.
func (r *Report) measureReconnects(w *workload, faults []*Fault) {
	for _, f := range faults {
		f.Reconnect = reconnects(w, strings.TrimRight(w.cl.URL(f.site), "/"), f.at)
		r.ReconnectMSP50 = math.Max(r.ReconnectMSP50, f.Reconnect.P50MS)
		r.ReconnectMSMax = math.Max(r.ReconnectMSMax, f.Reconnect.MaxMS)
	}
}

// reconnects measures, for a fault that struck site (its URL) at t, how
// soon the devices connected there were live again.
func reconnects(w *workload, site string, t time.Time) ReconnectStats {
	var st ReconnectStats
	var after []float64
	for _, l := range w.connLogs() {
		was, d, back := l.liveAgain(site, t)
		if !was {
			continue
		}
		st.Devices++
		if back {
			st.Back++
			after = append(after, ms(d))
		}
	}
	l := latency(after)
	st.P50MS, st.P99MS, st.MaxMS = l.P50, l.P99, l.Max
	return st
}

// text is the summary's line for s, for devices of site.
func (s ReconnectStats) text(site string) string {
	if s.Devices == 0 {
		return fmt.Sprintf("    devices connected to site %s at the fault: none\n", site)
	}
	out := fmt.Sprintf("    devices connected to site %s at the fault (%d): live again p50 %s, p99 %s, max %s", site, s.Devices,
		sec(s.P50MS), sec(s.P99MS), sec(s.MaxMS))
	if s.Back < s.Devices {
		out += fmt.Sprintf("; %d never", s.Devices-s.Back)
	}
	return out + "\n"
}

// RoomGap is one room's write gap.
type RoomGap struct {
	Room   string `json:"room"`
	Kind   string `json:"kind"`
	Stream string `json:"stream"`
	// Leader is the site that led the room's stream at the fault.
	Leader string  `json:"leader"`
	GapMS  float64 `json:"gap_ms"` // -1: no acknowledged message after the fault
	// SendGapMS and DeliveryGapMS are the room's longest send wait and
	// delivery lag after the fault (see Report.SendGapMSMax); -1: none
	// counted.
	SendGapMS     float64 `json:"send_gap_ms_max"`
	DeliveryGapMS float64 `json:"delivery_gap_ms_max"`
}

// Latency is a latency distribution in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// Second is one second of the timeline: acknowledgements received in it
// and their latencies.
type Second struct {
	T      int `json:"t"`
	Acked  int `json:"acked"`
	Failed int `json:"failed"`
	Latency
}

// measure fills the report's measurements from the send records and the
// deliveries; the write gaps are measured from each fault, the send waits
// and delivery lags from the first.
func (r *Report) measure(w *workload, recs []sendRecord, t0 time.Time, faults []*Fault) {
	r.Sends = len(recs)
	r.SendFailures = map[string]int{}
	var lat []float64
	for _, rec := range recs {
		if rec.acked {
			lat = append(lat, ms(rec.end.Sub(rec.start)))
		} else {
			r.SendFailures[rec.err]++
		}
	}
	r.LatencyMS = latency(lat)

	// Timeline.
	end := t0
	for _, rec := range recs {
		if rec.end.After(end) {
			end = rec.end
		}
	}
	n := int(end.Sub(t0)/time.Second) + 1
	per := make([][]float64, n)
	failed := make([]int, n)
	for _, rec := range recs {
		s := int(rec.end.Sub(t0) / time.Second)
		if s < 0 || s >= n {
			continue
		}
		if rec.acked {
			per[s] = append(per[s], ms(rec.end.Sub(rec.start)))
		} else {
			failed[s]++
		}
	}
	for s := range n {
		r.Timeline = append(r.Timeline, Second{T: s, Acked: len(per[s]), Failed: failed[s], Latency: latency(per[s])})
	}

	r.Faults = faults
	from := t0
	if len(faults) > 0 {
		from = faults[0].at
	}
	send, delivery := tallyWaits(w, recs, from)
	r.SendGapMSMax, r.DeliveryGapMSMax = send.maxMS, delivery.maxMS
	if len(faults) == 0 {
		r.SendGap, r.DeliveryGap = send.summary(nil, nil), delivery.summary(nil, nil)
		return
	}
	for i, f := range faults {
		until := end
		if i+1 < len(faults) {
			until = faults[i+1].at
		}
		for _, rec := range recs {
			if rec.acked && rec.held && !rec.end.Before(f.at) && (i+1 == len(faults) || rec.end.Before(faults[i+1].at)) {
				f.Held++
			}
			if !rec.acked || rec.start.Before(f.at) || !rec.start.Before(until) {
				continue
			}
			l := ms(rec.end.Sub(rec.start))
			if l > 1000 {
				f.SlowSends++
			}
			if l > f.SlowestMS {
				f.SlowestMS, f.SlowestAfterS = l, rec.start.Sub(f.at).Seconds()
			}
		}
		all, others := clientGaps(w, recs, f.at, f.site)
		f.WriteGap, f.WriteGapOthers = all, others
		r.WriteGapMSP50 = math.Max(r.WriteGapMSP50, all.P50MS)
		r.WriteGapMSMax = math.Max(r.WriteGapMSMax, all.MaxMS)
	}

	// The first fault in detail: per client by site, and per room.
	fault, burned := faults[0].at, faults[0].site
	firstAfter := func(match func(sendRecord) bool) (time.Duration, bool) {
		return firstAckAfter(recs, fault, match)
	}
	var surv, burn []float64
	var survNever, burnNever int
	for _, u := range w.users {
		if len(u.rooms) == 0 {
			continue
		}
		g, ok := firstAfter(func(rec sendRecord) bool { return rec.user == u.idx })
		isBurned := u.home == burned
		switch {
		case !ok && isBurned:
			burnNever++
		case !ok:
			survNever++
		case isBurned:
			burn = append(burn, ms(g))
		default:
			surv = append(surv, ms(g))
		}
	}
	r.GapSurvivors = gapStats(surv, survNever)
	r.GapBurned = gapStats(burn, burnNever)
	var rooms, there, elsewhere []float64
	var roomNever, thereNever, elseNever int
	ledThere := map[string]bool{}
	for _, rm := range w.rooms {
		g, ok := firstAfter(func(rec sendRecord) bool { return rec.room == rm.id })
		st := w.roomStream(rm)
		rg := RoomGap{Room: rm.id, Kind: string(rm.kind), Stream: st, Leader: r.LeadersAtFault[st], GapMS: -1,
			SendGapMS: send.rooms.of(rm.id), DeliveryGapMS: delivery.rooms.of(rm.id)}
		led := rg.Leader == faults[0].Site
		ledThere[rm.id] = led
		if ok {
			rg.GapMS = ms(g)
			rooms = append(rooms, ms(g))
			if led {
				there = append(there, ms(g))
			} else {
				elsewhere = append(elsewhere, ms(g))
			}
		} else {
			roomNever++
			if led {
				thereNever++
			} else {
				elseNever++
			}
		}
		r.RoomGaps = append(r.RoomGaps, rg)
	}
	sort.Slice(r.RoomGaps, func(i, j int) bool { return r.RoomGaps[i].GapMS > r.RoomGaps[j].GapMS })
	r.GapRooms = gapStats(rooms, roomNever)
	r.GapRoomsLedThere = gapStats(there, thereNever)
	r.GapRoomsLedElse = gapStats(elsewhere, elseNever)
	struck := map[string]bool{}
	for _, u := range w.users {
		if u.home == burned {
			struck[u.name] = true
		}
	}
	r.SendGap, r.DeliveryGap = send.summary(ledThere, struck), delivery.summary(ledThere, struck)
}

// firstAckAfter returns how long after t the first acknowledged send
// matching match ended.
func firstAckAfter(recs []sendRecord, t time.Time, match func(sendRecord) bool) (time.Duration, bool) {
	var best time.Time
	for _, rec := range recs {
		if rec.acked && !rec.end.Before(t) && match(rec) && (best.IsZero() || rec.end.Before(best)) {
			best = rec.end
		}
	}
	if best.IsZero() {
		return 0, false
	}
	return best.Sub(t), true
}

// clientGaps measures every client's write gap from t: over all clients,
// and over those whose preferred site is not site.
func clientGaps(w *workload, recs []sendRecord, t time.Time, site int) (all, others GapStats) {
	var a, o []float64
	var aNever, oNever int
	for _, u := range w.users {
		if len(u.rooms) == 0 {
			continue
		}
		g, ok := firstAckAfter(recs, t, func(rec sendRecord) bool { return rec.user == u.idx })
		if !ok {
			aNever++
			if u.home != site {
				oNever++
			}
			continue
		}
		a = append(a, ms(g))
		if u.home != site {
			o = append(o, ms(g))
		}
	}
	return gapStats(a, aNever), gapStats(o, oNever)
}

// judge sets OK and Failures from the verdicts.
func (r *Report) judge() {
	vs := []Verdict{r.Verdict}
	if r.MajorityCheck != nil {
		vs = append(vs, *r.MajorityCheck)
	}
	for _, v := range vs {
		label := "sites " + strings.Join(v.CheckedSites, ",")
		if v.Lost > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d acknowledged messages lost", label, v.Lost))
		}
		if v.Duplicated > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d messages duplicated", label, v.Duplicated))
		}
		if v.Reordered > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d messages reordered", label, v.Reordered))
		}
		if !v.Converged {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: did not converge", label))
		}
		if v.MissingDeliveries > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d times a device was never delivered a message the sites hold", label, v.MissingDeliveries))
		}
		if v.Refused > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d sends refused or never served", label, v.Refused))
		}
		if v.Altered > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d messages held with another sender or text than sent", label, v.Altered))
		}
		if v.Foreign > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("%s: %d messages written by no send (copies under another client id?)", label, v.Foreign))
		}
	}
	if r.Abandoned > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d sends still unacknowledged when the drain ended, %s after the load stopped", r.Abandoned, sec(r.DrainMS)))
	}
	for i, f := range r.Faults {
		if n := f.Reconnect.Devices - f.Reconnect.Back; n > 0 {
			r.Failures = append(r.Failures, fmt.Sprintf("fault %d: %d of the %d devices connected to site %s were never live again",
				i+1, n, f.Reconnect.Devices, f.Site))
		}
		if f.DivergedRooms > 0 {
			r.Converged = false
			r.Failures = append(r.Failures, fmt.Sprintf("fault %d: site %s back on %s disk diverged from site %s in %d rooms",
				i+1, f.Site, f.Disk, f.ComparedWith, f.DivergedRooms))
		}
	}
	if p := r.Presence; p != nil && p.Flaps > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d times a follower was told a user went offline while the user stayed connected (%d users): presence flapped",
			p.Flaps, p.Users))
	}
	if p := r.Presence; p != nil && p.OfflineAnswers > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d times a serving site answered that a connected user was offline (%d users, GET /v1/presence)",
			p.OfflineAnswers, p.OfflineAnswerUsers))
	}
	if r.CutStats != nil && r.CutWritesAcked > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("site %s acknowledged %d probe writes while cut off from the majority",
			r.Site, r.CutWritesAcked))
	}
	if r.Acked == 0 {
		r.Failures = append(r.Failures, "no send was acknowledged")
	}
	r.OK = len(r.Failures) == 0
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	switch r.Scenario {
	case "fire":
		fmt.Fprintf(&b, "salamander drill: fire — site %s burned (SIGKILL) at %.1fs of a %.1fs load\n", r.Site, r.FaultAtS, r.DurationS)
	case "partition":
		fmt.Fprintf(&b, "salamander drill: partition — site %s cut off at %.1fs of a %.1fs load", r.Site, r.FaultAtS, r.DurationS)
		if r.HealStats != nil {
			fmt.Fprintf(&b, "; links healed at %.1fs, under load", r.HealAtS)
		}
		b.WriteString("\n")
	case "return":
		if sites := r.faultSites(); len(sites) > 1 {
			fmt.Fprintf(&b, "salamander drill: return — sites %s burned (SIGKILL) in turn, each brought back under load, in a %.1fs load\n",
				strings.Join(sites, ", "), r.DurationS)
		} else {
			fmt.Fprintf(&b, "salamander drill: return — site %s burned (SIGKILL) and brought back under load %d times in a %.1fs load\n",
				r.Site, len(r.Faults), r.DurationS)
		}
	case "fire-merge":
		second, when := "?", "during its merge"
		if len(r.Faults) > 1 {
			second = r.Faults[1].Site
		}
		if r.MergeFire == nil || !r.MergeFire.DuringMerge {
			when = "NOT during a merge"
		}
		fmt.Fprintf(&b, "salamander drill: fire-merge — site %s burned (SIGKILL) at %.1fs, then site %s, leading the standby of a partition %s led, %s; both brought back under load, in a %.1fs load\n",
			r.Site, r.FaultAtS, second, r.Site, when, r.DurationS)
	case "rolling":
		fmt.Fprintf(&b, "salamander drill: rolling — every site restarted in turn (SIGTERM) during a %.1fs load\n", r.DurationS)
	case "upgrade":
		fmt.Fprintf(&b, "salamander drill: upgrade — every site restarted in turn (SIGTERM) on the new binary during a %.1fs load\n", r.DurationS)
	case "latency":
		fmt.Fprintf(&b, "salamander drill: latency — %s from %.1fs of a %.1fs load; no fault\n", r.Injected, r.Injected.FromS, r.DurationS)
		if r.Injected.FarFromS > 0 {
			fmt.Fprintf(&b, "  (the far site's latency from %.1fs)\n", r.Injected.FarFromS)
		}
	default:
		fmt.Fprintf(&b, "salamander drill: %s — a %.1fs load, no fault\n", r.Scenario, r.DurationS)
	}
	fmt.Fprintf(&b, "  load: %d users in %d rooms, %.2g msg/s each; %d sends, %d read markers set (%d failed)\n",
		r.Users, r.Rooms, r.RatePerUser, r.Sends, r.ReadMarks, r.ReadMarkErrs)
	if r.Devices > 0 {
		fmt.Fprintf(&b, "  devices: each user's own and %d idle ones more, live over the sites\n", r.Devices)
	}
	if r.Injected != nil && r.Scenario != "latency" {
		fmt.Fprintf(&b, "  injected for the whole load: %s\n", r.Injected)
	}
	if r.Site != "" {
		led := 0
		for _, s := range r.LeadersAtFault {
			if s == r.Site {
				led++
			}
		}
		fmt.Fprintf(&b, "  site %s led %d of %d streams at the fault\n", r.Site, led, len(r.LeadersAtFault))
		if len(r.UnhealthyAtFault) > 0 {
			var parts []string
			for st, reps := range r.UnhealthyAtFault {
				parts = append(parts, st+": "+strings.Join(reps, ","))
			}
			sort.Strings(parts)
			fmt.Fprintf(&b, "  replicas offline or behind just before the fault: %s\n", strings.Join(parts, "; "))
		}
	}
	if r.Scenario == "return" || r.Scenario == "rolling" || r.Scenario == "upgrade" || r.Scenario == "fire-merge" {
		for i, f := range r.Faults {
			b.WriteString(f.text(i + 1))
		}
	}
	if r.Presence != nil {
		b.WriteString(r.Presence.text())
	}
	b.WriteString(siteLogsText(r.SiteLogs))
	if r.MergeFire != nil {
		b.WriteString(r.MergeFire.text(r))
	}
	if r.CutStats != nil {
		b.WriteString(r.CutStats.text(r.Site))
	}
	if r.HealStats != nil {
		b.WriteString(r.HealStats.text(r.Site, r.Faults[0]))
	}
	if r.MajorityCheck != nil {
		m := r.MajorityCheck
		fmt.Fprintf(&b, "  before site %s returned (sites %s): acked %d, lost %d, duplicated %d, reordered %d, converged %v\n",
			r.Site, strings.Join(m.CheckedSites, ","), m.Acked, m.Lost, m.Duplicated, m.Reordered, m.Converged)
		fmt.Fprintf(&b, "  site %s %s at %.1fs; caught up and checked in %.0f ms\n", r.Site,
			map[string]string{"fire": "restarted on its old disk", "partition": "reconnected"}[r.Scenario], r.ReturnAtS, r.CatchUpMS)
	}
	fmt.Fprintf(&b, "  checked at sites %s: acked %d (held for their place %d), lost %d, duplicated %d, reordered %d, missing deliveries %d, converged %v\n",
		strings.Join(r.CheckedSites, ","), r.Acked, r.Held, r.Lost, r.Duplicated, r.Reordered, r.MissingDeliveries, r.Converged)
	if r.HeldPlaceWaitMS > 0 {
		fmt.Fprintf(&b, "  the check waited %s for held messages' places once the sites agreed on the rest\n", sec(r.HeldPlaceWaitMS))
	}
	fmt.Fprintf(&b, "  unacknowledged when the drill stopped waiting: %d (committed once %d, not at all %d); sends in flight at the load's end answered within %s\n",
		r.Unacked, r.UnackedCommitted, r.UnackedAbsent, sec(r.DrainMS))
	switch {
	case len(r.Faults) == 0:
	case r.Scenario == "rolling" || r.Scenario == "upgrade":
		fmt.Fprintf(&b, "  write gap, restart to first acked send, worst restart: all clients p50 %s max %s\n", sec(r.WriteGapMSP50), sec(r.WriteGapMSMax))
	default:
		label := "fault"
		if len(r.Faults) > 1 {
			fmt.Fprintf(&b, "  write gap, fault to first acked send, worst fault: all clients p50 %s max %s\n", sec(r.WriteGapMSP50), sec(r.WriteGapMSMax))
			label = "first fault"
		}
		fmt.Fprintf(&b, "  write gap, %s to first acked send: all clients p50 %s max %s\n", label, sec(r.Faults[0].WriteGap.P50MS), sec(r.Faults[0].WriteGap.MaxMS))
		fmt.Fprintf(&b, "    clients of surviving sites (%d): p50 %s max %s%s\n", r.GapSurvivors.N, sec(r.GapSurvivors.P50MS), sec(r.GapSurvivors.MaxMS), never(r.GapSurvivors))
		fmt.Fprintf(&b, "    clients of site %s (%d): p50 %s max %s%s\n", r.Site, r.GapBurned.N, sec(r.GapBurned.P50MS), sec(r.GapBurned.MaxMS), never(r.GapBurned))
		fmt.Fprintf(&b, "    rooms (%d): p50 %s max %s%s\n", r.GapRooms.N, sec(r.GapRooms.P50MS), sec(r.GapRooms.MaxMS), never(r.GapRooms))
		fmt.Fprintf(&b, "      whose stream site %s led (%d): p50 %s max %s; led elsewhere (%d): p50 %s max %s\n", r.Site,
			r.GapRoomsLedThere.N, sec(r.GapRoomsLedThere.P50MS), sec(r.GapRoomsLedThere.MaxMS),
			r.GapRoomsLedElse.N, sec(r.GapRoomsLedElse.P50MS), sec(r.GapRoomsLedElse.MaxMS))
		if len(r.Faults) == 1 {
			b.WriteString(r.Faults[0].Reconnect.text(r.Site))
		}
	}
	b.WriteString(r.waitsText())
	b.WriteString(r.electionsText())
	for _, p := range r.LatencyPhases {
		fmt.Fprintf(&b, "  send latency, %s (%.0f–%.0fs, %d sends): p50 %.1f ms, p99 %.1f ms, max %.0f ms\n",
			p.Label, p.FromS, p.ToS, p.Sends, p.P50, p.P99, p.Max)
		sites := make([]string, 0, len(p.ByHomeSite))
		for s := range p.ByHomeSite {
			sites = append(sites, s)
		}
		sort.Strings(sites)
		var parts []string
		for _, s := range sites {
			l := p.ByHomeSite[s]
			parts = append(parts, fmt.Sprintf("%s %.1f/%.1f", s, l.P50, l.P99))
		}
		fmt.Fprintf(&b, "    by the sender's site, p50/p99 ms: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "  send latency: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n", r.LatencyMS.P50, r.LatencyMS.P99, r.LatencyMS.Max)
	if len(r.SendFailures) > 0 {
		keys := make([]string, 0, len(r.SendFailures))
		for k := range r.SendFailures {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(&b, "  unacknowledged sends: %d × %s\n", r.SendFailures[k], k)
		}
	}
	problems := r.Problems
	if r.MajorityCheck != nil {
		problems = append(slices.Clone(r.MajorityCheck.Problems), problems...)
	}
	for i, p := range problems {
		if i == 10 {
			fmt.Fprintf(&b, "  … %d more problems in the JSON report\n", len(problems)-i)
			break
		}
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	if r.OK {
		b.WriteString("  PASS: nothing acknowledged was lost, duplicated or reordered; the sites converged\n")
	} else {
		fmt.Fprintf(&b, "  FAIL: %s\n", strings.Join(r.Failures, "; "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// faultSites lists the sites the faults struck, each once, in order.
func (r *Report) faultSites() []string {
	var out []string
	for _, f := range r.Faults {
		if !slices.Contains(out, f.Site) {
			out = append(out, f.Site)
		}
	}
	return out
}

// text is fault number n's line(s) of the summary.
func (f *Fault) text(n int) string {
	var b strings.Builder
	switch f.Kind {
	case FaultTerm, FaultUpgrade:
		b.WriteString(f.restartLine(n))
	default:
		fmt.Fprintf(&b, "  fire %d: site %s SIGKILLed at %.1fs, restarted at %.1fs on %s disk: ready in %s, caught up in %s\n",
			n, f.Site, f.AtS, f.BackAtS, map[string]string{DiskOld: "its old", DiskEmpty: "an empty"}[f.Disk], sec(f.ReadyMS), sec(f.CaughtUpMS))
		if f.ComparedWith != "" {
			fmt.Fprintf(&b, "    histories compared with site %s at %s: %d rooms diverged", f.ComparedWith, sec(f.ComparedMS), f.DivergedRooms)
			if f.ReplicasCurrentMS > 0 {
				fmt.Fprintf(&b, "; every stream replica current at %s", sec(f.ReplicasCurrentMS))
			}
			b.WriteString("\n")
		}
	}
	fmt.Fprintf(&b, "    write gap: all clients p50 %s max %s%s; clients of other sites p50 %s max %s%s\n",
		sec(f.WriteGap.P50MS), sec(f.WriteGap.MaxMS), never(f.WriteGap), sec(f.WriteGapOthers.P50MS), sec(f.WriteGapOthers.MaxMS), never(f.WriteGapOthers))
	led := "unknown"
	if f.Led >= 0 {
		led = fmt.Sprint(f.Led)
	}
	fmt.Fprintf(&b, "    streams site %s led: %s; sends started until the next fault: %d slower than 1 s, slowest %s (started %.1fs after the fault); %d acknowledged held\n",
		f.Site, led, f.SlowSends, sec(f.SlowestMS), f.SlowestAfterS, f.Held)
	b.WriteString(f.Reconnect.text(f.Site))
	return b.String()
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes a self-contained HTML page: the summary and an inline
// SVG timeline of acknowledged sends per second and p99 latency, with the
// faults and returns marked.
func (r *Report) WriteHTML(w io.Writer) error {
	sec, err := r.htmlSection()
	if err != nil {
		return err
	}
	return htmlTmpl.Execute(w, page{Title: r.Scenario, OK: r.OK, Sections: []section{sec}})
}

// page and section are what the HTML template renders.
type page struct {
	Title    string
	OK       bool
	Summary  string // the sequence's totals, when there are several sections
	Sections []section
}

type section struct {
	R       *Report
	Summary string
	Chart   template.HTML
}

func (r *Report) htmlSection() (section, error) {
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		return section{}, err
	}
	return section{R: r, Summary: text.String(), Chart: template.HTML(r.svg())}, nil
}

// svg draws the timeline. Everything in it is numbers the drill computed.
func (r *Report) svg() string {
	const W, H, L, R, T, B = 900.0, 320.0, 60.0, 70.0, 20.0, 40.0
	pw, ph := W-L-R, H-T-B
	n := max(len(r.Timeline), int(math.Ceil(r.ReturnAtS)), int(math.Ceil(r.DurationS)), 1)
	for _, f := range r.Faults {
		n = max(n, int(math.Ceil(f.BackAtS)))
	}
	maxRate, maxLat := 1.0, 1.0
	for _, s := range r.Timeline {
		maxRate = math.Max(maxRate, float64(s.Acked))
		maxLat = math.Max(maxLat, s.P99)
	}
	maxRate, maxLat = niceCeil(maxRate), niceCeil(maxLat)
	x := func(t float64) float64 { return L + pw*t/float64(n) }
	yRate := func(v float64) float64 { return T + ph - ph*v/maxRate }
	yLat := func(v float64) float64 { return T + ph - ph*v/maxLat }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" font-family="sans-serif" font-size="11">`, W, H, W, H)
	fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="%.0f" height="%.0f" fill="#fafafa" stroke="#ccc"/>`, L, T, pw, ph)
	for i := 0; i <= 4; i++ {
		y := T + ph*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#eee"/>`, L, L+pw, y, y)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" text-anchor="end" fill="#1565c0">%.0f</text>`, L-6, y+4, maxRate*(1-float64(i)/4))
		fmt.Fprintf(&b, `<text x="%.0f" y="%.1f" fill="#c62828">%.0f</text>`, L+pw+6, y+4, maxLat*(1-float64(i)/4))
	}
	step := max(1, n/15)
	for t := 0; t <= n; t += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" text-anchor="middle">%ds</text>`, x(float64(t)), T+ph+16, t)
	}
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" fill="#1565c0">acked sends/s</text>`, L, T-6)
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="end" fill="#c62828">p99 latency (ms)</text>`, L+pw, T-6)
	var rate, lat []string
	for _, s := range r.Timeline {
		xm := x(float64(s.T) + 0.5)
		rate = append(rate, fmt.Sprintf("%.1f,%.1f", xm, yRate(float64(s.Acked))))
		lat = append(lat, fmt.Sprintf("%.1f,%.1f", xm, yLat(s.P99)))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1565c0" stroke-width="2" points="%s"/>`, strings.Join(rate, " "))
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#c62828" stroke-width="1.5" stroke-dasharray="4 2" points="%s"/>`, strings.Join(lat, " "))
	mark := func(t float64, label, color string) {
		if t <= 0 || t > float64(n) {
			return
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="%s" stroke-width="2"/>`, x(t), x(t), T, T+ph, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.0f" fill="%s">%s</text>`, x(t)+4, T+14, color, template.HTMLEscapeString(label))
	}
	for _, f := range r.Faults {
		label := map[string]string{FaultKill: "fire: site " + f.Site + " killed", FaultTerm: "site " + f.Site + " restarting",
			FaultUpgrade: "site " + f.Site + " upgrading",
			FaultCut:     "site " + f.Site + " cut off"}[f.Kind]
		if f.Kind == FaultCut && r.CutStats != nil {
			label += " (" + string(r.Cut) + ")"
		}
		mark(f.AtS, label, "#e65100")
		back := "site " + f.Site + " back"
		if f.Kind == FaultCut {
			back = "links healed"
		}
		switch {
		case f.Kind == FaultUpgrade:
			back += ", upgraded"
		case f.Disk != "":
			back += " (" + f.Disk + " disk)"
		}
		mark(f.BackAtS, back, "#2e7d32")
	}
	if r.Injected != nil && r.Injected.FromS > 0 {
		mark(r.Injected.FromS, "latency injected", "#6a1b9a")
		mark(r.Injected.FarFromS, "far site's latency", "#6a1b9a")
	}
	mark(r.DurationS, "load stops", "#555")
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">seconds since the load started</text>`, L+pw/2, H-6)
	b.WriteString(`</svg>`)
	return b.String()
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Salamander drill: {{.Title}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:960px;color:#222}
h1{font-size:1.4em} h2{font-size:1.2em} .ok{color:#2e7d32} .fail{color:#c62828}
pre{background:#f5f5f5;padding:1em;overflow-x:auto;font-size:12px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
</style></head><body>
<h1>Salamander drill: {{.Title}} —
{{if .OK}}<span class="ok">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h1>
{{with .Summary}}<pre>{{.}}</pre>{{end}}
{{range .Sections}}
<h2>Scenario {{.R.Scenario}}{{with .R.Site}}, site {{.}}{{end}} —
{{if .R.OK}}<span class="ok">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h2>
<p>Acknowledged {{.R.Acked}}, lost {{.R.Lost}}, duplicated {{.R.Duplicated}}, reordered {{.R.Reordered}},
converged {{.R.Converged}}. Write gap p50 {{printf "%.0f" .R.WriteGapMSP50}} ms, max {{printf "%.0f" .R.WriteGapMSMax}} ms.
{{if .R.Faults}}Devices of the struck site live again: p50 {{printf "%.0f" .R.ReconnectMSP50}} ms, max {{printf "%.0f" .R.ReconnectMSMax}} ms.{{end}}
Longest send wait {{printf "%.0f" .R.SendGapMSMax}} ms, delivery lag {{printf "%.0f" .R.DeliveryGapMSMax}} ms.</p>
{{.Chart}}
<h3>Summary</h3>
<pre>{{.Summary}}</pre>
{{if .R.RoomGaps}}<h3>Rooms, longest write gap after the first fault first</h3>
<table><tr><th>room</th><th>kind</th><th>stream</th><th>its leader at the fault</th><th>gap (ms)</th><th>longest send wait (ms)</th><th>longest delivery lag (ms)</th></tr>
{{range .R.RoomGaps}}<tr><td>{{.Room}}</td><td>{{.Kind}}</td><td>{{.Stream}}</td><td>{{.Leader}}</td><td>{{printf "%.0f" .GapMS}}</td><td>{{printf "%.0f" .SendGapMS}}</td><td>{{printf "%.0f" .DeliveryGapMS}}</td></tr>
{{end}}</table>{{end}}
{{end}}
</body></html>
`))

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func sec(msv float64) string { return fmt.Sprintf("%.2fs", msv/1000) }

func never(g GapStats) string {
	if g.Never == 0 {
		return ""
	}
	return fmt.Sprintf(", %d never wrote again", g.Never)
}

// latency returns the p50, p99 and max of xs (all zero when empty).
func latency(xs []float64) Latency {
	if len(xs) == 0 {
		return Latency{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return Latency{P50: quantile(s, 0.5), P99: quantile(s, 0.99), Max: s[len(s)-1]}
}

func gapStats(xs []float64, neverN int) GapStats {
	g := GapStats{N: len(xs) + neverN, Never: neverN}
	if len(xs) > 0 {
		s := slices.Clone(xs)
		slices.Sort(s)
		g.P50MS, g.MaxMS = quantile(s, 0.5), s[len(s)-1]
	}
	return g
}

// quantile of sorted s by the nearest-rank method.
func quantile(s []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
