package wsock

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// streamConn is a connection whose client sent data and then went away;
// what the server writes is dropped.
type streamConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *streamConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *streamConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *streamConn) Close() error                     { return nil }
func (c *streamConn) SetReadDeadline(time.Time) error  { return nil }
func (c *streamConn) SetWriteDeadline(time.Time) error { return nil }
func (c *streamConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *streamConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *streamConn) SetDeadline(t time.Time) error    { return nil }

// counter is a Handler that checks what it is given.
type counter struct {
	t     *testing.T
	max   int
	msgs  int
	bytes int
	ended int
	err   error
}

func (h *counter) Message(_ bool, data []byte, cut bool) bool {
	if len(data) > h.max || cut && len(data) != h.max {
		h.t.Fatalf("a message of %d bytes (cut %v), the limit is %d", len(data), cut, h.max)
	}
	h.msgs++
	h.bytes += len(data)
	return true
}

func (h *counter) Ended(err error) { h.ended++; h.err = err }

// FuzzClientFrames reads any byte stream as a client's frames: reading
// never panics, ends exactly once, never hands over more than MaxMessage
// bytes of a message nor more payload than the stream holds, and ends
// for one of the reasons a stream can end for: the client's close, a
// broken rule (with a status a server may send), or the stream's end
// (unexpected inside a frame).
func FuzzClientFrames(f *testing.F) {
	f.Add(bytes.Join([][]byte{frame(0x81, []byte("hello"), false)}, nil))
	f.Add(bytes.Join([][]byte{frame(0x01, []byte("he"), false), frame(0x89, []byte("p"), false),
		frame(0x80, []byte("llo"), false), frame(0x88, []byte{3, 232, 'o', 'k'}, false)}, nil))
	f.Add(frame(0x82, bytes.Repeat([]byte{7}, 300), false))
	f.Add(frame(0x81, []byte("x"), true))
	f.Add([]byte{0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0})
	s := NewServer(Options{MaxMessage: 64, ReadLimit: 256})
	s.Close() // no parking: a stream is read to its end
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &Conn{srv: s, nc: &streamConn{r: bytes.NewReader(data)}}
		c.out = io.Discard
		h := &counter{t: t, max: 64}
		c.h = h
		c.serve(false)
		if h.ended != 1 {
			t.Fatalf("reading ended %d times", h.ended)
		}
		if h.bytes > len(data) {
			t.Fatalf("%d bytes of messages from a %d-byte stream", h.bytes, len(data))
		}
		var ce *CloseError
		var pe *ProtocolError
		switch {
		case errors.As(h.err, &ce):
		case errors.As(h.err, &pe):
			if !pe.Code.sendable() {
				t.Fatalf("closed with status %d", pe.Code)
			}
		case h.err == io.EOF, h.err == io.ErrUnexpectedEOF:
		default:
			t.Fatalf("reading ended with %v", h.err)
		}
	})
}
