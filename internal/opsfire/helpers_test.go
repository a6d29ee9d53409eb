package opsfire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// password is every test account's password.
const password = "correct horse battery"

// hc makes the test's own HTTP calls; no call may hang the test.
var hc = &http.Client{Timeout: 15 * time.Second}

// checkFor polls cond until it returns nil or d passes, failing the test
// with cond's last error.
func checkFor(t *testing.T, d, every time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s: %v", d, err)
		}
		time.Sleep(every)
	}
}

// call calls path at the site at base with token ("" for none) and a JSON
// body (nil for none), returning the status and body. A network error
// comes back as status 0 with the error as the body, so polls go on.
func call(ctx context.Context, base, method, path, token string, body any, header ...string) (int, []byte) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			panic(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, []byte(err.Error())
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(res.Body, 4<<20))
	return res.StatusCode, b
}

// statusOnly calls path and returns its status as soon as the headers are
// in, without reading the body (an event stream never ends).
func statusOnly(ctx context.Context, base, method, path, token string, body any) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var rd io.Reader = http.NoBody
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// decodeAs unmarshals an answer that must have status want.
func decodeAs[T any](code, want int, body []byte) (T, error) {
	var v T
	if code != want {
		return v, fmt.Errorf("status %d, want %d: %.500s", code, want, body)
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return v, fmt.Errorf("%v: %.500s", err, body)
	}
	return v, nil
}

// mustDecode is decodeAs that fails the test.
func mustDecode[T any](t *testing.T, code, want int, body []byte) T {
	t.Helper()
	v, err := decodeAs[T](code, want, body)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// pinnedClient returns an SDK client that talks to the given sites only,
// in order.
func pinnedClient(t *testing.T, urls ...string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Sites: urls, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond,
		RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// signUp makes the account name at the site at base.
func signUp(t *testing.T, ctx context.Context, base, name string) *client.Client {
	t.Helper()
	c := pinnedClient(t, base)
	if _, err := c.SignUp(ctx, name, "User "+name, password); err != nil {
		t.Fatalf("sign up %s at %s: %v", name, base, err)
	}
	return c
}

// opsSites is GET /v1/ops/sites's answer (and an overview event of GET
// /v1/ops/stream).
type opsSites struct {
	Site  string `json:"site"`
	Sites []struct {
		Name      string          `json:"name"`
		Reachable bool            `json:"reachable"`
		Ready     bool            `json:"ready"`
		Status    json.RawMessage `json:"status"`
		Error     string          `json:"error"`
	} `json:"sites"`
}

// survivorsView checks that a view of every site shows the named sites
// ready and the dead one unreachable, with why.
func (v opsSites) survivorsView(dead string, alive ...string) error {
	if len(v.Sites) != len(alive)+1 {
		return fmt.Errorf("lists %d sites, want %d", len(v.Sites), len(alive)+1)
	}
	for _, s := range v.Sites {
		switch {
		case s.Name == dead:
			if s.Reachable || s.Ready || s.Error == "" {
				return fmt.Errorf("the dead site %s shows as reachable %v, ready %v, error %q", s.Name, s.Reachable, s.Ready, s.Error)
			}
		case slices.Contains(alive, s.Name):
			if !s.Reachable || !s.Ready || !strings.Contains(string(s.Status), `"site":"`+s.Name+`"`) {
				return fmt.Errorf("site %s shows as reachable %v, ready %v, error %q, status %.200s", s.Name, s.Reachable,
					s.Ready, s.Error, s.Status)
			}
		default:
			return fmt.Errorf("unknown site %q listed", s.Name)
		}
	}
	return nil
}

// firstOverview reads GET /v1/ops/stream at base until its first
// "overview" event and returns the event's data.
func firstOverview(ctx context.Context, base, token string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel() // ends the stream
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ops/stream", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	// The stream never ends by itself: no client timeout, the context
	// bounds it.
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 1<<10))
		return "", fmt.Errorf("GET /v1/ops/stream: %d %s: %s", res.StatusCode, ct, b)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event string
	var data strings.Builder
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "overview" {
				return data.String(), nil
			}
			if event == "end" {
				return "", fmt.Errorf("the stream ended: %s", data.String())
			}
			event = ""
			data.Reset()
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data.WriteString(strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return "", fmt.Errorf("the stream ended without an overview: %v", sc.Err())
}

// route is one route of the gateway's ops plane and the least role it needs.
type route struct {
	Method, Pattern, Role string
}

// Path is the route's pattern with every wildcard replaced by a value
// that names nothing, so an allowed caller changes nothing.
func (r route) Path() string {
	return wildcard.ReplaceAllString(r.Pattern, "zz-nothing")
}

var (
	wildcard  = regexp.MustCompile(`\{[a-z]+\}`)
	routeLine = regexp.MustCompile(`m\.HandleFunc\("(GET|POST|PUT|PATCH|DELETE) (/v1/ops/[^"]*|/v1/reports[^"]*)", (.*)\)\s*$`)
)

// opsRoutes reads the ops plane's routes from the gateway's routes(), so
// that a route added there is in the authorization matrix the day it is
// added; a route whose role the test cannot tell fails the test.
func opsRoutes(t *testing.T) []route {
	t.Helper()
	src, err := os.ReadFile("../gateway/gateway.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []route
	for line := range strings.Lines(string(src)) {
		m := routeLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := route{Method: m[1], Pattern: m[2]}
		h := m[3]
		switch {
		case strings.Contains(h, "salamander.RoleAdmin") || strings.HasPrefix(h, "g.handle(admin,"):
			r.Role = salamander.RoleAdmin
		case strings.Contains(h, "salamander.RoleOperator") || strings.HasPrefix(h, "g.handle(op,"):
			r.Role = salamander.RoleOperator
		case strings.HasPrefix(h, "g.handle(user,") || strings.Contains(h, "salamander.RoleUser"):
			r.Role = salamander.RoleUser
		default:
			t.Fatalf("route %s %s: cannot tell which role it needs from %q; teach opsRoutes", r.Method, r.Pattern, h)
		}
		out = append(out, r)
	}
	// The reading must not quietly miss routes.
	for _, want := range []string{"GET /v1/ops/audit", "GET /v1/ops/audit.csv", "GET /v1/ops/sites",
		"GET /v1/ops/site", "GET /v1/ops/stream",
		"PUT /v1/ops/users/{name}/role", "POST /v1/ops/users/{name}/suspend", "POST /v1/ops/users/{name}/restore",
		"POST /v1/ops/users/{name}/revoke", "POST /v1/ops/incidents", "POST /v1/ops/incidents/{id}/updates",
		"POST /v1/ops/sites/{name}/drain", "POST /v1/ops/sites/{name}/undrain", "POST /v1/ops/streams/{stream}/leader",
		"GET /v1/ops/drills", "GET /v1/ops/drills.csv", "GET /v1/ops/drills/{id}", "POST /v1/ops/drills",
		"GET /v1/ops/reports", "GET /v1/ops/reports.csv", "POST /v1/ops/reports/{id}/review",
		"POST /v1/reports", "GET /v1/reports", "GET /v1/reports/{id}", "POST /v1/reports/{id}/details"} {
		if !slices.ContainsFunc(out, func(r route) bool { return r.Method+" "+r.Pattern == want }) {
			t.Fatalf("opsRoutes did not find %s in gateway.go's routes()", want)
		}
	}
	return out
}
