package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// What anyone may read about a site — GET /v1/status, /readyz and
// /healthz, which need no token — is what a public status page shows:
// whether the site serves and how each service is doing. The site's
// traffic and internals (users connected, log positions, stream leaders,
// NATS servers, gateway processes, warnings, why it is not ready) are in
// GET /v1/ops/site, for operators; a plain user is refused them.
func TestPublicStatusShowsNoInternals(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	op, _ := operator(t, ctx, 0, "pubop")
	user, _ := signedUp(t, 0, "pubuser")
	sub := user.Subscribe(ctx) // a connected user, for the count below
	defer sub.Close()
	waitReady(t, sub.Events())
	warning := uniqueName("public status test warning at 10.1.2.3 ")
	cluster.Site(0).Gateway().Warn(warning)

	moved := []string{"instance", "site_gateways", "uptime_seconds", "nats_connected", "isolated", "nats_server", "applied",
		"entries_applied", "websockets", "stalled", "warnings", "streams", "standbys", "streams_error", "standbys_error",
		"signing_key", "caught_up", "drained", "log_alarm", "read_model", "recent_errors", "counters", "nats"}
	public := map[string][]string{
		"/v1/status": {"site", "ready", "up_to_date", "services", "open_incidents"},
		"/readyz":    {"ready", "site"},
		"/healthz":   {"status", "site"},
	}
	for path, want := range public {
		for _, token := range []string{"", user.Token(), op.Token()} { // the same to everyone
			code, body := opsCall(t, 0, "GET", path, token, nil)
			var got map[string]any
			if code != http.StatusOK || json.Unmarshal(body, &got) != nil {
				t.Fatalf("%s: %d %s", path, code, body)
			}
			for k := range got {
				if !slices.Contains(want, k) || slices.Contains(moved, k) {
					t.Errorf("%s shows %q: %s", path, k, body)
				}
			}
			if len(got) != len(want) || got["site"] != "a" {
				t.Errorf("%s: %s, want the fields %q", path, body, want)
			}
			if strings.Contains(string(body), warning) || strings.Contains(string(body), "site-a") {
				t.Errorf("%s names an internal: %s", path, body)
			}
		}
	}
	code, body := opsCall(t, 0, "GET", "/v1/status", "", nil)
	st := decode[struct {
		Ready    bool `json:"ready"`
		UpToDate bool `json:"up_to_date"`
		Services []struct{ Name, State string }
	}](t, http.StatusOK, code, body)
	if !st.Ready || !st.UpToDate || len(st.Services) == 0 {
		t.Fatalf("public status of a serving site: %s", body)
	}

	// An operator reads what moved, at every site and for every site.
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		code, body := opsCall(t, 0, "GET", "/v1/ops/site", op.Token(), nil)
		var d map[string]any
		if code != http.StatusOK || json.Unmarshal(body, &d) != nil {
			return fmt.Errorf("ops/site: %d %s", code, body)
		}
		for _, k := range []string{"instance", "site_gateways", "uptime_seconds", "nats_connected", "isolated", "nats_server",
			"applied", "entries_applied", "websockets", "warnings", "streams", "standbys", "signing_key", "caught_up"} {
			if _, ok := d[k]; !ok {
				return fmt.Errorf("ops/site lacks %q: %.500s", k, body)
			}
		}
		if ws, _ := d["websockets"].(float64); ws < 1 || !strings.Contains(string(body), warning) {
			return fmt.Errorf("ops/site: websockets %v, warning shown %v", d["websockets"], strings.Contains(string(body), warning))
		}
		return nil
	})
	code, body = opsCall(t, 1, "GET", "/v1/ops/sites", op.Token(), nil)
	sites := decode[struct {
		Sites []struct {
			Name   string
			Ready  bool
			Status struct {
				Site    string            `json:"site"`
				Applied map[string]uint64 `json:"applied"`
				Streams []struct{ Stream, Leader string }
			}
		}
	}](t, http.StatusOK, code, body)
	if len(sites.Sites) != 3 {
		t.Fatalf("ops/sites: %s", body)
	}
	for _, s := range sites.Sites {
		if !s.Ready || s.Status.Site != s.Name || len(s.Status.Applied) == 0 || len(s.Status.Streams) == 0 {
			t.Fatalf("ops/sites lists %s without its detail: %s", s.Name, body)
		}
	}

	// Nobody else does.
	for _, path := range []string{"/v1/ops/site", "/v1/ops/sites"} {
		if code, body := opsCall(t, 0, "GET", path, "", nil); code != http.StatusUnauthorized {
			t.Errorf("anonymous %s: %d %s", path, code, body)
		}
		if code, body := opsCall(t, 0, "GET", path, user.Token(), nil); code != http.StatusForbidden {
			t.Errorf("a user's %s: %d %s", path, code, body)
		}
	}
}
