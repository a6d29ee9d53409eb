package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// smallBuffers wraps a listener so that every connection it accepts reads
// into a small kernel buffer: a peer that stops reading soon blocks the
// writer.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}

// A send waiting behind another send's frame that the kernel cannot take
// (the site stopped reading) ends when its own ctx ends, not when the
// stuck write is cut off at the request timeout.
func TestSendBehindABlockedWriteKeepsItsContext(t *testing.T) {
	stop := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) || r.URL.Path != "/v1/ws" {
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		if conn.Write(r.Context(), websocket.MessageText, []byte(`{"type":"ready"}`)) != nil {
			return
		}
		<-stop // and never reads a frame
	}))
	srv.Listener = smallBuffers{srv.Listener}
	srv.Start()
	defer srv.Close()
	defer close(stop)

	dialer := &net.Dialer{}
	httpClient := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetWriteBuffer(4096)
		}
		return c, err
	}}}
	const timeout = 10 * time.Second
	cl, err := New(Config{Sites: []string{srv.URL}, HTTPClient: httpClient, RequestTimeout: timeout,
		MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Rand: rand.NewPCG(1, 2)})
	if err != nil {
		t.Fatal(err)
	}
	cl.SetToken("tok")
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			break
		}
	}
	// Fill the socket until a send's frame stays unwritten.
	text := strings.Repeat("x", salamander.MaxMessageBytes)
	fillCtx, cancelFill := context.WithCancel(t.Context())
	defer cancelFill()
	for i := range 64 {
		go func() { _, _ = cl.SendWithID(fillCtx, room, "fill-"+strconv.Itoa(i), text) }()
	}
	// A frame is being written all along for 300 ms: the write is stuck
	// (64 frames of 4,000 bytes take microseconds while the kernel takes
	// them), with sends behind it.
	deadline := time.Now().Add(timeout / 2)
	for held := 0; held < 30; {
		cl.mu.Lock()
		sock := cl.sock
		cl.mu.Unlock()
		if sock != nil && len(sock.writing) == 1 && len(sock.slots) > 1 {
			held++
		} else {
			held = 0
		}
		if time.Now().After(deadline) {
			t.Fatal("the sends never blocked the socket")
		}
		time.Sleep(10 * time.Millisecond) // polling the socket's state
	}

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = cl.SendWithID(ctx, room, "late", "hi")
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > timeout/4 {
		t.Fatalf("send behind a blocked write: %v after %s, want its own deadline within %s", err, took, timeout/4)
	}
}
