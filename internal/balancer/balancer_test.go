package balancer

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// gateway is a fake site gateway: /readyz answers ready's state, /who
// names the gateway and echoes the body, /ws echoes one WebSocket message.
type gateway struct {
	name  string
	ready atomic.Bool
	srv   *httptest.Server
	// whoDone counts the /who requests it has finished.
	whoDone atomic.Int64
}

func newGateway(t *testing.T, name string) *gateway {
	g := &gateway{name: name}
	g.ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if !g.ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("/who", func(w http.ResponseWriter, r *http.Request) {
		defer g.whoDone.Add(1)
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", g.name, b, r.Header.Get("X-Forwarded-For"))
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err == nil {
			_ = c.Write(r.Context(), typ, append([]byte(g.name+" "), msg...))
		}
	})
	// Every request on a new connection, so that a dead gateway refuses
	// it (a kept-alive one would fail it after it was sent: a 502).
	g.srv = httptest.NewUnstartedServer(mux)
	g.srv.Config.SetKeepAlivesEnabled(false)
	g.srv.Start()
	t.Cleanup(g.srv.Close)
	return g
}

// startBalancer balances gws, checking them every interval, behind a
// server of its own, and waits until every one is ready. stopChecks stops
// the health checks (also when t ends).
func startBalancer(t *testing.T, interval time.Duration, gws ...*gateway) (b *Balancer, lb *httptest.Server, stopChecks func()) {
	t.Helper()
	var urls []string
	for _, g := range gws {
		urls = append(urls, g.srv.URL)
	}
	cfg := DefaultConfig(urls...)
	cfg.Interval = interval
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); b.Run(ctx) }()
	stopChecks = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stopChecks)
	lb = httptest.NewServer(b)
	t.Cleanup(lb.Close)
	checkFor(t, 5*time.Second, func() error {
		if n := len(b.Ready()); n != len(gws) {
			return fmt.Errorf("%d gateways ready", n)
		}
		return nil
	})
	return b, lb, stopChecks
}

// checkFor polls cond until it returns nil or d has passed.
func checkFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for err := cond(); err != nil; err = cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func post(t *testing.T, url, body string) (int, string) {
	t.Helper()
	res, err := http.Post(url, "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The balancer spreads requests over the ready gateways, skips one whose
// /readyz fails, retries a request a dead gateway refused on the next one
// (body included), carries WebSockets, and answers 503 with none ready.
func TestBalancer(t *testing.T) {
	g1, g2 := newGateway(t, "g1"), newGateway(t, "g2")
	b, lb, stopChecks := startBalancer(t, 20*time.Millisecond, g1, g2)
	ctx := t.Context()
	seen := map[string]int{}
	for range 10 {
		code, body := post(t, lb.URL+"/who", "hi")
		name, rest, _ := strings.Cut(body, " ")
		if code != http.StatusOK || !strings.HasPrefix(rest, "hi 127.0.0.1") {
			t.Fatalf("%d %q", code, body)
		}
		seen[name]++
	}
	if seen["g1"] != 5 || seen["g2"] != 5 {
		t.Fatalf("requests per gateway: %v", seen)
	}

	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	c, _, err := websocket.Dial(wctx, strings.Replace(lb.URL, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Write(wctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(wctx)
	c.CloseNow()
	if err != nil || !strings.HasSuffix(string(msg), " ping") {
		t.Fatalf("WebSocket through the balancer: %q %v", msg, err)
	}

	// g1 is not ready: everything goes to g2.
	g1.ready.Store(false)
	checkFor(t, 5*time.Second, func() error {
		if r := b.Ready(); len(r) != 1 || r[0] != g2.srv.URL {
			return fmt.Errorf("ready: %v", r)
		}
		return nil
	})
	for range 4 {
		if code, body := post(t, lb.URL+"/who", "x"); code != http.StatusOK || !strings.HasPrefix(body, "g2 x") {
			t.Fatalf("%d %q", code, body)
		}
	}
	// g1 is ready again and g2 dies without a word: requests the dead one
	// refuses go to g1, body and all, before any health check notices.
	g1.ready.Store(true)
	checkFor(t, 5*time.Second, func() error {
		if n := len(b.Ready()); n != 2 {
			return fmt.Errorf("%d gateways ready", n)
		}
		return nil
	})
	stopChecks() // no health check from here on
	g2.srv.Close()
	for range 4 {
		if code, body := post(t, lb.URL+"/who", "y"); code != http.StatusOK || !strings.HasPrefix(body, "g1 y") {
			t.Fatalf("with g2 dead: %d %q", code, body)
		}
	}
	if r := b.Ready(); len(r) != 1 || r[0] != g1.srv.URL {
		t.Fatalf("ready after g2 refused: %v", r)
	}
	g1.srv.Close()
	if code, _ := post(t, lb.URL+"/who", "z"); code != http.StatusServiceUnavailable {
		t.Fatalf("with every gateway dead: %d, want 503", code)
	}
	res, err := http.Get(lb.URL + "/who")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Fatalf("with none ready: %d %v", res.StatusCode, res.Header)
	}
}

func TestNewRefusesBadBackends(t *testing.T) {
	for _, bad := range [][]string{nil, {"10.0.0.1:8080"}, {"ftp://x"}, {"http://"}} {
		if _, err := New(DefaultConfig(bad...)); err == nil {
			t.Errorf("backends %q accepted", bad)
		}
	}
}

// A client whose request body breaks off is answered 400, and no gateway
// is asked, nor taken out of service: otherwise any client could take
// every gateway out with aborted uploads.
func TestBrokenClientBodyKeepsTheGatewayInService(t *testing.T) {
	g := newGateway(t, "g1")
	b, lb, _ := startBalancer(t, time.Hour, g) // no health check puts it back meanwhile
	for range 5 {
		// A chunked body cut off midway, and one shorter than it said.
		for _, req := range []string{"Transfer-Encoding: chunked\r\n\r\n5\r\nhel", "Content-Length: 10\r\n\r\nhel"} {
			conn, err := net.Dial("tcp", lb.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(conn, "POST /who HTTP/1.1\r\nHost: x\r\n%s", req)
			_ = conn.(*net.TCPConn).CloseWrite()
			line, err := bufio.NewReader(conn).ReadString('\n')
			_ = conn.Close()
			if err != nil || !strings.Contains(line, " 400 ") {
				t.Fatalf("a body cut off: %q %v", line, err)
			}
		}
	}
	if n := g.whoDone.Load(); n != 0 {
		t.Fatalf("%d cut-off bodies reached the gateway", n)
	}
	if n := len(b.Ready()); n != 1 {
		t.Fatalf("aborted client bodies took the gateway out of service: %d ready", n)
	}
	if code, body := post(t, lb.URL+"/who", "hi"); code != http.StatusOK || !strings.HasPrefix(body, "g1 hi") {
		t.Fatalf("after aborted bodies: %d %q", code, body)
	}
}

// rawPost sends a POST of /who to the balancer by hand (headers as given,
// then body), half-closes the connection and returns the status line of
// the answer, which must come within 5 s.
func rawPost(t *testing.T, lb *httptest.Server, headers, body string) string {
	t.Helper()
	conn, err := net.Dial("tcp", lb.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /who HTTP/1.1\r\nHost: x\r\nConnection: close\r\n%s\r\n%s", headers, body)
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return "no answer: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// chunked encodes body as one chunk and the last one.
func chunked(body string) string { return fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body) }

// A request body is the API's at most (salamander.MaxBodyBytes): one up
// to that size, of known length or chunked, is kept so that a gateway
// that refuses it can be passed over; a larger one is answered 413 at once
// — declared too large, before it is read, and chunked, as soon as it
// outgrows the limit — and no gateway sees it.
func TestBodiesAreBoundedByTheAPIsLimit(t *testing.T) {
	g1, g2 := newGateway(t, "g1"), newGateway(t, "g2")
	b, lb, stopChecks := startBalancer(t, time.Hour, g1, g2)
	stopChecks()
	full := strings.Repeat("x", salamander.MaxBodyBytes)
	over := full + "x"

	for name, req := range map[string][2]string{
		"declared over the limit":  {fmt.Sprintf("Content-Length: %d\r\n", len(over)), over},
		"declared 1 GiB, not sent": {"Content-Length: 1073741824\r\n", "a few bytes"},
		"chunked over the limit":   {"Transfer-Encoding: chunked\r\n", chunked(over)},
	} {
		if line := rawPost(t, lb, req[0], req[1]); !strings.Contains(line, " 413 ") {
			t.Errorf("%s: %q, want 413", name, line)
		}
	}
	if n := g1.whoDone.Load() + g2.whoDone.Load(); n != 0 {
		t.Fatalf("%d bodies over the limit reached a gateway", n)
	}
	code, body := post(t, lb.URL+"/who", over)
	var e salamander.Error
	if code != http.StatusRequestEntityTooLarge || json.Unmarshal([]byte(body), &e) != nil || e.Code != salamander.CodeTooLarge {
		t.Fatalf("a body over the limit: %d %.200q", code, body)
	}

	// At the limit, and chunked, a body is passed on whole, and retried on
	// the other gateway when the first refuses it.
	if code, body := post(t, lb.URL+"/who", full); code != http.StatusOK || len(body) < len(full) {
		t.Fatalf("a body at the limit: %d %.100q", code, body)
	}
	g2.srv.Close()
	for range 2 { // whichever is next, the request ends at g1
		if line := rawPost(t, lb, "Transfer-Encoding: chunked\r\n", chunked("hello")); !strings.Contains(line, " 200 ") {
			t.Fatalf("a chunked body with g2 dead: %q", line)
		}
	}
	if code, body := post(t, lb.URL+"/who", full); code != http.StatusOK || !strings.HasPrefix(body, "g1 xxx") {
		t.Fatalf("a body at the limit with g2 dead: %d %.100q", code, body)
	}
	if r := b.Ready(); len(r) != 1 || r[0] != g1.srv.URL {
		t.Fatalf("ready after g2 refused: %v", r)
	}
}
