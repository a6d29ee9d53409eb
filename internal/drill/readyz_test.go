package drill

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A site that raised the log alarm waits for an operator, not for time:
// WaitReady says so at once instead of at its deadline. The public /readyz
// says only that the site is not ready; the alarm is read, with the
// drill's operator token, from the site's GET /v1/ops/site.
func TestWaitReadyReportsTheLogAlarm(t *testing.T) {
	const alarm = "stream p0: record 7 is not what the log held"
	c := fakeSite(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "site": "a"})
		case "/v1/ops/site":
			if r.Header.Get("Authorization") != "Bearer ops-token" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "site": "a", "log_alarm": alarm})
		default:
			http.NotFound(w, r)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	err := c.WaitReady(ctx, 0)
	if err == nil || !strings.Contains(err.Error(), "raised the log alarm") || !strings.Contains(err.Error(), alarm) {
		t.Fatalf("WaitReady: %v; want the log alarm named", err)
	}
	if took := time.Since(start); ctx.Err() != nil || took > alarmCheckAfter+2*time.Second {
		t.Fatalf("WaitReady answered after %v, at its deadline: %v", took, err)
	}

	// Without a token it cannot know why, and waits as for any site not
	// ready yet.
	c.opsToken = ""
	short, cancelShort := context.WithTimeout(context.Background(), alarmCheckAfter+time.Second)
	defer cancelShort()
	if err := c.WaitReady(short, 0); err == nil || strings.Contains(err.Error(), "log alarm") || !strings.Contains(err.Error(), "answers 503") {
		t.Fatalf("WaitReady without a token: %v; want a wait for readiness", err)
	}
}

// A site that is merely starting is not asked about the log alarm: the
// question (an operator's GET /v1/ops/site, which may ask the cluster)
// would slow the wait that measures how soon the site is ready.
func TestWaitReadyAsksAStartingSiteNothingMore(t *testing.T) {
	readyAt := time.Now().Add(500 * time.Millisecond)
	var ops atomic.Int32
	c := fakeSite(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if time.Now().Before(readyAt) {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": !time.Now().Before(readyAt), "site": "a"})
		case "/v1/ops/site":
			ops.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.WaitReady(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if n := ops.Load(); n != 0 {
		t.Errorf("asked GET /v1/ops/site %d times while the site started", n)
	}
}

// A site that could not confirm the drill's operator answers GET
// /v1/ops/site with its public status only (limited): no log positions or
// streams. Status says so instead of passing it on as a site that applied
// nothing and lists no streams.
func TestALimitedAnswerIsNotASiteStatus(t *testing.T) {
	c := fakeSite(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "site": "a", "up_to_date": false,
			"limited": "not confirmed as an operator here"})
	})
	if _, err := c.Status(t.Context(), 0); err == nil || !strings.Contains(err.Error(), "not confirmed as an operator") {
		t.Fatalf("Status of a limited answer: %v; want an error saying why", err)
	}
}

// A site that cannot confirm the drill's operator (its accounts' stream is
// what it refuses, say) answers GET /v1/ops/site without the alarm; the
// alarm is then read from its /metrics.
func TestWaitReadyReadsTheLogAlarmFromMetrics(t *testing.T) {
	c := fakeSite(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "site": "a"})
		case "/v1/ops/site":
			_ = json.NewEncoder(w).Encode(map[string]any{"ready": false, "site": "a",
				"limited": "not confirmed as an operator here"})
		case "/metrics":
			_, _ = w.Write([]byte("# TYPE salamander_not_ready gauge\n" +
				`salamander_not_ready{instance="x",reason="isolated",site="a"} 0` + "\n" +
				`salamander_not_ready{instance="x",reason="log_alarm",site="a"} 1` + "\n"))
		default:
			http.NotFound(w, r)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.WaitReady(ctx, 0)
	if err == nil || !strings.Contains(err.Error(), "raised the log alarm") || ctx.Err() != nil {
		t.Fatalf("WaitReady: %v; want the log alarm from /metrics, before the deadline", err)
	}
}

// fakeSite is a Cluster attached to one site, a, served by h, with the
// drill's operator token "ops-token"; the server ends with the test.
func fakeSite(t *testing.T, h http.HandlerFunc) *Cluster {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &Cluster{hc: srv.Client(), sites: []*siteProc{{name: "a", url: srv.URL}}, attached: true, opsToken: "ops-token"}
}
