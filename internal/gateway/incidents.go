package gateway

import (
	"context"
	"net/http"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Incidents: operators announce an outage, update its timeline and
// resolve it from any site's console or API; every site shows it on its
// public status page, pushes it to every connected client as it changes,
// and hands the open ones to every client that syncs.

// errHandler is a handler that returns its error instead of writing it:
// the error is written once, by the adapter (see handle).
type errHandler func(w http.ResponseWriter, r *http.Request, c claims) error

// handle serves h to signed-in callers whose role ranks at least min,
// writing any error h returns.
func (g *Gateway) handle(min string, h errHandler) http.HandlerFunc {
	return g.authed(g.withRole(min, func(w http.ResponseWriter, r *http.Request, c claims) {
		if err := h(w, r, c); err != nil {
			writeError(w, g.log, r, err)
		}
	}))
}

// opsRecord appends an ops record taken by c at this site and waits until
// this site has applied it.
func (g *Gateway) opsRecord(r *http.Request, c claims, key string, rec salamander.Record) error {
	rec.By, rec.Site = c.User, g.cfg.Site
	_, _, err := g.commit(r.Context(), jsstore.AccountsStream, key, rec, jsstore.AppendOptions{})
	return err
}

// opsAuthorized appends rec, an ops action that the read model puts in
// the audit trail when it counts, before the action is taken, and answers
// forbidden unless this site applied it as counted: an action taken
// outside the log (a leader move) is then made only by someone the log
// took as holding the role, at the record's point, and is in the trail.
func (g *Gateway) opsAuthorized(r *http.Request, c claims, key string, rec salamander.Record) error {
	rec.By, rec.Site = c.User, g.cfg.Site
	pos, _, err := g.commit(r.Context(), jsstore.AccountsStream, key, rec, jsstore.AppendOptions{})
	if err != nil {
		return err
	}
	// Applied already (commit waited for it); the audit row is the store
	// writer's, which a failing disk can hold back: bounded as the write
	// was, not by how long the client waits.
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.WriteTimeout)
	defer cancel()
	counted, err := g.cfg.View.Audited(ctx, pos)
	if err != nil {
		if ctx.Err() != nil && r.Context().Err() == nil {
			return salamander.Errorf(salamander.CodeUnavailable, "the action's record is in the log, but this site has not stored it within %s (see the audit trail for whether it counted)", g.cfg.WriteTimeout)
		}
		return err
	}
	if !counted {
		return salamander.Errorf(salamander.CodeForbidden, "the log did not take the action (are you still an operator?)")
	}
	return nil
}

// confirmed runs check and, if it refuses (not found, conflict), runs it
// again once this site has applied the accounts stream up to its head:
// the change it looks for may have been made at another site a moment
// ago.
func (g *Gateway) confirmed(ctx context.Context, check func() error) error {
	err := check()
	if c := salamander.ErrorCode(err); c != salamander.CodeNotFound && c != salamander.CodeConflict {
		return err
	}
	if err := g.confirmNegative(ctx, jsstore.AccountsStream); err != nil {
		return err
	}
	return check()
}

// handleOpenIncident announces an incident.
func (g *Gateway) handleOpenIncident(w http.ResponseWriter, r *http.Request, c claims) error {
	var req salamander.IncidentRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	id := salamander.NewOpsID("inc")
	rec := salamander.Record{Type: salamander.RecIncidentOpened, Incident: &salamander.IncidentChange{ID: id,
		Title: req.Title, State: req.State, Impact: req.Impact, Services: req.Services, Message: req.Message}}
	if err := g.opsRecord(r, c, "incident."+id, rec); err != nil {
		return err
	}
	inc, ok := g.cfg.View.Incident(id)
	if !ok {
		return salamander.Errorf(salamander.CodeForbidden, "the log did not take the incident (are you still an operator?)")
	}
	writeJSON(w, http.StatusCreated, inc)
	return nil
}

// handleUpdateIncident adds an update to an open incident's timeline; the
// state resolved resolves it.
func (g *Gateway) handleUpdateIncident(w http.ResponseWriter, r *http.Request, c claims) error {
	id := r.PathValue("id")
	var req salamander.IncidentUpdateRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	var before salamander.Incident
	if err := g.confirmed(r.Context(), func() error {
		var ok bool
		if before, ok = g.cfg.View.Incident(id); !ok {
			return salamander.Errorf(salamander.CodeNotFound, "no incident %q", id)
		}
		if !before.Open() {
			return salamander.Errorf(salamander.CodeConflict, "incident %s is resolved; announce a new one", id)
		}
		return nil
	}); err != nil {
		return err
	}
	rec := salamander.Record{Type: salamander.RecIncidentUpdated, Incident: &salamander.IncidentChange{ID: id,
		State: req.State, Impact: req.Impact, Services: req.Services, Message: req.Message}}
	if err := g.opsRecord(r, c, "incident."+id, rec); err != nil {
		return err
	}
	inc, _ := g.cfg.View.Incident(id)
	if len(inc.Updates) <= len(before.Updates) {
		return salamander.Errorf(salamander.CodeConflict, "the log did not take the update (resolved meanwhile, or you are no longer an operator)")
	}
	writeJSON(w, http.StatusOK, inc)
	return nil
}

// handleIncidents is the public list of incidents: the open ones and the
// history (newest first, at most maxIncidentHistory resolved ones).
func (g *Gateway) handleIncidents(w http.ResponseWriter, r *http.Request) {
	open, history := g.incidentLists()
	writeJSON(w, http.StatusOK, map[string]any{"site": g.cfg.Site, "services": serviceStates(open), "open": open,
		"history": history, "up_to_date": g.serving() == nil})
}

// maxIncidentHistory bounds the resolved incidents the status page lists.
const maxIncidentHistory = 50

func (g *Gateway) incidentLists() (open, history []salamander.Incident) {
	open, history = []salamander.Incident{}, []salamander.Incident{}
	for _, inc := range g.cfg.View.Incidents(true) {
		switch {
		case inc.Open():
			open = append(open, inc)
		case len(history) < maxIncidentHistory:
			history = append(history, inc)
		}
	}
	return open, history
}
