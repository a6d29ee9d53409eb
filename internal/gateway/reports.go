package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/view"
)

// Damage reports: a signed-in user files a claim for harm an outage
// caused; admins ask for details, approve with a compensation amount or
// reject; every change is a record in the log. A user sees only their own
// reports — another's is "not found", never "forbidden", so ids leak
// nothing.

// reportID is the id of a report: derived from the filer and the client
// id when there is one, so that a retry finds the report it filed.
func reportID(user, clientID string) string {
	if clientID == "" {
		return salamander.NewOpsID("rep")
	}
	sum := sha256.Sum256([]byte(user + "\x00" + clientID))
	return "rep-" + hex.EncodeToString(sum[:8])
}

// handleFileReport files a damage report about an incident.
func (g *Gateway) handleFileReport(w http.ResponseWriter, r *http.Request, c claims) error {
	var req salamander.DamageReportRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := g.confirmed(r.Context(), func() error {
		if _, ok := g.cfg.View.Incident(req.Incident); !ok {
			return salamander.Errorf(salamander.CodeNotFound, "no incident %q (see /v1/status/incidents)", req.Incident)
		}
		return nil
	}); err != nil {
		return err
	}
	id := reportID(c.User, req.ClientID)
	if owner, _ := g.cfg.View.ReportOwner(id); owner == c.User {
		return g.writeReport(w, r, id, http.StatusOK) // a retry
	}
	amount := req.AmountClaimed
	rec := salamander.Record{Type: salamander.RecReportFiled, User: c.User, Report: &salamander.ReportChange{ID: id,
		Incident: req.Incident, Category: req.Category, Description: req.Description, Currency: req.Currency, Amount: &amount}}
	if err := g.opsRecord(r, c, "report."+id, rec); err != nil {
		return err
	}
	if owner, _ := g.cfg.View.ReportOwner(id); owner != c.User {
		return salamander.Errorf(salamander.CodeConflict, "the log did not take the report; try again")
	}
	return g.writeReport(w, r, id, http.StatusCreated)
}

func (g *Gateway) writeReport(w http.ResponseWriter, r *http.Request, id string, status int) error {
	rep, ok, err := g.cfg.View.Report(r.Context(), id)
	if err != nil {
		return err
	}
	if !ok {
		return salamander.Errorf(salamander.CodeNotFound, "no damage report %q", id)
	}
	writeJSON(w, status, rep)
	return nil
}

// ownReport checks that the caller filed report id and, when want is
// set, that it is in that state.
func (g *Gateway) ownReport(ctx context.Context, c claims, id, want string) error {
	return g.confirmed(ctx, func() error {
		owner, state := g.cfg.View.ReportOwner(id)
		if owner == "" || owner != c.User {
			return salamander.Errorf(salamander.CodeNotFound, "no damage report %q of yours", id)
		}
		if want != "" && state != want {
			return salamander.Errorf(salamander.CodeConflict, "report %s is %s; details are taken only when asked for", id, state)
		}
		return nil
	})
}

// handleMyReports lists the caller's own reports.
func (g *Gateway) handleMyReports(w http.ResponseWriter, r *http.Request, c claims) error {
	limit, err := pageLimit(r, 100, maxReportPage)
	if err != nil {
		return err
	}
	list, err := g.cfg.View.Reports(r.Context(), view.ReportFilter{User: c.User, Limit: limit})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"reports": list})
	return nil
}

// handleMyReport shows one of the caller's reports.
func (g *Gateway) handleMyReport(w http.ResponseWriter, r *http.Request, c claims) error {
	id := r.PathValue("id")
	if err := g.ownReport(r.Context(), c, id, ""); err != nil {
		return err
	}
	return g.writeReport(w, r, id, http.StatusOK)
}

// handleReportDetails answers an admin's request for details.
func (g *Gateway) handleReportDetails(w http.ResponseWriter, r *http.Request, c claims) error {
	id := r.PathValue("id")
	var req salamander.ReportDetailsRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	if err := g.ownReport(r.Context(), c, id, salamander.ReportNeedsDetails); err != nil {
		return err
	}
	rec := salamander.Record{Type: salamander.RecReportAnswered, User: c.User,
		Report: &salamander.ReportChange{ID: id, Note: req.Text, Amount: req.AmountClaimed}}
	if err := g.opsRecord(r, c, "report."+id, rec); err != nil {
		return err
	}
	if _, state := g.cfg.View.ReportOwner(id); state != salamander.ReportSubmitted {
		return salamander.Errorf(salamander.CodeConflict, "report %s was decided meanwhile", id)
	}
	return g.writeReport(w, r, id, http.StatusOK)
}

// maxReportPage bounds one answer of the admins' report list.
const maxReportPage = 1000

// handleOpsReports lists damage reports for admins: ?state= filters,
// ?limit= bounds (default 200).
func (g *Gateway) handleOpsReports(w http.ResponseWriter, r *http.Request, _ claims) error {
	f, err := reportFilter(r)
	if err != nil {
		return err
	}
	if f.Limit, err = pageLimit(r, 200, maxReportPage); err != nil {
		return err
	}
	list, err := g.cfg.View.Reports(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"reports": list})
	return nil
}

func reportFilter(r *http.Request) (view.ReportFilter, error) {
	var f view.ReportFilter
	switch s := r.URL.Query().Get("state"); s {
	case "", salamander.ReportSubmitted, salamander.ReportNeedsDetails, salamander.ReportApproved, salamander.ReportRejected:
		f.State = s
	default:
		return f, salamander.Errorf(salamander.CodeInvalid, "state must be submitted, needs_details, approved or rejected")
	}
	return f, nil
}

// handleReportsCSV exports every damage report (?state= filters) as CSV,
// for the people who pay the compensation.
func (g *Gateway) handleReportsCSV(w http.ResponseWriter, r *http.Request, _ claims) error {
	f, err := reportFilter(r)
	if err != nil {
		return err
	}
	list, err := g.cfg.View.Reports(r.Context(), f)
	if err != nil {
		return err
	}
	rows := [][]string{{"id", "user", "incident", "category", "description", "amount_claimed", "currency", "state",
		"amount_approved", "filed_at", "updated_at", "last_note"}}
	for _, rep := range list {
		note := ""
		for _, e := range rep.History {
			if e.Note != "" {
				note = e.Note
			}
		}
		rows = append(rows, []string{rep.ID, rep.User, rep.Incident, rep.Category, rep.Description,
			strconv.FormatInt(rep.AmountClaimed, 10), rep.Currency, rep.State, strconv.FormatInt(rep.AmountApproved, 10),
			rep.FiledAt.Format(time.RFC3339), rep.UpdatedAt.Format(time.RFC3339), note})
	}
	writeCSV(w, "damage-reports.csv", rows)
	return nil
}

// handleReviewReport takes an admin's decision on a report.
func (g *Gateway) handleReviewReport(w http.ResponseWriter, r *http.Request, c claims) error {
	id := r.PathValue("id")
	var req salamander.ReviewRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	var owner, state string
	if err := g.confirmed(r.Context(), func() error {
		owner, state = g.cfg.View.ReportOwner(id)
		if owner == "" {
			return salamander.Errorf(salamander.CodeNotFound, "no damage report %q", id)
		}
		decided := state == salamander.ReportApproved || state == salamander.ReportRejected
		if decided || (req.Decision == salamander.DecisionAskDetails && state != salamander.ReportSubmitted) {
			return salamander.Errorf(salamander.CodeConflict, "report %s is %s", id, state)
		}
		return nil
	}); err != nil {
		return err
	}
	rc := &salamander.ReportChange{ID: id, Decision: req.Decision, Note: req.Note}
	if req.Decision == salamander.DecisionApprove {
		amount := req.AmountApproved
		rc.Amount = &amount
	}
	if err := g.opsRecord(r, c, "report."+id, salamander.Record{Type: salamander.RecReportReviewed, User: owner, Report: rc}); err != nil {
		return err
	}
	if _, now := g.cfg.View.ReportOwner(id); now == state {
		return salamander.Errorf(salamander.CodeConflict, "the log did not take the decision (decided meanwhile, or you are no longer an admin)")
	}
	return g.writeReport(w, r, id, http.StatusOK)
}

// writeCSV answers with rows as a CSV attachment.
func writeCSV(w http.ResponseWriter, filename string, rows [][]string) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+filename+`"`)
	w.Header().Set("Cache-Control", "no-store")
	cw := csv.NewWriter(w)
	for _, row := range rows {
		for i, cell := range row {
			// A cell a spreadsheet would run as a formula is quoted as
			// text: users write descriptions, admins open the export.
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				row[i] = "'" + cell
			}
		}
	}
	_ = cw.WriteAll(rows) // a failed write is the client gone
}
