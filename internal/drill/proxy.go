package drill

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"
)

// linkProxy carries one site's outgoing NATS route connections to another
// site's cluster port. Cutting it closes every connection it carries and
// refuses new ones (accepts and closes them at once) until it is healed,
// which is what a network partition looks like to both servers. It can
// also delay every byte it carries, in each direction, to model distance.
type linkProxy struct {
	from, to string // site names
	target   string // the real cluster address of site to
	ln       net.Listener
	wg       sync.WaitGroup

	mu     sync.Mutex
	cut    bool
	conns  map[net.Conn]struct{}
	delay  time.Duration // one-way delay added to each chunk
	jitter time.Duration // the delay varies uniformly by ± jitter
}

// chunk is a piece of a stream waiting for its delivery time.
type chunk struct {
	data []byte
	due  time.Time
}

// startLinkProxy listens on a free loopback port and forwards each accepted
// connection to target.
func startLinkProxy(from, to, target string) (*linkProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("drill: link proxy %s->%s: listen: %w", from, to, err)
	}
	p := &linkProxy{from: from, to: to, target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.acceptLoop()
	}()
	return p, nil
}

// Addr is the address the from site's server routes to.
func (p *linkProxy) Addr() string { return p.ln.Addr().String() }

// touches reports whether the link starts or ends at site.
func (p *linkProxy) touches(site string) bool { return p.from == site || p.to == site }

// SetCut cuts (true) or heals (false) the link.
func (p *linkProxy) SetCut(cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = cut
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// SetDelay delays every chunk the link carries, in each direction, by
// delay ± jitter (uniform), never reordering bytes: a chunk is due no
// earlier than the one before it. Zero delay and jitter forward at once.
func (p *linkProxy) SetDelay(delay, jitter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.delay, p.jitter = delay, min(jitter, delay)
}

// oneWay draws the delay for a chunk read now.
func (p *linkProxy) oneWay() time.Duration {
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
func (p *linkProxy) Close() {
	p.ln.Close()
	p.SetCut(true)
	p.wg.Wait()
}

func (p *linkProxy) acceptLoop() {
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

// track registers c unless the link is cut.
func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *linkProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

// forward copies bytes both ways between c and the target until either
// side closes or the link is cut.
func (p *linkProxy) forward(c net.Conn) {
	// Dial from 127.0.0.1: the servers gossip route addresses built from
	// the peer's source IP and real cluster port, and nothing listens on
	// 127.0.0.1 at those ports, so gossip never bypasses a proxy.
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}}
	up, err := d.Dial("tcp", p.target)
	if err != nil {
		p.untrack(c)
		return
	}
	if !p.track(up) {
		up.Close()
		p.untrack(c)
		return
	}
	defer p.untrack(c, up)
	var wg sync.WaitGroup
	wg.Go(func() { p.pipe(up, c) })
	wg.Go(func() { p.pipe(c, up) })
	wg.Wait()
}

// pipe copies src to dst, each chunk held until its due time, until
// either side closes or the link is cut; then it closes both.
func (p *linkProxy) pipe(dst, src net.Conn) {
	queue := make(chan chunk, 256)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(queue)
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
				queue <- chunk{data: bytes.Clone(buf[:n]), due: due}
			}
			if err != nil {
				return // either side closing ends the link; nothing to report
			}
		}
	})
	for ch := range queue {
		if d := time.Until(ch.due); d > 0 {
			time.Sleep(d)
		}
		if _, err := dst.Write(ch.data); err != nil {
			src.Close() // unblocks the reader; the rest of the queue is dropped
			for range queue {
			}
			break
		}
	}
	dst.Close()
	src.Close()
	wg.Wait()
}

var errNoPort = errors.New("drill: no free port pair found")
