package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/salamander-chat/salamander/internal/wsock"
)

// writesConn records each write(2) a corkWriter makes, and the write
// deadlines it sets.
type writesConn struct {
	net.Conn
	writes    [][]byte
	deadlines []time.Time
	err       error
}

func (c *writesConn) SetWriteDeadline(t time.Time) error {
	c.deadlines = append(c.deadlines, t)
	return nil
}

func (c *writesConn) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	c.writes = append(c.writes, bytes.Clone(p))
	return len(p), nil
}

func TestCorkWriterGathersFramesIntoOneWrite(t *testing.T) {
	conn := &writesConn{}
	w := &corkWriter{conn: conn}
	w.Write([]byte("a"))
	if len(conn.writes) != 1 {
		t.Fatalf("uncorked write made %d writes, want 1", len(conn.writes))
	}
	w.cork()
	w.Write([]byte("b"))
	w.Write([]byte("c"))
	if len(conn.writes) != 1 {
		t.Fatalf("corked writes reached the connection: %q", conn.writes)
	}
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	if len(conn.writes) != 2 || string(conn.writes[1]) != "bc" {
		t.Fatalf("writes %q, want [a bc]", conn.writes)
	}
	if w.buf != nil {
		t.Fatal("an uncorked writer holds a buffer")
	}
	if err := w.uncork(); err != nil || len(conn.writes) != 2 {
		t.Fatalf("an empty uncork wrote: %q, %v", conn.writes, err)
	}
}

func TestCorkWriterFlushesAtItsLimitAndKeepsOrder(t *testing.T) {
	conn := &writesConn{}
	w := &corkWriter{conn: conn}
	w.cork()
	small := bytes.Repeat([]byte("s"), corkLimit-10)
	w.Write(small)
	w.Write([]byte("0123456789x")) // does not fit: the gathered bytes go first
	big := bytes.Repeat([]byte("b"), corkLimit+1)
	w.Write(big) // never gathered
	w.Write([]byte("tail"))
	if err := w.uncork(); err != nil {
		t.Fatal(err)
	}
	got := bytes.Join(conn.writes, nil)
	want := bytes.Join([][]byte{small, []byte("0123456789x"), big, []byte("tail")}, nil)
	if !bytes.Equal(got, want) {
		t.Fatalf("bytes reordered or lost: %d bytes, want %d", len(got), len(want))
	}
	if len(conn.writes) != 4 {
		t.Fatalf("%d writes, want 4 (gathered, gathered, big, tail)", len(conn.writes))
	}
}

func TestCorkWriterReportsAFailedFlush(t *testing.T) {
	conn := &writesConn{}
	w := &corkWriter{conn: conn}
	w.cork()
	if _, err := w.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	conn.err = errors.New("broken pipe")
	if err := w.uncork(); err == nil {
		t.Fatal("a failed flush reported no error")
	}
}

// Every write has a deadline between half of wsWriteTimeout and all of it
// ahead, set anew only when less than half is left; a deadline the socket
// sets before a cut stays.
func TestCorkWriterKeepsARollingWriteDeadline(t *testing.T) {
	conn := &writesConn{}
	w := &corkWriter{conn: conn}
	start := time.Now()
	for range 100 {
		w.Write([]byte("frame"))
	}
	w.cork()
	w.Write([]byte("corked"))
	w.uncork()
	if len(conn.writes) != 101 || len(conn.deadlines) != 1 {
		t.Fatalf("%d writes set %d deadlines, want 101 and 1", len(conn.writes), len(conn.deadlines))
	}
	if d := conn.deadlines[0].Sub(start); d < wsWriteTimeout || d > wsWriteTimeout+time.Second {
		t.Fatalf("deadline %v ahead, want %v", d, wsWriteTimeout)
	}
	w.deadline = time.Now().Add(wsWriteTimeout/2 - time.Millisecond) // time passed
	w.Write([]byte("later"))
	if len(conn.deadlines) != 2 || time.Until(conn.deadlines[1]) < wsWriteTimeout-time.Second {
		t.Fatalf("deadlines %v: a write with less than half the timeout left must set a new one", conn.deadlines)
	}
	cut := time.Now().Add(time.Second)
	w.SetWriteDeadline(cut)
	w.deadline = time.Now() // even with nothing left, the cut's deadline stays
	w.cork()
	w.Write([]byte("close"))
	w.uncork()
	if len(conn.deadlines) != 3 || !conn.deadlines[2].Equal(cut) {
		t.Fatalf("deadlines %v: a pinned deadline was moved", conn.deadlines)
	}
}

// lockedWrites records each write(2) a socket's corkWriter makes, for a
// test that reads them while the writer runs.
type lockedWrites struct {
	net.Conn
	mu     sync.Mutex
	writes []string
}

func (c *lockedWrites) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, string(p))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *lockedWrites) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.writes)
}

// openTestSocket accepts a real WebSocket as handleWebSocket does and
// returns the server's side for user alice (replay done), with its writes
// recorded, the writer holding echoes for hold.
func openTestSocket(t *testing.T, hold time.Duration) (*wsConn, *lockedWrites) {
	t.Helper()
	ws := wsock.NewServer(wsock.Options{})
	t.Cleanup(ws.Close)
	g := &Gateway{metrics: &metrics{delivery: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "d"})}, ackHold: hold, ws: ws}
	accepted := make(chan *wsConn, 1)
	rec := &lockedWrites{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var cork *corkWriter
		conn, err := ws.Upgrade(w, r, "", func(nc net.Conn) io.Writer {
			rec.Conn = nc
			cork = &corkWriter{conn: rec}
			return cork
		})
		if err != nil {
			t.Error(err)
			return
		}
		accepted <- &wsConn{g: g, conn: conn, cork: cork, user: "alice", ready: true}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.CloseNow() })
	go func() { // the device reads whatever it gets
		for {
			if _, _, err := client.Read(context.Background()); err != nil {
				return
			}
		}
	}()
	c := <-accepted
	t.Cleanup(func() {
		c.abort()
		c.wg.Wait()
	})
	return c, rec
}

// waitWrites polls until rec holds n writes and returns them.
func waitWrites(t *testing.T, rec *lockedWrites, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if w := rec.list(); len(w) >= n {
			return w
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes after 10 s, want %d: %q", len(rec.list()), n, rec.list())
		}
		time.Sleep(time.Millisecond)
	}
}

func testFrame(kind, sender string) outFrame {
	return outFrame{data: []byte(`{"type":"` + kind + `","from":"` + sender + `"}`), sender: sender}
}

// The echo of a message the device sent waits for the send's ack, and
// both go out in one write; without an ack it goes out when the hold
// ends; other members' messages never wait.
func TestEchoOfOwnSendGoesOutWithItsAck(t *testing.T) {
	t.Run("with its ack", func(t *testing.T) {
		c, rec := openTestSocket(t, time.Hour)
		c.mu.Lock()
		c.inflight = 1 // the send's lane waits for its apply
		c.mu.Unlock()
		c.enqueue(testFrame("message", "alice"), false, false)
		deadline := time.Now().Add(10 * time.Second)
		for { // poll until the writer holds the echo
			if w := rec.list(); len(w) != 0 {
				t.Fatalf("the echo went out before its ack: %q", w)
			}
			c.mu.Lock()
			awaiting := c.awaiting
			c.mu.Unlock()
			if awaiting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the writer never held the echo")
			}
			time.Sleep(time.Millisecond)
		}
		c.mu.Lock()
		c.inflight = 0
		c.mu.Unlock()
		c.enqueue(testFrame("ack", ""), true, false)
		w := waitWrites(t, rec, 1)
		if len(w) != 1 || !strings.Contains(w[0], `"type":"message"`) || !strings.Contains(w[0], `"type":"ack"`) ||
			strings.Index(w[0], `"type":"message"`) > strings.Index(w[0], `"type":"ack"`) {
			t.Fatalf("writes %q, want the echo and then the ack in one", w)
		}
	})
	t.Run("no ack within the hold", func(t *testing.T) {
		c, rec := openTestSocket(t, 20*time.Millisecond)
		c.mu.Lock()
		c.inflight = 1
		c.mu.Unlock()
		c.enqueue(testFrame("message", "alice"), false, false)
		if w := waitWrites(t, rec, 1); len(w) != 1 || !strings.Contains(w[0], `"type":"message"`) {
			t.Fatalf("writes %q, want the echo alone", w)
		}
	})
	t.Run("another member's message", func(t *testing.T) {
		c, rec := openTestSocket(t, time.Hour)
		c.mu.Lock()
		c.inflight = 1
		c.mu.Unlock()
		c.enqueue(testFrame("message", "bob"), false, false)
		if w := waitWrites(t, rec, 1); !strings.Contains(w[0], `"from":"bob"`) {
			t.Fatalf("writes %q, want bob's message", w)
		}
	})
	t.Run("nothing in flight", func(t *testing.T) {
		c, rec := openTestSocket(t, time.Hour)
		c.enqueue(testFrame("message", "alice"), false, false) // sent from another device
		if w := waitWrites(t, rec, 1); !strings.Contains(w[0], `"from":"alice"`) {
			t.Fatalf("writes %q, want the message", w)
		}
	})
}
