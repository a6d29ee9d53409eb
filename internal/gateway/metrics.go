package gateway

import (
	"context"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// metrics are the gateway's Prometheus series, all labelled with the site
// and the instance (the process, one of the site's gateways).
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	appends   *prometheus.CounterVec
	appendDur prometheus.Histogram
	messages  prometheus.Counter
	wsConns   prometheus.Gauge

	// sendDur times acknowledged sends (HTTP and WebSocket alike); sendOK
	// and sendDup count them, sends counts refusals by error code.
	sendDur prometheus.Histogram
	sendOK  prometheus.Counter
	sendDup prometheus.Counter
	sends   *prometheus.CounterVec
	// applyLag and delivery measure from a message record's time (the
	// accepting site's clock) to this site applying it and to a frame
	// carrying it being handed to a device's socket.
	applyLag prometheus.Histogram
	delivery prometheus.Histogram
	// wsConnects counts WebSockets opened, wsGone those closed, by why.
	wsConnects prometheus.Counter
	wsGone     [wsGoneReasons]prometheus.Counter
	// streams is the replication and election watch.
	streams *streamWatch
	// presenceRefused counts presence messages of new gateway instances
	// refused while maxRemoteInstances were mirrored.
	presenceRefused prometheus.Counter
}

// Why a WebSocket ended, for salamander_websocket_disconnects_total.
type wsGoneReason int

const (
	wsGoneLost   wsGoneReason = iota // the connection broke or stopped answering
	wsGoneDevice                     // the device closed it
	wsGoneSite                       // this site closed it (shutdown, cut off, revoked, too slow, bad frames)
	wsGoneReasons
)

var wsGoneLabels = [wsGoneReasons]string{"lost", "device", "site"}

// latencyBuckets span 0.5 ms to 16 s, doubling.
var latencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 16)

// lagBuckets span 1 ms to about 9 minutes: a site that restarts applies
// what it missed minutes late, and that shows here.
var lagBuckets = prometheus.ExponentialBuckets(0.001, 2, 20)

// metricLabels are the labels every series of this gateway carries.
func (g *Gateway) metricLabels() prometheus.Labels {
	return prometheus.Labels{"site": g.cfg.Site, "instance": g.cfg.Instance}
}

func newMetrics(reg *prometheus.Registry, labels prometheus.Labels, v *view.View, log *jsstore.Store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_http_requests_total",
			Help: "HTTP requests by method and status.", ConstLabels: labels}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "salamander_http_request_seconds",
			Help: "HTTP request latency.", ConstLabels: labels, Buckets: latencyBuckets},
			[]string{"method"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_log_appends_total",
			Help: "Records appended to the replicated log, by result.", ConstLabels: labels}, []string{"result"}),
		appendDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "salamander_log_append_seconds",
			Help: "Time for a quorum to hold an appended record.", ConstLabels: labels,
			Buckets: latencyBuckets}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "salamander_messages_sent_total",
			Help: "Messages acknowledged by this site.", ConstLabels: labels}),
		wsConns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "salamander_websockets",
			Help: "WebSockets connected to this site.", ConstLabels: labels}),
		sendDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "salamander_send_seconds",
			Help:        "Time from a send's arrival to its acknowledgement (a quorum holds it and this site applied it), HTTP and WebSocket.",
			ConstLabels: labels, Buckets: latencyBuckets}),
		sends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_sends_total",
			Help: "Sends by result: ok, duplicate (a retry answered with the original) or the error code.", ConstLabels: labels},
			[]string{"result"}),
		applyLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "salamander_view_apply_lag_seconds",
			Help:        "Time from a message record's time (stamped by the site that accepted it) to this site applying it.",
			ConstLabels: labels, Buckets: lagBuckets}),
		delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "salamander_delivery_seconds",
			Help:        "Time from a message record's time to its frame being written to a device's WebSocket at this site.",
			ConstLabels: labels, Buckets: lagBuckets}),
		wsConnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "salamander_websocket_connects_total",
			Help: "WebSockets opened at this site.", ConstLabels: labels}),
		presenceRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "salamander_presence_instances_refused_total",
			Help: "Presence messages of new gateway instances refused because 1,024 others were already mirrored " +
				"(their users do not show online here).", ConstLabels: labels}),
	}
	m.streams = newStreamWatch(labels)
	m.sendOK = m.sends.WithLabelValues("ok")
	m.sendDup = m.sends.WithLabelValues("duplicate")
	gone := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_websocket_disconnects_total",
		Help:        "WebSockets closed at this site, by reason: device (it closed), site (this site closed it) or lost.",
		ConstLabels: labels}, []string{"reason"})
	for r := range m.wsGone {
		m.wsGone[r] = gone.WithLabelValues(wsGoneLabels[r])
	}
	nc := log.Conn()
	natsUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_nats_connected",
		Help: "1 while this site's NATS connection is up.", ConstLabels: labels}, func() float64 {
		if nc.IsConnected() {
			return 1
		}
		return 0
	})
	natsRefusals := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_nats_permission_errors_total",
		Help: "Publishes, subscriptions and requests the NATS servers refused this site's connection for want of " +
			"permission (its user's permissions do not match what this version uses).", ConstLabels: labels},
		func() float64 { n, _, _ := log.Refusals(); return float64(n) })
	natsReconnects := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_nats_reconnects_total",
		Help: "Times this site's NATS connection reconnected.", ConstLabels: labels},
		func() float64 { return float64(nc.Stats().Reconnects) })
	gapFills := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_log_gap_fills_total",
		Help:        "Times this site's tails found commit announcements missing and read the records from the log.",
		ConstLabels: labels}, func() float64 { return float64(log.GapFills()) })
	// counterOf is a counter of the site's labels and one more, read from count.
	counterOf := func(name, help, label, value string, count func() int64) prometheus.Collector {
		l := maps.Clone(labels)
		l[label] = value
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: l},
			func() float64 { return float64(count()) })
	}
	// Records read back from the log for queries, by where they came from.
	const readsHelp = "Records read back from the log for queries (message texts no longer in memory), by where they " +
		"came from: own_copy (this site's copy of the log) or replicas (a direct get, answered by any site's replica)."
	ownReads := counterOf("salamander_log_reads_total", readsHelp, "from", "own_copy",
		func() int64 { own, _ := log.Reads(); return own })
	replicaReads := counterOf("salamander_log_reads_total", readsHelp, "from", "replicas",
		func() int64 { _, replicas := log.Reads(); return replicas })
	copyStops := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_log_own_copy_stops_total",
		Help: "Times a stream's own copy of the log on this site stopped growing after a write error (a full disk); " +
			"it resumes by itself once writes succeed.", ConstLabels: labels},
		func() float64 { stops, _ := log.OwnCopyStops(); return float64(stops) })
	copiesDown := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_log_own_copies_stopped",
		Help: "Streams whose own copy of the log on this site does not grow now (a write error): their newer " +
			"records are read from the replicas.", ConstLabels: labels},
		func() float64 { _, down := log.OwnCopyStops(); return float64(down) })
	// Batches forwarded to the site leading their partition, and of those
	// the ones this site appended itself after all.
	const forwardsHelp = "Batches of sends this site forwarded to the site leading their partition, to share its record: " +
		"answered there, or appended here after all (no answer in time, or refused)."
	forwardedOK := counterOf("salamander_log_batches_forwarded_total", forwardsHelp, "result", "answered",
		func() int64 { all, back := log.Forwarded(); return all - back })
	forwardedBack := counterOf("salamander_log_batches_forwarded_total", forwardsHelp, "result", "appended_here",
		func() int64 { _, back := log.Forwarded(); return back })
	entries := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_view_entries_applied_total",
		Help: "Log entries this site's read model applied since the process started.", ConstLabels: labels},
		func() float64 { return float64(v.EntriesApplied()) })
	windows := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_view_dedupe_windows",
		Help: "Rooms whose dedupe window (client ids of the newest messages) this site holds in memory.", ConstLabels: labels},
		func() float64 { return float64(v.Windows().Windows) })
	windowBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_view_dedupe_window_bytes",
		Help: "Memory the dedupe windows in memory take (at most 48 KiB a room).", ConstLabels: labels},
		func() float64 { return float64(v.Windows().Bytes) })
	windowLoads := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_view_dedupe_window_loads_total",
		Help:        "Dedupe windows read from the store: a room's first message since the start, or since its window was dropped.",
		ConstLabels: labels}, func() float64 { return float64(v.Windows().Loads) })
	windowEvictions := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_view_dedupe_window_evictions_total",
		Help:        "Dedupe windows dropped from memory after their room went unused for the idle time.",
		ConstLabels: labels}, func() float64 { return float64(v.Windows().Evictions) })
	reg.MustRegister(m.requests, m.latency, m.appends, m.appendDur, m.messages, m.wsConns, newAppliedCollector(v, labels),
		gapFills, ownReads, replicaReads, copyStops, copiesDown, forwardedOK, forwardedBack, entries, windows, windowBytes, windowLoads, windowEvictions,
		m.sendDur, m.sends, m.applyLag, m.delivery, m.wsConnects, gone, natsUp, natsReconnects, natsRefusals, m.streams, m.presenceRefused)
	return m
}

// registerAlarm exports the log alarm: 1 while the site refuses to serve
// a log that is not the one it applied. Alert on it.
func (g *Gateway) registerAlarm(reg *prometheus.Registry) {
	reg.MustRegister(newReadinessCollector(g))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_log_alarm",
		Help:        "1 while the log under this site is not the one it has applied (a stream deleted, re-created or gone backwards).",
		ConstLabels: g.metricLabels()}, func() float64 {
		if g.LogAlarm() != "" {
			return 1
		}
		return 0
	}))
}

// readinessCollector exports what GET /readyz decides, read at each
// scrape: salamander_ready (1 or 0) and salamander_not_ready{reason}, 1
// for each condition that keeps the site from serving. A monitor then
// knows a site is unready, and why, without probing it.
type readinessCollector struct {
	g               *Gateway
	ready, notReady *prometheus.Desc
}

func newReadinessCollector(g *Gateway) readinessCollector {
	labels := g.metricLabels()
	return readinessCollector{g: g,
		ready: prometheus.NewDesc("salamander_ready",
			"1 while this site process is ready to serve (GET /readyz answers 200), else 0.", nil, labels),
		notReady: prometheus.NewDesc("salamander_not_ready",
			"1 for each condition that keeps this site process from serving now, by reason.", []string{"reason"}, labels)}
}

func (c readinessCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.ready; ch <- c.notReady }

func (c readinessCollector) Collect(ch chan<- prometheus.Metric) {
	rd := c.g.readiness()
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, gaugeOf(rd.Ready))
	for _, nr := range notReadyConditions {
		ch <- prometheus.MustNewConstMetric(c.notReady, prometheus.GaugeValue, gaugeOf(nr.holds(rd)), nr.reason)
	}
}

// gaugeOf is 1 for true, 0 for false.
func gaugeOf(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (m *metrics) observeRequest(r *http.Request, status int, d time.Duration) {
	method := r.Method
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodHead, http.MethodDelete, http.MethodPut:
	default:
		method = "other" // never let clients mint label values
	}
	m.requests.WithLabelValues(method, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(method).Observe(d.Seconds())
}

func (m *metrics) observeAppend(err error, d time.Duration) {
	if err != nil {
		m.appends.WithLabelValues("error").Inc()
		return
	}
	m.appends.WithLabelValues("ok").Inc()
	m.appendDur.Observe(d.Seconds())
}

// observeSend counts a send's result and times it if acknowledged.
func (m *metrics) observeSend(res salamander.SendResult, err error, d time.Duration) {
	switch {
	case err != nil:
		m.sends.WithLabelValues(string(salamander.ErrorCode(err))).Inc()
		return
	case res.Duplicate:
		m.sendDup.Inc()
	default:
		m.sendOK.Inc()
		m.messages.Inc()
	}
	m.sendDur.Observe(d.Seconds())
}

// observeApplied is the view's apply listener for the apply lag: one
// observation per message record, against one clock reading per batch.
func (m *metrics) observeApplied(batch []view.Emitted) {
	var now time.Time
	for i := range batch {
		if ev := &batch[i].Event; ev.Type == salamander.EventMessage {
			if now.IsZero() {
				now = time.Now()
			}
			m.applyLag.Observe(now.Sub(ev.At).Seconds())
		}
	}
}

// observeDelivery times a message frame written to a device: at is its
// record's time in Unix nanoseconds (0 for other frames).
func (m *metrics) observeDelivery(at int64) {
	if at != 0 {
		m.delivery.Observe(float64(time.Now().UnixNano()-at) / 1e9)
	}
}

// appliedCollector exports the read model's applied position per stream.
type appliedCollector struct {
	v    *view.View
	desc *prometheus.Desc
}

func newAppliedCollector(v *view.View, labels prometheus.Labels) appliedCollector {
	return appliedCollector{v, prometheus.NewDesc("salamander_view_applied_seq",
		"Last log sequence applied to this site's read model.", []string{"stream"}, labels)}
}

func (c appliedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c appliedCollector) Collect(ch chan<- prometheus.Metric) {
	for s, seq := range appliedRecords(c.v) {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(seq), s)
	}
}

// Every streamWatchEvery the gateway asks the cluster about each stream
// (all at once, each for at most streamAskTimeout): its leader, its
// replicas and how far behind they are, and its last sequence. A scrape
// reads the last answers and never waits on the cluster. Stream info is
// what the gateway's NATS user may already ask for; leader-election
// advisories would need it to subscribe to $JS.EVENT, which it may not.
const (
	streamWatchEvery = 5 * time.Second
	streamAskTimeout = 2 * time.Second
)

// streamWatch keeps this site's last look at the streams, counts the
// leader changes it sees between looks, and exports both.
type streamWatch struct {
	changes *prometheus.CounterVec
	leaders map[string]string // last leader seen per stream (run's goroutine only)

	leader, leaderless, current, replicaLag, behind *prometheus.Desc

	mu   sync.Mutex
	seen []streamSeen // nil until the first look
}

// streamSeen is one stream at the last look.
type streamSeen struct {
	jsstore.StreamStatus
	answered bool
	applied  uint64 // records this site had applied right after the answer
}

func newStreamWatch(labels prometheus.Labels) *streamWatch {
	return &streamWatch{
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_stream_leader_changes_total",
			Help:        "Leader changes this site saw, per stream (looking every 5 s: a change and its undoing in between go unseen).",
			ConstLabels: labels}, []string{"stream"}),
		leaders: map[string]string{},
		leader: prometheus.NewDesc("salamander_stream_leader", "1 for the server leading each stream at this site's last look.",
			[]string{"stream", "leader"}, labels),
		leaderless: prometheus.NewDesc("salamander_streams_without_leader",
			"Streams that had no leader, or did not answer within 2 s, at this site's last look.", nil, labels),
		current: prometheus.NewDesc("salamander_stream_replicas_current",
			"Replicas of each stream that are online and caught up, the leader included.", []string{"stream"}, labels),
		replicaLag: prometheus.NewDesc("salamander_stream_replica_lag",
			"Operations each follower replica of a stream is behind its leader.", []string{"stream", "replica"}, labels),
		behind: prometheus.NewDesc("salamander_view_records_behind",
			"Records of each stream this site's read model had yet to apply at the last look.", []string{"stream"}, labels),
	}
}

// run looks at the streams every streamWatchEvery until ctx ends.
func (w *streamWatch) run(ctx context.Context, store *jsstore.Store, v *view.View, log *slog.Logger) {
	t := time.NewTicker(streamWatchEvery)
	defer t.Stop()
	for {
		w.look(ctx, store, v, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// look asks about every stream at once and keeps the answers.
func (w *streamWatch) look(ctx context.Context, store *jsstore.Store, v *view.View, log *slog.Logger) {
	names := store.Streams()
	seen := make([]streamSeen, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, streamAskTimeout)
			defer cancel()
			st, err := store.StatusOf(ctx, name)
			st.Stream = name
			seen[i] = streamSeen{StreamStatus: st, answered: err == nil}
		}()
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	w.keep(seen, appliedRecords(v), log)
}

// keep takes a look's answers (and this site's applied records, taken
// after them) as the last look, counting the leaders that changed since
// the one before; a stream without a leader meanwhile keeps its last.
func (w *streamWatch) keep(seen []streamSeen, applied map[string]uint64, log *slog.Logger) {
	for i := range seen {
		s := &seen[i]
		s.applied = applied[s.Stream]
		changes := w.changes.WithLabelValues(s.Stream) // exported from the first look on, at 0
		if s.Leader == "" {
			continue
		}
		if prev := w.leaders[s.Stream]; prev != "" && prev != s.Leader {
			changes.Inc()
			log.Info("stream leader changed", "stream", s.Stream, "from", prev, "to", s.Leader)
		}
		w.leaders[s.Stream] = s.Leader
	}
	w.mu.Lock()
	w.seen = seen
	w.mu.Unlock()
}

// Describe sends the descriptions of the series the watch exports.
func (w *streamWatch) Describe(ch chan<- *prometheus.Desc) {
	w.changes.Describe(ch)
	for _, d := range []*prometheus.Desc{w.leader, w.leaderless, w.current, w.replicaLag, w.behind} {
		ch <- d
	}
}

// Collect exports the last look (nothing before the first).
func (w *streamWatch) Collect(ch chan<- prometheus.Metric) {
	w.changes.Collect(ch)
	w.mu.Lock()
	seen := w.seen
	w.mu.Unlock()
	if seen == nil {
		return
	}
	leaderless := 0
	for _, s := range seen {
		if !s.answered || s.Leader == "" {
			leaderless++
		}
		if !s.answered {
			continue
		}
		current := 0
		if s.Leader != "" {
			current++
			ch <- prometheus.MustNewConstMetric(w.leader, prometheus.GaugeValue, 1, s.Stream, s.Leader)
		}
		for _, r := range s.Replicas {
			if !slices.Contains(s.Unhealthy, r) {
				current++
			}
			ch <- prometheus.MustNewConstMetric(w.replicaLag, prometheus.GaugeValue, float64(s.Lag[r]), s.Stream, r)
		}
		ch <- prometheus.MustNewConstMetric(w.current, prometheus.GaugeValue, float64(current), s.Stream)
		ch <- prometheus.MustNewConstMetric(w.behind, prometheus.GaugeValue, float64(s.LastSeq-min(s.applied, s.LastSeq)), s.Stream)
	}
	ch <- prometheus.MustNewConstMetric(w.leaderless, prometheus.GaugeValue, float64(leaderless))
}
