package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// scraped is one read of a site's /metrics.
type scraped struct {
	// samples are the values by series as exposed: name{a="x",b="y"}.
	samples map[string]float64
	// families are the metric names with a TYPE line.
	families map[string]bool
}

// scrape reads site i's /metrics.
func scrape(t *testing.T, i int) scraped {
	t.Helper()
	res, err := http.Get(cluster.URL(i) + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics at site %d: %d %v", i, res.StatusCode, err)
	}
	s := scraped{samples: map[string]float64{}, families: map[string]bool{}}
	for _, line := range strings.Split(string(body), "\n") {
		if name, ok := strings.CutPrefix(line, "# TYPE "); ok {
			s.families[strings.Fields(name)[0]] = true
		}
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		s.samples[line[:sp]] = v
	}
	return s
}

// sum adds the samples of metric name that carry every one of labels
// (`k="v"`), and counts them.
func (s scraped) sum(name string, labels ...string) (total float64, n int) {
	for series, v := range s.samples {
		base, set, _ := strings.Cut(series, "{")
		if base != name {
			continue
		}
		have := strings.Split(strings.TrimSuffix(set, "}"), ",")
		match := true
		for _, l := range labels {
			match = match && slices.Contains(have, l)
		}
		if match {
			total += v
			n++
		}
	}
	return total, n
}

// After a send, a delivery and a WebSocket's life at a site, its /metrics
// has counted them (send time and results, apply lag, delivery latency,
// connects and disconnects by reason), says its NATS connection is up,
// and shows every stream led, with all three replicas current.
func TestMetricsAfterTraffic(t *testing.T) {
	const site = 0
	a, _ := signedUp(t, site, "metra")
	b, bName := signedUp(t, 1, "metrb")
	ctx := testCtx(t, 60*time.Second)
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Rooms(ctx); err != nil {
		t.Fatal(err)
	}
	before := scrape(t, site)

	peer := dialWS(t, site, a.Token())
	// b's message, accepted at site 1, is applied at site 0 and written to
	// a's device there.
	if _, err := b.Send(ctx, room.ID, "from b"); err != nil {
		t.Fatal(err)
	}
	peer.next(salamander.EventMessage, "", 10*time.Second)
	// a's send on its socket is timed at site 0.
	peer.send(room.ID, "metrics-1", "from a")
	wantAck(t, peer.answer("metrics-1"), room.ID, 2, false)
	peer.send(room.ID, "metrics-1", "from a")
	wantAck(t, peer.answer("metrics-1"), room.ID, 2, true)
	peer.send(room.ID, "metrics-2", "")
	wantNack(t, peer.answer("metrics-2"), salamander.CodeInvalid)
	if err := peer.conn.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatal(err)
	}

	grew := []struct {
		name   string
		labels []string
		by     float64
	}{
		{"salamander_send_seconds_count", nil, 2},
		{"salamander_sends_total", []string{`result="ok"`}, 1},
		{"salamander_sends_total", []string{`result="duplicate"`}, 1},
		{"salamander_sends_total", []string{`result="invalid_request"`}, 1},
		{"salamander_view_apply_lag_seconds_count", nil, 2},
		{"salamander_delivery_seconds_count", nil, 2},
		{"salamander_websocket_connects_total", nil, 1},
		{"salamander_websocket_disconnects_total", []string{`reason="device"`}, 1},
	}
	streams := cluster.Site(site).Store().Streams()
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		now := scrape(t, site)
		for _, g := range grew {
			was, _ := before.sum(g.name, g.labels...)
			is, n := now.sum(g.name, g.labels...)
			if n == 0 || is < was+g.by {
				return fmt.Errorf("%s%v went from %v to %v (%d series), want +%v", g.name, g.labels, was, is, n, g.by)
			}
		}
		if v, n := now.sum("salamander_nats_connected"); n != 1 || v != 1 {
			return fmt.Errorf("salamander_nats_connected = %v (%d series)", v, n)
		}
		if _, n := now.sum("salamander_nats_reconnects_total"); n != 1 {
			return fmt.Errorf("no salamander_nats_reconnects_total")
		}
		if v, n := now.sum("salamander_streams_without_leader"); n != 1 || v != 0 {
			return fmt.Errorf("salamander_streams_without_leader = %v (%d series)", v, n)
		}
		for _, s := range streams {
			stream := `stream="` + s + `"`
			if v, n := now.sum("salamander_stream_leader", stream); n != 1 || v != 1 {
				return fmt.Errorf("stream %s: %d leaders", s, n)
			}
			if v, _ := now.sum("salamander_stream_replicas_current", stream); v != 3 {
				return fmt.Errorf("stream %s: %v replicas current, want 3", s, v)
			}
			if _, n := now.sum("salamander_stream_replica_lag", stream); n != 2 {
				return fmt.Errorf("stream %s: lag of %d replicas, want 2 followers", s, n)
			}
			if _, n := now.sum("salamander_stream_leader_changes_total", stream); n != 1 {
				return fmt.Errorf("stream %s: no leader change count", s)
			}
			if _, n := now.sum("salamander_view_records_behind", stream); n != 1 {
				return fmt.Errorf("stream %s: no records-behind gauge", s)
			}
		}
		return nil
	})
}

// docs/METRICS.md documents exactly the salamander_* metrics a site exports.
func TestMetricsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/METRICS.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(salamander_[a-z_]+)`").FindAllStringSubmatch(string(doc), -1) {
		documented[m[1]] = true
	}
	if len(documented) == 0 {
		t.Fatal("docs/METRICS.md lists no metric")
	}
	// Every series exists once the site has served a request, appended a
	// record and looked at its streams.
	signedUp(t, 0, "metdoc")
	var exported map[string]bool
	_ = waitFor(20*time.Second, 100*time.Millisecond, func() error {
		exported = scrape(t, 0).families
		for name := range documented {
			if !exported[name] {
				return fmt.Errorf("%s not exported yet", name)
			}
		}
		return nil
	})
	for name := range exported {
		if strings.HasPrefix(name, "salamander_") && !documented[name] {
			t.Errorf("%s is exported but not in docs/METRICS.md", name)
		}
	}
	// A site may run several gateways: every series names its site and
	// the process (the instance, here the HTTP address) that exports it.
	site, instance := `site="a"`, fmt.Sprintf(`instance=%q`, strings.TrimPrefix(cluster.URL(0), "http://"))
	for series := range scrape(t, 0).samples {
		name, labels, _ := strings.Cut(series, "{")
		have := strings.Split(strings.TrimSuffix(labels, "}"), ",")
		if strings.HasPrefix(name, "salamander_") && (!slices.Contains(have, site) || !slices.Contains(have, instance)) {
			t.Errorf("%s lacks %s or %s", series, site, instance)
		}
	}
	for name := range documented {
		if !exported[name] {
			t.Errorf("docs/METRICS.md lists %s, which no site exports", name)
		}
	}
}
