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
	rd := g.readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rd)
}

// readiness is what GET /readyz answers.
type readiness struct {
	Ready         bool              `json:"ready"`
	Site          string            `json:"site"`
	NATSConnected bool              `json:"nats_connected"`
	SigningKey    bool              `json:"signing_key"`
	Isolated      bool              `json:"isolated"`
	CaughtUp      bool              `json:"caught_up"`
	Drained       bool              `json:"drained"`
	Stalled       map[string]string `json:"stalled,omitempty"`
	LogAlarm      string            `json:"log_alarm,omitempty"`
	// ReadModel says why the read model's store cannot be written (see
	// storeFailure).
	ReadModel string `json:"read_model,omitempty"`
}

func (g *Gateway) readiness() readiness {
	rd := readiness{Site: g.cfg.Site, NATSConnected: g.cfg.Store.Conn().IsConnected(),
		SigningKey: g.cfg.View.HasSigningKey(), Isolated: g.Isolated(), CaughtUp: g.CaughtUp(), Drained: g.Drained(),
		Stalled: g.cfg.Store.Stalled(), LogAlarm: g.LogAlarm(), ReadModel: g.storeFailure()}
	rd.Ready = rd.NATSConnected && rd.SigningKey && !rd.Isolated && len(rd.Stalled) == 0 && rd.LogAlarm == "" &&
		rd.CaughtUp && !rd.Drained && rd.ReadModel == ""
	return rd
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
		"instance":        g.cfg.Instance,
		"site_gateways":   g.eph.siteGateways(time.Now()),
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
	cs := g.clusterStreams(ctx)
	out["streams"], out["standbys"] = cs.Streams, cs.Standbys
	if cs.StreamsError != "" {
		out["streams_error"] = cs.StreamsError
	}
	if cs.StandbysError != "" {
		out["standbys_error"] = cs.StandbysError
	}
	writeJSON(w, http.StatusOK, out)
}
