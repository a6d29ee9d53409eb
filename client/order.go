package client

import (
	"context"
	"slices"
	"sync"
)

// sendOrder keeps, per room, the sends handed over and not yet answered,
// in the order they were handed over: a send takes its place in its
// room's line when its frame is written on a socket, or when it has to
// wait (behind sends that are not all in flight on that socket, or to go
// over HTTP), and leaves it when its call returns.
//
// What it allows:
//   - A send's first attempt is written on the socket at once, pipelined,
//     when every send ahead of it in its room is in flight on that same
//     socket: the site carries out one socket's sends to a room in the
//     order written.
//   - Anything else goes only first in line, once every send ahead of it
//     has been answered or given up: a send again after a failed attempt
//     (one at a time, in order), and every send over HTTP (concurrent
//     requests have no order).
//
// So a later send is never committed ahead of an earlier one of the same
// Client still unanswered, whatever failed in between. The same lock
// keeps each in-flight send's clock (see place).
type sendOrder struct {
	mu    sync.Mutex
	lines map[string]*sendLine // room -> its line; none while empty
}

// sendLine is one room's line.
type sendLine struct {
	sends []*lineSend
	// changed, made by a waiter, is closed (and forgotten) when the line
	// changes.
	changed chan struct{}
}

// lineSend is one send's place in its room's line.
type lineSend struct {
	room string
	line *sendLine // nil until it takes its place
	// sock is the socket whose answer it awaits (nil: none now).
	sock *sendSocket
	// again is set once an attempt on a socket has ended: a send that
	// goes on after it (the attempt failed) goes only first in line.
	again bool
	// clock, if not nil, is closed when no send ahead of it awaits an
	// answer on sock (see place); ticking says it was.
	clock   chan struct{}
	ticking bool
}

// place takes q's place on socket s, with s's write lock held (so that
// the line's order on s is the order frames are written), and reports
// whether q may be written on s now. If not, q keeps its place (it is in
// line from now on) and waits for its turn. clock is closed when q's
// timeout should start counting, nil if it starts now.
func (o *sendOrder) place(q *lineSend, s *sendSocket) (clock <-chan struct{}, ok bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.join(q)
	i := slices.Index(l.sends, q)
	if i > 0 && (q.again || !allOn(l.sends[:i], s)) {
		return nil, false
	}
	q.sock, q.clock, q.ticking = s, nil, true
	if slices.ContainsFunc(l.sends[:i], func(p *lineSend) bool { return p.sock == s }) {
		q.clock, q.ticking = make(chan struct{}), false
	}
	l.changedNow()
	return q.clock, true
}

// land records that q's attempt on a socket has ended: answered, or
// failed (then q goes again only first in line).
func (o *sendOrder) land(q *lineSend) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if q.sock == nil {
		return
	}
	q.sock, q.again = nil, true
	q.line.tick()
	q.line.changedNow()
}

// leave takes q out of its line: its call is over.
func (o *sendOrder) leave(q *lineSend) {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := q.line
	if l == nil {
		return
	}
	l.sends = slices.DeleteFunc(l.sends, func(p *lineSend) bool { return p == q })
	q.line, q.sock = nil, nil
	if len(l.sends) == 0 {
		delete(o.lines, q.room)
	} else {
		l.tick()
	}
	l.changedNow()
}

// turn waits until q may try the socket sock returns (nil when there is
// none: then HTTP, see first) and returns that socket. A send not in line
// yet tries at once (place decides); one in line goes first in line, or,
// if it has not tried a socket yet, once every send ahead of it is in
// flight on the current one.
func (o *sendOrder) turn(ctx context.Context, q *lineSend, sock func() *sendSocket) (*sendSocket, error) {
	for {
		s := sock()
		o.mu.Lock()
		l := q.line
		if l == nil {
			o.mu.Unlock()
			return s, nil
		}
		i := slices.Index(l.sends, q)
		if i == 0 || !q.again && s != nil && allOn(l.sends[:i], s) {
			o.mu.Unlock()
			return s, nil
		}
		changed := l.waitChange()
		o.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// first takes q's place if it has none and waits until it is first in
// its line: every send ahead of it has been answered or given up.
func (o *sendOrder) first(ctx context.Context, q *lineSend) error {
	for {
		o.mu.Lock()
		l := o.join(q)
		if l.sends[0] == q {
			o.mu.Unlock()
			return nil
		}
		changed := l.waitChange()
		o.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// join puts q at the end of its room's line unless it is in it already,
// and returns the line (o.mu held).
func (o *sendOrder) join(q *lineSend) *sendLine {
	if q.line != nil {
		return q.line
	}
	l := o.lines[q.room]
	if l == nil {
		if o.lines == nil {
			o.lines = map[string]*sendLine{}
		}
		l = &sendLine{}
		o.lines[q.room] = l
	}
	l.sends = append(l.sends, q)
	q.line = l
	l.changedNow()
	return l
}

// allOn reports whether every send in sends awaits its answer on s.
func allOn(sends []*lineSend, s *sendSocket) bool {
	for _, p := range sends {
		if p.sock != s {
			return false
		}
	}
	return true
}

// tick starts the clock of every send in flight with no send ahead of it
// awaiting an answer on its socket (o.mu held).
func (l *sendLine) tick() {
	var seen []*sendSocket // sockets with a send in flight ahead
	for _, q := range l.sends {
		if q.sock == nil || slices.Contains(seen, q.sock) {
			continue
		}
		seen = append(seen, q.sock)
		if !q.ticking {
			q.ticking = true
			close(q.clock)
		}
	}
}

// waitChange returns a channel closed at the line's next change (o.mu
// held).
func (l *sendLine) waitChange() <-chan struct{} {
	if l.changed == nil {
		l.changed = make(chan struct{})
	}
	return l.changed
}

// changedNow wakes the line's waiters (o.mu held).
func (l *sendLine) changedNow() {
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
}
