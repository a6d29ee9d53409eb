package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander"
)

// The ops plane: endpoints under /v1/ops/ for operators and admins, served
// by every site from the replicated log, so that no fire takes the tools
// away. A caller without a session gets 401, one whose role is too low 403.

// withRole lets h run only for callers whose role ranks at least min.
func (g *Gateway) withRole(min string, h authedHandler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, c claims) {
		if salamander.RoleRank(g.cfg.View.Role(c.User)) < salamander.RoleRank(min) {
			writeError(w, g.log, r, salamander.Errorf(salamander.CodeForbidden, "this needs the %s role", min))
			return
		}
		h(w, r, c)
	}
}

// maxAuditPage bounds one page of the audit trail.
const maxAuditPage = 1000

// handleAudit lists admin actions, newest first: ?limit= (default 100)
// and ?before= (RFC 3339, for the next page).
func (g *Gateway) handleAudit(w http.ResponseWriter, r *http.Request, _ claims) error {
	limit, err := pageLimit(r, 100, maxAuditPage)
	if err != nil {
		return err
	}
	before, err := queryTime(r, "before")
	if err != nil {
		return err
	}
	entries, err := g.cfg.View.Audit(r.Context(), before, limit)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
	return nil
}

// pageLimit parses ?limit= for a list: def when absent, else 1 to max
// (0 is refused, unlike queryLimit's "0 = the default").
func pageLimit(r *http.Request, def, max int) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > max {
		return 0, salamander.Errorf(salamander.CodeInvalid, "limit must be 1-%d", max)
	}
	return n, nil
}

// queryTime parses an optional RFC 3339 time parameter (zero when absent).
func queryTime(r *http.Request, name string) (time.Time, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, salamander.Errorf(salamander.CodeInvalid, "%s must be an RFC 3339 time", name)
	}
	// Times are kept in Unix nanoseconds: one outside their range would
	// wrap around (2300 read as 1715, 1600 as 2184).
	if t.Before(minQueryTime) || t.After(maxQueryTime) {
		return time.Time{}, salamander.Errorf(salamander.CodeInvalid, "%s must be between %d and %d", name, minQueryTime.Year(), maxQueryTime.Year())
	}
	return t, nil
}

// The times a query may name: within Unix nanoseconds' range (1678–2262).
var (
	minQueryTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	maxQueryTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// handleAuditCSV exports the audit trail, oldest first (?before= as in
// handleAudit bounds it).
func (g *Gateway) handleAuditCSV(w http.ResponseWriter, r *http.Request, _ claims) error {
	before, err := queryTime(r, "before")
	if err != nil {
		return err
	}
	entries, err := g.cfg.View.Audit(r.Context(), before, -1)
	if err != nil {
		return err
	}
	rows := [][]string{{"at", "by", "site", "action", "user", "role", "detail", "log_position"}}
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		by := e.By
		if by == "" {
			by = "(admin credential)"
		}
		rows = append(rows, []string{e.At.Format(time.RFC3339Nano), by, e.Site, e.Action, e.User, e.Role, e.Detail, e.Pos})
	}
	writeCSV(w, "audit.csv", rows)
	return nil
}

// handleSetRole sets a user's role: an admin action, recorded in the log
// with who took it and at which site.
func (g *Gateway) handleSetRole(w http.ResponseWriter, r *http.Request, c claims) {
	var req salamander.RoleRequest
	if err := decodeJSON(w, r, &req); err != nil {
		writeError(w, g.log, r, err)
		return
	}
	if salamander.RoleRank(req.Role) == 0 {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeInvalid, "role must be user, operator or admin"))
		return
	}
	name := r.PathValue("name")
	if req.Role != salamander.RoleAdmin {
		if err := g.notTheLastAdmin(name); err != nil {
			writeError(w, g.log, r, err)
			return
		}
	}
	rec := salamander.Record{Type: salamander.RecRoleSet, User: name, Role: req.Role}
	if g.adminAction(w, r, c, rec, "role."+name, func() bool { return g.cfg.View.Role(name) == req.Role }) {
		writeJSON(w, http.StatusOK, map[string]string{"user": name, "role": req.Role})
	}
}

// notTheLastAdmin refuses to demote or suspend name if it is the last
// admin who can act (not suspended): nobody could then take an admin
// action through the API — not even undo this one — until an operator
// with the admin credential runs `salamander admin set-role`. Two admins
// stepping down at two sites at once each pass it; the log then ignores
// the second record (view's lastAdmin), and adminAction answers with
// this refusal.
func (g *Gateway) notTheLastAdmin(name string) error {
	if g.actingAdmin(name) && g.cfg.View.Admins() <= 1 {
		return salamander.Errorf(salamander.CodeConflict,
			"%s is the last admin: make another admin first (or use salamander admin set-role with the admin credential)", name)
	}
	return nil
}

// actingAdmin reports whether name is an admin who can act (not
// suspended) in this site's read model.
func (g *Gateway) actingAdmin(name string) bool {
	return g.cfg.View.Role(name) == salamander.RoleAdmin && !g.cfg.View.Suspended(name)
}

// adminAction records an admin action on the account rec.User (which
// must exist), with who takes it and where, under key, and checks with
// took that the log applied it: the log applies an action only from an
// admin at its place in the log. It reports whether it succeeded, having
// answered the request if not.
func (g *Gateway) adminAction(w http.ResponseWriter, r *http.Request, c claims, rec salamander.Record, key string,
	took func() bool) bool {
	if err := salamander.ValidateUserName(rec.User); err != nil {
		writeError(w, g.log, r, err)
		return false
	}
	if _, _, err := g.cfg.View.Credentials(r.Context(), rec.User); err != nil {
		writeError(w, g.log, r, err)
		return false
	}
	if err := g.opsRecord(r, c, key, rec); err != nil {
		writeError(w, g.log, r, err)
		return false
	}
	if !took() {
		var err error = salamander.Errorf(salamander.CodeForbidden, "the log did not take the change (are you still an admin?)")
		if rec.Type == salamander.RecUserSuspended || rec.Type == salamander.RecRoleSet && rec.Role != salamander.RoleAdmin {
			// Ignored as the last admin's demotion or suspension: another
			// admin stepped down a moment ago at another site.
			if lerr := g.notTheLastAdmin(rec.User); lerr != nil && g.actingAdmin(c.User) {
				err = lerr
			}
		}
		writeError(w, g.log, r, err)
		return false
	}
	return true
}

// userAction is an admin action on an account — suspend, restore, or
// revoke every session — recorded in the log with who took it and where.
// A suspended account can neither log in nor use its sessions; restoring
// it lets it log in again.
func (g *Gateway) userAction(typ salamander.RecordType) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, c claims) {
		name := r.PathValue("name")
		// A revocation took if the log moved the account's revocation past
		// where it was (it takes one only from an admin).
		_, before, _ := g.cfg.View.Credentials(r.Context(), name)
		key, took := "sess."+name, func() bool {
			_, after, err := g.cfg.View.Credentials(r.Context(), name)
			return err == nil && after > before
		}
		if typ != salamander.RecUserRevoked {
			key = "suspend." + name
			took = func() bool { return g.cfg.View.Suspended(name) == (typ == salamander.RecUserSuspended) }
		}
		if typ == salamander.RecUserSuspended {
			if err := g.notTheLastAdmin(name); err != nil {
				writeError(w, g.log, r, err)
				return
			}
		}
		if g.adminAction(w, r, c, salamander.Record{Type: typ, User: name}, key, took) {
			writeJSON(w, http.StatusOK, map[string]string{"user": name, "action": string(typ)})
		}
	}
}

// opsSite is one site as GET /v1/ops/sites and GET /v1/ops/stream show
// it: its own GET /v1/ops/site answer, or why it could not be had.
type opsSite struct {
	Name      string          `json:"name"`
	URL       string          `json:"url"`
	Reachable bool            `json:"reachable"`
	Ready     bool            `json:"ready"`
	Status    json.RawMessage `json:"status,omitempty"`
	Error     string          `json:"error,omitempty"`
	Took      int64           `json:"took_ms"`
}

// opsSiteTimeout bounds how long one site may take to answer: a burned
// site shows as unreachable, it does not hold the page.
const opsSiteTimeout = 2 * time.Second

// handleOpsSites asks every site, in parallel, for its GET /v1/ops/site
// with the caller's own credentials: the console's view of the whole
// deployment, from whichever site the operator reaches.
func (g *Gateway) handleOpsSites(w http.ResponseWriter, r *http.Request, _ claims) {
	out := g.askSites(r.Context(), g.probeSite(r.Header.Get("Authorization")))
	writeJSON(w, http.StatusOK, map[string]any{"site": g.cfg.Site, "sites": out})
}

// askSites asks every site with probe, in parallel, and returns the
// answers in the order of the site list (this site alone, with no URL:
// asked in-process, when no list is configured).
func (g *Gateway) askSites(ctx context.Context, probe func(context.Context, SiteInfo) opsSite) []opsSite {
	sites := g.cfg.Sites
	if len(sites) == 0 {
		sites = []SiteInfo{{Name: g.cfg.Site}}
	}
	out := make([]opsSite, len(sites))
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, opsSiteTimeout)
			defer cancel()
			start := time.Now()
			out[i] = probe(ctx, s)
			out[i].Name, out[i].URL, out[i].Took = s.Name, s.URL, time.Since(start).Milliseconds()
		}()
	}
	wg.Wait()
	return out
}

// probeSite returns a probe that asks a site for its GET /v1/ops/site
// with the Authorization header auth: the site's readiness and its
// technical status, or what it answered instead.
func (g *Gateway) probeSite(auth string) func(context.Context, SiteInfo) opsSite {
	return func(ctx context.Context, s SiteInfo) opsSite {
		var o opsSite
		code, body, err := g.siteGet(ctx, s, "/v1/ops/site", auth)
		switch {
		case err != nil:
			o.Error = err.Error()
		case code != http.StatusOK:
			// It answered, but not with its status: say what it said.
			o.Reachable = true
			var e salamander.Error
			if json.Unmarshal(body, &e) == nil && e.Message != "" {
				o.Error = fmt.Sprintf("%d: %s", code, e.Message)
			} else {
				o.Error = fmt.Sprintf("answered %d", code)
			}
		default:
			var rd readiness
			if err := json.Unmarshal(body, &rd); err != nil {
				o.Error = "unreadable answer: " + err.Error()
				break
			}
			o.Reachable, o.Ready, o.Status = true, rd.Ready, body
		}
		return o
	}
}

// siteGet asks s for path, with the Authorization header auth (if any). A
// site with no URL is this one, asked in-process: never at an address made
// from a request's Host header, where an operator's credential would go to
// whatever host the header names, in the clear.
func (g *Gateway) siteGet(ctx context.Context, s SiteInfo, path, auth string) (int, []byte, error) {
	if s.URL == "" {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, path, nil)
		req.RemoteAddr = "127.0.0.1:0"
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		rec := httptest.NewRecorder()
		g.ServeHTTP(rec, req)
		return rec.Code, rec.Body.Bytes(), nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(s.URL, "/")+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	res, err := g.opsClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, b, err
}
