package gateway

import "github.com/salamander-chat/salamander"

// outFrame is one encoded frame waiting to be written to a WebSocket. The
// same bytes are shared by every socket an event goes to. pos is set for
// stored events, so that a live event the backlog replay already sent is
// dropped; at for messages (their record's time, Unix ns), to time their
// delivery.
type outFrame struct {
	data []byte
	pos  *salamander.Position
	at   int64
	// sender is a message event's sender: on the socket that sent it, the
	// ack follows at once (see wsConn.writeLoop).
	sender string
}

// ring is a FIFO of frames in a circular slice. It holds no slice at all
// while empty, starts at ringMin slots, doubles when full and halves when a
// quarter full, so an idle socket pays nothing for it and a busy one only
// for what it holds.
type ring struct {
	buf  []outFrame
	head int
	n    int
}

const ringMin = 2

func (r *ring) push(f outFrame) {
	if r.n == len(r.buf) {
		r.resize(max(ringMin, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)%len(r.buf)] = f
	r.n++
}

func (r *ring) pop() outFrame {
	f := r.buf[r.head]
	r.buf[r.head] = outFrame{}
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	switch {
	case r.n == 0:
		*r = ring{}
	case len(r.buf) > ringMin && r.n <= len(r.buf)/4:
		r.resize(len(r.buf) / 2)
	}
	return f
}

func (r *ring) resize(n int) {
	buf := make([]outFrame, n)
	for i := 0; i < r.n; i++ {
		buf[i] = r.buf[(r.head+i)%len(r.buf)]
	}
	r.buf, r.head = buf, 0
}

// outQueue is what one WebSocket has yet to write: answers to the client's
// frames (written as soon as possible) and events (written only once the
// backlog replay is done, in order). Both rings together are bounded in
// bytes; the owner holds the lock.
type outQueue struct {
	replies ring
	events  ring
	bytes   int
}

// fits reports whether f can be queued without passing limit bytes.
func (q *outQueue) fits(f outFrame, limit int) bool {
	return q.bytes+len(f.data) <= limit
}

func (q *outQueue) pushReply(f outFrame) {
	q.replies.push(f)
	q.bytes += len(f.data)
}

func (q *outQueue) pushEvent(f outFrame) {
	q.events.push(f)
	q.bytes += len(f.data)
}

// hasWork reports whether next would return a frame.
func (q *outQueue) hasWork(eventsToo bool) bool {
	return q.replies.n > 0 || eventsToo && q.events.n > 0
}

// next pops the next frame to write: a reply first, else (when eventsToo)
// an event.
func (q *outQueue) next(eventsToo bool) (outFrame, bool) {
	var f outFrame
	switch {
	case q.replies.n > 0:
		f = q.replies.pop()
	case eventsToo && q.events.n > 0:
		f = q.events.pop()
	default:
		return f, false
	}
	q.bytes -= len(f.data)
	return f, true
}

// reset drops everything queued.
func (q *outQueue) reset() { *q = outQueue{} }
