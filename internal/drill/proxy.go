package drill

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// linkProxy carries one site's outgoing NATS route connections to another
// site's cluster port. Cutting it closes every connection it carries and
// refuses new ones (accepts and closes them at once) until it is healed,
// which is what a network partition looks like to both servers.
type linkProxy struct {
	from, to string // site names
	target   string // the real cluster address of site to
	ln       net.Listener
	wg       sync.WaitGroup

	mu    sync.Mutex
	cut   bool
	conns map[net.Conn]struct{}
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
	pipe := func(dst, src net.Conn) {
		defer wg.Done()
		_, err := io.Copy(dst, src)
		_ = err // either side closing ends the link; nothing to report
		dst.Close()
		src.Close()
	}
	wg.Add(2)
	go pipe(up, c)
	go pipe(c, up)
	wg.Wait()
}

var errNoPort = errors.New("drill: no free port pair found")
