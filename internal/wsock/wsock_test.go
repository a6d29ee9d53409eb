package wsock

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
)

// echo is a Handler that writes every text message back and records how
// reading ended.
type echo struct {
	c     *Conn
	mu    sync.Mutex
	msgs  []string
	cuts  []bool
	ended chan error
}

func (e *echo) Message(binary bool, data []byte, cut bool) bool {
	e.mu.Lock()
	e.msgs = append(e.msgs, string(data))
	e.cuts = append(e.cuts, cut)
	e.mu.Unlock()
	if string(data) == "stop" {
		e.c.Close(StatusNormalClosure, "asked to stop")
		return false
	}
	_ = e.c.WriteText(data)
	return true
}

func (e *echo) Ended(err error) { e.ended <- err }

// testServer serves WebSockets with an echo handler each; conns yields
// them as they open.
type testServer struct {
	ws    *Server
	url   string
	conns chan *echo
}

func newTestServer(t *testing.T, opts Options) *testServer {
	t.Helper()
	ts := &testServer{ws: NewServer(opts), conns: make(chan *echo, 100)}
	t.Cleanup(ts.ws.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := ts.ws.CheckRequest(r); err != nil {
			http.Error(w, err.Error(), err.(*HandshakeError).Status)
			return
		}
		c, err := ts.ws.Upgrade(w, r, "", nil)
		if err != nil {
			t.Error(err)
			return
		}
		e := &echo{c: c, ended: make(chan error, 1)}
		c.Serve(e)
		ts.conns <- e
	}))
	t.Cleanup(srv.Close)
	ts.url = srv.URL
	return ts
}

// rawClient speaks WebSocket byte by byte, to send what a library would
// not.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (ts *testServer) dialRaw(t *testing.T) (*rawClient, *echo) {
	t.Helper()
	nc, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	req := "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + "\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 6455's own example key and answer.
	if res.StatusCode != http.StatusSwitchingProtocols || res.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake answered %d %v", res.StatusCode, res.Header)
	}
	select {
	case e := <-ts.conns:
		return &rawClient{t: t, nc: nc, br: br}, e
	case <-time.After(10 * time.Second):
		t.Fatal("the server never opened the socket")
	}
	return nil, nil
}

// frame encodes a client frame: masked unless unmasked, with the header's
// first byte b0 (FIN, RSV, opcode).
func frame(b0 byte, payload []byte, unmasked bool) []byte {
	out := []byte{b0}
	mbit := byte(0x80)
	if unmasked {
		mbit = 0
	}
	switch {
	case len(payload) <= 125:
		out = append(out, mbit|byte(len(payload)))
	case len(payload) <= 0xFFFF:
		out = append(out, mbit|126, byte(len(payload)>>8), byte(len(payload)))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(len(payload)))
	}
	if unmasked {
		return append(out, payload...)
	}
	mask := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	out = append(out, mask[:]...)
	for i, b := range payload {
		out = append(out, b^mask[i%4])
	}
	return out
}

func (rc *rawClient) send(frames ...[]byte) {
	rc.t.Helper()
	if _, err := rc.nc.Write(bytes.Join(frames, nil)); err != nil {
		rc.t.Fatal(err)
	}
}

// read reads one server frame: its opcode and payload.
func (rc *rawClient) read() (byte, []byte) {
	rc.t.Helper()
	_ = rc.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	var h [2]byte
	if _, err := io.ReadFull(rc.br, h[:]); err != nil {
		rc.t.Fatalf("reading a frame: %v", err)
	}
	if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
		rc.t.Fatalf("server frame %x: want final and unmasked", h)
	}
	n := int(h[1] & 0x7F)
	switch n {
	case 126:
		var l [2]byte
		io.ReadFull(rc.br, l[:])
		n = int(binary.BigEndian.Uint16(l[:]))
	case 127:
		var l [8]byte
		io.ReadFull(rc.br, l[:])
		n = int(binary.BigEndian.Uint64(l[:]))
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(rc.br, p); err != nil {
		rc.t.Fatalf("reading a frame's payload: %v", err)
	}
	return h[0] & 0x0F, p
}

// expectClose reads a close frame with code, then the end of the
// connection.
func (rc *rawClient) expectClose(code StatusCode) {
	rc.t.Helper()
	op, p := rc.read()
	if op != opClose || len(p) < 2 || StatusCode(binary.BigEndian.Uint16(p)) != code {
		rc.t.Fatalf("got frame %#x %q, want a close with status %d", op, p, code)
	}
	if _, err := rc.br.ReadByte(); err != io.EOF {
		rc.t.Fatalf("after the close frame: %v, want the connection closed", err)
	}
}

func waitEnded(t *testing.T, e *echo) error {
	t.Helper()
	select {
	case err := <-e.ended:
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("the socket's reading never ended")
	}
	return nil
}

func TestCheckRequest(t *testing.T) {
	s := NewServer(Options{OriginHosts: []string{"app.example:8443"}})
	defer s.Close()
	good := func() *http.Request {
		r := httptest.NewRequest("GET", "http://site.example/v1/ws", nil)
		r.Header.Set("Connection", "keep-alive, Upgrade")
		r.Header.Set("Upgrade", "WebSocket")
		r.Header.Set("Sec-WebSocket-Version", "13")
		r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		return r
	}
	for _, tc := range []struct {
		name   string
		change func(r *http.Request)
		status int
	}{
		{"good", func(*http.Request) {}, 0},
		{"its own origin", func(r *http.Request) { r.Header.Set("Origin", "https://SITE.example") }, 0},
		{"an allowed origin", func(r *http.Request) { r.Header.Set("Origin", "https://app.example:8443") }, 0},
		{"a stranger's origin", func(r *http.Request) { r.Header.Set("Origin", "https://evil.example") }, 403},
		{"an origin without a host", func(r *http.Request) { r.Header.Set("Origin", "null") }, 403},
		{"POST", func(r *http.Request) { r.Method = "POST" }, 405},
		{"HTTP/1.0", func(r *http.Request) { r.ProtoMinor = 0 }, 400},
		{"no upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 426},
		{"connection without upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 426},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==") }, 400},
	} {
		r := good()
		tc.change(r)
		err := s.CheckRequest(r)
		var he *HandshakeError
		switch {
		case tc.status == 0 && err != nil:
			t.Errorf("%s: refused: %v", tc.name, err)
		case tc.status != 0 && (!errors.As(err, &he) || he.Status != tc.status):
			t.Errorf("%s: %v, want status %d", tc.name, err, tc.status)
		}
	}
}

// A WebSocket library's client talks to the server: messages both ways,
// pings answered, a close handshake from either side.
func TestALibraryClient(t *testing.T) {
	ts := newTestServer(t, Options{MaxMessage: 1000, ReadLimit: 5000})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer client.CloseNow()
	e := <-ts.conns
	for _, msg := range []string{"hello", strings.Repeat("x", 999), ""} {
		if err := client.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatal(err)
		}
		_, got, err := client.Read(ctx)
		if err != nil || string(got) != msg {
			t.Fatalf("echo of %d bytes: %d bytes, %v", len(msg), len(got), err)
		}
	}
	// The library answers the server's ping while it reads.
	go func() { client.Read(ctx) }()
	if err := e.c.Ping(5 * time.Second); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e.c.mu.Lock()
		due := e.c.pongDue
		e.c.mu.Unlock()
		if !due {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no pong recorded")
		}
		time.Sleep(time.Millisecond)
	}
	// The server closes; the library answers, and reading ends with it.
	if err := e.c.Close(StatusGoingAway, "site shutting down"); err != nil {
		t.Fatal(err)
	}
	err = waitEnded(t, e)
	if CloseStatus(err) != StatusGoingAway {
		t.Fatalf("reading ended with %v, want the client's echo of 1001", err)
	}
}

func TestClientCloses(t *testing.T) {
	ts := newTestServer(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	client, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(ts.url, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e := <-ts.conns
	// The library's Close waits for the server's answer and reports a
	// clean close only if it came.
	if err := client.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Fatalf("close handshake: %v", err)
	}
	var ce *CloseError
	if err := waitEnded(t, e); !errors.As(err, &ce) || ce.Code != StatusNormalClosure || ce.Reason != "bye" {
		t.Fatalf("reading ended with %v, want the client's close 1000 bye", err)
	}
}

// Fragments and control frames between them make one message; a ping is
// answered with its payload; a message over MaxMessage is handed cut.
func TestFragmentsPingsAndCuts(t *testing.T) {
	ts := newTestServer(t, Options{MaxMessage: 10, ReadLimit: 100})
	rc, e := ts.dialRaw(t)
	rc.send(frame(0x01, []byte("hel"), false), frame(0x89, []byte("are you there"), false),
		frame(0x00, []byte("lo "), false), frame(0x80, []byte("world"), false))
	if op, p := rc.read(); op != opPong || string(p) != "are you there" {
		t.Fatalf("got %#x %q, want the pong", op, p)
	}
	if op, p := rc.read(); op != opText || string(p) != "hello worl" {
		t.Fatalf("got %#x %q, want the echo of the message, cut to 10 bytes", op, p)
	}
	// A frame over 125 bytes takes the 16-bit length.
	long := strings.Repeat("y", 90)
	rc.send(frame(0x01, []byte(long), false), frame(0x80, []byte(long[:5]), false))
	if op, p := rc.read(); op != opText || string(p) != long[:10] {
		t.Fatalf("got %#x %q", op, p)
	}
	e.mu.Lock()
	cuts := e.cuts
	e.mu.Unlock()
	if len(cuts) != 2 || !cuts[0] || !cuts[1] {
		t.Fatalf("cut flags %v, want both messages cut", cuts)
	}
	rc.send(frame(0x81, []byte("stop"), false))
	rc.expectClose(StatusNormalClosure)
	if err := waitEnded(t, e); err != nil {
		t.Fatalf("reading ended with %v, want nil (the handler stopped)", err)
	}
}

// Every frame RFC 6455 forbids closes the socket with the status that
// says why, and nothing of it reaches the handler.
func TestBadFramesCloseTheSocket(t *testing.T) {
	ts := newTestServer(t, Options{MaxMessage: 100, ReadLimit: 200})
	closeWith := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		code   StatusCode
	}{
		{"unmasked", [][]byte{frame(0x81, []byte("hi"), true)}, StatusProtocolError},
		{"reserved bit", [][]byte{frame(0xC1, []byte("hi"), false)}, StatusProtocolError},
		{"unknown opcode", [][]byte{frame(0x83, []byte("hi"), false)}, StatusProtocolError},
		{"unknown control opcode", [][]byte{frame(0x8B, nil, false)}, StatusProtocolError},
		{"fragmented ping", [][]byte{frame(0x09, nil, false)}, StatusProtocolError},
		{"long ping", [][]byte{frame(0x89, make([]byte, 126), false)}, StatusProtocolError},
		{"continuation first", [][]byte{frame(0x80, []byte("hi"), false)}, StatusProtocolError},
		{"new message mid-message", [][]byte{frame(0x01, []byte("a"), false), frame(0x81, []byte("b"), false)}, StatusProtocolError},
		{"over the read limit", [][]byte{frame(0x01, make([]byte, 150), false), frame(0x80, make([]byte, 51), false)}, StatusMessageTooBig},
		{"one-byte close", [][]byte{frame(0x88, []byte{3}, false)}, StatusProtocolError},
		{"close with 1005", [][]byte{frame(0x88, closeWith(1005, ""), false)}, StatusProtocolError},
		{"close with 999", [][]byte{frame(0x88, closeWith(999, ""), false)}, StatusProtocolError},
		{"close reason not UTF-8", [][]byte{frame(0x88, closeWith(1000, "\xff"), false)}, StatusInvalidPayload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, e := ts.dialRaw(t)
			rc.send(tc.frames...)
			rc.expectClose(tc.code)
			var pe *ProtocolError
			if err := waitEnded(t, e); !errors.As(err, &pe) || pe.Code != tc.code {
				t.Fatalf("reading ended with %v, want a protocol error %d", err, tc.code)
			}
			e.mu.Lock()
			defer e.mu.Unlock()
			if len(e.msgs) != 0 {
				t.Fatalf("the handler got %q", e.msgs)
			}
		})
	}
}

// A frame over the read limit is refused with a close frame, and what the
// client still writes of it is read and dropped until the client closes:
// cut at once, the client's next writes would meet a reset, and a device
// would see a failed write instead of the close and its reason.
func TestOverLimitFrameIsDrained(t *testing.T) {
	ts := newTestServer(t, Options{MaxMessage: 100, ReadLimit: 200})
	rc, e := ts.dialRaw(t)
	big := frame(0x81, make([]byte, 512<<10), false)
	rc.send(big[:4096])
	op, p := rc.read()
	if op != opClose || len(p) < 2 || StatusCode(binary.BigEndian.Uint16(p)) != StatusMessageTooBig {
		t.Fatalf("got frame %#x %q, want a close with status %d", op, p, StatusMessageTooBig)
	}
	for rest := big[4096:]; len(rest) > 0; rest = rest[min(len(rest), 16<<10):] {
		if _, err := rc.nc.Write(rest[:min(len(rest), 16<<10)]); err != nil {
			t.Fatalf("writing the rest of the frame after the close: %v", err)
		}
	}
	rc.nc.Close()
	var pe *ProtocolError
	if err := waitEnded(t, e); !errors.As(err, &pe) || pe.Code != StatusMessageTooBig {
		t.Fatalf("reading ended with %v", err)
	}
}

// A close without a status is answered with 1000; the server's own close
// is followed by a cut when the client does not answer it.
func TestCloseHandshakes(t *testing.T) {
	ts := newTestServer(t, Options{CloseGrace: 100 * time.Millisecond})
	rc, e := ts.dialRaw(t)
	rc.send(frame(0x88, nil, false))
	rc.expectClose(StatusNormalClosure)
	if err := waitEnded(t, e); CloseStatus(err) != StatusNoStatus {
		t.Fatalf("reading ended with %v, want a close without status", err)
	}

	rc, e = ts.dialRaw(t)
	e.c.Close(StatusPolicyViolation, strings.Repeat("é", 100)) // cut to fit 125 bytes
	op, p := rc.read()
	if op != opClose || StatusCode(binary.BigEndian.Uint16(p)) != StatusPolicyViolation || len(p) > 125 || !utf8.Valid(p[2:]) {
		t.Fatalf("got %#x %q", op, p)
	}
	start := time.Now()
	if err := waitEnded(t, e); err == nil || CloseStatus(err) != -1 {
		t.Fatalf("reading ended with %v, want a cut connection", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("cut after %v, want about the 100 ms grace", waited)
	}
}

// A ping that gets no pong within its time cuts the connection.
func TestUnansweredPingCuts(t *testing.T) {
	ts := newTestServer(t, Options{})
	rc, e := ts.dialRaw(t)
	if err := e.c.Ping(100 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if op, _ := rc.read(); op != opPing {
		t.Fatalf("got %#x, want a ping", op)
	}
	if err := waitEnded(t, e); err == nil {
		t.Fatal("reading ended cleanly, want a cut")
	}
}

// A connection that ends inside a frame or a message ends reading with
// io.ErrUnexpectedEOF; one that ends between messages, with io.EOF.
func TestEndsMidFrame(t *testing.T) {
	ts := newTestServer(t, Options{})
	whole := frame(0x81, []byte("hello"), false)
	for _, tc := range []struct {
		name string
		sent []byte
		want error
	}{
		{"between messages", whole, io.EOF},
		{"inside a header", whole[:3], io.ErrUnexpectedEOF},
		{"after a header", whole[:6], io.ErrUnexpectedEOF},
		{"inside a payload", whole[:8], io.ErrUnexpectedEOF},
		{"between fragments", frame(0x01, []byte("hel"), false), io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc, e := ts.dialRaw(t)
			rc.send(tc.sent)
			if bytes.Equal(tc.sent, whole) {
				if op, _ := rc.read(); op != opText {
					t.Fatalf("got %#x, want the echo", op)
				}
			}
			rc.nc.(*net.TCPConn).CloseWrite()
			if err := waitEnded(t, e); !errors.Is(err, tc.want) {
				t.Fatalf("reading ended with %v, want %v", err, tc.want)
			}
		})
	}
}

// A message begun and not finished (a fragment, then only pings; or half
// a frame header) is given up MessageTimeout after its first bytes: the
// socket closes with StatusPolicyViolation. A message that does finish in
// time is read as usual, however its frames are spread, and an idle socket
// (no message begun) is never cut by it.
func TestUnfinishedMessageIsGivenUp(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ts := newTestServer(t, Options{MaxMessage: 100, ReadLimit: 200, MessageTimeout: timeout})

	idle, _ := ts.dialRaw(t)
	time.Sleep(3 * timeout) // idle, then a message spread over frames in time
	idle.send(frame(0x01, []byte("he"), false))
	time.Sleep(timeout / 3)
	idle.send(frame(0x80, []byte("llo"), false))
	if op, p := idle.read(); op != opText || string(p) != "hello" {
		t.Fatalf("got %#x %q, want the echo", op, p)
	}

	for name, begin := range map[string][]byte{
		"a fragment, then pings": frame(0x01, []byte("hel"), false),
		"half a frame header":    frame(0x81, []byte("hello"), false)[:1],
	} {
		t.Run(name, func(t *testing.T) {
			rc, e := ts.dialRaw(t)
			rc.send(begin)
			began := time.Now()
			if name == "a fragment, then pings" {
				for range 2 {
					time.Sleep(timeout / 3)
					rc.send(frame(0x89, nil, false))
					if op, _ := rc.read(); op != opPong {
						t.Fatalf("got %#x, want a pong", op)
					}
				}
			}
			rc.expectClose(StatusPolicyViolation)
			if took := time.Since(began); took < timeout {
				t.Fatalf("given up after %v, before the %v timeout", took, timeout)
			}
			var pe *ProtocolError
			if err := waitEnded(t, e); !errors.As(err, &pe) || pe.Code != StatusPolicyViolation {
				t.Fatalf("reading ended with %v", err)
			}
		})
	}
}
