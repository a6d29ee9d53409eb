package wsock

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

// Opcodes (RFC 6455 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload bounds a control frame's payload (RFC 6455 5.5).
const maxControlPayload = 125

// Conn is one WebSocket. Its writes may come from any goroutine, one frame
// at a time; its reads are Serve's.
type Conn struct {
	srv *Server
	nc  net.Conn
	out io.Writer

	// parkable is the socket beneath nc, when it can be parked; probe says
	// whether nc may hold read data of its own (TLS) that a poller cannot
	// see.
	parkable syscall.RawConn
	probe    bool

	// Read side, owned by the goroutine serving the socket.
	h        Handler
	rb       *[]byte // read buffer; nil while nothing is buffered
	pos, end int     // (*rb)[pos:end] is read and not yet used
	linger   bool    // a message came: wait ParkAfter before parking
	timed    bool    // a message has begun: the read deadline is its MessageTimeout

	// wmu serializes frames; closeSent is guarded by it.
	wmu       sync.Mutex
	closeSent bool

	mu        sync.Mutex
	closed    bool        // CloseNow ran: the connection is closed
	closing   bool        // Close ran: a close frame is (being) written
	parkID    uint64      // the poller's id while parked, else 0
	inPoller  bool        // the socket is registered with the poller
	pingSeq   uint64      // the last ping's number
	pongDue   bool        // a ping has not been answered yet
	deadTimer *time.Timer // cuts the connection: a ping unanswered or a close not returned
}

// NetConn returns the connection the socket runs on (for write deadlines
// and the client's address).
func (c *Conn) NetConn() net.Conn { return c.nc }

// WriteText writes one text message in one frame.
func (c *Conn) WriteText(p []byte) error { return c.writeFrame(opText, p) }

// frameBufs hold frames being written.
var frameBufs = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

// writeFrame writes one unfragmented, unmasked frame (a server's) in one
// Write. Once a close frame is written, nothing more is.
func (c *Conn) writeFrame(op byte, p []byte) error {
	var hdr [10]byte
	hdr[0] = 0x80 | op
	n := 2
	switch {
	case len(p) <= 125:
		hdr[1] = byte(len(p))
	case len(p) <= 0xFFFF:
		hdr[1] = 126
		binary.BigEndian.PutUint16(hdr[2:], uint16(len(p)))
		n = 4
	default:
		hdr[1] = 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(len(p)))
		n = 10
	}
	bp := frameBufs.Get().(*[]byte)
	buf := append(append((*bp)[:0], hdr[:n]...), p...)
	c.wmu.Lock()
	var err error
	if c.closeSent {
		err = ErrClosing
	} else {
		c.closeSent = op == opClose
		_, err = c.out.Write(buf)
	}
	c.wmu.Unlock()
	if cap(buf) <= 64<<10 {
		*bp = buf[:0]
		frameBufs.Put(bp)
	}
	return err
}

// Ping writes a ping unless one is unanswered, and cuts the connection if
// no pong comes within timeout. The pong is read by Serve.
func (c *Conn) Ping(timeout time.Duration) error {
	c.mu.Lock()
	if c.closed || c.closing || c.pongDue {
		c.mu.Unlock()
		return nil
	}
	c.pongDue = true
	c.pingSeq++
	seq := c.pingSeq
	c.stopDeadLocked()
	c.deadTimer = time.AfterFunc(timeout, func() {
		c.mu.Lock()
		late := c.pongDue && c.pingSeq == seq
		c.mu.Unlock()
		if late {
			c.CloseNow()
		}
	})
	c.mu.Unlock()
	var payload [8]byte
	binary.BigEndian.PutUint64(payload[:], seq)
	return c.writeFrame(opPing, payload[:])
}

// pong records a pong: the ping it answers is no longer due.
func (c *Conn) pong() {
	c.mu.Lock()
	if c.pongDue {
		c.pongDue = false
		c.stopDeadLocked()
	}
	c.mu.Unlock()
}

func (c *Conn) stopDeadLocked() {
	if c.deadTimer != nil {
		c.deadTimer.Stop()
		c.deadTimer = nil
	}
}

// Close writes a close frame with code and reason (cut to fit a control
// frame) and cuts the connection once the client's close frame comes
// back, or after the server's CloseGrace (also if the write itself
// hangs). A second close writes nothing.
func (c *Conn) Close(code StatusCode, reason string) error {
	c.mu.Lock()
	if c.closed || c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.pongDue = false
	c.stopDeadLocked()
	c.deadTimer = time.AfterFunc(c.srv.opts.CloseGrace, func() { c.CloseNow() })
	c.mu.Unlock()
	err := c.writeFrame(opClose, closePayload(code, reason))
	if err == ErrClosing {
		return nil // the client's close came first and was answered
	}
	if err != nil {
		c.CloseNow()
	}
	return err
}

// closePayload is a close frame's payload: the status, and as much of
// reason as fits, cut at a character boundary.
func closePayload(code StatusCode, reason string) []byte {
	if !code.sendable() {
		return nil
	}
	if len(reason) > maxControlPayload-2 {
		reason = reason[:maxControlPayload-2]
		for len(reason) > 0 && !utf8.ValidString(reason) {
			reason = reason[:len(reason)-1]
		}
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	return append(p, reason...)
}

// CloseNow cuts the connection without a close frame. A parked socket
// is resumed, so that its handler learns the socket has ended.
func (c *Conn) CloseNow() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.stopDeadLocked()
	id := c.parkID
	c.mu.Unlock()
	err := c.nc.Close()
	if id != 0 && c.srv.poll.take(id) != nil {
		go c.serve(true)
	}
	return err
}
