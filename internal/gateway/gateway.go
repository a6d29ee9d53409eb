// Package gateway owns a site's public face: the HTTP/JSON API, the one
// WebSocket per device, session tokens, live delivery of applied events to
// connected devices, the ephemeral typing and presence signals, and the
// health, readiness, status and metrics endpoints every site serves.
//
// Writes become records appended to the replicated log (package jsstore);
// a write is answered only after a quorum holds it and this site's read
// model (package view) has applied it, so the caller reads its own write.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/salamander-chat/salamander/internal/wsock"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/api"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
	"github.com/salamander-chat/salamander/web"
)

// SiteInfo names a site and the URL its clients use.
type SiteInfo struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Config configures a Gateway. Use DefaultConfig for defaults.
type Config struct {
	Site  string
	Store *jsstore.Store
	View  *view.View
	// Sites lists every site's public URL, for clients to learn failover targets.
	Sites  []SiteInfo
	Logger *slog.Logger

	// Instance names this process among the site's gateways (a site may
	// run several): every metric carries it as a label, next to the site,
	// and GET /v1/ops/site reports it.
	Instance string
	// TokenTTL is how long a session token is valid.
	TokenTTL time.Duration
	// Keys opens the session-signing keys the log holds sealed (the
	// site's secrets); nil accepts only a plain key from before sealing.
	Keys KeyOpener
	// BcryptCost is the password hashing cost (tests lower it).
	BcryptCost int
	// WriteTimeout bounds waiting for a quorum plus this site's apply.
	WriteTimeout time.Duration
	// AllowedOrigins are browser origins ("https://chat.example.com")
	// allowed to call this site's API and open WebSockets, besides the
	// origins of every site in Sites (API clients send no Origin and are
	// always allowed). See cors.go.
	AllowedOrigins []string
	// Limits are the rate limits, cluster-wide budgets of which this site
	// enforces its share (1/len(Sites)); see Limits.
	Limits Limits
	// Registry receives the gateway's metrics; nil creates a private one.
	Registry *prometheus.Registry
	// MetricsFrom are the client addresses (clientAddr, so behind a
	// trusted proxy the client's) that may read GET /metrics without a
	// token: the monitoring networks. Anyone else needs an operator's
	// token. The metrics say how busy the service is, how many are
	// online, and how each part of it fails: nothing to hand to the
	// public, as a messenger's other operators do not.
	MetricsFrom []netip.Prefix
	// SessionRecheck is how often every open WebSocket's session is
	// checked again (expiry; a logout, revocation or suspension the log
	// carried closes the sockets concerned at once, when it is applied).
	SessionRecheck time.Duration
	// PresenceBeat is how often this process publishes the digest of its
	// online users (a version, a count and a hash, never the list).
	PresenceBeat time.Duration
	// PresenceTTL is how long other processes keep this process's users
	// online after its last word: a process that dies takes its users
	// offline everywhere within it. Announced in every digest; keep it at
	// three beats or more.
	PresenceTTL time.Duration
	// PresenceGrace is how long a user whose last device left this process
	// is still announced online, so that a reconnect within it (to this
	// process or any other, of any site) shows no offline and online
	// again; a user who does not come back is taken offline everywhere
	// within the grace and a sweep (a second at the default beat) after
	// their last device left. When this process stops it asks the others
	// to keep its users for the grace (at most its TTL), so that they
	// reconnect elsewhere unseen.
	PresenceGrace time.Duration
	// PresenceV1 also speaks the presence format of versions before
	// per-process digests to their processes during a rolling upgrade, as
	// long as this process's list fits one message. Off by default: its
	// subject names no site, and gateways since 2026-12-02 may not publish
	// on it (jsstore.GatewayPermissions); the NATS user must be given
	// sal.eph.presence for it.
	PresenceV1 bool
	// RecentLog keeps the warnings and errors logged lately for the ops
	// console; Logger should write through it, so that every component
	// sharing the logger is seen. Nil: New wraps Logger in one.
	RecentLog *RecentLog
}

// DefaultConfig returns the defaults.
func DefaultConfig(site string, store *jsstore.Store, v *view.View) Config {
	return Config{
		Site:           site,
		Store:          store,
		View:           v,
		Logger:         slog.New(slog.DiscardHandler),
		TokenTTL:       30 * 24 * time.Hour,
		BcryptCost:     10,
		WriteTimeout:   8 * time.Second,
		Limits:         DefaultLimits(),
		MetricsFrom:    DefaultMetricsFrom(),
		PresenceBeat:   DefaultPresenceBeat,
		SessionRecheck: DefaultSessionRecheck,
		PresenceTTL:    DefaultPresenceTTL,
		PresenceGrace:  DefaultPresenceGrace,
	}
}

// Gateway serves one site's API.
type Gateway struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
	hub *hub
	// ws upgrades WebSocket requests and parks idle sockets.
	ws      *wsock.Server
	eph     *ephemeral
	metrics *metrics
	started time.Time

	// origins are the browser origins that may call this site.
	origins origins

	// opsClient asks the other sites for their status (the ops plane).
	opsClient *http.Client
	// webAppCSP is the web app's Content-Security-Policy and
	// serviceWorker its service worker's script (webapp.go).
	webAppCSP     string
	serviceWorker []byte

	keyMu sync.Mutex
	keys  map[string][]byte // opened signing keys, by id

	// logAlarm, when set, says why the log under this site is not the one
	// it has applied (a stream deleted, re-created or gone backwards): the
	// site refuses every user request until an operator has looked.
	logAlarm atomic.Pointer[string]

	// warnings are what the site found that weakens a promise without
	// breaking it (shown in GET /v1/ops/site); keyed are the ones that hold
	// only while a condition lasts (a certificate about to expire), each
	// replaced or removed by its key (SetWarning).
	warnMu   sync.Mutex
	warnings []string
	keyed    map[string]string

	// catchUp is what the site must have applied before it serves: each
	// stream's head when it came up (nil: not known yet); caughtUp latches
	// once it has.
	catchUpMu sync.Mutex
	catchUp   map[string]uint64
	caughtUp  atomic.Bool

	isolated  atomic.Bool
	isoMu     sync.Mutex
	isoCtx    context.Context // cancelled when the site becomes isolated
	isoCancel context.CancelFunc

	budgets *budgets
	// ackHold is how long a socket's writer holds a sent message's echo
	// for its ack (wsAckHold; tests lengthen it).
	ackHold   time.Duration
	dummyMu   sync.Mutex
	dummies   map[int][]byte // bcrypt cost -> a dummy hash (see checkPassword)
	hashSlots chan struct{}  // one per core: bcrypt work at once (see hashing)
	streams   streamsCache   // the cluster's streams, read at most once a second
	heads     headReads      // streams' heads, read for "no" answers (confirmNegative)
	marks     readMarks      // read markers being written (markRead)

	// life ends when the gateway closes: work that outlives a request
	// (a drained site's delayed disconnects, a console drill) stops then.
	life    context.Context
	endLife context.CancelFunc

	// streamsDone ends the ops event streams (CloseStreams).
	streamsDone chan struct{}
	streamsOnce sync.Once

	// forwarderWarned is when warnExemptForwarder last warned (Unix ns).
	forwarderWarned atomic.Int64

	// rechecking: a periodic round of the open sockets' session checks is
	// under way (tendSockets starts the next one only after it).
	rechecking atomic.Bool

	// bgMu guards closing: Close has begun, background starts nothing.
	bgMu    sync.Mutex
	closing bool

	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// SetIsolated marks the site as cut off from a majority of sites (or back).
// While isolated the site refuses every user request with CodeUnavailable
// and drops its WebSockets, so clients move to a site that can serve them.
func (g *Gateway) SetIsolated(on bool) {
	// The flag is set before the kick: see handleWebSocket.
	if g.isolated.Swap(on) == on {
		return
	}
	g.isoMu.Lock()
	if on {
		// Writes waiting for a quorum here will not get one: answer them
		// now, so their clients retry at another site at once.
		g.isoCancel()
	} else {
		g.isoCtx, g.isoCancel = context.WithCancel(context.Background())
	}
	g.isoMu.Unlock()
	if on {
		g.hub.kickAll(wsock.StatusTryAgainLater, "site cut off from the other sites")
	}
}

// servingContext is cancelled when the site becomes isolated.
func (g *Gateway) servingContext() context.Context {
	g.isoMu.Lock()
	defer g.isoMu.Unlock()
	return g.isoCtx
}

// Isolated reports whether the site is marked as cut off.
func (g *Gateway) Isolated() bool { return g.isolated.Load() }

var (
	errIsolated = salamander.Errorf(salamander.CodeUnavailable,
		"this site is cut off from the other sites and cannot serve; use another site")
	errStarting = salamander.Errorf(salamander.CodeUnavailable,
		"this site is still joining the cluster; try again or use another site")
)

// SetLogAlarm marks the log under this site as not the one it applied,
// saying why; the site then refuses user requests and is not ready.
func (g *Gateway) SetLogAlarm(reason string) {
	if g.logAlarm.Swap(&reason) == nil {
		g.log.Error("LOG ALARM: the log under this site is not the one it has applied; refusing every request "+
			"until an operator has restored it (see README, Backups)", "reason", reason)
		g.hub.kickAll(wsock.StatusTryAgainLater, "this site's log is damaged")
	}
}

// LogAlarm is the reason set by SetLogAlarm, or "".
func (g *Gateway) LogAlarm() string {
	if p := g.logAlarm.Load(); p != nil {
		return *p
	}
	return ""
}

// Warn adds a warning to the site's status (and logs it).
func (g *Gateway) Warn(msg string) {
	g.warnMu.Lock()
	g.warnings = append(g.warnings, msg)
	g.warnMu.Unlock()
	g.log.Warn(msg)
}

// SetWarning sets the site's warning under key to msg, replacing the one
// it had, or removes it (msg ""): a warning of a condition that can end
// while the site runs (a certificate about to expire, then renewed). A
// new or changed warning is logged.
func (g *Gateway) SetWarning(key, msg string) {
	g.warnMu.Lock()
	old := g.keyed[key]
	if msg == "" {
		delete(g.keyed, key)
	} else {
		if g.keyed == nil {
			g.keyed = map[string]string{}
		}
		g.keyed[key] = msg
	}
	g.warnMu.Unlock()
	if msg != "" && msg != old {
		g.log.Warn(msg)
	}
}

// Warnings lists the site's warnings: those found at start, then those
// of conditions that last (SetWarning), by key.
func (g *Gateway) Warnings() []string {
	g.warnMu.Lock()
	defer g.warnMu.Unlock()
	out := slices.Clone(g.warnings)
	for _, key := range slices.Sorted(maps.Keys(g.keyed)) {
		out = append(out, g.keyed[key])
	}
	if n, last, at := g.cfg.Store.Refusals(); n > 0 && time.Since(at) < refusalWarnFor {
		out = append(out, fmt.Sprintf("the NATS servers refused this gateway's user %d times since it started, the last %s ago (%s): "+
			"its permissions do not match what this version uses (README, External NATS mode)",
			n, time.Since(at).Round(time.Second), last))
	}
	return out
}

// refusalWarnFor is how long after the servers last refused the gateway's
// NATS user (a permission) GET /v1/ops/site warns of it.
const refusalWarnFor = 10 * time.Minute

// SetCatchUp tells the gateway each stream's head (a position) when the
// site came up: until its read model has applied them all, the site is
// not ready and refuses user requests (a read would be stale).
func (g *Gateway) SetCatchUp(heads map[string]uint64) {
	g.catchUpMu.Lock()
	g.catchUp = heads
	g.catchUpMu.Unlock()
}

// CaughtUp reports whether the read model has applied every stream up to
// the head it had when the site came up, and this process has heard the
// other gateway processes' online users since it started (a fraction of a
// second after its hello): until then it would tell a follower that a
// friend connected elsewhere is offline, then online.
func (g *Gateway) CaughtUp() bool {
	if g.caughtUp.Load() {
		return true
	}
	g.catchUpMu.Lock()
	heads := g.catchUp
	g.catchUpMu.Unlock()
	if heads == nil {
		return false
	}
	applied := g.cfg.View.Applied()
	for stream, head := range heads {
		if applied[stream] < head {
			return false
		}
	}
	if !g.eph.settled(time.Now()) {
		return false
	}
	g.caughtUp.Store(true)
	return true
}

var errBehind = salamander.Errorf(salamander.CodeUnavailable,
	"this site is catching up with the log after a restart; try again or use another site")

// storeFailGrace is how long the read model's store may fail to be
// written before the site stops serving: a write that fails once and
// succeeds when retried (a lock held for a moment) bounces no client.
const storeFailGrace = 2 * time.Second

// storeFailure says why this site's read model cannot be written ("" while
// it can, or has failed for less than storeFailGrace): a full disk, a lock
// held by another process. Its history and sync then wait for a store that
// does not move, and soon its sends too (the applier waits for the
// writer): the site refuses at once and fails /readyz, so that clients
// and balancers move to another site rather than each wait out a timeout.
func (g *Gateway) storeFailure() string {
	since, err := g.cfg.View.StoreFailing()
	if since.IsZero() || time.Since(since) < storeFailGrace {
		return ""
	}
	return fmt.Sprintf("cannot write the read model since %s: %v", since.UTC().Format(time.RFC3339), err)
}

// serving says why this site cannot serve user requests right now, or
// nil: what users (anyone) are told, which names nothing inside the site.
func (g *Gateway) serving() error {
	_, err := g.notServing()
	return err
}

// Why a site refuses, as users are told: the log alarm's and the read
// model's own words name streams, servers, errors and files, and are the
// operators' (notServing).
var (
	errLogDamaged = salamander.Errorf(salamander.CodeUnavailable,
		"this site's log is damaged; use another site")
	errStoreFailing = salamander.Errorf(salamander.CodeUnavailable,
		"this site cannot write its read model; use another site")
)

// notServing is serving's error and, for operators (GET /v1/ops/site's
// not_serving), why in full ("" while the site serves).
func (g *Gateway) notServing() (string, error) {
	var err error
	switch {
	case g.LogAlarm() != "":
		return fmt.Sprintf("this site's log is damaged (%s); use another site", g.LogAlarm()), errLogDamaged
	case g.Isolated():
		err = errIsolated
	case !g.cfg.Store.Ready():
		err = errStarting
	case !g.CaughtUp():
		err = errBehind
	}
	if err != nil {
		return salamander.ErrorMessage(err), err
	}
	if why := g.storeFailure(); why != "" {
		return fmt.Sprintf("this site %s; use another site", why), errStoreFailing
	}
	return "", nil
}

// parseCursor parses a client's cursor and checks that it names only this
// cluster's streams.
func (g *Gateway) parseCursor(s string) (salamander.Cursor, error) {
	cur, err := salamander.ParseCursor(s)
	if err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for _, name := range g.cfg.Store.Streams() {
		known[name] = true
	}
	for name := range cur {
		if !known[name] {
			return nil, salamander.Errorf(salamander.CodeInvalid, "cursor names unknown stream %q", name)
		}
	}
	return cur, nil
}

// New builds a Gateway; Start begins its background work.
func New(cfg Config) *Gateway {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RecentLog == nil {
		cfg.RecentLog = NewRecentLog(cfg.Logger.Handler(), RecentLogSize)
		cfg.Logger = slog.New(cfg.RecentLog)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.SessionRecheck <= 0 {
		cfg.SessionRecheck = DefaultSessionRecheck
	}
	if cfg.PresenceBeat <= 0 {
		cfg.PresenceBeat = DefaultPresenceBeat
	}
	if cfg.PresenceTTL <= 0 {
		cfg.PresenceTTL = DefaultPresenceTTL
	}
	if cfg.PresenceGrace <= 0 {
		cfg.PresenceGrace = DefaultPresenceGrace
	}
	g := &Gateway{cfg: cfg, log: cfg.Logger.With("system", "gateway", "site", cfg.Site), mux: http.NewServeMux(),
		started: time.Now(), streamsDone: make(chan struct{}), ackHold: wsAckHold}
	g.origins = newOrigins(cfg.Sites, cfg.AllowedOrigins)
	g.isoCtx, g.isoCancel = context.WithCancel(context.Background())
	g.life, g.endLife = context.WithCancel(context.Background())
	g.budgets = newBudgets(cfg.Limits, len(cfg.Sites))
	g.hashSlots = make(chan struct{}, runtime.GOMAXPROCS(0))
	g.metrics = newMetrics(cfg.Registry, g.metricLabels(), cfg.View, cfg.Store)
	g.opsClient = &http.Client{Timeout: opsSiteTimeout}
	g.webAppCSP = webAppCSP(cfg.Sites)
	g.serviceWorker = web.ServiceWorker(web.AppShell())
	g.registerAlarm(cfg.Registry)
	g.hub = newHub(g.metrics)
	g.ws = wsock.NewServer(wsock.Options{OriginHosts: g.origins.wsHosts, MaxMessage: wsMaxFrameBytes,
		ReadLimit: wsHardFrameBytes, ParkAfter: wsParkAfter, CloseGrace: wsCloseGrace, Log: g.log})
	g.eph = newEphemeral(g)
	g.routes()
	cfg.View.OnApply(g.onApply)
	cfg.View.OnApply(g.metrics.observeApplied)
	cfg.View.OnSessionsEnded(g.recheckSessions)
	return g
}

// Start begins the gateway's background work (ephemeral signals, socket
// pings and token checks, the look at the streams for the metrics); Close
// stops it.
func (g *Gateway) Start(ctx context.Context) error {
	ctx, g.cancel = context.WithCancel(ctx)
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.tendSockets(ctx)
	}()
	go func() {
		defer g.wg.Done()
		g.metrics.streams.run(ctx, g.cfg.Store, g.cfg.View, g.log)
	}()
	return g.eph.start(ctx, &g.wg)
}

// Close stops background work and disconnects every WebSocket.
func (g *Gateway) Close() {
	if g.cancel != nil {
		g.cancel()
	}
	g.endLife()
	g.bgMu.Lock()
	g.closing = true
	g.bgMu.Unlock()
	g.CloseStreams()
	g.hub.closeAll()
	g.ws.Close()
	g.wg.Wait()
}

// background runs fn on a goroutine Close waits for, unless Close has
// begun (then fn does not run): work started from the view's applier (a
// drain's delayed disconnects, a session's re-check) may come at any
// moment, and a WaitGroup may not grow from zero while Close waits on it.
// It reports whether fn runs.
func (g *Gateway) background(fn func()) bool {
	g.bgMu.Lock()
	defer g.bgMu.Unlock()
	if g.closing {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		fn()
	}()
	return true
}

func (g *Gateway) routes() {
	m := g.mux
	m.HandleFunc("POST /v1/signup", g.handleSignUp)
	m.HandleFunc("POST /v1/login", g.handleLogin)
	m.HandleFunc("POST /v1/logout", g.authedSession(g.handleLogout, true))
	m.HandleFunc("GET /v1/me", g.authed(g.handleMe))
	m.HandleFunc("PATCH /v1/me", g.authed(g.metered(g.handleUpdateProfile)))
	m.HandleFunc("POST /v1/me/password", g.authed(g.handleChangePassword))
	m.HandleFunc("GET /v1/users/{name}", g.authed(g.missCosts(g.handleUser)))
	m.HandleFunc("GET /v1/friends", g.authed(g.handleFriends))
	m.HandleFunc("POST /v1/friends", g.authed(g.metered(g.handleAddFriend)))
	m.HandleFunc("GET /v1/rooms", g.authed(g.handleRooms))
	m.HandleFunc("POST /v1/rooms/direct", g.authed(g.metered(g.handleDirectRoom)))
	m.HandleFunc("POST /v1/rooms/group", g.authed(g.metered(g.handleGroupRoom)))
	m.HandleFunc("GET /v1/rooms/{id}", g.authed(g.handleRoom))
	m.HandleFunc("POST /v1/rooms/{id}/invite", g.authed(g.missCosts(g.handleInvite)))
	m.HandleFunc("POST /v1/rooms/{id}/leave", g.authed(g.handleLeave))
	m.HandleFunc("POST /v1/rooms/{id}/rename", g.authed(g.metered(g.handleRename)))
	m.HandleFunc("POST /v1/rooms/{id}/messages", g.authed(g.handleSend))
	m.HandleFunc("GET /v1/rooms/{id}/messages", g.authed(g.handleHistory))
	m.HandleFunc("POST /v1/rooms/{id}/read", g.authed(g.handleRead))
	m.HandleFunc("POST /v1/rooms/{id}/typing", g.authed(g.handleTyping))
	m.HandleFunc("GET /v1/sync", g.authed(g.handleSync))
	m.HandleFunc("GET /v1/presence", g.authed(g.handlePresence))
	m.HandleFunc("GET /v1/ws", g.handleWebSocket)
	m.HandleFunc("GET /v1/ops/audit", g.handle(salamander.RoleOperator, g.handleAudit))
	m.HandleFunc("GET /v1/ops/sites", g.authed(g.withRole(salamander.RoleOperator, g.handleOpsSites)))
	m.HandleFunc("GET /v1/ops/site", g.authedDiagnostics(salamander.RoleOperator, g.handleOpsSite))
	m.HandleFunc("GET /v1/ops/stream", g.authed(g.withRole(salamander.RoleOperator, g.handleOpsStream)))
	m.HandleFunc("GET /ops", g.handleConsole)
	m.HandleFunc("GET /ops/{file}", g.handleConsole)
	m.HandleFunc("GET /{$}", g.handleWebApp)
	m.HandleFunc("GET /app/{file...}", g.handleWebApp)
	m.HandleFunc("GET /sw.js", g.handleServiceWorker)
	m.HandleFunc("PUT /v1/ops/users/{name}/role", g.authed(g.withRole(salamander.RoleAdmin, g.handleSetRole)))
	m.HandleFunc("POST /v1/ops/users/{name}/suspend", g.authed(g.withRole(salamander.RoleAdmin, g.userAction(salamander.RecUserSuspended))))
	m.HandleFunc("POST /v1/ops/users/{name}/restore", g.authed(g.withRole(salamander.RoleAdmin, g.userAction(salamander.RecUserRestored))))
	m.HandleFunc("POST /v1/ops/users/{name}/revoke", g.authed(g.withRole(salamander.RoleAdmin, g.userAction(salamander.RecUserRevoked))))
	m.HandleFunc("POST /v1/ops/users/{name}/password", g.authed(g.withRole(salamander.RoleAdmin, g.handleSetPassword)))
	op, admin, user := salamander.RoleOperator, salamander.RoleAdmin, salamander.RoleUser
	m.HandleFunc("GET /v1/ops/audit.csv", g.handle(op, g.handleAuditCSV))
	m.HandleFunc("POST /v1/ops/incidents", g.handle(op, g.handleOpenIncident))
	m.HandleFunc("POST /v1/ops/incidents/{id}/updates", g.handle(op, g.handleUpdateIncident))
	m.HandleFunc("POST /v1/ops/sites/{name}/drain", g.handle(op, g.handleDrain(true)))
	m.HandleFunc("POST /v1/ops/sites/{name}/undrain", g.handle(op, g.handleDrain(false)))
	m.HandleFunc("POST /v1/ops/streams/{stream}/leader", g.handle(op, g.handleMoveLeader))
	m.HandleFunc("GET /v1/ops/drills", g.handle(op, g.handleDrills))
	m.HandleFunc("GET /v1/ops/drills.csv", g.handle(op, g.handleDrillsCSV))
	m.HandleFunc("GET /v1/ops/drills/{id}", g.handle(op, g.handleDrill))
	m.HandleFunc("POST /v1/ops/drills", g.handle(op, g.handleStartDrill))
	m.HandleFunc("POST /v1/ops/drills/{id}/end", g.handle(op, g.handleEndDrill))
	m.HandleFunc("GET /v1/ops/reports", g.handle(admin, g.handleOpsReports))
	m.HandleFunc("GET /v1/ops/reports.csv", g.handle(admin, g.handleReportsCSV))
	m.HandleFunc("POST /v1/ops/reports/{id}/review", g.handle(admin, g.handleReviewReport))
	m.HandleFunc("POST /v1/reports", g.handle(user, g.meteredErr(g.handleFileReport)))
	m.HandleFunc("GET /v1/reports", g.handle(user, g.handleMyReports))
	m.HandleFunc("GET /v1/reports/{id}", g.handle(user, g.handleMyReport))
	m.HandleFunc("POST /v1/reports/{id}/details", g.handle(user, g.meteredErr(g.handleReportDetails)))
	m.HandleFunc("GET /v1/status/incidents", g.handleIncidents)
	m.HandleFunc("GET /v1/sites", g.handleSites)
	m.HandleFunc("GET /v1/status", g.handleStatus)
	m.HandleFunc("GET /status", g.handleStatusPage)
	m.HandleFunc("GET /healthz", g.handleHealth)
	m.HandleFunc("GET /readyz", g.handleReady)
	m.HandleFunc("GET /metrics", g.handleMetrics(promhttp.HandlerFor(g.cfg.Registry, promhttp.HandlerOpts{})))
	m.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(api.OpenAPI)
	})
}

// ServeHTTP serves the API. Unknown routes and wrong methods get JSON errors
// like every other failure; a panic in a handler is answered as internal
// and logged, never taking the process down.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.TLS != nil {
		// Served over HTTPS: browsers must never fall back to plain HTTP
		// for this host (a year, renewed with every answer).
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
	}
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	if g.origins.cors(sw, r) {
		g.metrics.observeRequest(r, sw.status, time.Since(start))
		return
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			g.log.Error("handler panic", "path", r.URL.Path, "panic", p)
			if !sw.wrote {
				writeJSON(sw, http.StatusInternalServerError, &salamander.Error{Code: salamander.CodeInternal, Message: "internal error"})
			}
		}
		g.metrics.observeRequest(r, sw.status, time.Since(start))
	}()
	if _, pattern := g.mux.Handler(r); pattern == "" {
		// Another method's route at this path makes it 405, with the
		// methods that are routed there in Allow.
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, p := g.mux.Handler(probe); p != "" {
				allow = append(allow, m)
			}
		}
		code := salamander.CodeNotFound
		if len(allow) > 0 {
			code = salamander.CodeMethod
			sw.Header().Set("Allow", strings.Join(allow, ", "))
		}
		writeError(sw, g.log, r, salamander.Errorf(code, "no route %s %s", r.Method, r.URL.Path))
		return
	}
	g.mux.ServeHTTP(sw, r) // (the mux, not the handler it found, sets path values)
}

type authedHandler func(w http.ResponseWriter, r *http.Request, c claims)

// metered spends a unit of the changes budget (rooms created or renamed,
// friends, profile changes, reports) before h: each is a record every site
// applies and keeps, and without a budget a loop of them would grow every
// site's log and memory as fast as it could ask. Logging out and leaving a
// room are never refused: nobody may be kept in a session or a room.
func (g *Gateway) metered(h authedHandler) authedHandler {
	return g.charged(h, func(status int) bool { return !refusedInput(status) })
}

// missCosts answers as h does, and an answer "no such user" or "no such
// room" (404) costs a unit of the changes budget, as a sign-up's taken
// name costs one of the sign-ups': a lookup that misses is otherwise a
// free way to learn, name by name, who exists. What is found costs
// nothing; a caller out of units is refused (429) before anything is
// looked up, so that the refusal says nothing either.
func (g *Gateway) missCosts(h authedHandler) authedHandler {
	return g.charged(h, func(status int) bool { return status == http.StatusNotFound })
}

// charged takes a unit of the changes budget before h, refusing the
// request (429) without one, and keeps it if costs says h's answer costs
// one (else gives it back).
func (g *Gateway) charged(h authedHandler, costs func(status int) bool) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, c claims) {
		refund, err := g.spendChange(r, c)
		if err != nil {
			writeError(w, g.log, r, err)
			return
		}
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h(sw, r, c)
		if !costs(sw.status) {
			refund()
		}
	}
}

// meteredErr is metered for an errHandler.
func (g *Gateway) meteredErr(h errHandler) errHandler {
	return func(w http.ResponseWriter, r *http.Request, c claims) error {
		refund, err := g.spendChange(r, c)
		if err != nil {
			return err
		}
		err = h(w, r, c)
		if err != nil && refusedInput(salamander.ErrorCode(err).HTTPStatus()) {
			refund()
		}
		return err
	}
}

// spendChange takes a unit of the changes budget for c's account and r's
// address; refund gives it back.
func (g *Gateway) spendChange(r *http.Request, c claims) (refund func(), err error) {
	return g.budgets.spend(&g.budgets.changes, c.User, g.clientAddr(r), 1)
}

// refusedInput says whether an answer refused the request's input itself
// (malformed or too large: 400, 413), before anything was looked up or
// changed: such a request costs no unit of the changes budget. Other
// refusals do (a 404 for a name would otherwise be a free way to learn
// who exists).
func refusedInput(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusRequestEntityTooLarge
}

// authed wraps a handler that needs a valid session of an account that is
// not suspended.
func (g *Gateway) authed(h authedHandler) http.HandlerFunc { return g.authedSession(h, false) }

// authedSession wraps a handler that needs a valid session; with
// suspendedToo, also one of a suspended account (a log-out: ending one's
// own sessions is never refused).
func (g *Gateway) authedSession(h authedHandler, suspendedToo bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := g.serving(); err != nil {
			writeError(w, g.log, r, err)
			return
		}
		c, err := g.authenticate(r.Context(), bearerToken(r.Header.Get("Authorization")))
		if err != nil && !(suspendedToo && err == errSuspended) {
			writeError(w, g.log, r, err)
			return
		}
		h(w, r, c)
	}
}

// authedDiagnostics wraps an operator's diagnostic of this site that it
// answers also while it refuses its users (cut off, catching up, a log
// alarm): why it refuses is what the operator asks it. A session and role
// are then checked against a model that may lack the log's newest
// accounts records (a revocation, a demotion), so unless this site can
// catch up with the accounts stream's head first (confirmOperator), the
// handler is told the caller is unconfirmed and answers only what the
// public status shows. A site whose store is not open yet has no sessions
// to check against and refuses as ever. The caller needs role min.
func (g *Gateway) authedDiagnostics(min string, h func(w http.ResponseWriter, r *http.Request, c claims, confirmed bool)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !g.cfg.Store.Ready() {
			writeError(w, g.log, r, errStarting)
			return
		}
		c, err := g.authenticate(r.Context(), bearerToken(r.Header.Get("Authorization")))
		if err != nil {
			writeError(w, g.log, r, err)
			return
		}
		// The log's head is read only for a caller who passes here: it is
		// a request to the cluster, not for whoever asks.
		g.withRole(min, func(w http.ResponseWriter, r *http.Request, c claims) {
			confirmed := true
			if g.serving() != nil {
				confirmed = g.confirmOperator(r.Context())
			}
			h(w, r, c, confirmed)
		})(w, r, c)
	}
}

// confirmWait bounds how long a diagnostic at a site that refuses its
// users spends confirming the caller (confirmOperator): drills and
// benches poll GET /v1/ops/site every 50–100 ms for a returning site's
// log positions, and a question the cluster does not answer would hold
// every answer for its whole timeout.
const confirmWait = 200 * time.Millisecond

// confirmOperator reports whether this site, which refuses its users,
// caught up with the accounts stream's head within confirmWait, so that
// the caller's session and role were checked against the log's newest
// accounts records. A site cut off does not ask: the head is out of its
// reach (a reading begun before the cut may still be waiting for its
// answer), so the caller is unconfirmed at once.
func (g *Gateway) confirmOperator(ctx context.Context) bool {
	if g.Isolated() {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, confirmWait)
	defer cancel()
	return g.confirmNegative(ctx, jsstore.AccountsStream) == nil
}

// commit appends rec and waits until this site has applied it, so the
// caller's next read here sees it.
func (g *Gateway) commit(ctx context.Context, stream, key string, rec salamander.Record, opt jsstore.AppendOptions) (salamander.Position, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel()
	stop := context.AfterFunc(g.servingContext(), cancel)
	defer stop()
	if rec.At.IsZero() {
		rec.At = time.Now().UTC()
	}
	if opt.MsgID == "" {
		// Unique to this request, so the log's own retries of it are
		// recognized as one record (see jsstore.Append).
		opt.MsgID = "req:" + randomHex(12)
	}
	start := time.Now()
	pos, dup, err := g.cfg.Store.Append(ctx, stream, key, rec, opt)
	g.metrics.observeAppend(err, time.Since(start))
	if err == nil {
		err = g.cfg.View.WaitApplied(ctx, pos)
	}
	if err != nil && g.Isolated() {
		// Cut off mid-write: the client resends elsewhere with the same
		// id; if this record did reach a quorum, the resend finds it.
		return pos, false, errIsolated
	}
	if err != nil && ctx.Err() != nil && !errors.Is(err, jsstore.ErrExists) && salamander.ErrorCode(err) == salamander.CodeInternal {
		return pos, false, salamander.Errorf(salamander.CodeUnavailable, "this site could not complete the write in time; try again")
	}
	return pos, dup, err
}

// confirmNegative is called when this site's read model says "no such user
// or room" or "not a member". Another site may have acknowledged the write
// that changes that a moment ago, so before saying no, the site catches up
// to the stream's head; the caller then asks again. A "no" is thus never
// older than the request.
func (g *Gateway) confirmNegative(ctx context.Context, stream string) error {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.WriteTimeout)
	defer cancel()
	pos, err := g.streamHead(ctx, stream)
	if err != nil {
		return err
	}
	return g.cfg.View.WaitApplied(ctx, pos)
}

// headReads gathers the reads of a stream's head that "no" answers make
// (confirmNegative): each is a JetStream API request that every server of
// the cluster receives, and any logged-in user can ask for no's (unknown
// users and rooms) as fast as the network carries them. So a stream's
// head is read by one reading at a time, and every request that arrives
// meanwhile waits for the next reading, which then answers them all: a
// request's answer still comes from a reading that began after it did,
// so that a "no" is never older than the request.
type headReads struct {
	mu      sync.Mutex
	streams map[string]*headQueue // the cluster's streams: a bounded set
}

// headQueue is one stream's waiting requests, and whether a reader runs.
type headQueue struct {
	waiting []chan headResult
	reading bool
}

type headResult struct {
	pos salamander.Position
	err error
}

// streamHead returns stream's last position, read after this call began.
func (g *Gateway) streamHead(ctx context.Context, stream string) (salamander.Position, error) {
	answer := make(chan headResult, 1)
	h := &g.heads
	h.mu.Lock()
	if h.streams == nil {
		h.streams = map[string]*headQueue{}
	}
	q := h.streams[stream]
	if q == nil {
		q = &headQueue{}
		h.streams[stream] = q
	}
	q.waiting = append(q.waiting, answer)
	start := !q.reading
	q.reading = true
	h.mu.Unlock()
	if start {
		go g.readHeads(stream, q)
	}
	select {
	case r := <-answer:
		return r.pos, r.err
	case <-ctx.Done():
		return salamander.Position{}, ctx.Err()
	}
}

// readHeads reads stream's head for the requests waiting, again and
// again, until none waits.
func (g *Gateway) readHeads(stream string, q *headQueue) {
	h := &g.heads
	for {
		h.mu.Lock()
		batch := q.waiting
		q.waiting = nil
		if len(batch) == 0 {
			q.reading = false
			h.mu.Unlock()
			return
		}
		h.mu.Unlock()
		ctx, cancel := context.WithTimeout(g.life, g.cfg.WriteTimeout)
		pos, err := g.cfg.Store.LastPosition(ctx, stream)
		cancel()
		for _, answer := range batch {
			answer <- headResult{pos, err}
		}
	}
}

// lookupUser returns a user, confirming a "not found" against the log.
func (g *Gateway) lookupUser(ctx context.Context, name string) (salamander.User, error) {
	u, err := g.cfg.View.User(ctx, name)
	if salamander.ErrorCode(err) != salamander.CodeNotFound {
		return u, err
	}
	if err := g.confirmNegative(ctx, jsstore.AccountsStream); err != nil {
		return u, err
	}
	return g.cfg.View.User(ctx, name)
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController (and the WebSocket upgrade) reach the
// underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
