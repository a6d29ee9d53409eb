package drill

import (
	"errors"
	"fmt"

	"github.com/salamander-chat/salamander/internal/faultlink"
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
// site's cluster port (see faultlink).
type linkProxy struct {
	from, to string // site names
	*faultlink.Link
}

// startLinkProxy starts a link from site from to target, site to's real
// cluster address.
func startLinkProxy(from, to, target string) (*linkProxy, error) {
	l, err := faultlink.Start(target)
	if err != nil {
		return nil, fmt.Errorf("drill: link proxy %s->%s: %w", from, to, err)
	}
	return &linkProxy{from: from, to: to, Link: l}, nil
}

// touches reports whether the link starts or ends at site.
func (p *linkProxy) touches(site string) bool { return p.from == site || p.to == site }

// Cut cuts the link the way mode says.
func (p *linkProxy) Cut(mode CutMode) {
	if mode == CutSilent {
		p.CutSilently()
	} else {
		p.CutClosing()
	}
}

var errNoPort = errors.New("drill: no free port pair found")
