package integration

import (
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The Grafana dashboard in ops/grafana queries only metrics that a site
// exports: a renamed or dropped metric would leave a panel silently
// empty.
func TestGrafanaDashboardUsesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile("../../ops/grafana/salamander-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	// Every labelled series exists once a request and a send have been
	// made and the site has looked at its streams.
	c, _ := signedUp(t, 0, "dash")
	ctx := testCtx(t, 30*time.Second)
	if _, err := c.Rooms(ctx); err != nil {
		t.Fatal(err)
	}
	var exported map[string]bool
	checkFor(t, 20*time.Second, 100*time.Millisecond, func() error {
		exported = scrape(t, 0).families
		if !exported["salamander_stream_leader"] {
			return errors.New("site has not looked at its streams yet")
		}
		return nil
	})
	metric := regexp.MustCompile(`\b(salamander|process|go)_[a-z_]+\b`)
	queried := 0
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				queried++
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if trimmed, ok := strings.CutSuffix(m, suffix); ok && exported[trimmed] {
						base = trimmed
					}
				}
				if !exported[base] {
					t.Errorf("panel %q queries %s, which no site exports", p.Title, m)
				}
			}
		}
	}
	if queried == 0 {
		t.Fatal("the dashboard queries no metric")
	}
	// What an operator watches first has a panel: send, apply and delivery
	// latency, replication, elections and connections.
	var exprs strings.Builder
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs.WriteString(tg.Expr + "\n")
		}
	}
	for _, m := range []string{"salamander_send_seconds_bucket", "salamander_sends_total",
		"salamander_view_apply_lag_seconds_bucket", "salamander_delivery_seconds_bucket", "salamander_view_records_behind",
		"salamander_stream_replica_lag", "salamander_stream_replicas_current", "salamander_streams_without_leader",
		"salamander_stream_leader_changes_total", "salamander_stream_leader", "salamander_websocket_connects_total",
		"salamander_websocket_disconnects_total", "salamander_nats_connected", "salamander_nats_reconnects_total"} {
		if !regexp.MustCompile(`\b` + m + `\b`).MatchString(exprs.String()) {
			t.Errorf("no panel charts %s", m)
		}
	}
}
