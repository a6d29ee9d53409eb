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

// Report is the outcome of one drill: the checker's verdict and what the
// drill measured. Its JSON form is the `--json` document.
type Report struct {
	Scenario string `json:"scenario"`
	// Site is the site that was burned (fire) or cut off (partition).
	Site        string  `json:"site"`
	Users       int     `json:"users"`
	Rooms       int     `json:"rooms"`
	RatePerUser float64 `json:"rate_per_user"`
	// Times are seconds since the load started.
	DurationS float64 `json:"duration_s"`
	FaultAtS  float64 `json:"fault_at_s"`
	// ReturnAtS is when the site came back: a cut-off site reconnected
	// (partition) or a burned site restarted on its old disk (fire with
	// return), after the load, once the other two were checked.
	ReturnAtS float64 `json:"return_at_s,omitempty"`
	// CatchUpMS is how long from its return the site took to pass the
	// check against the other two (same histories, same unread counts).
	CatchUpMS float64 `json:"catch_up_ms,omitempty"`
	// LeadersAtFault maps each stream to the site leading it just before
	// the fault.
	LeadersAtFault map[string]string `json:"leaders_at_fault"`

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
	// the fault to the client's first acknowledged send after it.
	WriteGapMSP50 float64 `json:"write_gap_ms_p50"`
	WriteGapMSMax float64 `json:"write_gap_ms_max"`
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

// GapStats summarizes write gaps over a set of clients or rooms.
type GapStats struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	MaxMS float64 `json:"max_ms"`
	// Never counts those with no acknowledged send after the fault.
	Never int `json:"never"`
}

// RoomGap is one room's write gap.
type RoomGap struct {
	Room   string `json:"room"`
	Kind   string `json:"kind"`
	Stream string `json:"stream"`
	// Leader is the site that led the room's stream at the fault.
	Leader string  `json:"leader"`
	GapMS  float64 `json:"gap_ms"` // -1: no acknowledged message after the fault
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

// measure fills the report's measurements from the send records.
func (r *Report) measure(w *workload, recs []sendRecord, t0, fault time.Time, burned int) {
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

	// Write gaps per client and per room.
	firstAfter := func(match func(sendRecord) bool) (time.Duration, bool) {
		var best time.Time
		for _, rec := range recs {
			if rec.acked && !rec.end.Before(fault) && match(rec) && (best.IsZero() || rec.end.Before(best)) {
				best = rec.end
			}
		}
		if best.IsZero() {
			return 0, false
		}
		return best.Sub(fault), true
	}
	var all, surv, burn []float64
	var allNever, survNever, burnNever int
	for _, u := range w.users {
		if len(u.rooms) == 0 {
			continue
		}
		g, ok := firstAfter(func(rec sendRecord) bool { return rec.user == u.idx })
		isBurned := u.home == burned
		if !ok {
			allNever++
			if isBurned {
				burnNever++
			} else {
				survNever++
			}
			continue
		}
		all = append(all, ms(g))
		if isBurned {
			burn = append(burn, ms(g))
		} else {
			surv = append(surv, ms(g))
		}
	}
	r.GapSurvivors = gapStats(surv, survNever)
	r.GapBurned = gapStats(burn, burnNever)
	allStats := gapStats(all, allNever)
	r.WriteGapMSP50, r.WriteGapMSMax = allStats.P50MS, allStats.MaxMS
	var rooms, there, elsewhere []float64
	var roomNever, thereNever, elseNever int
	for _, rm := range w.rooms {
		g, ok := firstAfter(func(rec sendRecord) bool { return rec.room == rm.id })
		st := w.roomStream(rm)
		rg := RoomGap{Room: rm.id, Kind: string(rm.kind), Stream: st, Leader: r.LeadersAtFault[st], GapMS: -1}
		led := rg.Leader == r.Site
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
	}
	if r.Acked == 0 {
		r.Failures = append(r.Failures, "no send was acknowledged")
	}
	r.OK = len(r.Failures) == 0
}

// WriteText writes the human summary.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	verb := map[string]string{"fire": "burned (SIGKILL)", "partition": "cut off"}[r.Scenario]
	fmt.Fprintf(&b, "salamander drill: %s — site %s %s at %.1fs of a %.1fs load\n", r.Scenario, r.Site, verb, r.FaultAtS, r.DurationS)
	fmt.Fprintf(&b, "  load: %d users in %d rooms, %.2g msg/s each; %d sends, %d read markers set (%d failed)\n",
		r.Users, r.Rooms, r.RatePerUser, r.Sends, r.ReadMarks, r.ReadMarkErrs)
	led := 0
	for _, s := range r.LeadersAtFault {
		if s == r.Site {
			led++
		}
	}
	fmt.Fprintf(&b, "  site %s led %d of %d streams at the fault\n", r.Site, led, len(r.LeadersAtFault))
	if r.MajorityCheck != nil {
		m := r.MajorityCheck
		fmt.Fprintf(&b, "  before site %s returned (sites %s): acked %d, lost %d, duplicated %d, reordered %d, converged %v\n",
			r.Site, strings.Join(m.CheckedSites, ","), m.Acked, m.Lost, m.Duplicated, m.Reordered, m.Converged)
		fmt.Fprintf(&b, "  site %s %s at %.1fs; caught up and checked in %.0f ms\n", r.Site,
			map[string]string{"fire": "restarted on its old disk", "partition": "reconnected"}[r.Scenario], r.ReturnAtS, r.CatchUpMS)
	}
	fmt.Fprintf(&b, "  checked at sites %s: acked %d, lost %d, duplicated %d, reordered %d, missing deliveries %d, converged %v\n",
		strings.Join(r.CheckedSites, ","), r.Acked, r.Lost, r.Duplicated, r.Reordered, r.MissingDeliveries, r.Converged)
	fmt.Fprintf(&b, "  unacknowledged when the drill stopped waiting: %d (committed once %d, not at all %d)\n",
		r.Unacked, r.UnackedCommitted, r.UnackedAbsent)
	fmt.Fprintf(&b, "  write gap, fault to first acked send: all clients p50 %s max %s\n", sec(r.WriteGapMSP50), sec(r.WriteGapMSMax))
	fmt.Fprintf(&b, "    clients of surviving sites (%d): p50 %s max %s%s\n", r.GapSurvivors.N, sec(r.GapSurvivors.P50MS), sec(r.GapSurvivors.MaxMS), never(r.GapSurvivors))
	fmt.Fprintf(&b, "    clients of site %s (%d): p50 %s max %s%s\n", r.Site, r.GapBurned.N, sec(r.GapBurned.P50MS), sec(r.GapBurned.MaxMS), never(r.GapBurned))
	fmt.Fprintf(&b, "    rooms (%d): p50 %s max %s%s\n", r.GapRooms.N, sec(r.GapRooms.P50MS), sec(r.GapRooms.MaxMS), never(r.GapRooms))
	fmt.Fprintf(&b, "      whose stream site %s led (%d): p50 %s max %s; led elsewhere (%d): p50 %s max %s\n", r.Site,
		r.GapRoomsLedThere.N, sec(r.GapRoomsLedThere.P50MS), sec(r.GapRoomsLedThere.MaxMS),
		r.GapRoomsLedElse.N, sec(r.GapRoomsLedElse.P50MS), sec(r.GapRoomsLedElse.MaxMS))
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

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes a self-contained HTML page: the summary and an inline
// SVG timeline of acknowledged sends per second and p99 latency, with the
// fault and the reconnection marked.
func (r *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		return err
	}
	data := struct {
		R       *Report
		Summary string
		Chart   template.HTML
	}{r, text.String(), template.HTML(r.svg())}
	return htmlTmpl.Execute(w, data)
}

// svg draws the timeline. Everything in it is numbers the drill computed.
func (r *Report) svg() string {
	const W, H, L, R, T, B = 900.0, 320.0, 60.0, 70.0, 20.0, 40.0
	pw, ph := W-L-R, H-T-B
	n := max(len(r.Timeline), int(math.Ceil(r.ReturnAtS)), 1)
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
	mark(r.FaultAtS, map[string]string{"fire": "fire: site " + r.Site + " killed", "partition": "site " + r.Site + " cut off"}[r.Scenario], "#e65100")
	mark(r.DurationS, "load stops", "#555")
	mark(r.ReturnAtS, "site "+r.Site+" back", "#2e7d32")
	fmt.Fprintf(&b, `<text x="%.0f" y="%.0f" text-anchor="middle">seconds since the load started</text>`, L+pw/2, H-6)
	b.WriteString(`</svg>`)
	return b.String()
}

var htmlTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Salamander drill: {{.R.Scenario}}</title>
<style>
body{font-family:sans-serif;margin:2em;max-width:960px;color:#222}
h1{font-size:1.4em} .ok{color:#2e7d32} .fail{color:#c62828}
pre{background:#f5f5f5;padding:1em;overflow-x:auto;font-size:12px}
table{border-collapse:collapse;font-size:13px} td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}
</style></head><body>
<h1>Salamander drill: {{.R.Scenario}}, site {{.R.Site}} —
{{if .R.OK}}<span class="ok">PASS</span>{{else}}<span class="fail">FAIL</span>{{end}}</h1>
<p>Acknowledged {{.R.Acked}}, lost {{.R.Lost}}, duplicated {{.R.Duplicated}}, reordered {{.R.Reordered}},
converged {{.R.Converged}}. Write gap p50 {{printf "%.0f" .R.WriteGapMSP50}} ms, max {{printf "%.0f" .R.WriteGapMSMax}} ms.</p>
{{.Chart}}
<h2>Summary</h2>
<pre>{{.Summary}}</pre>
<h2>Rooms, longest write gap first</h2>
<table><tr><th>room</th><th>kind</th><th>stream</th><th>its leader at the fault</th><th>gap (ms)</th></tr>
{{range .R.RoomGaps}}<tr><td>{{.Room}}</td><td>{{.Kind}}</td><td>{{.Stream}}</td><td>{{.Leader}}</td><td>{{printf "%.0f" .GapMS}}</td></tr>
{{end}}</table>
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
