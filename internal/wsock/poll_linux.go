//go:build linux

package wsock

import (
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/sys/unix"
)

// poller holds parked sockets in an epoll set of its own (Go's runtime
// keeps its own set for the same sockets; the two do not meet) and starts
// a goroutine to serve a socket once it is readable. A socket is armed
// one-shot, so it wakes one goroutine, and is armed again when it parks
// again. Each parking has a new id: an event for a socket that was
// resumed otherwise (closed) meanwhile finds nothing.
type poller struct {
	epfd int
	wake int // an eventfd: Close writes it to stop the loop
	log  *slog.Logger
	done chan struct{}

	closeOnce sync.Once
	// setMu keeps the epoll set open while a socket is armed in it: park
	// holds it shared, close exclusively (setClosed) before closing it.
	setMu     sync.RWMutex
	setClosed bool

	mu      sync.Mutex
	next    uint64
	waiting map[uint64]*Conn
	stopped bool
}

// stopID is the eventfd's id in the epoll set; sockets' ids start at 1.
const stopID = 0

func newPoller(log *slog.Logger) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &poller{epfd: epfd, wake: wake, log: log, done: make(chan struct{}), waiting: map[uint64]*Conn{}}
	go p.loop()
	return p, nil
}

// loop waits for parked sockets to become readable and resumes them.
func (p *poller) loop() {
	defer close(p.done)
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// Not expected with a valid set and buffer: resume everyone
			// rather than leave sockets unread.
			p.log.Error("the WebSocket poller failed; parked sockets resume with a goroutine each", "err", err)
			p.stop()
			return
		}
		for _, ev := range events[:n] {
			id := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			if id == stopID {
				return
			}
			if c := p.take(id); c != nil {
				go c.serve(true)
			}
		}
	}
}

// park arms c's socket and reports whether it is parked: a goroutine will
// serve it when it is readable or closed. On false the caller goes on
// reading it.
func (p *poller) park(c *Conn) bool {
	c.mu.Lock()
	p.mu.Lock()
	if c.closed || p.stopped {
		p.mu.Unlock()
		c.mu.Unlock()
		return false
	}
	p.next++
	id := p.next
	p.waiting[id] = c
	p.mu.Unlock()
	c.parkID = id
	op := unix.EPOLL_CTL_MOD
	if !c.inPoller {
		op = unix.EPOLL_CTL_ADD
		// Set before arming: once armed, the socket may be served and
		// parked again by another goroutine before Control returns.
		c.inPoller = true
	}
	c.mu.Unlock()

	var ctlErr error = unix.EBADF
	p.setMu.RLock()
	// Control holds the descriptor open: it cannot be closed, and its
	// number given to another socket, while it is armed here.
	err := c.parkable.Control(func(fd uintptr) {
		if p.setClosed {
			return
		}
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
			Fd: int32(uint32(id)), Pad: int32(uint32(id >> 32))}
		ctlErr = unix.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	p.setMu.RUnlock()
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		// Closed meanwhile, most likely. Whoever takes it back serves it.
		if p.take(id) == nil {
			return true
		}
		if op == unix.EPOLL_CTL_ADD {
			c.mu.Lock()
			c.inPoller = false
			c.mu.Unlock()
		}
		return false
	}
	return true
}

// take removes a parked socket and returns it (nil if it is not parked
// under id any more).
func (p *poller) take(id uint64) *Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.waiting[id]
	delete(p.waiting, id)
	return c
}

// has reports whether a socket is parked under id (for tests).
func (p *poller) has(id uint64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.waiting[id] != nil
}

// stop refuses new parkings and resumes the parked sockets.
func (p *poller) stop() {
	p.mu.Lock()
	waiting := p.waiting
	p.waiting = map[uint64]*Conn{}
	p.stopped = true
	p.mu.Unlock()
	for _, c := range waiting {
		go c.serve(true)
	}
}

// close stops the loop and resumes every parked socket.
func (p *poller) close() {
	p.closeOnce.Do(func() {
		var one [8]byte
		one[0] = 1
		_, _ = unix.Write(p.wake, one[:])
		<-p.done
		p.stop()
		p.setMu.Lock()
		p.setClosed = true
		unix.Close(p.epfd)
		unix.Close(p.wake)
		p.setMu.Unlock()
	})
}
