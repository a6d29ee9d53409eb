package gateway

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// metrics are the gateway's Prometheus series, all labelled with the site.
type metrics struct {
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
	appends   *prometheus.CounterVec
	appendDur prometheus.Histogram
	messages  prometheus.Counter
	wsConns   prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, site string, v *view.View, log *jsstore.Store) *metrics {
	labels := prometheus.Labels{"site": site}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_http_requests_total",
			Help: "HTTP requests by method and status.", ConstLabels: labels}, []string{"method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "salamander_http_request_seconds",
			Help: "HTTP request latency.", ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
			[]string{"method"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "salamander_log_appends_total",
			Help: "Records appended to the replicated log, by result.", ConstLabels: labels}, []string{"result"}),
		appendDur: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "salamander_log_append_seconds",
			Help: "Time for a quorum to hold an appended record.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Name: "salamander_messages_sent_total",
			Help: "Messages acknowledged by this site.", ConstLabels: labels}),
		wsConns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "salamander_websockets",
			Help: "WebSockets connected to this site.", ConstLabels: labels}),
	}
	gapFills := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_log_gap_fills_total",
		Help:        "Times this site's tails found commit announcements missing and read the records from the log.",
		ConstLabels: labels}, func() float64 { return float64(log.GapFills()) })
	entries := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "salamander_view_entries_applied_total",
		Help: "Log entries this site's read model applied since the process started.", ConstLabels: labels},
		func() float64 { return float64(v.EntriesApplied()) })
	reg.MustRegister(m.requests, m.latency, m.appends, m.appendDur, m.messages, m.wsConns, appliedCollector{v, site},
		gapFills, entries)
	return m
}

// registerAlarm exports the log alarm: 1 while the site refuses to serve
// a log that is not the one it applied. Alert on it.
func (g *Gateway) registerAlarm(reg *prometheus.Registry) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "salamander_log_alarm",
		Help:        "1 while the log under this site is not the one it has applied (a stream deleted, re-created or gone backwards).",
		ConstLabels: prometheus.Labels{"site": g.cfg.Site}}, func() float64 {
		if g.LogAlarm() != "" {
			return 1
		}
		return 0
	}))
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

// appliedCollector exports the read model's applied position per stream.
type appliedCollector struct {
	v    *view.View
	site string
}

var appliedDesc = prometheus.NewDesc("salamander_view_applied_seq", "Last log sequence applied to this site's read model.",
	[]string{"site", "stream"}, nil)

func (c appliedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- appliedDesc }

func (c appliedCollector) Collect(ch chan<- prometheus.Metric) {
	for s, seq := range appliedRecords(c.v) {
		ch <- prometheus.MustNewConstMetric(appliedDesc, prometheus.GaugeValue, float64(seq), c.site, s)
	}
}

// appliedRecords is how far this site's read model has applied each
// stream, in stream sequences (whole records), comparable with the
// streams' last_seq.
func appliedRecords(v *view.View) map[string]uint64 {
	out := v.Applied()
	for s, pos := range out {
		out[s] = jsstore.RecordsApplied(pos)
	}
	return out
}

func (g *Gateway) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "site": g.cfg.Site})
}

// handleReady says whether this site can serve: connected to NATS, holding
// the signing key (so its read model has applied the log's start) and
// applying every stream (a tail that found a hole in the log stops there).
func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	rd := g.readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// readiness is what GET /readyz answers.
type readiness struct {
	Ready         bool              `json:"ready"`
	Site          string            `json:"site"`
	NATSConnected bool              `json:"nats_connected"`
	SigningKey    bool              `json:"signing_key"`
	Isolated      bool              `json:"isolated"`
	CaughtUp      bool              `json:"caught_up"`
	Stalled       map[string]string `json:"stalled,omitempty"`
	LogAlarm      string            `json:"log_alarm,omitempty"`
}

func (g *Gateway) readiness() readiness {
	rd := readiness{Site: g.cfg.Site, NATSConnected: g.cfg.Store.Conn().IsConnected(),
		SigningKey: g.cfg.View.HasSigningKey(), Isolated: g.Isolated(), CaughtUp: g.CaughtUp(),
		Stalled: g.cfg.Store.Stalled(), LogAlarm: g.LogAlarm()}
	rd.Ready = rd.NATSConnected && rd.SigningKey && !rd.Isolated && len(rd.Stalled) == 0 && rd.LogAlarm == "" && rd.CaughtUp
	return rd
}

func (g *Gateway) handleSites(w http.ResponseWriter, _ *http.Request) {
	sites := g.cfg.Sites
	if sites == nil {
		sites = []SiteInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": g.cfg.Site, "sites": sites})
}

// handleStatus reports this site's view of the cluster. Stream leaders come
// from the cluster and may be missing while it elects; everything else is
// local and always answers.
func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 1500*time.Millisecond)
	defer cancel()
	out := map[string]any{
		"site":            g.cfg.Site,
		"uptime_seconds":  int(time.Since(g.started).Seconds()),
		"nats_connected":  g.cfg.Store.Conn().IsConnected(),
		"isolated":        g.Isolated(),
		"nats_server":     g.cfg.Store.Conn().ConnectedServerName(),
		"applied":         appliedRecords(g.cfg.View),
		"entries_applied": g.cfg.View.EntriesApplied(),
		"websockets":      g.hub.users(),
	}
	if stalled := g.cfg.Store.Stalled(); len(stalled) > 0 {
		out["stalled"] = stalled
	}
	if w := g.Warnings(); len(w) > 0 {
		out["warnings"] = w
	}
	streams, err := g.cfg.Store.Status(ctx)
	out["streams"] = streams
	if err != nil {
		out["streams_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}
