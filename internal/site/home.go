package site

import (
	"context"
	"net/url"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// DefaultHomeInterval is how often a site on an external cluster whose
// NATS connection is at another site's server looks for one of its own.
const DefaultHomeInterval = 5 * time.Second

// watchHome brings an external cluster's site back to its own servers. A
// gateway's connection moves down its --nats list when its server fails,
// and nats.go would keep it on the far server for good: after a few
// restarts every gateway sits on one site's server, its reads cross sites
// and the loss of that one server cuts them all off at once. So while the
// connection is at a server of another site, the site probes the servers
// of its list; once one at its own site has answered (with JetStream) at
// two checks in a row — a server that has just restarted is given a
// check's time to settle — the connection moves there. The move drops
// nothing: appends are retried, tails resubscribe and fill what they
// missed (jsstore.Store.ReconnectTo).
func (s *Site) watchHome(ctx context.Context) {
	if s.node != nil {
		return // an embedded site's connection is to its own server only
	}
	every := s.cfg.HomeInterval
	if every <= 0 {
		every = DefaultHomeInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	healthy := "" // the own site's server that answered at the last check
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		nc := s.store.Conn()
		away := nc.ConnectedServerName()
		if !nc.IsConnected() || s.servers.site(away) == s.cfg.Site {
			healthy = ""
			continue
		}
		home := s.findHome(ctx, nc.ConnectedUrl())
		if home == "" || home != healthy {
			healthy = home
			continue
		}
		healthy = ""
		if err := s.store.ReconnectTo(home); err != nil {
			s.log.Warn("cannot move the NATS connection back to this site", "err", err)
			continue
		}
		s.log.Info("moving the NATS connection back to this site's server", "from", away, "to", jsstore.RedactURL(home))
	}
}

// findHome is the first URL of the site's NATS list, other than the one
// connected to, whose server is at this site and answers with JetStream
// ("" when none does).
func (s *Site) findHome(ctx context.Context, connected string) string {
	for _, u := range s.store.URLs() {
		if sameHost(u, connected) {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		p, err := s.store.Probe(cctx, u)
		cancel()
		if err == nil && s.servers.site(p.Name) == s.cfg.Site {
			return u
		}
	}
	return ""
}

// sameHost reports whether two NATS URLs name the same host:port.
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && ua.Host != "" && ua.Host == ub.Host
}
