package gateway

import (
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
