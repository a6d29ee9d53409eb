package gateway

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/drill"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Drill records, kept in the log for regulators: every `salamander drill`
// run that records itself and every drill an operator starts from the
// console. A console drill isolates a chosen site under a test load: the
// site refuses every request and drops its clients (they move), pauses its
// replicas (the others carry on with a quorum), and comes back by itself;
// the drill's checks then prove no acknowledged message was lost,
// duplicated or reordered and that every site converged. A fire needs
// process control and stays in `salamander drill`.

// Console drill load: small, so a drill costs production nothing.
const (
	consoleDrillUsers   = 8
	consoleDrillFaultAt = 5 * time.Second
	consoleDrillAfter   = 10 * time.Second // load after the site is back
)

func (g *Gateway) handleDrills(w http.ResponseWriter, r *http.Request, _ claims) error {
	year := time.Now().UTC().Year()
	if s := r.URL.Query().Get("year"); s != "" {
		y, err := strconv.Atoi(s)
		if err != nil || y < 2000 || y > 9999 {
			return salamander.Errorf(salamander.CodeInvalid, "year must be a year")
		}
		year = y
	}
	list := g.cfg.View.Drills() // reports are at /v1/ops/drills/{id}
	writeJSON(w, http.StatusOK, map[string]any{"drills": list, "compliance": salamander.Compliance(list, year)})
	return nil
}

func (g *Gateway) handleDrill(w http.ResponseWriter, r *http.Request, _ claims) error {
	d, ok := g.cfg.View.Drill(r.PathValue("id"))
	if !ok {
		return salamander.Errorf(salamander.CodeNotFound, "no drill %q", r.PathValue("id"))
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// handleEndDrill ends a running drill as failed, with the operator's
// reason: a drill whose runner died would otherwise count as running, and
// block drains and other drills, until salamander.DrillAbandonedAfter.
func (g *Gateway) handleEndDrill(w http.ResponseWriter, r *http.Request, c claims) error {
	var req salamander.DrillEndRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := g.confirmed(r.Context(), func() error {
		d, ok := g.cfg.View.Drill(id)
		switch {
		case !ok:
			return salamander.Errorf(salamander.CodeNotFound, "no drill %q", id)
		case d.State != salamander.DrillRunning:
			return salamander.Errorf(salamander.CodeConflict, "drill %s is over (%s)", id, d.State)
		}
		return nil
	}); err != nil {
		return err
	}
	rec := salamander.Record{Type: salamander.RecDrillEnded, Drill: &salamander.Drill{ID: id, State: salamander.DrillFailed,
		Summary: salamander.DrillEndedBy(c.User, req.Reason)}}
	if err := g.opsRecord(r, c, "drill."+id, rec); err != nil {
		return err
	}
	d, _ := g.cfg.View.Drill(id)
	if d.Summary != rec.Drill.Summary {
		// Its runner recorded its end first: the log kept that one.
		return salamander.Errorf(salamander.CodeConflict, "drill %s ended meanwhile (%s): %s", id, d.State, d.Summary)
	}
	writeJSON(w, http.StatusOK, d)
	return nil
}

// DrillRunningError is the refusal of a drain or a drill while drill d
// runs, saying how to end it if its runner died.
func DrillRunningError(d salamander.Drill, what string) error {
	cut := "started " + d.Started.UTC().Format(time.RFC3339)
	if d.Site != "" {
		cut = "it cuts site " + d.Site + " off"
	}
	return salamander.Errorf(salamander.CodeConflict, "drill %s is running (%s); %s once it is over, or, if its runner "+
		"died, end it: the console's End, POST /v1/ops/drills/%s/end or salamander admin drill end %s", d.ID, cut, what, d.ID, d.ID)
}

// handleDrillsCSV exports the drill records (the regulator's copy).
func (g *Gateway) handleDrillsCSV(w http.ResponseWriter, _ *http.Request, _ claims) error {
	rows := [][]string{{"id", "scenario", "kind", "site", "started_at", "ended_at", "state", "by", "from_site", "summary"}}
	for _, d := range g.cfg.View.Drills() {
		ended := ""
		if !d.Ended.IsZero() {
			ended = d.Ended.Format(time.RFC3339)
		}
		rows = append(rows, []string{d.ID, d.Scenario, d.Kind, d.Site, d.Started.Format(time.RFC3339), ended, d.State,
			d.By, d.FromSite, d.Summary})
	}
	writeCSV(w, "drills.csv", rows)
	return nil
}

// handleStartDrill starts an isolation drill of a site. It runs from this
// site, which must not be the one isolated: it carries the load and the
// checks while the other is away.
func (g *Gateway) handleStartDrill(w http.ResponseWriter, r *http.Request, c claims) error {
	var req salamander.DrillRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := g.knownSite(req.Site); err != nil {
		return err
	}
	if req.Site == g.cfg.Site {
		return salamander.Errorf(salamander.CodeConflict, "start the drill of site %s from another site's console: "+
			"the site that runs the drill carries its load and checks while %s is away", req.Site, req.Site)
	}
	if len(g.cfg.Sites) < 3 {
		return salamander.Errorf(salamander.CodeConflict, "an isolation drill needs three sites or more")
	}
	// Decide on the log as it is now, not as this site last applied it:
	// another site may have started a drill or drained a site a moment ago.
	if err := g.confirmNegative(r.Context(), jsstore.AccountsStream); err != nil {
		return err
	}
	if err := g.mayStartDrill(req.Site); err != nil {
		return err
	}
	id := salamander.NewOpsID("drl")
	rec := salamander.Record{Type: salamander.RecDrillStarted, Drill: &salamander.Drill{ID: id, Scenario: "isolate",
		Kind: salamander.DrillSimulation, Site: req.Site, Seconds: req.Seconds, State: salamander.DrillRunning},
		Members: g.siteNames()} // for the log's own majority check
	if err := g.opsRecord(r, c, "drill."+id, rec); err != nil {
		return err
	}
	d, ok := g.cfg.View.Drill(id)
	if !ok {
		// Another drill or a drain landed first, or the caller's role is gone.
		if err := g.mayStartDrill(req.Site); err != nil {
			return err
		}
		return salamander.Errorf(salamander.CodeForbidden, "the log did not take the drill (are you still an operator?)")
	}
	g.background(func() { g.runDrill(d, c.User) })
	writeJSON(w, http.StatusAccepted, d)
	return nil
}

// mayStartDrill checks, on this site's log, that a drill cutting site off
// may start: the site is not drained, it and the drained ones leave a
// majority serving, and no other drill runs.
func (g *Gateway) mayStartDrill(site string) error {
	if g.cfg.View.IsDrained(site) {
		return salamander.Errorf(salamander.CodeConflict, "site %s is drained", site)
	}
	// The site cut off counts like a drained one: together they must leave
	// a majority of the sites serving (and the log its quorum).
	if drained := slices.Sorted(maps.Keys(g.cfg.View.Drained())); !salamander.OneMoreOutLeavesMajority(len(drained), len(g.cfg.Sites)) {
		return salamander.Errorf(salamander.CodeConflict, "cutting off %s while %v is drained would leave less than a majority of the %d sites serving; undrain first",
			site, drained, len(g.cfg.Sites))
	}
	if running := g.cfg.View.RunningDrills(); len(running) > 0 {
		return DrillRunningError(running[0], "start another")
	}
	return nil
}

// drillTokenSlack is how long a console drill's session outlives the
// drill's planned duration (its setup, settling and checks).
const drillTokenSlack = 10 * time.Minute

// attachDrill runs a console drill on the sites at urls. The drill reads
// every site's log positions and stream leaders in GET /v1/ops/site as
// the operator who started it (by), with a session of theirs that ends
// soon after the drill: should they lose the role meanwhile, the drill
// loses that sight too.
func (g *Gateway) attachDrill(ctx context.Context, urls []string, d salamander.Drill, by string, cfg drill.Config) (*drill.Report, error) {
	signer, err := g.currentSigner()
	if err != nil {
		return nil, err
	}
	token, _, err := g.sessionTokenFor(signer, by, cfg.Duration+drillTokenSlack)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	cl, err := drill.Attach(actx, urls, token, g.cfg.Logger)
	cancel()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	cl.SetIsolator(drillIsolator{g: g, id: d.ID, by: by})
	return drill.RunOn(ctx, cl, cfg)
}

// runDrill runs a console drill and records how it went.
func (g *Gateway) runDrill(d salamander.Drill, by string) {
	log := g.log.With("drill", d.ID, "isolated_site", d.Site)
	log.Info("drill starting")
	ctx := g.life
	cfg := drill.DefaultConfig()
	cfg.Scenario, cfg.Site = drill.ScenarioPartition, d.Site
	cfg.CutFor = time.Duration(d.Seconds) * time.Second
	cfg.Users, cfg.GroupSize = consoleDrillUsers, 4
	cfg.FaultAt = consoleDrillFaultAt
	cfg.Duration = consoleDrillFaultAt + cfg.CutFor + consoleDrillAfter
	cfg.Logger = g.cfg.Logger

	urls := make([]string, len(g.cfg.Sites))
	for i, s := range g.cfg.Sites {
		urls[i] = s.URL
	}
	rep, err := g.attachDrill(ctx, urls, d, by, cfg)
	end := &salamander.Drill{ID: d.ID, State: salamander.DrillFailed}
	switch {
	case err != nil:
		end.Summary = "the drill could not run: " + err.Error()
	default:
		end.Summary = drillSummary(rep)
		if rep.OK {
			end.State = salamander.DrillPassed
		}
		var buf bytes.Buffer
		if rep.WriteJSON(&buf) == nil && buf.Len() <= salamander.MaxDrillReportBytes {
			end.Report = bytes.TrimSpace(buf.Bytes())
		}
	}
	log.Info("drill over", "state", end.State, "summary", end.Summary)
	// Recorded also when the gateway is closing (a restart cut the drill
	// short): a drill with no end stays running and blocks every later one.
	endCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drillEndTimeout)
	defer cancel()
	g.recordDrillEnd(endCtx, end, by)
}

// drillEndTimeout bounds recording a drill's end.
const drillEndTimeout = 30 * time.Second

// recordDrillEnd appends a drill's end, retrying while the cluster
// settles (the site isolated a moment ago may still be catching up).
func (g *Gateway) recordDrillEnd(ctx context.Context, end *salamander.Drill, by string) {
	rec := salamander.Record{Type: salamander.RecDrillEnded, Drill: end, By: by, Site: g.cfg.Site}
	for attempt := 0; ; attempt++ {
		_, _, err := g.commit(ctx, jsstore.AccountsStream, "drill."+end.ID, rec,
			jsstore.AppendOptions{MsgID: "drill-end:" + end.ID})
		if err == nil || attempt == 10 || ctx.Err() != nil {
			if err != nil {
				g.log.Error("cannot record the drill's end", "drill", end.ID, "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// drillSummary is one line a regulator can read.
func drillSummary(rep *drill.Report) string {
	v := rep.Verdict
	s := fmt.Sprintf("%d users, %d messages acknowledged: %d lost, %d duplicated, %d reordered; sites converged: %v",
		rep.Users, v.Acked, v.Lost, v.Duplicated, v.Reordered, v.Converged)
	if rep.CutStats != nil {
		s += fmt.Sprintf("; site %s refused service %.0f ms after the fault", rep.Site, rep.CutRefuseMS)
	}
	for _, f := range rep.Faults {
		if f.ReadyMS > 0 {
			s += fmt.Sprintf(", ready %.0f ms and caught up %.0f ms after its return", f.ReadyMS, f.CaughtUpMS)
		}
	}
	if len(rep.Failures) > 0 {
		s += "; failures: " + strings.Join(rep.Failures, "; ")
	}
	return s
}

// drillIsolator isolates a site for a console drill: a record in the log
// tells the site to isolate itself for d from the record's time.
type drillIsolator struct {
	g      *Gateway
	id, by string
}

func (is drillIsolator) Isolate(ctx context.Context, site string, d time.Duration) error {
	rec := salamander.Record{Type: salamander.RecDrillFault, Drill: &salamander.Drill{ID: is.id}, By: is.by, Site: is.g.cfg.Site}
	_, _, err := is.g.commit(ctx, jsstore.AccountsStream, "drill."+is.id, rec, jsstore.AppendOptions{MsgID: "drill-fault:" + is.id})
	return err
}

// DrillIsolation says whether a console drill has this site isolated now,
// and until when.
func (g *Gateway) DrillIsolation(now time.Time) (until time.Time, on bool) {
	for _, d := range g.cfg.View.RunningDrills() {
		if d.Site != g.cfg.Site || d.FaultAt.IsZero() {
			continue
		}
		if end := d.FaultAt.Add(time.Duration(d.Seconds) * time.Second); now.Before(end) {
			return end, true
		}
	}
	return time.Time{}, false
}
