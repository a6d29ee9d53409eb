package gateway

import (
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// The stream watch counts a leader change only between two leaders it
// saw (a look without a leader, or without an answer, changes nothing),
// and exports the last look: leaders, current replicas, replica lag, the
// records this site is behind and the streams without a leader.
func TestStreamWatch(t *testing.T) {
	w := newStreamWatch(prometheus.Labels{"site": "a"})
	log := slog.New(slog.DiscardHandler)
	look := func(acctLeader, p0Leader string, p0Answered bool) {
		w.keep([]streamSeen{
			{StreamStatus: jsstore.StreamStatus{Stream: "acct", Leader: acctLeader, Replicas: []string{"b", "c"},
				Lag: map[string]uint64{"b": 0, "c": 7}, Unhealthy: []string{"c"}, LastSeq: 10}, answered: true},
			{StreamStatus: jsstore.StreamStatus{Stream: "p0", Leader: p0Leader}, answered: p0Answered},
		}, map[string]uint64{"acct": 4}, log)
	}
	if got := exposed(t, w); len(got) != 0 {
		t.Errorf("before the first look: %v, want nothing", got)
	}
	look("a", "", false) // first look: nothing to compare with
	look("b", "", false) // acct: a → b
	look("", "", false)  // acct electing
	look("b", "x", true) // acct: still b
	look("a", "y", true) // acct: b → a, p0: x → y
	want := map[string]float64{
		`salamander_stream_leader_changes_total{site="a",stream="acct"}`:    2,
		`salamander_stream_leader_changes_total{site="a",stream="p0"}`:      1,
		`salamander_stream_leader{leader="a",site="a",stream="acct"}`:       1,
		`salamander_stream_leader{leader="y",site="a",stream="p0"}`:         1,
		`salamander_stream_replica_lag{replica="b",site="a",stream="acct"}`: 0,
		`salamander_stream_replica_lag{replica="c",site="a",stream="acct"}`: 7,
		`salamander_stream_replicas_current{site="a",stream="acct"}`:        2,
		`salamander_stream_replicas_current{site="a",stream="p0"}`:          1,
		`salamander_streams_without_leader{site="a"}`:                       0,
		`salamander_view_records_behind{site="a",stream="acct"}`:            6,
		`salamander_view_records_behind{site="a",stream="p0"}`:              0,
	}
	if got := exposed(t, w); !maps.Equal(got, want) {
		t.Errorf("exported\n%s\nwant\n%s", render(got), render(want))
	}
	look("", "y", false) // acct electing, p0 not answering
	if got := exposed(t, w)[`salamander_streams_without_leader{site="a"}`]; got != 2 {
		t.Errorf("streams without leader = %v, want 2", got)
	}
}

// exposed gathers c's samples, keyed as the exposition format writes them.
func exposed(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+strconv.Quote(l.GetValue()))
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			out[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func render(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		b.WriteString(k + " " + strconv.FormatFloat(m[k], 'g', -1, 64) + "\n")
	}
	return b.String()
}

// BenchmarkHotPathMetrics measures what the metrics add per send (its
// result and time), per applied message record and per message frame
// written to a device, from parallel goroutines as under load.
func BenchmarkHotPathMetrics(b *testing.B) {
	m := &metrics{}
	reg := prometheus.NewRegistry()
	m.sendDur = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "s", Buckets: latencyBuckets})
	m.applyLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "a", Buckets: lagBuckets})
	m.delivery = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d", Buckets: lagBuckets})
	m.sends = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "n"}, []string{"result"})
	m.messages = prometheus.NewCounter(prometheus.CounterOpts{Name: "m"})
	reg.MustRegister(m.sendDur, m.applyLag, m.delivery, m.sends, m.messages)
	m.sendOK, m.sendDup = m.sends.WithLabelValues("ok"), m.sends.WithLabelValues("duplicate")
	at := time.Now()
	batch := []view.Emitted{{Event: salamander.Event{Type: salamander.EventMessage, At: at}}}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.observeSend(salamander.SendResult{}, nil, time.Millisecond)
			m.observeApplied(batch)
			m.observeDelivery(at.UnixNano())
		}
	})
}
