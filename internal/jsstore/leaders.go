package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// StepDown asks a stream's leader to hand leadership to the replica on
// server preferred ("" lets the cluster choose). A server asked to prefer
// itself refuses ("already leader") and nothing moves, so a repeated
// request with the same preferred server is harmless.
func (s *Store) StepDown(ctx context.Context, stream, preferred string) error {
	if err := s.apiAllowed(); err != nil {
		return err
	}
	var body []byte
	if preferred != "" {
		body, _ = json.Marshal(map[string]any{"placement": map[string]string{"preferred": preferred}})
	}
	data, err := s.apiRequest(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+natsName(stream), body, false, nil)
	if err != nil {
		return fmt.Errorf("jsstore: step down %s: %w", stream, err)
	}
	if err := errOf(data); err != nil {
		return fmt.Errorf("jsstore: step down %s: %w", stream, err)
	}
	return nil
}

// BalanceLeaders moves leaderships away from the servers mine names (a
// site's own: one embedded server, or the several servers an external
// cluster has at the site) while one of them leads more than its fair
// share of the room partitions, each to the healthy replica whose server
// leads the fewest. Each site runs it for its own servers only, so sites
// never issue conflicting moves. Spreading leaders evenly means a fire
// stalls only the partitions whose leader burned (an election), never all
// of them. It returns the streams it moved. Servers avoid names (drained
// sites' servers) are never handed one. A server at the site (siteOf)
// that leads the partition's standby is handed one only when no other
// would take it: both are then in one fire's reach until PlaceStandbys
// moves the standby (at that site's next check, within ~2 s), which is
// better than a site left leading more than its share for good
// (as when all its partitions' standbys are led at the one site that
// leads too few).
//
// Several gateways of one site may run it at once. Each move is decided on
// the stream's state read just before it (a stream that has moved or is
// electing is left alone) and names the server it goes to, which refuses
// to take a leadership it already has: two gateways deciding the same move
// make one move.
//
// It decides on all (Status) and standbys (StandbyStatus) as the caller
// read them, which PlaceStandbys shares: every status request reaches
// every server of the cluster, each round of each site's gateways asks
// again, and fewer requests are kinder to a server that is starting its
// JetStream again after a cut (nats-server reads its cluster state
// unlocked while it does, see site.rejoin).
func (s *Store) BalanceLeaders(ctx context.Context, all, standbys []StreamStatus, siteOf func(server string) string, mine, avoid func(server string) bool) (moved []string, err error) {
	leader := leadersOf(standbys)
	// Only room partitions carry messages; the accounts stream is left
	// where it is so it does not skew the partitions' fair share.
	var st []StreamStatus
	for _, ss := range all {
		if ss.Stream != AccountsStream {
			st = append(st, ss)
		}
	}
	count := map[string]int{}
	for _, ss := range st {
		for _, r := range ss.Replicas {
			count[r] += 0
		}
		if ss.Leader == "" {
			return nil, nil // an election is under way; decide later
		}
		count[ss.Leader]++
	}
	if len(count) == 0 {
		return nil, nil
	}
	fair := (len(st) + len(count) - 1) / len(count)
	skip := func(r string) bool { return mine(r) || avoid != nil && avoid(r) }
	for _, ss := range st {
		self := ss.Leader
		if !mine(self) || count[self] <= fair {
			continue
		}
		best := balanceTarget(ss, count, skip, pairSite(ss.Stream, leader, siteOf), siteOf)
		if best == "" {
			continue
		}
		now, err := s.StatusOf(ctx, ss.Stream)
		if err != nil {
			return moved, err
		}
		if now.Leader != self {
			continue // moved meanwhile (another gateway of this site, an election)
		}
		if err := s.StepDown(ctx, ss.Stream, best); err != nil {
			if strings.Contains(err.Error(), "already leader") {
				continue // another gateway made this very move
			}
			return moved, err
		}
		count[self]--
		count[best]++
		moved = append(moved, ss.Stream)
	}
	return moved, nil
}

// balanceTarget is the server BalanceLeaders hands ss to, "" if none: the
// healthy replica leading the fewest, none that skip names, provided the
// move evens the count out (it then leads fewer than ss's leader less
// one) — one at another site than apart (where the partition's standby
// is led) if such a one would do.
func balanceTarget(ss StreamStatus, count map[string]int, skip func(string) bool, apart string, siteOf func(string) string) string {
	return fewestLedApart(ss, count, skip, apart, siteOf, func(r string) bool { return count[r]+1 < count[ss.Leader] })
}

// fewestLedApart is fewestLed preferring a replica at another site than
// apart (where the stream's pair is led; "" for none): the fewest-led
// replica away from apart if ok accepts it, else the fewest-led of all
// if ok accepts that, else "". Both the balancing and a drain place
// leaderships this way.
func fewestLedApart(ss StreamStatus, count map[string]int, skip func(string) bool, apart string, siteOf func(string) string, ok func(string) bool) string {
	away := fewestLed(ss, count, func(r string) bool { return skip(r) || apart != "" && siteOf(r) == apart })
	if away != "" && ok(away) {
		return away
	}
	if any := fewestLed(ss, count, skip); any != "" && ok(any) {
		return any // together for a moment beats no move (PlaceStandbys parts them)
	}
	return ""
}

// fewestLed is the healthy replica of ss, other than those skip names,
// whose server leads the fewest streams by count ("" if none).
func fewestLed(ss StreamStatus, count map[string]int, skip func(string) bool) string {
	best := ""
	for _, r := range ss.Replicas {
		if slices.Contains(ss.Unhealthy, r) || skip(r) {
			continue
		}
		if best == "" || count[r] < count[best] {
			best = r
		}
	}
	return best
}

// MoveLeadersOff hands the leadership of every stream led by a server
// that off names to a healthy replica elsewhere (none that off names),
// spreading them over the servers that lead the fewest, and keeping a
// partition's leader and its standby's at two sites where it can (siteOf
// names a server's site): a fire at one site must never take both. It
// returns the streams it moved; a stream with no such replica stays (and
// says so in the error).
func (s *Store) MoveLeadersOff(ctx context.Context, siteOf func(server string) string, off func(server string) bool) (moved []string, err error) {
	st, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	standbys, err := s.StandbyStatus(ctx)
	if err != nil {
		return nil, err
	}
	moves, stuck := planMovesOff(append(st, standbys...), siteOf, off)
	var errs []error
	for _, stream := range stuck {
		errs = append(errs, fmt.Errorf("jsstore: %s has no healthy replica to lead it elsewhere", stream))
	}
	for _, m := range moves {
		if err := s.StepDown(ctx, m.stream, m.to); err != nil {
			errs = append(errs, err)
			continue
		}
		moved = append(moved, m.stream)
	}
	return moved, errors.Join(errs...)
}

// leaderMove hands stream's leadership to the replica on server to.
type leaderMove struct{ stream, to string }

// planMovesOff decides MoveLeadersOff's moves on one reading of the
// streams (partitions, standbys and the accounts stream alike): every
// stream led by a server off names goes to the healthy replica, none that
// off names, leading the fewest — at another site than its pair's leader
// (a partition's standby, a standby's partition; pairSite) where one is
// healthy. Each move counts for the next, so a partition and its standby
// led at one drained server go to two sites. stuck are the streams with
// no replica to go to.
func planMovesOff(st []StreamStatus, siteOf func(string) string, off func(string) bool) (moves []leaderMove, stuck []string) {
	leader := leadersOf(st)
	count := map[string]int{}
	for _, ss := range st {
		if ss.Leader != "" {
			count[ss.Leader]++
		}
	}
	for _, ss := range st {
		if ss.Leader == "" || !off(ss.Leader) {
			continue
		}
		// Together with its pair for a moment beats staying at the drained site.
		to := fewestLedApart(ss, count, off, pairSite(ss.Stream, leader, siteOf), siteOf, func(string) bool { return true })
		if to == "" {
			stuck = append(stuck, ss.Stream)
			continue
		}
		count[ss.Leader]--
		count[to]++
		leader[ss.Stream] = to
		moves = append(moves, leaderMove{ss.Stream, to})
	}
	return moves, stuck
}

// leadersOf maps each stream of st to its leader ("" while it elects).
func leadersOf(st []StreamStatus) map[string]string {
	leader := make(map[string]string, len(st))
	for _, ss := range st {
		leader[ss.Stream] = ss.Leader
	}
	return leader
}

// pairSite is the site that leads stream's pair — a partition's standby,
// or a standby's partition — by leader ("" for other streams, or while the
// pair elects or was not read). A stream's leader belongs elsewhere: one
// fire must not take a partition and the standby that holds its sends
// while it elects.
func pairSite(stream string, leader map[string]string, siteOf func(string) string) string {
	var pair string
	switch {
	case isPartition(stream):
		pair = StandbyOf(stream)
	case IsStandby(stream):
		pair = PartitionOf(stream)
	default:
		return ""
	}
	if l := leader[pair]; l != "" {
		return siteOf(l)
	}
	return ""
}

// ServerSite is the site of a NATS server by its name: an embedded
// server is named "site-" and its site; an external server should be
// named the same way (or after its site alone). Where the servers'
// site: tags are known (their monitoring), those are the better answer.
func ServerSite(server string) string { return strings.TrimPrefix(server, "site-") }

// PlaceStandbys keeps each standby stream's leader at another site than
// its partition's leader, so that one fire never takes both: a send its
// partition cannot answer is then held at once (standby.go). For every
// standby led by a server mine names whose partition is led at the same
// site (siteOf), it hands the standby's leadership to a healthy replica at
// another site, none that avoid names. It leaves a standby alone while its
// partition elects. It decides on streams (the partitions' Status) and
// standbys as the caller read them, and reads a standby again just before
// moving it. It returns the standbys it moved.
func (s *Store) PlaceStandbys(ctx context.Context, streams, standbys []StreamStatus, siteOf func(server string) string, mine, avoid func(server string) bool) (moved []string, err error) {
	partition := leadersOf(streams)
	for _, sb := range standbys {
		if sb.Leader == "" || !mine(sb.Leader) {
			continue
		}
		p := partition[PartitionOf(sb.Stream)]
		if p == "" || siteOf(p) != siteOf(sb.Leader) {
			continue
		}
		to := ""
		for _, r := range sb.Replicas {
			if !slices.Contains(sb.Unhealthy, r) && siteOf(r) != siteOf(p) && (avoid == nil || !avoid(r)) {
				to = r
				break
			}
		}
		if to == "" {
			continue
		}
		now, err := s.StatusOf(ctx, sb.Stream)
		if err != nil {
			return moved, err
		}
		if now.Leader != sb.Leader {
			continue // moved meanwhile (another gateway of this site, an election)
		}
		if err := s.StepDown(ctx, sb.Stream, to); err != nil {
			if strings.Contains(err.Error(), "already leader") {
				continue
			}
			return moved, err
		}
		moved = append(moved, sb.Stream)
	}
	return moved, nil
}
