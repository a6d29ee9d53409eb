package gateway

import (
	"bytes"
	"errors"
	"net"
	"testing"
)

// writesConn records each write(2) a corkWriter makes.
type writesConn struct {
	net.Conn
	writes [][]byte
	err    error
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
