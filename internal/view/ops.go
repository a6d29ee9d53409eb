package view

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
)

// The ops plane's read model: incidents, damage reports, drill records and
// drained sites, applied from their records in the accounts stream like
// everything else, so that every site answers for them and no site's loss
// takes them away. Incidents, drills and drains are few and held whole in
// the model; damage reports may be many, so the model holds only what the
// rules need (whose, which state) and the store holds the rest.

const opsSchema = `
CREATE TABLE incidents(id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE drills(id TEXT PRIMARY KEY, started_at INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE drained(site TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE reports(id TEXT PRIMARY KEY, user TEXT NOT NULL, incident TEXT NOT NULL, category TEXT NOT NULL,
  description TEXT NOT NULL, amount_claimed INTEGER NOT NULL, currency TEXT NOT NULL, state TEXT NOT NULL,
  amount_approved INTEGER NOT NULL, filed_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX reports_user ON reports(user, filed_at);
CREATE INDEX reports_state ON reports(state, filed_at);
CREATE TABLE report_events(id TEXT NOT NULL, n INTEGER NOT NULL, at INTEGER NOT NULL, state TEXT NOT NULL,
  by TEXT NOT NULL, site TEXT NOT NULL, note TEXT NOT NULL, amount INTEGER NOT NULL, PRIMARY KEY(id, n)) WITHOUT ROWID;
`

// opsModel is the ops plane's part of the model.
type opsModel struct {
	incidents map[string]*salamander.Incident
	drills    map[string]*salamander.Drill
	drained   map[string]salamander.SiteDrain
	reports   map[string]*reportState
}

// reportState is what applying a damage report's records needs of it.
type reportState struct {
	user, state       string
	claimed, approved int64
	events            int // history entries so far
}

func newOpsModel() opsModel {
	return opsModel{incidents: map[string]*salamander.Incident{}, drills: map[string]*salamander.Drill{},
		drained: map[string]salamander.SiteDrain{}, reports: map[string]*reportState{}}
}

// opsRows is what a batch changes in the ops tables.
type opsRows struct {
	incidents map[string]salamander.Incident
	drills    map[string]salamander.Drill
	drained   map[string]*salamander.SiteDrain // nil: undrained
	newReport []salamander.DamageReport
	reports   map[string]reportState // state changes
	updatedAt map[string]time.Time
	events    []reportEventRow
}

type reportEventRow struct {
	id string
	n  int
	e  salamander.ReportEvent
}

func (a *applier) ops() *opsRows {
	if a.db.ops == nil {
		a.db.ops = &opsRows{incidents: map[string]salamander.Incident{}, drills: map[string]salamander.Drill{},
			drained: map[string]*salamander.SiteDrain{}, reports: map[string]reportState{}, updatedAt: map[string]time.Time{}}
	}
	return a.db.ops
}

// byRole says whether r may be applied: the admin credential (By "") may
// take any action; an account only if it holds at least min at this point
// of the log, whatever a gateway claims.
func (a *applier) byRole(r salamander.Record, min string) bool {
	if r.By == "" {
		return true
	}
	by := a.m.users[r.By]
	if by == nil || by.suspended {
		return false
	}
	role := by.role
	if role == "" {
		role = salamander.RoleUser
	}
	return salamander.RoleRank(role) >= salamander.RoleRank(min)
}

func (a *applier) applyOps(pos salamander.Position, r salamander.Record) error {
	switch r.Type {
	case salamander.RecIncidentOpened, salamander.RecIncidentUpdated:
		if r.Incident != nil && a.byRole(r, salamander.RoleOperator) {
			a.incident(pos, r)
		}
	case salamander.RecReportFiled, salamander.RecReportAnswered, salamander.RecReportReviewed:
		if r.Report != nil {
			a.report(pos, r)
		}
	case salamander.RecDrillStarted, salamander.RecDrillFault:
		if r.Drill != nil && a.byRole(r, salamander.RoleOperator) {
			a.drill(pos, r)
		}
	case salamander.RecDrillEnded:
		// Also from whoever started it, operator or not since: how a drill
		// went is a report, and a drill whose end nobody may record would
		// stay running, and block every later one, for good.
		if r.Drill != nil && (a.byRole(r, salamander.RoleOperator) || a.startedBy(r)) {
			a.drill(pos, r)
		}
	case salamander.RecSiteDrained, salamander.RecSiteUndrained:
		if a.byRole(r, salamander.RoleOperator) && salamander.ValidSiteName(r.Target) {
			a.drain(pos, r)
		}
	case salamander.RecLeaderMoved:
		if a.byRole(r, salamander.RoleOperator) {
			a.auditDetail(pos, r, "move-leader", r.Name+" → "+r.Target)
		}
	}
	return nil
}

func (a *applier) incident(pos salamander.Position, r salamander.Record) {
	c := r.Incident
	inc := a.m.ops.incidents[c.ID]
	if r.Type == salamander.RecIncidentOpened {
		if inc != nil || !salamander.ValidOpsID(c.ID) || c.State == salamander.IncidentResolved {
			return
		}
		inc = &salamander.Incident{ID: c.ID, Title: c.Title, StartedAt: r.At}
		a.m.ops.incidents[c.ID] = inc
	} else if inc == nil || !inc.Open() {
		return // updates of a resolved incident are refused at the gateway; a race loses here alike everywhere
	}
	if c.Impact != "" {
		inc.Impact = c.Impact
	}
	if len(c.Services) > 0 {
		inc.Services = slices.Clone(c.Services)
	}
	inc.State = c.State
	if c.State == salamander.IncidentResolved {
		inc.ResolvedAt = r.At
	}
	inc.Updates = append(inc.Updates, salamander.IncidentUpdate{At: r.At, State: c.State, Impact: inc.Impact,
		Services: inc.Services, Message: c.Message, By: r.By, Site: r.Site})
	a.ops().incidents[c.ID] = *cloneIncident(inc)
	action := "incident-update"
	if r.Type == salamander.RecIncidentOpened {
		action = "incident-open"
	}
	a.auditDetail(pos, r, action, c.ID+" "+c.State)
	ev := salamander.Event{Type: salamander.EventIncident, Pos: &pos, At: r.At, Incident: cloneIncident(inc)}
	a.emitted = append(a.emitted, Emitted{Event: ev, Broadcast: true})
}

func cloneIncident(inc *salamander.Incident) *salamander.Incident {
	c := *inc
	c.Services = slices.Clone(inc.Services)
	c.Updates = slices.Clone(inc.Updates)
	return &c
}

// report applies a damage report's filing, its filer's answer or an
// admin's decision. The states move submitted → needs_details →
// submitted … → approved | rejected, and nothing moves a decided report.
func (a *applier) report(pos salamander.Position, r salamander.Record) {
	c := r.Report
	rs := a.m.ops.reports[c.ID]
	ev := salamander.ReportEvent{At: r.At, By: r.By, Site: r.Site, Note: c.Note}
	switch r.Type {
	case salamander.RecReportFiled:
		u := a.m.users[r.User]
		if rs != nil || u == nil || u.suspended || !salamander.ValidOpsID(c.ID) || a.m.ops.incidents[c.Incident] == nil ||
			c.Amount == nil {
			return
		}
		rs = &reportState{user: r.User, state: salamander.ReportSubmitted, claimed: *c.Amount}
		a.m.ops.reports[c.ID] = rs
		a.ops().newReport = append(a.ops().newReport, salamander.DamageReport{ID: c.ID, User: r.User, Incident: c.Incident,
			Category: c.Category, Description: c.Description, AmountClaimed: *c.Amount, Currency: c.Currency,
			State: salamander.ReportSubmitted, FiledAt: r.At, UpdatedAt: r.At})
		ev.By, ev.Amount = r.User, *c.Amount
	case salamander.RecReportAnswered:
		if rs == nil || rs.user != r.User || rs.state != salamander.ReportNeedsDetails {
			return
		}
		rs.state = salamander.ReportSubmitted
		if c.Amount != nil {
			rs.claimed = *c.Amount
			ev.Amount = *c.Amount
		}
		ev.By = r.User
	case salamander.RecReportReviewed:
		if rs == nil || !a.byRole(r, salamander.RoleAdmin) ||
			(rs.state != salamander.ReportSubmitted && rs.state != salamander.ReportNeedsDetails) {
			return
		}
		switch c.Decision {
		case salamander.DecisionAskDetails:
			if rs.state != salamander.ReportSubmitted {
				return
			}
			rs.state = salamander.ReportNeedsDetails
		case salamander.DecisionApprove:
			if c.Amount == nil {
				return
			}
			rs.state, rs.approved = salamander.ReportApproved, *c.Amount
			ev.Amount = *c.Amount
		case salamander.DecisionReject:
			rs.state = salamander.ReportRejected
		default:
			return
		}
		a.auditDetail(pos, r, "report-"+c.Decision, c.ID)
	}
	ev.State = rs.state
	o := a.ops()
	o.events = append(o.events, reportEventRow{id: c.ID, n: rs.events, e: ev})
	rs.events++
	o.reports[c.ID] = *rs
	o.updatedAt[c.ID] = r.At
}

// startedBy reports whether r is by the account that started r's drill.
func (a *applier) startedBy(r salamander.Record) bool {
	d := a.m.ops.drills[r.Drill.ID]
	return d != nil && r.By != "" && d.By == r.By
}

func (a *applier) drill(pos salamander.Position, r salamander.Record) {
	d := r.Drill
	cur := a.m.ops.drills[d.ID]
	switch r.Type {
	case salamander.RecDrillStarted:
		if cur != nil || !salamander.ValidOpsID(d.ID) {
			return
		}
		// One drill at a time, and one that cuts a site off leaves a
		// majority serving with the drained ones: the rules the console
		// and the CLI check, kept by the log as well, so that two starts
		// checked at once at two sites (each against a log with no drill
		// running) do not both take effect. The record names every site
		// (Members) as its starter saw them; every site applies it alike.
		if a.liveDrill(r.At) {
			return
		}
		if n := len(r.Members); n > 0 && !salamander.OneMoreOutLeavesMajority(len(a.m.ops.drained), n) {
			return
		}
		c := *d
		c.Started, c.By, c.FromSite = r.At, r.By, r.Site
		if c.State == "" {
			c.State = salamander.DrillRunning
		}
		cur = &c
		a.m.ops.drills[d.ID] = cur
		a.auditDetail(pos, r, "drill-start", d.ID+" "+d.Scenario+" "+d.Site)
	case salamander.RecDrillFault:
		// The fault may name the site and the time, when the drill chose
		// them only as it struck.
		if cur == nil || cur.State != salamander.DrillRunning || !cur.FaultAt.IsZero() {
			return
		}
		site, seconds := cur.Site, cur.Seconds
		if d.Site != "" && salamander.ValidSiteName(d.Site) {
			site = d.Site
		}
		if d.Seconds > 0 {
			seconds = min(d.Seconds, salamander.MaxDrillSeconds)
		}
		if seconds == 0 || site == "" {
			return
		}
		cur.Site, cur.Seconds, cur.FaultAt = site, seconds, r.At
		a.auditDetail(pos, r, "drill-fault", d.ID+" "+cur.Site)
	case salamander.RecDrillEnded:
		if cur == nil || cur.State != salamander.DrillRunning ||
			(d.State != salamander.DrillPassed && d.State != salamander.DrillFailed) {
			return
		}
		cur.State, cur.Ended, cur.Summary, cur.Report = d.State, r.At, d.Summary, d.Report
		a.auditDetail(pos, r, "drill-end", d.ID+" "+d.State)
	}
	a.ops().drills[d.ID] = *cur
}

// liveDrill reports whether a drill was running at t (salamander.Drill.Live).
func (a *applier) liveDrill(t time.Time) bool {
	for _, d := range a.m.ops.drills {
		if d.Live(t) {
			return true
		}
	}
	return false
}

func (a *applier) drain(pos salamander.Position, r salamander.Record) {
	_, was := a.m.ops.drained[r.Target]
	if r.Type == salamander.RecSiteDrained {
		if was {
			return
		}
		// No drain while a drill runs (it may cut another site off): the
		// ops API's rule, kept by the log as well (see drill).
		if a.liveDrill(r.At) {
			return
		}
		// The majority rule (gateway.CheckDrain), kept by the log as well:
		// two drains checked at once at two sites, each against a log
		// with nothing drained, must not both take effect. The record
		// names every site (Members) as its gateway saw them; every site
		// applies it alike. (A drain record from before they did is taken
		// as it was.)
		if n := len(r.Members); n > 0 && !salamander.OneMoreOutLeavesMajority(len(a.m.ops.drained), n) {
			return
		}
		d := salamander.SiteDrain{Site: r.Target, At: r.At, By: r.By, From: r.Site}
		a.m.ops.drained[r.Target] = d
		a.ops().drained[r.Target] = &d
		a.auditDetail(pos, r, "drain", r.Target)
		ev := salamander.Event{Type: salamander.EventMove, Pos: &pos, At: r.At, Site: r.Target}
		a.emitted = append(a.emitted, Emitted{Event: ev, Broadcast: true})
		return
	}
	if !was {
		return
	}
	delete(a.m.ops.drained, r.Target)
	a.ops().drained[r.Target] = nil
	a.auditDetail(pos, r, "undrain", r.Target)
}

// writeOps stores what a batch changed in the ops tables. These writes
// are rare, so the statements are not prepared ahead.
func writeOps(tx *sql.Tx, o *opsRows) error {
	exec := func(q string, args ...any) error {
		_, err := tx.Exec(q, args...)
		return err
	}
	for id, inc := range o.incidents {
		body, err := json.Marshal(inc)
		if err == nil {
			err = exec(`INSERT INTO incidents(id, started_at, body) VALUES(?, ?, ?)
				ON CONFLICT(id) DO UPDATE SET body = excluded.body`, id, inc.StartedAt.UnixNano(), string(body))
		}
		if err != nil {
			return fmt.Errorf("incident %s: %w", id, err)
		}
	}
	for id, d := range o.drills {
		body, err := json.Marshal(d)
		if err == nil {
			err = exec(`INSERT INTO drills(id, started_at, body) VALUES(?, ?, ?)
				ON CONFLICT(id) DO UPDATE SET body = excluded.body`, id, d.Started.UnixNano(), string(body))
		}
		if err != nil {
			return fmt.Errorf("drill %s: %w", id, err)
		}
	}
	for site, d := range o.drained {
		var err error
		if d == nil {
			err = exec(`DELETE FROM drained WHERE site = ?`, site)
		} else {
			var body []byte
			if body, err = json.Marshal(d); err == nil {
				err = exec(`INSERT INTO drained(site, body) VALUES(?, ?) ON CONFLICT(site) DO UPDATE SET body = excluded.body`,
					site, string(body))
			}
		}
		if err != nil {
			return fmt.Errorf("drained %s: %w", site, err)
		}
	}
	for _, r := range o.newReport {
		if err := exec(`INSERT INTO reports(id, user, incident, category, description, amount_claimed, currency, state,
			amount_approved, filed_at, updated_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`, r.ID, r.User, r.Incident, r.Category,
			r.Description, r.AmountClaimed, r.Currency, r.State, r.FiledAt.UnixNano(), r.FiledAt.UnixNano()); err != nil {
			return fmt.Errorf("report %s: %w", r.ID, err)
		}
	}
	for id, rs := range o.reports {
		if err := exec(`UPDATE reports SET state = ?, amount_claimed = ?, amount_approved = ?, updated_at = ? WHERE id = ?`,
			rs.state, rs.claimed, rs.approved, o.updatedAt[id].UnixNano(), id); err != nil {
			return fmt.Errorf("report %s: %w", id, err)
		}
	}
	for _, e := range o.events {
		if err := exec(`INSERT INTO report_events(id, n, at, state, by, site, note, amount) VALUES(?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT DO NOTHING`, e.id, e.n, e.e.At.UnixNano(), e.e.State, e.e.By, e.e.Site, e.e.Note, e.e.Amount); err != nil {
			return fmt.Errorf("report %s event: %w", e.id, err)
		}
	}
	return nil
}

// loadOps reads the ops plane's model from the store.
func loadOps(db *sql.DB, o *opsModel) error {
	q := func(query string, scan func(*sql.Rows) error) error {
		rows, err := db.Query(query)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	return errors.Join(
		q(`SELECT body FROM incidents`, func(r *sql.Rows) error {
			var body string
			var inc salamander.Incident
			if err := r.Scan(&body); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(body), &inc); err != nil {
				return err
			}
			o.incidents[inc.ID] = &inc
			return nil
		}),
		q(`SELECT body FROM drills`, func(r *sql.Rows) error {
			var body string
			var d salamander.Drill
			if err := r.Scan(&body); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				return err
			}
			o.drills[d.ID] = &d
			return nil
		}),
		q(`SELECT body FROM drained`, func(r *sql.Rows) error {
			var body string
			var d salamander.SiteDrain
			if err := r.Scan(&body); err != nil {
				return err
			}
			if err := json.Unmarshal([]byte(body), &d); err != nil {
				return err
			}
			o.drained[d.Site] = d
			return nil
		}),
		q(`SELECT r.id, r.user, r.state, r.amount_claimed, r.amount_approved, (SELECT COUNT(*) FROM report_events e WHERE e.id = r.id)
			FROM reports r`, func(r *sql.Rows) error {
			var id string
			var rs reportState
			err := r.Scan(&id, &rs.user, &rs.state, &rs.claimed, &rs.approved, &rs.events)
			o.reports[id] = &rs
			return err
		}),
	)
}

// Incidents returns the open incidents, newest first, and when all is
// set the resolved ones too.
func (v *View) Incidents(all bool) []salamander.Incident {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := []salamander.Incident{}
	for _, inc := range v.m.ops.incidents {
		if all || inc.Open() {
			out = append(out, *cloneIncident(inc))
		}
	}
	slices.SortFunc(out, func(a, b salamander.Incident) int {
		if c := b.StartedAt.Compare(a.StartedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// Incident returns one incident.
func (v *View) Incident(id string) (salamander.Incident, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	inc := v.m.ops.incidents[id]
	if inc == nil {
		return salamander.Incident{}, false
	}
	return *cloneIncident(inc), true
}

// Drills returns every drill record, newest first, without its report
// (Drill gives one with it).
func (v *View) Drills() []salamander.Drill {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]salamander.Drill, 0, len(v.m.ops.drills))
	for _, d := range v.m.ops.drills {
		c := *d
		c.Report = nil
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b salamander.Drill) int {
		if c := b.Started.Compare(a.Started); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out
}

// RunningDrills returns the drills running now (salamander.Drill.Live:
// not those abandoned), without their reports.
func (v *View) RunningDrills() []salamander.Drill {
	v.mu.RLock()
	defer v.mu.RUnlock()
	var out []salamander.Drill
	now := time.Now()
	for _, d := range v.m.ops.drills {
		if d.Live(now) {
			c := *d
			c.Report = nil
			out = append(out, c)
		}
	}
	return out
}

// Drill returns one drill record.
func (v *View) Drill(id string) (salamander.Drill, bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	d := v.m.ops.drills[id]
	if d == nil {
		return salamander.Drill{}, false
	}
	return *d, true
}

// Drained returns the drained sites.
func (v *View) Drained() map[string]salamander.SiteDrain {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make(map[string]salamander.SiteDrain, len(v.m.ops.drained))
	for s, d := range v.m.ops.drained {
		out[s] = d
	}
	return out
}

// IsDrained reports whether site is drained.
func (v *View) IsDrained(site string) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.m.ops.drained[site]
	return ok
}

// ReportOwner returns a damage report's filer and state ("" if there is
// no such report).
func (v *View) ReportOwner(id string) (user, state string) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if rs := v.m.ops.reports[id]; rs != nil {
		return rs.user, rs.state
	}
	return "", ""
}

// ReportFilter selects damage reports: by filer, by state, or all.
type ReportFilter struct {
	ID    string
	User  string
	State string
	// Limit bounds the answer (0: no bound, for exports).
	Limit int
}

// query returns the WHERE, ORDER and LIMIT clauses that select f's reports
// from the reports table, and their arguments. Only the conditions given
// are in it, so that SQLite takes the index each needs (the primary key,
// reports_user, reports_state): a condition written to match anything
// when empty (user = ?1 OR ?1 is empty) made it scan and sort every report on
// every call, twice — ~60 ms a page at 50,000 reports.
func (f ReportFilter) query() (string, []any) {
	var conds []string
	var args []any
	for _, c := range []struct{ col, val string }{{"id", f.ID}, {"user", f.User}, {"state", f.State}} {
		if c.val != "" {
			conds = append(conds, c.col+" = ?")
			args = append(args, c.val)
		}
	}
	q := ""
	if len(conds) > 0 {
		q = " WHERE " + strings.Join(conds, " AND ")
	}
	q += " ORDER BY filed_at DESC, id"
	if f.Limit > 0 {
		q += " LIMIT ?"
		args = append(args, f.Limit)
	}
	return q, args
}

// Reports returns damage reports, newest first, each with its history.
func (v *View) Reports(ctx context.Context, f ReportFilter) ([]salamander.DamageReport, error) {
	if err := v.waitStored(ctx); err != nil {
		return nil, err
	}
	tx, err := v.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("view: reports: %w", err)
	}
	defer tx.Rollback()
	sel, args := f.query()
	rows, err := tx.QueryContext(ctx, `SELECT id, user, incident, category, description, amount_claimed, currency, state,
		amount_approved, filed_at, updated_at FROM reports`+sel, args...)
	if err != nil {
		return nil, fmt.Errorf("view: reports: %w", err)
	}
	out := []salamander.DamageReport{}
	index := map[string]int{}
	for rows.Next() {
		var r salamander.DamageReport
		var filed, updated int64
		if err := rows.Scan(&r.ID, &r.User, &r.Incident, &r.Category, &r.Description, &r.AmountClaimed, &r.Currency,
			&r.State, &r.AmountApproved, &filed, &updated); err != nil {
			rows.Close()
			return nil, fmt.Errorf("view: reports: %w", err)
		}
		r.FiledAt, r.UpdatedAt, r.History = fromNanos(filed), fromNanos(updated), []salamander.ReportEvent{}
		index[r.ID] = len(out)
		out = append(out, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("view: reports: %w", err)
	}
	if len(out) == 0 {
		return out, nil
	}
	// The histories of the reports found (the same page, in the same
	// transaction), in one query.
	rows, err = tx.QueryContext(ctx, `SELECT e.id, e.at, e.state, e.by, e.site, e.note, e.amount FROM report_events e
		WHERE e.id IN (SELECT id FROM reports`+sel+`) ORDER BY e.id, e.n`, args...)
	if err != nil {
		return nil, fmt.Errorf("view: report histories: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id string
		var e salamander.ReportEvent
		var at int64
		if err := rows.Scan(&id, &at, &e.State, &e.By, &e.Site, &e.Note, &e.Amount); err != nil {
			return nil, fmt.Errorf("view: report histories: %w", err)
		}
		e.At = fromNanos(at)
		if i, ok := index[id]; ok {
			out[i].History = append(out[i].History, e)
		}
	}
	return out, rows.Err()
}

// Report returns one damage report with its history.
func (v *View) Report(ctx context.Context, id string) (salamander.DamageReport, bool, error) {
	list, err := v.Reports(ctx, ReportFilter{ID: id})
	if err != nil || len(list) == 0 {
		return salamander.DamageReport{}, false, err
	}
	return list[0], true, nil
}
