package gateway

import (
	"context"
	"net/http"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// appliedRecords is how far this site's read model has applied each
// stream, in stream sequences (whole records), comparable with the
// streams' last_seq.
func appliedRecords(v *view.View) map[string]uint64 {
	out := v.Applied()
	for s, pos := range out {
		out[s] = jsstore.RecordsApplied(pos)
	}
	return out
}

func (g *Gateway) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "site": g.cfg.Site})
}

// handleReady says whether this site can serve: connected to NATS, holding
// the signing key (so its read model has applied the log's start) and
// applying every stream (a tail that found a hole in the log stops there).
func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	connected := g.cfg.Store.Conn().IsConnected()
	keyed := g.cfg.View.HasSigningKey()
	stalled := g.cfg.Store.Stalled()
	alarm := g.LogAlarm()
	caughtUp := g.CaughtUp()
	drained := g.Drained()
	status := http.StatusOK
	if !connected || !keyed || g.Isolated() || len(stalled) > 0 || alarm != "" || !caughtUp || drained {
		status = http.StatusServiceUnavailable
	}
	out := map[string]any{"ready": status == http.StatusOK, "site": g.cfg.Site,
		"nats_connected": connected, "signing_key": keyed, "isolated": g.Isolated(), "caught_up": caughtUp,
		"drained": drained}
	if len(stalled) > 0 {
		out["stalled"] = stalled
	}
	if alarm != "" {
		out["log_alarm"] = alarm
	}
	writeJSON(w, status, out)
}

func (g *Gateway) handleSites(w http.ResponseWriter, _ *http.Request) {
	sites := g.cfg.Sites
	if sites == nil {
		sites = []SiteInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": g.cfg.Site, "sites": sites})
}

// handleStatus reports this site's view of the cluster. Stream leaders come
// from the cluster and may be missing while it elects; everything else is
// local and always answers.
func (g *Gateway) handleStatus(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 1500*time.Millisecond)
	defer cancel()
	out := map[string]any{
		"site":            g.cfg.Site,
		"uptime_seconds":  int(time.Since(g.started).Seconds()),
		"nats_connected":  g.cfg.Store.Conn().IsConnected(),
		"isolated":        g.Isolated(),
		"nats_server":     g.cfg.Store.Conn().ConnectedServerName(),
		"applied":         appliedRecords(g.cfg.View),
		"entries_applied": g.cfg.View.EntriesApplied(),
		"websockets":      g.hub.users(),
	}
	if stalled := g.cfg.Store.Stalled(); len(stalled) > 0 {
		out["stalled"] = stalled
	}
	if w := g.Warnings(); len(w) > 0 {
		out["warnings"] = w
	}
	streams, err := g.cfg.Store.Status(ctx)
	out["streams"] = streams
	if err != nil {
		out["streams_error"] = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
}
