package gateway

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/salamander-chat/salamander/internal/wsock"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// Draining a site takes it out of service without an outage, before
// maintenance or when it looks unwell: its readiness fails (load balancers
// stop sending it users), its connected clients are told to move and then
// disconnected, new WebSockets are refused, and the stream leaders it holds
// move to the other sites — and stay away, because no site hands a drained
// one a leader. The drain is a record in the log: every site knows, and an
// operator undrains it from any site.

// drainKickAfter is how long a drained site's clients have to move by
// themselves before it disconnects them.
const drainKickAfter = 3 * time.Second

var errDrained = salamander.Errorf(salamander.CodeUnavailable, "this site is drained for maintenance; use another site")

// Drained reports whether this site is drained.
func (g *Gateway) Drained() bool { return g.cfg.View.IsDrained(g.cfg.Site) }

// DrainedServer reports whether NATS server name belongs to a drained site.
func (g *Gateway) DrainedServer(name string) bool {
	return g.cfg.View.IsDrained(jsstore.ServerSite(name))
}

// siteNames returns every site's name (this one's when none are
// configured).
func (g *Gateway) siteNames() []string {
	if len(g.cfg.Sites) == 0 {
		return []string{g.cfg.Site}
	}
	out := make([]string, len(g.cfg.Sites))
	for i, s := range g.cfg.Sites {
		out[i] = s.Name
	}
	return out
}

func (g *Gateway) knownSite(name string) error {
	if !slices.Contains(g.siteNames(), name) {
		return salamander.Errorf(salamander.CodeNotFound, "no site %q (sites: %v)", name, g.siteNames())
	}
	return nil
}

// CheckDrain says whether site, one of sites, may be drained (drain) or
// undrained now that the sites in drained are: not a site twice, not an
// undrained one undrained, and never so many that fewer than a majority of
// the sites would stay in service. A majority keeps serving and leading,
// so one more fire does not leave the users without a site. The ops API
// and `salamander admin drain` both decide by it.
func CheckDrain(site string, sites, drained []string, drain bool) error {
	if !slices.Contains(sites, site) {
		return salamander.Errorf(salamander.CodeNotFound, "no site %q (sites: %v)", site, sites)
	}
	if is := slices.Contains(drained, site); is == drain {
		return salamander.Errorf(salamander.CodeConflict, "site %s is %s", site, map[bool]string{true: "drained already", false: "not drained"}[is])
	}
	if n := len(sites); drain && !salamander.OneMoreOutLeavesMajority(len(drained), n) {
		return salamander.Errorf(salamander.CodeConflict, "draining %s would leave less than a majority of the %d sites serving; undrain %v first",
			site, n, slices.Sorted(slices.Values(drained)))
	}
	return nil
}

// handleDrain drains a site (drain) or ends its drain.
func (g *Gateway) handleDrain(drain bool) errHandler {
	return func(w http.ResponseWriter, r *http.Request, c claims) error {
		site := r.PathValue("name")
		if err := g.knownSite(site); err != nil {
			return err
		}
		// Decide on the log as it is now, not as this site last applied
		// it: another site may have drained one a moment ago.
		if err := g.confirmNegative(r.Context(), jsstore.AccountsStream); err != nil {
			return err
		}
		if err := CheckDrain(site, g.siteNames(), slices.Collect(maps.Keys(g.cfg.View.Drained())), drain); err != nil {
			return err
		}
		// A site a running drill cuts off counts like a drained one.
		if running := g.cfg.View.RunningDrills(); drain && len(running) > 0 {
			return DrillRunningError(running[0], "drain")
		}
		rec := salamander.Record{Type: salamander.RecSiteUndrained, Target: site}
		if drain {
			// Every site's name, for the log's own majority check.
			rec.Type, rec.Members = salamander.RecSiteDrained, g.siteNames()
		}
		if err := g.opsRecord(r, c, "site."+site, rec); err != nil {
			return err
		}
		if g.cfg.View.IsDrained(site) != drain {
			// Another drain or a drill landed first, or the caller's role
			// is gone.
			if err := CheckDrain(site, g.siteNames(), slices.Collect(maps.Keys(g.cfg.View.Drained())), drain); err != nil {
				return err
			}
			if running := g.cfg.View.RunningDrills(); drain && len(running) > 0 {
				return DrillRunningError(running[0], "drain")
			}
			return salamander.Errorf(salamander.CodeForbidden, "the log did not take the change (are you still an operator?)")
		}
		out := map[string]any{"site": site, "drained": drain}
		if drain {
			ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
			moved, err := g.cfg.Store.MoveLeadersOff(ctx, jsstore.ServerSite, func(server string) bool { return jsstore.ServerSite(server) == site })
			cancel()
			out["moved_leaders"] = nonNil(moved)
			if err != nil {
				// The drained site's own balancer keeps moving them.
				out["leaders_error"] = err.Error()
			}
		}
		writeJSON(w, http.StatusOK, out)
		return nil
	}
}

// handleMoveLeader hands a stream's leadership to its replica at a named
// site, recorded in the audit trail. The record comes first and the move
// only once this site has applied it as counted: the log decides whether
// the caller is an operator at that point (a demotion this site had not
// applied yet when it checked the role lands before it), so every move
// made is in the trail with who made it. A move that then fails (no new
// leader in time) stays in the trail as tried, and its caller is told.
func (g *Gateway) handleMoveLeader(w http.ResponseWriter, r *http.Request, c claims) error {
	stream := r.PathValue("stream")
	var req struct {
		Site string `json:"site"`
	}
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if !slices.Contains(g.cfg.Store.Streams(), stream) {
		return salamander.Errorf(salamander.CodeNotFound, "no stream %q", stream)
	}
	if err := g.knownSite(req.Site); err != nil {
		return err
	}
	if g.cfg.View.IsDrained(req.Site) {
		return salamander.Errorf(salamander.CodeConflict, "site %s is drained; undrain it first", req.Site)
	}
	ctx, cancel := context.WithTimeout(r.Context(), 8*time.Second)
	defer cancel()
	st, err := g.cfg.Store.StatusOf(ctx, stream)
	if err != nil {
		return err
	}
	if st.Leader != "" && jsstore.ServerSite(st.Leader) == req.Site {
		// Already there: nothing moves, so nothing is recorded.
		writeJSON(w, http.StatusOK, leaderMove{Stream: stream, Leader: st.Leader, Site: req.Site})
		return nil
	}
	target := ""
	for _, rep := range st.Replicas {
		if jsstore.ServerSite(rep) == req.Site && !slices.Contains(st.Unhealthy, rep) {
			target = rep
		}
	}
	if target == "" {
		return salamander.Errorf(salamander.CodeConflict, "%s has no healthy replica at site %s (replicas %v, unhealthy %v)",
			stream, req.Site, st.Replicas, st.Unhealthy)
	}
	if err := g.opsAuthorized(r, c, "leader."+stream, salamander.Record{Type: salamander.RecLeaderMoved, Name: stream,
		Target: req.Site}); err != nil {
		return err
	}
	// The move has its 8 s whatever the record took (an election of the
	// accounts stream's leader, in a fire).
	cancel()
	ctx, cancel = context.WithTimeout(r.Context(), 8*time.Second)
	defer cancel()
	if st.Leader != target {
		if err := g.cfg.Store.StepDown(ctx, stream, target); err != nil {
			return salamander.Errorf(salamander.CodeUnavailable, "%v", err)
		}
	}
	// Wait for the new leader, so the console shows the move done.
	for st.Leader != target {
		select {
		case <-ctx.Done():
			return salamander.Errorf(salamander.CodeUnavailable, "%s has not elected %s yet (leader: %q)", stream, target, st.Leader)
		case <-time.After(100 * time.Millisecond):
		}
		if st, err = g.cfg.Store.StatusOf(ctx, stream); err != nil {
			return err
		}
	}
	writeJSON(w, http.StatusOK, leaderMove{Stream: stream, Leader: st.Leader, Site: req.Site, Moved: true})
	return nil
}

// leaderMove answers a move of a stream's leader: Moved is false when the
// site led it already (nothing moved, nothing recorded).
type leaderMove struct {
	Stream string `json:"stream"`
	Leader string `json:"leader"`
	Site   string `json:"site"`
	Moved  bool   `json:"moved"`
}

// onApply passes applied events to the hub, and acts on those about this
// site: a drain tells its clients to move, then disconnects those that
// stay.
func (g *Gateway) onApply(batch []view.Emitted) {
	for i := range batch {
		if ev := &batch[i].Event; ev.Type == salamander.EventMove {
			if ev.Site != g.cfg.Site {
				batch[i].Broadcast = false // for the drained site's clients only
				continue
			}
			g.kickDrained()
		}
	}
	g.hub.deliver(batch)
}

// kickDrained disconnects this site's clients drainKickAfter after a
// drain, unless the drain was undone meanwhile.
func (g *Gateway) kickDrained() {
	g.background(func() {
		select {
		case <-g.life.Done():
			return
		case <-time.After(drainKickAfter):
		}
		if g.Drained() {
			g.hub.kickAll(wsock.StatusTryAgainLater, "site drained; use another site")
		}
	})
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
