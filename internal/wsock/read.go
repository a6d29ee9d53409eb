package wsock

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unicode/utf8"
)

// Handler takes a socket's messages.
type Handler interface {
	// Message is given each data message, in order, on the goroutine
	// that reads the socket. data is valid only during the call and holds
	// at most the server's MaxMessage bytes; cut reports a longer message,
	// whose rest was dropped. Returning false stops reading: the handler
	// has closed the socket.
	Message(binary bool, data []byte, cut bool) bool
	// Ended is called once, after the last Message, with why reading
	// ended: nil when Message returned false, a *CloseError when the
	// client closed the socket, else what broke it.
	Ended(err error)
}

// Serve starts reading the socket's messages into h. A goroutine reads
// while data comes; while none does, the socket is parked and no
// goroutine waits for it.
func (c *Conn) Serve(h Handler) {
	c.h = h
	go c.serve(false)
}

// ProtocolError is a client's frame that breaks RFC 6455 (or the read
// limit): the socket was closed with the status that says so.
type ProtocolError struct {
	Code   StatusCode
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("websocket: the client broke the protocol (%d): %s", e.Code, e.Reason)
}

// serve reads messages until the socket parks or ends. woken says the
// poller found the socket readable (or it was closed): it is read at once.
func (c *Conn) serve(woken bool) {
	for ; ; woken = false {
		if c.pos == c.end && !woken {
			more, err := c.awaitData()
			if err != nil {
				c.h.Ended(err)
				return
			}
			if !more {
				return // parked: the poller serves the socket again
			}
		}
		m, err := c.readMessage()
		if err != nil {
			c.h.Ended(err)
			return
		}
		if m.buf == nil {
			continue // control frames only
		}
		c.linger = true
		c.wmu.Lock()
		closing := c.closeSent
		c.wmu.Unlock()
		goOn := true
		if !closing { // a message after our close frame is dropped
			goOn = c.h.Message(m.binary, (*m.buf)[:m.n], m.cut)
		}
		c.srv.msgBufs.Put(m.buf)
		if !goOn {
			c.h.Ended(nil)
			return
		}
	}
}

// awaitData waits for the socket's next bytes: it reports true when some
// may be read (they are buffered, or reading would block), false when the
// socket has been parked.
func (c *Conn) awaitData() (bool, error) {
	c.releaseReadBuf()
	if c.linger || c.probe {
		// A device that just sent a message likely sends another soon:
		// wait a moment before parking. A TLS connection may hold
		// decrypted bytes the poller cannot see: a read whose deadline
		// has passed returns them, or times out and leaves the
		// connection as it was.
		deadline := time.Now()
		if c.linger {
			deadline = deadline.Add(c.srv.opts.ParkAfter)
		}
		c.linger = false
		_ = c.nc.SetReadDeadline(deadline)
		err := c.fill(1)
		_ = c.nc.SetReadDeadline(time.Time{})
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return false, err
		}
		c.releaseReadBuf()
	}
	if c.parkable != nil && c.srv.poll.park(c) {
		return false, nil
	}
	return true, nil
}

// releaseReadBuf gives the read buffer back when nothing is left in it.
func (c *Conn) releaseReadBuf() {
	if c.rb == nil || c.pos < c.end {
		return
	}
	if cap(*c.rb) == readBufSize {
		readBufs.Put(c.rb)
	}
	c.rb, c.pos, c.end = nil, 0, 0
}

// fill reads until at least need (≤ readBufSize) bytes are buffered.
func (c *Conn) fill(need int) error {
	if c.rb == nil {
		c.rb = readBufs.Get().(*[]byte)
		c.pos, c.end = 0, 0
	}
	buf := *c.rb
	if len(buf)-c.pos < need {
		c.end = copy(buf, buf[c.pos:c.end])
		c.pos = 0
	}
	for c.end-c.pos < need {
		n, err := c.nc.Read(buf[c.end:])
		c.end += n
		if c.end-c.pos >= need {
			return nil
		}
		if n > 0 {
			c.messageBegun() // part of a frame came, the rest must follow
		}
		if err != nil {
			if err == io.EOF && c.end > c.pos {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// frameHeader is a client frame's header.
type frameHeader struct {
	fin    bool
	op     byte
	length int64
	mask   [4]byte
}

// readHeader reads and checks one frame header.
func (c *Conn) readHeader() (frameHeader, error) {
	var h frameHeader
	if err := c.fill(2); err != nil {
		return h, err
	}
	b := (*c.rb)[c.pos:]
	h.fin = b[0]&0x80 != 0
	h.op = b[0] & 0x0F
	if b[0]&0x70 != 0 {
		return h, c.fail(StatusProtocolError, "reserved bits set (no extension was negotiated)")
	}
	if b[1]&0x80 == 0 {
		return h, c.fail(StatusProtocolError, "a client's frame must be masked")
	}
	size := 2 + 4
	switch b[1] & 0x7F {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if err := c.fill(size); err != nil {
		return h, err
	}
	b = (*c.rb)[c.pos : c.pos+size]
	switch n := b[1] & 0x7F; n {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
	case 127:
		l := binary.BigEndian.Uint64(b[2:])
		if l>>63 != 0 {
			return h, c.fail(StatusProtocolError, "frame length has its top bit set")
		}
		h.length = int64(l)
	default:
		h.length = int64(n)
	}
	copy(h.mask[:], b[size-4:])
	c.pos += size
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin || h.length > maxControlPayload {
			return h, c.fail(StatusProtocolError, "a control frame must be final and at most 125 bytes")
		}
	default:
		return h, c.fail(StatusProtocolError, fmt.Sprintf("unknown opcode %#x", h.op))
	}
	return h, nil
}

// payload reads a frame's payload, unmasked, into dst as far as it fits;
// it returns how much of it went into dst.
func (c *Conn) payload(h frameHeader, dst []byte) (int, error) {
	stored := 0
	for done := int64(0); done < h.length; {
		if c.pos == c.end {
			if err := c.fill(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF // mid-frame
				}
				return stored, err
			}
		}
		chunk := (*c.rb)[c.pos:min(int64(c.end), int64(c.pos)+h.length-done)]
		unmask(chunk, h.mask, int(done&3))
		stored += copy(dst[stored:], chunk)
		c.pos += len(chunk)
		done += int64(len(chunk))
	}
	return stored, nil
}

// unmask XORs p with the mask, starting at the mask's byte at.
func unmask(p []byte, mask [4]byte, at int) {
	var m [8]byte
	for i := range m {
		m[i] = mask[(at+i)&3]
	}
	key := binary.LittleEndian.Uint64(m[:])
	for len(p) >= 8 {
		binary.LittleEndian.PutUint64(p, binary.LittleEndian.Uint64(p)^key)
		p = p[8:]
	}
	for i := range p {
		p[i] ^= m[i]
	}
}

// message is one data message read whole (buf nil: none, only control
// frames were read).
type message struct {
	binary bool
	buf    *[]byte
	n      int
	cut    bool
}

// readMessage reads frames until a data message is complete, answering
// control frames on the way. It returns without a message when only
// control frames were read and nothing more is buffered.
func (c *Conn) readMessage() (m message, err error) {
	var total int64
	defer func() {
		if c.timed {
			c.timed = false
			_ = c.nc.SetReadDeadline(time.Time{})
		}
		if err != nil && m.buf != nil {
			c.srv.msgBufs.Put(m.buf)
			m.buf = nil
		}
	}()
	for {
		h, err := c.readHeader()
		if err == io.EOF && m.buf != nil {
			err = io.ErrUnexpectedEOF // between a message's frames
		}
		if c.timed && errors.Is(err, os.ErrDeadlineExceeded) {
			return m, c.fail(StatusPolicyViolation, fmt.Sprintf("a message must arrive whole within %s of its first bytes",
				c.srv.opts.MessageTimeout))
		}
		if err != nil {
			return m, err
		}
		if !h.fin || int64(c.end-c.pos) < h.length {
			// More must come for this message: its clock runs (a whole
			// frame already read costs no deadline).
			c.messageBegun()
		}
		if h.op >= opClose {
			var ctl [maxControlPayload]byte
			n, err := c.payload(h, ctl[:])
			if err != nil {
				return m, err
			}
			switch h.op {
			case opPing:
				if err := c.writeFrame(opPong, ctl[:n]); err != nil && err != ErrClosing {
					return m, err
				}
			case opPong:
				c.pong()
			case opClose:
				return m, c.peerClosed(ctl[:n])
			}
			if m.buf == nil && c.pos == c.end {
				return m, nil
			}
			continue
		}
		switch {
		case h.op == opContinuation && m.buf == nil:
			return m, c.fail(StatusProtocolError, "a continuation frame outside a message")
		case h.op != opContinuation && m.buf != nil:
			return m, c.fail(StatusProtocolError, "a new message before the last one's final frame")
		case h.op != opContinuation:
			m.binary = h.op == opBinary
			m.buf = c.srv.msgBufs.Get().(*[]byte)
		}
		total += h.length
		if total > c.srv.opts.ReadLimit {
			return m, c.fail(StatusMessageTooBig, fmt.Sprintf("a message is at most %d bytes", c.srv.opts.ReadLimit))
		}
		n, err := c.payload(h, (*m.buf)[m.n:])
		m.n += n
		if c.timed && errors.Is(err, os.ErrDeadlineExceeded) {
			return m, c.fail(StatusPolicyViolation, fmt.Sprintf("a message must arrive whole within %s of its first bytes",
				c.srv.opts.MessageTimeout))
		}
		if err != nil {
			return m, err
		}
		if int64(n) < h.length {
			m.cut = true
		}
		if h.fin {
			return m, nil
		}
	}
}

// messageBegun starts the clock of a message whose first bytes came: the
// rest must follow within MessageTimeout (readMessage stops it).
func (c *Conn) messageBegun() {
	if !c.timed {
		c.timed = true
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.opts.MessageTimeout))
	}
}

// peerClosed handles the client's close frame: it answers it (unless the
// server's close came first), cuts the connection and returns the
// *CloseError reading ends with.
func (c *Conn) peerClosed(p []byte) error {
	ce := &CloseError{Code: StatusNoStatus}
	switch {
	case len(p) == 1:
		return c.fail(StatusProtocolError, "a close frame's payload cannot be 1 byte")
	case len(p) >= 2:
		ce.Code, ce.Reason = StatusCode(binary.BigEndian.Uint16(p)), string(p[2:])
		if !ce.Code.sendable() {
			return c.fail(StatusProtocolError, fmt.Sprintf("close status %d may not be sent", ce.Code))
		}
		if !utf8.ValidString(ce.Reason) {
			return c.fail(StatusInvalidPayload, "a close reason must be UTF-8")
		}
	}
	echo := ce.Code
	if echo == StatusNoStatus {
		echo = StatusNormalClosure
	}
	_ = c.writeFrame(opClose, closePayload(echo, ""))
	c.flushAndCut()
	return ce
}

// fail closes the socket for a client's error with code and reason, and
// returns the *ProtocolError reading ends with.
func (c *Conn) fail(code StatusCode, reason string) error {
	_ = c.writeFrame(opClose, closePayload(code, reason))
	c.flush()
	c.drainBeforeCut()
	c.CloseNow()
	return &ProtocolError{Code: code, Reason: reason}
}

// drainFor and drainBytes bound what a failed socket still reads, and
// drops, after its close frame.
const (
	drainFor   = time.Second
	drainBytes = 1 << 20
)

// drainBeforeCut reads and drops what the client still sends after fail's close
// frame — the rest of a frame over the limit, frames it wrote before it
// read the close — until it closes too, for at most drainFor (or the
// server's CloseGrace, if shorter) and drainBytes. Cutting at once while
// such bytes arrive makes the kernel answer with a reset, and the device
// sees a failed write instead of the close frame and its reason.
func (c *Conn) drainBeforeCut() {
	_ = c.nc.SetReadDeadline(time.Now().Add(min(drainFor, c.srv.opts.CloseGrace)))
	_, _ = io.CopyN(io.Discard, c.nc, drainBytes)
}

// flusher is a writer that may hold written bytes back (a gathering
// writer); they must go out before the connection is cut.
type flusher interface{ Flush() error }

// writeDeadliner is a writer that keeps the connection's write deadline
// itself (and would otherwise move one set on the connection).
type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

func (c *Conn) flushAndCut() {
	c.flush()
	c.CloseNow()
}

// flush sends what a gathering writer holds back, before a cut.
func (c *Conn) flush() {
	if f, ok := c.out.(flusher); ok {
		deadline := time.Now().Add(time.Second)
		if d, ok := c.out.(writeDeadliner); ok {
			_ = d.SetWriteDeadline(deadline) // it keeps the deadline itself
		} else {
			_ = c.nc.SetWriteDeadline(deadline)
		}
		_ = f.Flush()
	}
}

// parkable returns the socket beneath nc, for the poller, and whether nc
// may hold read bytes of its own (TLS does) that must be probed for
// before the socket parks.
func (s *Server) parkable(nc net.Conn) (syscall.RawConn, bool) {
	if s.poll == nil {
		return nil, false
	}
	probe := false
	if t, ok := nc.(*tls.Conn); ok {
		nc, probe = t.NetConn(), true
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, false
	}
	return rc, probe
}
