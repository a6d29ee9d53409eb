package wsock

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Idle sockets hold no goroutine: each is parked once nothing arrives, and
// wakes for the next frame, a close or CloseNow.
func TestIdleSocketsPark(t *testing.T) {
	ts := newTestServer(t, Options{ParkAfter: 20 * time.Millisecond})
	if !ts.ws.Parks() {
		t.Skip("sockets are not parked on this system")
	}
	const n = 50
	base := runtime.NumGoroutine()
	clients := make([]*rawClient, n)
	echoes := make([]*echo, n)
	for i := range n {
		clients[i], echoes[i] = ts.dialRaw(t)
		clients[i].send(frame(0x81, []byte("first"), false))
		if op, p := clients[i].read(); op != opText || string(p) != "first" {
			t.Fatalf("got %#x %q", op, p)
		}
	}
	// The test's own side holds no goroutine per socket either; the
	// server's, once parked, none. (httptest's handlers have returned.)
	waitFor(t, "the sockets to park", func() bool { return runtime.NumGoroutine() <= base+5 })
	for i, rc := range clients {
		rc.send(frame(0x81, []byte("again"), false))
		if op, p := rc.read(); op != opText || string(p) != "again" {
			t.Fatalf("socket %d after parking: got %#x %q", i, op, p)
		}
	}
	waitFor(t, "the sockets to park again", func() bool { return runtime.NumGoroutine() <= base+5 })
	// A parked socket closed by the server ends its reading.
	echoes[0].c.CloseNow()
	if err := waitEnded(t, echoes[0]); err == nil {
		t.Fatal("reading of a cut socket ended cleanly")
	}
	// A parked socket whose client goes away ends too.
	clients[1].nc.Close()
	if err := waitEnded(t, echoes[1]); err == nil {
		t.Fatal("reading of a dropped socket ended cleanly")
	}
	// Closing the server resumes the rest: they are served on, with a
	// goroutine each.
	ts.ws.Close()
	clients[2].send(frame(0x81, []byte("after"), false))
	if op, p := clients[2].read(); op != opText || string(p) != "after" {
		t.Fatalf("after the poller stopped: got %#x %q", op, p)
	}
}

// A socket over TLS parks, and wakes for the next message, end to end.
func TestTLSSocketsParkAndWake(t *testing.T) {
	ts := &testServer{ws: NewServer(Options{ParkAfter: 20 * time.Millisecond}), conns: make(chan *echo, 10)}
	t.Cleanup(ts.ws.Close)
	if !ts.ws.Parks() {
		t.Skip("sockets are not parked on this system")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := ts.ws.Upgrade(w, r, "", nil)
		if err != nil {
			t.Error(err)
			return
		}
		e := &echo{c: c, ended: make(chan error, 1)}
		c.Serve(e)
		ts.conns <- e
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "wss"+strings.TrimPrefix(srv.URL, "https"),
		&websocket.DialOptions{HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	e := <-ts.conns
	for i := range 3 {
		msg := fmt.Sprintf("over TLS %d", i)
		if err := client.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := client.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
		waitFor(t, "the socket to park", func() bool {
			e.c.mu.Lock()
			defer e.c.mu.Unlock()
			return e.c.srv.poll.has(e.c.parkID)
		})
	}
}

// A TLS connection may hold decrypted bytes the poller cannot see: the
// socket must not park on them.
func TestTLSBytesAreReadBeforeParking(t *testing.T) {
	s := NewServer(Options{})
	defer s.Close()
	if !s.Parks() {
		t.Skip("sockets are not parked on this system")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // for its certificate
	srv.Close()
	accepted := make(chan *tls.Conn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		sc := tls.Server(nc, srv.TLS)
		_ = sc.Handshake()
		accepted <- sc
	}()
	client, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	sc := <-accepted
	if sc == nil {
		t.Fatal("no connection accepted")
	}
	defer sc.Close()
	// One TLS record of 5,000 bytes: the first read takes 4,096 of them,
	// and the rest stay inside the TLS connection.
	go client.Write(make([]byte, 5000))
	c := &Conn{srv: s, nc: sc}
	c.parkable, c.probe = s.parkable(sc)
	if c.parkable == nil || !c.probe {
		t.Fatal("a TLS connection over TCP is not parkable with a probe")
	}
	if err := c.fill(1); err != nil || c.end != readBufSize {
		t.Fatalf("first read: %d bytes, %v", c.end, err)
	}
	c.pos = c.end // used up
	more, err := c.awaitData()
	if err != nil || !more {
		t.Fatalf("awaitData = %v, %v: the socket parked with bytes in its TLS connection", more, err)
	}
	if c.end-c.pos != 5000-readBufSize {
		t.Fatalf("%d bytes read, want the record's other %d", c.end-c.pos, 5000-readBufSize)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
