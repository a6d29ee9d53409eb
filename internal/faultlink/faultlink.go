// Package faultlink owns a TCP relay that can fail the way networks fail:
// it forwards each connection it accepts to one target address, and can
// cut the link (closing every connection, or silently holding every byte
// while connections stay open), heal it, and delay every byte to model
// distance. The fire drill runs every route between two sites' NATS
// servers through one; tests put one between a gateway and its NATS
// server to cut a site off without touching the shared test cluster.
package faultlink

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// Link carries connections to one target. It can be cut (CutClosing,
// CutSilently) and healed, and delay every byte it carries, in each
// direction.
type Link struct {
	target string
	ln     net.Listener
	wg     sync.WaitGroup

	mu     sync.Mutex
	cut    mode          // up while the link is up
	resume chan struct{} // during a silent cut: closed when bytes may flow again
	closed bool          // Close ran
	conns  map[net.Conn]struct{}
	delay  time.Duration // one-way delay added to each chunk
	jitter time.Duration // the delay varies uniformly by ± jitter
}

// mode is how the link is cut, if it is.
type mode int

const (
	up mode = iota
	// closing closes every connection the link carries and refuses new
	// ones: both ends see their connections drop at once, as when a host
	// reboots or a firewall answers with resets.
	closing
	// silent drops every byte, both ways, while the connections stay
	// open; new connections are accepted and then hang. This is what most
	// real partitions look like (a dead switch, a lost uplink): nothing
	// tells either end, which notices only when its own timeouts expire.
	// When the link heals the bytes held meanwhile flow again on the same
	// connections, as TCP's retransmissions would deliver them; a side
	// that gave up on a connection meanwhile has its close delivered then,
	// and its new connection goes through.
	silent
)

// chunk is a piece of a stream waiting for its delivery time.
type chunk struct {
	data []byte
	due  time.Time
}

// Start listens on a free loopback port and forwards each accepted
// connection to target, dialled from 127.0.0.1.
func Start(target string) (*Link, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultlink: listen: %w", err)
	}
	p := &Link{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.acceptLoop()
	}()
	return p, nil
}

// Addr is the address to connect to instead of the target.
func (p *Link) Addr() string { return p.ln.Addr().String() }

// CutClosing closes every connection the link carries and refuses new
// ones until Heal.
func (p *Link) CutClosing() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCut(closing)
}

// CutSilently holds every byte, both ways, and leaves the connections
// open until Heal; new connections are accepted and hang.
func (p *Link) CutSilently() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCut(silent)
}

// Heal lets bytes and new connections through again.
func (p *Link) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCut(up)
}

// setCut switches the link to m. p.mu is held.
func (p *Link) setCut(m mode) {
	if p.closed {
		m = closing
	}
	if p.cut == silent && m != silent {
		close(p.resume) // held bytes flow (or, on a closing cut, fail) now
		p.resume = nil
	}
	if m == silent && p.cut != silent {
		p.resume = make(chan struct{})
	}
	p.cut = m
	if m == closing {
		for c := range p.conns {
			c.Close()
		}
	}
}

// held returns nil when bytes may flow, or, during a silent cut, a channel
// closed when they may again.
func (p *Link) held() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == silent {
		return p.resume
	}
	return nil
}

// waitFlowing returns when the link is not silently cut.
func (p *Link) waitFlowing() {
	for ch := p.held(); ch != nil; ch = p.held() {
		<-ch
	}
}

// SetDelay delays every chunk the link carries, in each direction, by
// delay ± jitter (uniform), never reordering bytes: a chunk is due no
// earlier than the one before it. Zero delay and jitter forward at once.
func (p *Link) SetDelay(delay, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.jitter = delay, min(jitter, delay)
}

// oneWay draws the delay for a chunk read now.
func (p *Link) oneWay() time.Duration {
	p.mu.Lock()
	d, j := p.delay, p.jitter
	p.mu.Unlock()
	if j > 0 {
		d += time.Duration(rand.Int64N(int64(2*j)+1)) - j
	}
	return d
}

// Close stops accepting, closes every connection and waits for the
// proxy's goroutines.
func (p *Link) Close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	p.setCut(closing)
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Link) acceptLoop() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		if !p.track(c) {
			c.Close()
			continue
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.forward(c)
		}()
	}
}

// track registers c unless the link is cut closing.
func (p *Link) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == closing {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Link) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

// forward copies bytes both ways between c and the target until either
// side closes or the link is cut closing. A connection accepted
// during a silent cut reaches the target only when the link heals (its
// handshake was lost in the network); if c gives up first, it never does.
func (p *Link) forward(c net.Conn) {
	var wg sync.WaitGroup
	defer wg.Wait()
	fromC, cDone := make(chan chunk, 256), make(chan struct{})
	wg.Go(func() { p.read(c, fromC, cDone) })
	abandon := func() {
		p.untrack(c) // ends the reader
		for range fromC {
		}
	}
	if ch := p.held(); ch != nil {
		select {
		case <-ch:
		case <-cDone:
			abandon()
			return
		}
	}
	// Dial from 127.0.0.1: NATS servers gossip route addresses built from
	// the peer's source IP and real cluster port, and nothing listens on
	// 127.0.0.1 at those ports, so gossip never bypasses a link.
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	up, err := d.Dial("tcp", p.target)
	if err != nil {
		abandon()
		return
	}
	if !p.track(up) {
		up.Close()
		abandon()
		return
	}
	defer p.untrack(c, up)
	fromUp, upDone := make(chan chunk, 256), make(chan struct{})
	wg.Go(func() { p.read(up, fromUp, upDone) })
	wg.Go(func() { p.write(c, up, fromUp) })
	p.write(up, c, fromC)
}

// read reads src into chunks, each due after the link's one-way delay and
// never before the one read before it, until src ends; then it closes
// chunks and done. It keeps reading through a silent cut (the writer holds
// the bytes) so that a side closing its connection meanwhile is seen.
func (p *Link) read(src net.Conn, chunks chan<- chunk, done chan<- struct{}) {
	defer close(done)
	defer close(chunks)
	buf := make([]byte, 32<<10)
	var last time.Time
	for {
		n, err := src.Read(buf)
		if n > 0 {
			due := time.Now().Add(p.oneWay())
			if due.Before(last) {
				due = last
			}
			last = due
			chunks <- chunk{data: bytes.Clone(buf[:n]), due: due}
		}
		if err != nil {
			return // either side closing ends the link; nothing to report
		}
	}
}

// write writes chunks to dst, each at its due time and none while the link
// is silently cut, until src has ended and everything it sent is written
// (then dst is closed too, as the FIN would arrive after the data) or dst
// fails. Closing both connections ends the other direction as well.
func (p *Link) write(dst, src net.Conn, chunks <-chan chunk) {
	failed := false
	for ch := range chunks {
		p.waitFlowing()
		if d := time.Until(ch.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(ch.data); err != nil {
			failed = true
			break
		}
	}
	if !failed {
		p.waitFlowing()
	}
	dst.Close()
	src.Close() // unblocks the reader if dst failed
	for range chunks {
	}
}
