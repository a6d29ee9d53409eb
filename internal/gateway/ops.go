package gateway

import (
	"net/http"

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

// handleHealth answers GET /healthz: 200 while the process serves HTTP,
// naming only the site (public, as /v1/sites is).
func (g *Gateway) handleHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "site": g.cfg.Site})
}

// handleReady says whether this site can serve: connected to NATS, holding
// the signing key (so its read model has applied the log's start) and
// applying every stream (a tail that found a hole in the log stops there).
// The answer is public (balancers and probes ask without a token) and is
// the code with no more than the site's name and the verdict: why a site
// is not ready names streams, errors and files, and is the operators' to
// read, in GET /v1/ops/site.
func (g *Gateway) handleReady(w http.ResponseWriter, _ *http.Request) {
	rd := g.readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, publicReadiness{Ready: rd.Ready, Site: rd.Site})
}

// publicReadiness is what GET /readyz answers.
type publicReadiness struct {
	Ready bool   `json:"ready"`
	Site  string `json:"site"`
}

// readiness is whether this site can serve, and why not: GET /readyz
// answers its verdict, GET /v1/ops/site all of it.
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

// notReadyConditions are the conditions that keep the site from serving
// while one holds, in readiness's field order: the site is ready when none
// does, and salamander_not_ready exports each under its reason label.
var notReadyConditions = []struct {
	reason string
	holds  func(readiness) bool
}{
	{"nats_disconnected", func(rd readiness) bool { return !rd.NATSConnected }},
	{"no_signing_key", func(rd readiness) bool { return !rd.SigningKey }},
	{"isolated", func(rd readiness) bool { return rd.Isolated }},
	{"catching_up", func(rd readiness) bool { return !rd.CaughtUp }},
	{"drained", func(rd readiness) bool { return rd.Drained }},
	{"stalled", func(rd readiness) bool { return len(rd.Stalled) > 0 }},
	{"log_alarm", func(rd readiness) bool { return rd.LogAlarm != "" }},
	{"read_model", func(rd readiness) bool { return rd.ReadModel != "" }},
}

func (g *Gateway) readiness() readiness {
	rd := readiness{Site: g.cfg.Site, NATSConnected: g.cfg.Store.Conn().IsConnected(),
		SigningKey: g.cfg.View.HasSigningKey(), Isolated: g.Isolated(), CaughtUp: g.CaughtUp(), Drained: g.Drained(),
		Stalled: g.cfg.Store.Stalled(), LogAlarm: g.LogAlarm(), ReadModel: g.storeFailure()}
	rd.Ready = true
	for _, nr := range notReadyConditions {
		rd.Ready = rd.Ready && !nr.holds(rd)
	}
	return rd
}

func (g *Gateway) handleSites(w http.ResponseWriter, _ *http.Request) {
	sites := g.cfg.Sites
	if sites == nil {
		sites = []SiteInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"site": g.cfg.Site, "sites": sites})
}

// publicStatus is what GET /v1/status tells anyone, as a public status
// page would: whether this site serves, and how each service is doing
// (from the open incidents, as /status shows it). Nothing about the
// site's traffic or internals — connected users, log positions, stream
// leaders, NATS servers, warnings — which operators read in GET
// /v1/ops/site.
type publicStatus struct {
	Site string `json:"site"`
	// Ready is what GET /readyz says: this site takes users' requests now.
	Ready bool `json:"ready"`
	// UpToDate is false while the site cannot serve (cut off, catching up,
	// its log or read model damaged): what it tells may be old.
	UpToDate      bool           `json:"up_to_date"`
	Services      []ServiceState `json:"services"`
	OpenIncidents int            `json:"open_incidents"`
}

// handleStatus answers GET /v1/status from this process's memory alone: it
// asks the cluster nothing, so that no one can load the cluster through it.
func (g *Gateway) handleStatus(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, g.publicStatus())
}

func (g *Gateway) publicStatus() publicStatus {
	open, _ := g.incidentLists()
	return publicStatus{Site: g.cfg.Site, Ready: g.readiness().Ready, UpToDate: g.serving() == nil,
		Services: serviceStates(open), OpenIncidents: len(open)}
}
