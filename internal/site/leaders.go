package site

import (
	"context"
	"math/rand/v2"
	"time"
)

// balanceInterval is how often a site checks that its servers lead no
// more than their share of the streams (with an external cluster, a
// random time around it: see balanceLeaders).
const balanceInterval = 2 * time.Second

// balanceLeaders keeps this site's NATS servers — its embedded one, or
// the servers of an external cluster at this site — from leading more
// than their share of the streams, so that losing the site stalls as few
// partitions as possible.
//
// With an external cluster a site may run several gateways, and each
// balances the site's servers. They need no election among themselves:
// each waits a random time around balanceInterval, so they seldom look at
// once, and jsstore.BalanceLeaders reads a stream again just before moving
// it and names where it goes, so a move two gateways both decide happens
// once (the server named refuses a leadership it already holds).
func (s *Site) balanceLeaders(ctx context.Context) {
	mine := func(server string) bool { return s.servers.site(server) == s.cfg.Site }
	for {
		wait := balanceInterval
		if s.node == nil {
			wait = balanceInterval/2 + rand.N(balanceInterval)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if s.gw.Isolated() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var moved []string
		var err error
		if s.gw.Drained() {
			// A drained site keeps no leader, whichever it was handed
			// meanwhile (an election after a fire, say).
			moved, err = s.store.MoveLeadersOff(cctx, s.servers.site, mine)
		} else {
			moved, err = s.balanceOnce(cctx, mine)
		}
		cancel()
		if err != nil {
			s.log.Debug("leader balance check failed", "err", err)
		} else if len(moved) > 0 {
			s.log.Info("handed stream leaderships to less loaded sites", "streams", moved)
		}
	}
}

// balanceOnce is one round of balancing for a site that is in service: it
// reads every stream's and standby's status once, hands this site's extra
// partition leaderships on, and moves this site's standbys away from their
// partitions' sites. It returns the streams it moved.
func (s *Site) balanceOnce(ctx context.Context, mine func(server string) bool) ([]string, error) {
	streams, err := s.store.Status(ctx)
	if err != nil {
		return nil, err
	}
	standbys, err := s.store.StandbyStatus(ctx)
	if err != nil {
		return nil, err
	}
	moved, err := s.store.BalanceLeaders(ctx, streams, standbys, s.servers.site, mine, s.gw.DrainedServer)
	if err != nil {
		return moved, err
	}
	if len(moved) > 0 {
		// The standbys are placed against where the partitions are now.
		if streams, err = s.store.Status(ctx); err != nil {
			return moved, err
		}
	}
	placed, err := s.store.PlaceStandbys(ctx, streams, standbys, s.servers.site, mine, s.gw.DrainedServer)
	return append(moved, placed...), err
}
