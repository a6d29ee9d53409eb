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

// CutMode is how a cut link fails.
type CutMode string

// Cut modes.
const (
	// CutClose closes every connection the link carries and refuses new
	// ones: both servers see their routes drop at once, as when a host
	// reboots or a firewall answers with resets.
	CutClose CutMode = "close"
	// CutSilent drops every byte, both ways, while the connections stay
	// open; new connections are accepted and then hang. This is what most
	// real partitions look like (a dead switch, a lost uplink): nothing
	// tells either server, which notices only when its own timeouts (route
	// pings, TLS and connect deadlines) expire. When the link heals the
	// bytes held meanwhile flow again on the same connections, as TCP's
	// retransmissions would deliver them; a side that gave up on a
	// connection meanwhile has its close delivered then, and its new
	// connection goes through.
	CutSilent CutMode = "silent"
	// CutIsolate is how a site of a cluster the drill attached to is cut
	// off: told through the log (see Isolator), it refuses its clients and
	// pauses its replicas itself. Not a choice on a started cluster.
	CutIsolate CutMode = "isolate"
)

// CutModes lists every cut mode, in the order the help text gives them.
var CutModes = []CutMode{CutClose, CutSilent}

// linkProxy carries one site's outgoing NATS route connections to another
// site's cluster port. It can cut the link (see CutMode) and heal it, and
// delay every byte it carries, in each direction, to model distance.
type linkProxy struct {
	from, to string // site names
	target   string // the real cluster address of site to
	ln       net.Listener
	wg       sync.WaitGroup

	mu     sync.Mutex
	cut    CutMode       // "" while the link is up
	resume chan struct{} // during a silent cut: closed when bytes may flow again
	closed bool          // Close ran
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

// Cut cuts the link the way mode says.
func (p *linkProxy) Cut(mode CutMode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCut(mode)
}

// Heal lets bytes and new connections through again.
func (p *linkProxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.setCut("")
}

// setCut switches the link to mode ("": up). p.mu is held.
func (p *linkProxy) setCut(mode CutMode) {
	if p.closed {
		mode = CutClose
	}
	if p.cut == CutSilent && mode != CutSilent {
		close(p.resume) // held bytes flow (or, on a close cut, fail) now
		p.resume = nil
	}
	if mode == CutSilent && p.cut != CutSilent {
		p.resume = make(chan struct{})
	}
	p.cut = mode
	if mode == CutClose {
		for c := range p.conns {
			c.Close()
		}
	}
}

// held returns nil when bytes may flow, or, during a silent cut, a channel
// closed when they may again.
func (p *linkProxy) held() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == CutSilent {
		return p.resume
	}
	return nil
}

// waitFlowing returns when the link is not silently cut.
func (p *linkProxy) waitFlowing() {
	for ch := p.held(); ch != nil; ch = p.held() {
		<-ch
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
	p.mu.Lock()
	p.closed = true
	p.setCut(CutClose)
	p.mu.Unlock()
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

// track registers c unless the link is cut with CutClose.
func (p *linkProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut == CutClose {
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
// side closes or the link is cut with CutClose. A connection accepted
// during a silent cut reaches the target only when the link heals (its
// handshake was lost in the network); if c gives up first, it never does.
func (p *linkProxy) forward(c net.Conn) {
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
	// Dial from 127.0.0.1: the servers gossip route addresses built from
	// the peer's source IP and real cluster port, and nothing listens on
	// 127.0.0.1 at those ports, so gossip never bypasses a proxy.
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
func (p *linkProxy) read(src net.Conn, chunks chan<- chunk, done chan<- struct{}) {
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
func (p *linkProxy) write(dst, src net.Conn, chunks <-chan chunk) {
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

var errNoPort = errors.New("drill: no free port pair found")
