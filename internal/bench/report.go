package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// Report is what one bench run measured. Its JSON form (WriteJSON) is one
// object; the fields marked "idle" or "catch-up" appear only for those.
type Report struct {
	// Scenario, Sites (base URLs), Users, Rooms and GroupSize describe
	// what ran.
	Scenario  string   `json:"scenario"`
	Sites     []string `json:"sites"`
	Users     int      `json:"users"`
	Rooms     int      `json:"rooms"`
	GroupSize int      `json:"group_size,omitempty"`
	// Senders is the number of (member, room) pairs that send.
	Senders int `json:"senders"`
	// Mode is "closed" (next send after the ack) or "open" (fixed Rate,
	// messages/s in all); Inflight and Size are Config's.
	Mode     string  `json:"mode,omitempty"`
	Rate     float64 `json:"rate"`
	Inflight int     `json:"inflight,omitempty"`
	Size     int     `json:"size,omitempty"`
	// Receivers is "raw" (raw WebSockets) or "sdk" (SDK Subscriptions).
	Receivers string `json:"receivers,omitempty"`
	// DurationS is the measured window (idle: the hold), WarmupS the load
	// before it, in seconds.
	DurationS float64 `json:"duration_s"`
	WarmupS   float64 `json:"warmup_s"`

	// Sent, Acked and Failed count every send of the run, warm-up included.
	Sent   int64 `json:"sent"`
	Acked  int64 `json:"acked"`
	Failed int64 `json:"failed"`
	// Unsent counts open-loop sends scheduled before the end that never
	// started (the senders fell that far behind).
	Unsent int64 `json:"unsent"`
	// Errors counts failed sends and broken or refused WebSockets;
	// ErrorKinds splits them by kind, ErrorSamples quotes the first few.
	Errors       int64            `json:"errors"`
	ErrorKinds   map[string]int64 `json:"error_kinds,omitempty"`
	ErrorSamples []string         `json:"error_samples,omitempty"`

	// Rates count acks and deliveries (to members other than the sender)
	// that happened inside the measured window, per second.
	AckedPerSec     float64 `json:"acked_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	// Send latency: from the send's start (closed loop) or scheduled time
	// (open loop) to its acknowledgement, for sends started in the window.
	SendP50Ms float64 `json:"send_p50_ms"`
	SendP90Ms float64 `json:"send_p90_ms"`
	SendP99Ms float64 `json:"send_p99_ms"`
	SendMaxMs float64 `json:"send_max_ms"`
	// Deliver latency: from the same start to the message arriving on each
	// other member's WebSocket.
	DeliverP50Ms float64 `json:"deliver_p50_ms"`
	DeliverP90Ms float64 `json:"deliver_p90_ms"`
	DeliverP99Ms float64 `json:"deliver_p99_ms"`
	DeliverMaxMs float64 `json:"deliver_max_ms"`
	// Deliveries counts first deliveries to members other than the sender.
	Deliveries int64 `json:"deliveries"`

	// Lost counts acknowledged messages that some member never got within
	// the grace after the load; LostDeliveries the missing (message,
	// member) pairs.
	Lost           int `json:"lost"`
	LostDeliveries int `json:"lost_deliveries"`
	// Duplicated counts messages delivered twice to one member or seen
	// under two different seqs; DuplicateDeliveries the extra deliveries.
	Duplicated          int   `json:"duplicated"`
	DuplicateDeliveries int64 `json:"duplicate_deliveries"`
	// DuplicateSamples describes the first few duplicated messages: room,
	// seqs, and deliveries per member.
	DuplicateSamples []string `json:"duplicate_samples,omitempty"`
	// Reordered counts messages that reached a member after a later one of
	// the same room.
	Reordered int64 `json:"reordered"`
	// Unknown counts messages arriving with a client id this run never sent.
	Unknown int64 `json:"unknown"`

	// BenchCPU is the CPU the bench process used in the measured window,
	// in percent of one core (in the production layout it runs the sites'
	// balancers too); SiteCPU the same for each site's processes together
	// (by URL), where known. All of them share the machine: a bench short
	// of CPU measures itself.
	BenchCPU float64            `json:"bench_cpu_pct,omitempty"`
	SiteCPU  map[string]float64 `json:"site_cpu_pct,omitempty"`
	// SitesCPU is the sites' processes together (each process once:
	// `salamander dev` serves all three), and SitesCPUPerMsgMs that CPU
	// per acknowledged message in milliseconds. It moves less between
	// runs than throughput does on a shared machine. SitesCPUByRole splits
	// SitesCPU by what the processes do, where they do different things
	// (the production layout: "nats-server" and "gateway").
	SitesCPU         float64          `json:"sites_cpu_pct,omitempty"`
	SitesCPUPerMsgMs float64          `json:"sites_cpu_ms_per_msg,omitempty"`
	SitesCPUByRole   map[Role]float64 `json:"sites_cpu_by_role_pct,omitempty"`

	// LogRecordsPerSec is how many replicated records the first site
	// applied per second in the measured window (all streams), and
	// EntriesPerRecord how many log entries (messages, read markers, …)
	// they carried on average: group commit's batching, read from the
	// site's /metrics. Absent where the site does not export them.
	LogRecordsPerSec float64 `json:"log_records_per_sec,omitempty"`
	EntriesPerRecord float64 `json:"entries_per_record,omitempty"`

	// SiteRSS is each site's processes' resident memory together at the
	// end (bytes, by site URL), where they are known; a process serving
	// several sites is counted once, under the first.
	SiteRSS map[string]int64 `json:"site_rss_bytes,omitempty"`

	// Idle: Conns is the WebSockets held to the site IdleSite.
	Conns    int    `json:"conns,omitempty"`
	IdleSite string `json:"idle_site,omitempty"`
	// IdleProcesses is how many of the idle site's processes hold its
	// sockets and are measured below: 1 for a `serve` (or `dev`) process,
	// the gateways in the production layout (their figures summed; the
	// site's nats-server holds no socket and is left out). 0: unknown.
	IdleProcesses int `json:"idle_processes,omitempty"`
	// BytesPerConn is the RSS growth of the idle site's processes that
	// hold sockets divided by the connections held (absent when they are
	// unknown).
	BytesPerConn *int64 `json:"bytes_per_conn,omitempty"`
	// HeapBytesPerConn is the same for the Go heap, when the site exports
	// go_memstats_heap_inuse_bytes.
	HeapBytesPerConn *int64 `json:"heap_bytes_per_conn,omitempty"`
	// GoroutinesPerConn is the idle site's goroutine count's growth
	// divided by the connections held, when the site exports
	// go_goroutines: 0 where idle sockets are parked, about 1 where each
	// keeps a reader.
	GoroutinesPerConn *float64 `json:"goroutines_per_conn,omitempty"`
	// RSSBefore and RSSAfter are the idle site's process RSS before the
	// connections and at the end of the hold.
	RSSBefore int64 `json:"rss_before_bytes,omitempty"`
	RSSAfter  int64 `json:"rss_after_bytes,omitempty"`
	// BenchBytesPerConn is the same growth in the bench's own process (the
	// client ends).
	BenchBytesPerConn *int64 `json:"bench_bytes_per_conn,omitempty"`
	// ConnectsPerSec is how fast the connections were opened (and
	// replayed up to "ready").
	ConnectsPerSec float64 `json:"connects_per_sec,omitempty"`
	// ConnsDropped counts idle connections that broke while held.
	ConnsDropped int64 `json:"conns_dropped,omitempty"`
	// IdleNote says why fewer connections were opened than asked, or why
	// memory is missing.
	IdleNote string `json:"idle_note,omitempty"`

	// Catch-up: CatchupSite is the site that was wiped and restarted.
	CatchupSite string `json:"catchup_site,omitempty"`
	// CatchupMsgs is the number of log entries the wiped site applied:
	// messages and every other record (sign-ups, rooms, read markers),
	// counted one by one even when sends to one partition share a
	// replicated record. CatchupRecords is the number of those records
	// (every stream's last sequence).
	CatchupMsgs    int64 `json:"catchup_msgs,omitempty"`
	CatchupRecords int64 `json:"catchup_records,omitempty"`
	// CatchupMsgsPerSec is CatchupMsgs over CatchupMs: the pace of the
	// whole return, from the restart of the wiped site (its JetStream
	// replica catching up included) to its read model holding everything.
	CatchupMsgsPerSec float64 `json:"catchup_msgs_per_sec,omitempty"`
	// CatchupMs is from the restart to having applied everything;
	// CatchupReadyMs from the restart to answering /readyz.
	CatchupMs      float64 `json:"catchup_ms,omitempty"`
	CatchupReadyMs float64 `json:"catchup_ready_ms,omitempty"`
}

// newReport returns a report with the run's settings filled in.
func (r *run) newReport(users int) *Report {
	cfg := r.cfg
	rep := &Report{
		Scenario:  cfg.Scenario,
		Sites:     cfg.Sites,
		Users:     users,
		Rate:      cfg.Rate,
		DurationS: cfg.Duration.Seconds(),
	}
	if cfg.Scenario == ScenarioIdle {
		return rep // nothing is sent or received
	}
	rep.Inflight, rep.Size, rep.WarmupS = cfg.Inflight, cfg.Size, cfg.Warmup.Seconds()
	rep.Mode, rep.Receivers = "closed", "raw"
	if cfg.Rate > 0 {
		rep.Mode = "open"
	}
	if cfg.SDKSubscribe {
		rep.Receivers = "sdk"
	}
	return rep
}

// setLoad fills in what the tracker measured.
func (rep *Report) setLoad(tr *tracker, cfg Config) {
	lost, lostDeliveries, duplicated, dupSamples := tr.verdict()
	c, send, deliver := tr.totals()
	secs := cfg.Duration.Seconds()
	rep.Sent, rep.Acked, rep.Failed = c.sent, c.acked, c.failed
	rep.AckedPerSec = round(float64(c.ackedIn)/secs, 1)
	rep.DeliveredPerSec = round(float64(c.deliveredIn)/secs, 1)
	rep.SendP50Ms = round(send.quantile(0.50), 2)
	rep.SendP90Ms = round(send.quantile(0.90), 2)
	rep.SendP99Ms = round(send.quantile(0.99), 2)
	rep.SendMaxMs = round(send.quantile(1), 2)
	rep.DeliverP50Ms = round(deliver.quantile(0.50), 2)
	rep.DeliverP90Ms = round(deliver.quantile(0.90), 2)
	rep.DeliverP99Ms = round(deliver.quantile(0.99), 2)
	rep.DeliverMaxMs = round(deliver.quantile(1), 2)
	rep.Deliveries = c.deliveries
	rep.Lost, rep.LostDeliveries = lost, lostDeliveries
	rep.Duplicated, rep.DuplicateDeliveries, rep.DuplicateSamples = duplicated, c.dupDeliveries, dupSamples
	rep.Unknown = c.unknown
}

// setErrors copies the error counts.
func (rep *Report) setErrors(e *errorLog) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rep.Errors = e.n
	if len(e.kinds) > 0 {
		rep.ErrorKinds = maps.Clone(e.kinds)
	}
	rep.ErrorSamples = slices.Clone(e.samples)
}

// setCatchup copies a catch-up measurement.
func (rep *Report) setCatchup(c *catchupResult) {
	rep.CatchupSite = c.site
	rep.CatchupMsgs = c.entries
	rep.CatchupRecords = c.records
	rep.CatchupMsgsPerSec = round(c.perSec, 1)
	rep.CatchupMs = round(c.total.Seconds()*1000, 1)
	rep.CatchupReadyMs = round(c.ready.Seconds()*1000, 1)
}

// WriteJSON writes the report as one JSON object.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as a short human-readable table.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	if rep.Scenario == ScenarioIdle {
		fmt.Fprintf(&b, "salamander bench: idle, %d WebSockets held %s at %s by %d users\n",
			rep.Conns, time.Duration(rep.DurationS*float64(time.Second)), rep.IdleSite, rep.Users)
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', 0)
		procs := "site process RSS"
		if rep.IdleProcesses > 1 {
			procs = fmt.Sprintf("site's %d gateways' RSS", rep.IdleProcesses)
		}
		fmt.Fprintf(tw, "  %s\t%s → %s\t%s per connection\n", procs, mib(rep.RSSBefore), mib(rep.RSSAfter), bytesOrUnknown(rep.BytesPerConn))
		fmt.Fprintf(tw, "  site Go heap\t\t%s per connection\n", bytesOrUnknown(rep.HeapBytesPerConn))
		if rep.GoroutinesPerConn != nil {
			fmt.Fprintf(tw, "  site goroutines\t\t%.2f per connection\n", *rep.GoroutinesPerConn)
		}
		fmt.Fprintf(tw, "  bench (client ends)\t\t%s per connection\n", bytesOrUnknown(rep.BenchBytesPerConn))
		fmt.Fprintf(tw, "  connects\t%.0f/s\t%d dropped while held\n", rep.ConnectsPerSec, rep.ConnsDropped)
		tw.Flush()
		if rep.IdleNote != "" {
			fmt.Fprintf(&b, "  note: %s\n", rep.IdleNote)
		}
	} else {
		loop := fmt.Sprintf("closed loop, %d in flight per sender", rep.Inflight)
		if rep.Mode == "open" {
			loop = fmt.Sprintf("open loop at %.0f msg/s, up to %d in flight per sender", rep.Rate, rep.Inflight)
		}
		group := ""
		if rep.GroupSize > 0 {
			group = fmt.Sprintf(" of up to %d", rep.GroupSize)
		}
		fmt.Fprintf(&b, "salamander bench: %s, %d users in %d rooms%s, %d senders, %d sites; %s; %d-byte messages; %s receivers\n",
			rep.Scenario, rep.Users, rep.Rooms, group, rep.Senders, len(rep.Sites), loop, rep.Size, rep.Receivers)
		fmt.Fprintf(&b, "  measured %.1fs after a %.1fs warm-up\n", rep.DurationS, rep.WarmupS)
		tw := tabwriter.NewWriter(&b, 2, 8, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "  \t per s\t p50 ms\t p90 ms\t p99 ms\t max ms\t\n")
		fmt.Fprintf(tw, "  send → ack\t %.1f\t %.2f\t %.2f\t %.2f\t %.2f\t\n", rep.AckedPerSec, rep.SendP50Ms, rep.SendP90Ms, rep.SendP99Ms, rep.SendMaxMs)
		fmt.Fprintf(tw, "  send → delivered\t %.1f\t %.2f\t %.2f\t %.2f\t %.2f\t\n", rep.DeliveredPerSec, rep.DeliverP50Ms, rep.DeliverP90Ms, rep.DeliverP99Ms, rep.DeliverMaxMs)
		tw.Flush()
		fmt.Fprintf(&b, "  sent %d, acked %d, failed %d, unsent %d; deliveries %d\n", rep.Sent, rep.Acked, rep.Failed, rep.Unsent, rep.Deliveries)
		fmt.Fprintf(&b, "  lost %d (%d deliveries), duplicated %d, reordered %d\n", rep.Lost, rep.LostDeliveries, rep.Duplicated, rep.Reordered)
		for _, d := range rep.DuplicateSamples {
			fmt.Fprintf(&b, "    duplicated: %s\n", d)
		}
		if rep.BenchCPU > 0 {
			fmt.Fprintf(&b, "  CPU in the window (100%% = one core): bench %.0f%%", rep.BenchCPU)
			if sites := perSite(rep.Sites, rep.SiteCPU, func(v float64) string { return fmt.Sprintf("%.0f%%", v) }); sites != "" {
				fmt.Fprintf(&b, "; sites %s", sites)
			}
			if rep.SitesCPU > 0 {
				fmt.Fprintf(&b, "; the sites' processes %.0f%%, %.3f ms per acked message", rep.SitesCPU, rep.SitesCPUPerMsgMs)
			}
			for _, role := range slices.Sorted(maps.Keys(rep.SitesCPUByRole)) {
				fmt.Fprintf(&b, "; %ss %.0f%%", role, rep.SitesCPUByRole[role])
			}
			b.WriteString("\n")
		}
		if rep.EntriesPerRecord > 0 {
			fmt.Fprintf(&b, "  replicated log at %s: %.0f records/s, %.1f entries per record\n", rep.Sites[0], rep.LogRecordsPerSec, rep.EntriesPerRecord)
		}
		if len(rep.SiteRSS) > 0 {
			fmt.Fprintf(&b, "  site RSS at the end: %s\n", perSite(rep.Sites, rep.SiteRSS, mib))
		}
		if rep.CatchupSite != "" {
			fmt.Fprintf(&b, "  catch-up: %s killed, disk wiped, restarted: ready in %.2fs, applied %d log entries (%d records) in %.2fs (%.0f entries/s)\n",
				rep.CatchupSite, rep.CatchupReadyMs/1000, rep.CatchupMsgs, rep.CatchupRecords, rep.CatchupMs/1000, rep.CatchupMsgsPerSec)
		}
	}
	fmt.Fprintf(&b, "  errors %d", rep.Errors)
	for _, k := range slices.Sorted(maps.Keys(rep.ErrorKinds)) {
		fmt.Fprintf(&b, "; %s %d", k, rep.ErrorKinds[k])
	}
	b.WriteString("\n")
	for _, s := range rep.ErrorSamples {
		fmt.Fprintf(&b, "    e.g. %s\n", s)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// errorLog counts errors by kind and keeps the first few messages.
type errorLog struct {
	mu      sync.Mutex
	n       int64
	kinds   map[string]int64
	samples []string
}

const maxErrorSamples = 5

func (e *errorLog) add(kind string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if e.kinds == nil {
		e.kinds = map[string]int64{}
	}
	e.kinds[kind]++
	if len(e.samples) < maxErrorSamples && err != nil {
		e.samples = append(e.samples, kind+": "+err.Error())
	}
}

// perSite lists "SITE VALUE, …" for the sites, in order, that m has a
// value for ("" when none).
func perSite[V any](sites []string, m map[string]V, format func(V) string) string {
	var parts []string
	for _, s := range sites {
		if v, ok := m[s]; ok {
			parts = append(parts, s+" "+format(v))
		}
	}
	return strings.Join(parts, ", ")
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func mib(b int64) string {
	if b == 0 {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

func bytesOrUnknown(b *int64) string {
	if b == nil {
		return "unknown"
	}
	if *b >= 10<<10 || *b <= -10<<10 {
		return fmt.Sprintf("%.1f KiB", float64(*b)/1024)
	}
	return fmt.Sprintf("%d bytes", *b)
}
