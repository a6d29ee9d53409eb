// Package site assembles one Salamander site: its NATS server (embedded, or
// an existing cluster's), its connection to the replicated log, its read
// model and its gateway, started in dependency order and stopped in reverse.
// `salamander serve` runs one Site per process; `salamander dev` and the
// test cluster run three in one process.
package site

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/certfiles"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/view"
)

// Config configures one site.
type Config struct {
	// Site names the site ("a", "b", "c", …).
	Site string
	// DataDir holds the site's files: nats/ (JetStream, when embedded),
	// view.db (the read model) and log/ (the site's own copy of the log),
	// the last two rebuilt from the log when missing.
	DataDir string
	// HTTPAddr is where the gateway listens (host:port).
	HTTPAddr string
	// TLSCert and TLSKey, when set, are PEM files: the API is served over
	// HTTPS only (HTTP/2 included), with HSTS. They are re-read when they
	// change on disk, so a renewed certificate needs no restart.
	TLSCert, TLSKey string
	// NATSURLs, when set, points at an existing NATS JetStream cluster and
	// no server is embedded.
	NATSURLs []string
	// NATSMonitor are the HTTP monitoring URLs of an external cluster's
	// servers (http://host:8222), read to check their version, clustering,
	// site tags and fsync setting (see checkServers).
	NATSMonitor []string
	// ClusterFormWait is how long a server of an external cluster may show
	// no JetStream meta group at start before the site refuses it (every
	// server of a new deployment starts at once; routes take a moment).
	ClusterFormWait time.Duration
	// HomeInterval is how often a site on an external cluster whose
	// connection moved to another site's server checks whether one of its
	// own is back (default DefaultHomeInterval).
	HomeInterval time.Duration
	// Instance names this process among the site's gateways: a label on
	// every metric and a field of GET /v1/ops/site (default: the address the API listens at).
	Instance string
	// NATS configures the embedded server when NATSURLs is empty.
	NATS natsnode.Config
	// Secrets are the site's credentials (its site file): the NATS users
	// its embedded server admits, its gateway's own credential, and the
	// certificates of its links. Required: a site never runs open.
	Secrets *secrets.Site
	// WindowIdle is how long a room's dedupe window stays in memory after
	// its last message (0: view.WindowIdle).
	WindowIdle time.Duration
	// Partitions is the number of room partitions for a new cluster.
	Partitions int
	// Replicas per stream (3: one per site).
	Replicas int
	// Sites lists every site's public URL for clients.
	Sites []gateway.SiteInfo
	// BcryptCost for password hashes.
	BcryptCost int
	// AppendTimeout bounds one append to the log.
	AppendTimeout time.Duration
	// TrustedProxies are the reverse proxies in front of the site, whose
	// X-Forwarded-For names the client a rate limit counts against.
	TrustedProxies []netip.Prefix
	// AllowedOrigins are browser origins allowed besides the sites' own
	// (gateway.Config.AllowedOrigins).
	AllowedOrigins []string
	// LimitExempt, when set, replaces the addresses no rate limit applies
	// to (default: loopback; see gateway.Limits.Exempt).
	LimitExempt *[]netip.Prefix
	// MetricsFrom, when set, replaces the addresses that may read
	// /metrics without a token (default: loopback; see
	// gateway.Config.MetricsFrom).
	MetricsFrom *[]netip.Prefix
	// HeartbeatTimeout is how long a site may go without hearing a
	// majority of the sites before it treats itself as cut off (default
	// DefaultHeartbeatTimeout).
	HeartbeatTimeout time.Duration
	// PresenceBeat and PresenceTTL are the gateway's presence digest
	// interval and expiry (gateway.Config); zero keeps its defaults.
	PresenceBeat time.Duration
	PresenceTTL  time.Duration
	// PresenceGrace is how long a user whose last device left this
	// process is still announced online, and how long the others keep
	// this process's users once it stops (gateway.Config.PresenceGrace);
	// zero keeps the gateway's default.
	PresenceGrace time.Duration
	// SessionRecheck is how often the gateway checks every open
	// WebSocket's session again (gateway.Config); zero keeps its default.
	SessionRecheck time.Duration
	Logger         *slog.Logger
}

// DefaultHeartbeatTimeout: a silent cut is noticed within about this long
// (plus a heartbeat interval and an isolation check).
const DefaultHeartbeatTimeout = 1250 * time.Millisecond

// DefaultConfig returns the defaults for site name.
func DefaultConfig(name, dataDir string) Config {
	n := natsnode.DefaultConfig(name)
	n.StoreDir = filepath.Join(dataDir, "nats")
	return Config{
		Site:          name,
		DataDir:       dataDir,
		HTTPAddr:      "127.0.0.1:8080",
		NATS:          n,
		Partitions:    6,
		Replicas:      3,
		BcryptCost:    10,
		AppendTimeout: 7 * time.Second,
		Logger:        slog.New(slog.DiscardHandler),

		ClusterFormWait: 30 * time.Second,
	}
}

// Site is a running site.
type Site struct {
	cfg   Config
	log   *slog.Logger
	node  *natsnode.Node
	store *jsstore.Store
	view  *view.View
	gw    *gateway.Gateway
	http  *http.Server
	https bool
	hb    *heartbeats
	ln    net.Listener
	lock  *os.File // exclusive lock on DataDir, held until stopped
	// servers knows which site each NATS server is at.
	servers serverSites

	mu       sync.Mutex
	bootErr  error
	booted   chan struct{}
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
}

// Start starts the site and returns once its HTTP API listens. Joining the
// JetStream cluster and catching up with the log continue in the
// background (they need a quorum of sites); Ready tells when they are done.
func Start(ctx context.Context, cfg Config) (*Site, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Every component logs through recent, so the ops console shows this
	// site's warnings and errors whichever part logged them.
	recent := gateway.NewRecentLog(cfg.Logger.Handler(), gateway.RecentLogSize)
	log := slog.New(recent).With("site", cfg.Site)
	// The data directory holds every message and password hash: the
	// site's user only.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("site %s: data dir: %w", cfg.Site, err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("site %s: data dir: %w", cfg.Site, err)
	}
	lock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", cfg.Site, err)
	}
	s := &Site{cfg: cfg, log: log.With("system", "site"), booted: make(chan struct{}), lock: lock}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if cfg.Secrets == nil {
		return nil, fmt.Errorf("site %s: no secrets (a site file from `salamander certs`)", cfg.Site)
	}
	clientTLS, err := cfg.Secrets.ClientTLS()
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", cfg.Site, err)
	}
	urls := cfg.NATSURLs
	if len(urls) == 0 {
		ncfg, err := embeddedNATS(cfg)
		if err != nil {
			return nil, err
		}
		ncfg.Logger = log
		node, err := natsnode.Start(ctx, ncfg)
		if err != nil {
			return nil, err
		}
		s.node = node
		urls = []string{node.ClientURL()}
	}
	scfg := jsstore.DefaultConfig(urls...)
	scfg.Name = "salamander-site-" + cfg.Site
	scfg.Partitions = cfg.Partitions
	scfg.Replicas = cfg.Replicas
	scfg.AppendTimeout = cfg.AppendTimeout
	scfg.User, scfg.Password, scfg.TLS = cfg.Secrets.NATSUser, cfg.Secrets.NATSPassword, clientTLS
	if s.node != nil {
		scfg.InProcess = s.node // follows the server when a resume restarts it
	} else {
		// The --nats list is the order the connection tries, own site
		// first: the servers the cluster announces (every site's, at the
		// addresses they give themselves) are not added, so a gateway
		// whose own servers are out of reach is cut off and its clients
		// move to another site, rather than it serving them through a far
		// site's server the operator did not list.
		scfg.ConfiguredOnly = true
	}
	scfg.Logger = log
	scfg.CopyDir = filepath.Join(cfg.DataDir, "log")
	scfg.Site, scfg.SiteOf = cfg.Site, s.servers.site
	store, err := jsstore.Open(ctx, scfg)
	if err != nil {
		return nil, err
	}
	s.store = store
	v, err := view.Open(filepath.Join(cfg.DataDir, "view.db"), log)
	if err != nil {
		return nil, err
	}
	s.view = v
	if cfg.WindowIdle > 0 {
		v.SetWindowIdle(cfg.WindowIdle)
	}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("site %s: listen %s: %w", cfg.Site, cfg.HTTPAddr, err)
	}
	s.ln = ln
	gcfg := gateway.DefaultConfig(cfg.Site, store, v)
	v.SetSessionTTL(gcfg.TokenTTL) // logouts are remembered until their tokens expire
	gcfg.Instance = cfg.Instance
	if gcfg.Instance == "" {
		gcfg.Instance = ln.Addr().String()
	}
	gcfg.Sites = cfg.Sites
	gcfg.Logger = log
	gcfg.RecentLog = recent
	gcfg.BcryptCost = cfg.BcryptCost
	gcfg.Keys = cfg.Secrets
	gcfg.Limits.TrustedProxies = cfg.TrustedProxies
	gcfg.AllowedOrigins = cfg.AllowedOrigins
	if cfg.LimitExempt != nil {
		gcfg.Limits.Exempt = *cfg.LimitExempt
	}
	if cfg.MetricsFrom != nil {
		gcfg.MetricsFrom = *cfg.MetricsFrom
	}
	// The process's own Go and OS metrics (heap, goroutines, RSS, open
	// files) next to the site's: what an operator looks at first.
	gcfg.Registry = prometheus.NewRegistry()
	gcfg.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if cfg.PresenceBeat > 0 {
		gcfg.PresenceBeat = cfg.PresenceBeat
	}
	if cfg.PresenceTTL > 0 {
		gcfg.PresenceTTL = cfg.PresenceTTL
	}
	if cfg.PresenceGrace > 0 {
		gcfg.PresenceGrace = cfg.PresenceGrace
	}
	if cfg.SessionRecheck > 0 {
		gcfg.SessionRecheck = cfg.SessionRecheck
	}
	s.gw = gateway.New(gcfg)
	// Room for the longest cursor the API takes (64 KiB), percent-encoded
	// in a query string (up to three times as long), so that one over the
	// limit is answered as the API answers it (413 too_large, JSON), not
	// by net/http's plain 431.
	s.http = &http.Server{Handler: s.gw, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 256 << 10}
	s.http.RegisterOnShutdown(s.gw.CloseStreams) // event streams never go idle
	var certs *certfiles.Files
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		certs, err = certfiles.Load(cfg.TLSCert, cfg.TLSKey, s.log)
		if err != nil {
			return nil, fmt.Errorf("site %s: %w", cfg.Site, err)
		}
		s.http.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
		s.https = true
	}
	bg, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.hb = &heartbeats{self: cfg.Site, heard: map[string]time.Time{}}
	if len(cfg.Sites) == 0 {
		s.log.Warn("no --sites given: /v1/sites lists no site, so clients cannot learn where to fail over, " +
			"and this site counts the deployment's sites from its routes")
	}
	s.wg.Add(5)
	go func() {
		defer s.wg.Done()
		s.hb.run(bg, s.store.Conn(), s.siteCount())
	}()
	go func() {
		defer s.wg.Done()
		s.watchCertificates(bg, certs)
	}()
	go func() {
		defer s.wg.Done()
		s.watchIsolation(bg)
	}()
	go func() {
		defer s.wg.Done()
		serve := s.http.Serve
		if s.https {
			serve = func(ln net.Listener) error { return s.http.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("http server stopped", "err", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.boot(bg)
	}()
	ok = true
	s.log.Info("site listening", "http", s.URL(), "nats", jsstore.RedactURLs(urls), "nats_user", cfg.Secrets.NATSUser)
	return s, nil
}

// logCheckEvery is how often a running site checks that its log is intact.
const logCheckEvery = 2 * time.Second

// watchLog raises the log alarm when the log under the running site stops
// being the one it applies (a stream deleted, re-created or cut short).
// A site cut off from the others does not judge: what it can see of the
// log then is its own replicas' view, which may be behind.
func (s *Site) watchLog(ctx context.Context) {
	t := time.NewTicker(logCheckEvery)
	defer t.Stop()
	var seen logProblems
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.gw.LogAlarm() != "" {
			return
		}
		if s.gw.Isolated() {
			seen = logProblems{}
			continue
		}
		if _, p := s.checkLog(ctx); seen.observe(p) != "" {
			s.gw.SetLogAlarm(p.reason)
			return
		}
	}
}

// logProblem is what checkLog found wrong: key names the kind and stream
// (stable across checks), reason says it for people.
type logProblem struct{ key, reason string }

// logProblems raises an alarm only for a problem seen in logAlarmChecks
// checks in a row: a damaged log stays damaged, while a transient answer
// (an election, a replica that answered for a leader) does not repeat.
type logProblems struct {
	key   string
	count int
}

const logAlarmChecks = 3

// observe records one check's finding (a zero problem for a check that
// found nothing or could not ask) and returns the reason to raise the
// alarm for, if it is time.
func (l *logProblems) observe(p logProblem) string {
	if p.key == "" || p.key != l.key {
		l.key, l.count = p.key, 0
	}
	if p.key == "" {
		return ""
	}
	l.count++
	if l.count >= logAlarmChecks {
		return p.reason
	}
	return ""
}

// checkLog compares the log with what this site's read model recorded of
// it, and returns each stream's identity as the log gave it (nil when the
// log could not be asked: no leader yet, say); the problem says what is
// wrong, if anything. A read model that has recorded nothing (a new or
// rebuilt one) records the log as it finds it.
func (s *Site) checkLog(ctx context.Context) (streams map[string]jsstore.StreamIdentity, problem logProblem) {
	// What the site has applied is read before the log is asked: the log
	// can only have grown since, so the comparison never races the tails.
	applied := s.view.Applied()
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	clusterID, streams, err := s.store.Identity(cctx)
	if errors.Is(err, jsstore.ErrStreamMissing) {
		return nil, logProblem{"missing", err.Error()}
	}
	if err != nil {
		return nil, logProblem{}
	}
	known, err := s.view.LogIdentity()
	if err != nil {
		s.log.Error("cannot read the log identity this site recorded", "err", err)
		return nil, logProblem{}
	}
	if id, ok := known["cluster"]; ok && id != clusterID {
		return streams, logProblem{"cluster", fmt.Sprintf("this site's data is of cluster %s, but its NATS servers are cluster %s",
			id, clusterID)}
	}
	current := map[string]string{"cluster": clusterID}
	for _, name := range slices.Sorted(maps.Keys(streams)) {
		st := streams[name]
		if !st.Led {
			return nil, logProblem{}
		}
		created := st.Created.Format(time.RFC3339Nano)
		current["created:"+name] = created
		if was, ok := known["created:"+name]; ok && was != created {
			return streams, logProblem{"re-created:" + name, fmt.Sprintf(
				"stream %s was re-created at %s; this site applied the one created at %s", name, created, was)}
		}
		if seq := jsstore.RecordsApplied(applied[name]); seq > st.LastSeq {
			return streams, logProblem{"backwards:" + name, fmt.Sprintf(
				"stream %s ends at record %d, but this site has applied record %d: the log went backwards", name, st.LastSeq, seq)}
		}
	}
	if len(known) < len(current) {
		if err := s.view.RecordLogIdentity(current); err != nil {
			s.log.Error("cannot record the log identity", "err", err)
			return nil, logProblem{}
		}
	}
	return streams, logProblem{}
}

// embeddedNATS is the embedded server's configuration: cfg.NATS with the
// site's users (gateways limited to what they need, see
// jsstore.GatewayPermissions), route password and certificates.
func embeddedNATS(cfg Config) (natsnode.Config, error) {
	n := cfg.NATS
	n.Site = cfg.Site
	sec := cfg.Secrets
	for _, u := range sec.Users {
		nu := natsnode.User{Name: u.Name, PasswordHash: u.PasswordHash}
		if u.Role != secrets.RoleAdmin {
			site, ok := secrets.GatewaySite(u.Name)
			if !ok {
				return n, fmt.Errorf("site %s: NATS user %s is a gateway's but not named gateway-SITE", cfg.Site, u.Name)
			}
			nu.Publish, nu.Subscribe = jsstore.GatewayPermissions(site, cfg.Partitions)
			nu.AllowResponses = true
		}
		n.Users = append(n.Users, nu)
	}
	n.RoutePassword = sec.RoutePassword
	var err error
	if n.RouteTLS, err = sec.RouteTLS(); err != nil {
		return n, fmt.Errorf("site %s: %w", cfg.Site, err)
	}
	if n.ClientTLS, err = sec.ClientPortTLS(); err != nil {
		return n, fmt.Errorf("site %s: %w", cfg.Site, err)
	}
	return n, nil
}

// boot joins the cluster and runs the read model until ctx ends.
func (s *Site) boot(ctx context.Context) {
	err := s.checkServers(ctx)
	if errors.Is(err, errExternalNATS) {
		s.log.Error("refusing to serve", "err", err)
		s.gw.SetLogAlarm(err.Error())
	}
	if err == nil {
		err = s.store.EnsureStreams(ctx)
	}
	if err == nil {
		err = s.gw.Start(ctx)
	}
	if err != nil {
		s.mu.Lock()
		s.bootErr = err
		s.mu.Unlock()
		close(s.booted)
		return
	}
	// The log must be the one this site's read model was built from: a
	// stream re-created, or shorter than what was applied, would be
	// applied at the wrong positions. Such a site never starts its tails.
	var seen logProblems
	var log map[string]jsstore.StreamIdentity
	for ctx.Err() == nil {
		streams, p := s.checkLog(ctx)
		if alarm := seen.observe(p); alarm != "" {
			s.gw.SetLogAlarm(alarm)
			close(s.booted)
			<-ctx.Done()
			return
		}
		if streams != nil && p.key == "" {
			log = streams
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
	// What the log held when it was checked is what this site must have
	// applied before it serves anything: a restarted site would otherwise
	// answer from a read model that is still catching up.
	heads := map[string]uint64{}
	for name, st := range log {
		if st.LastSeq > 0 {
			heads[name] = jsstore.End(jsstore.PositionOf(name, st.LastSeq, 0)).Seq
		}
	}
	s.gw.SetCatchUp(heads)
	s.checkPlacement(ctx)
	if !s.gw.Isolated() {
		s.gather(true)
	}
	close(s.booted)
	s.wg.Add(4)
	go func() {
		defer s.wg.Done()
		s.ensureSigningKey(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.watchLog(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.balanceLeaders(ctx)
	}()
	go func() {
		defer s.wg.Done()
		s.watchHome(ctx)
	}()
	s.view.Run(ctx, s.store)
}

// isolationCheck is how often an embedded site checks its routes.
const isolationCheck = 250 * time.Millisecond

// watchIsolation tells the gateway when this site is cut off: it has lost
// its NATS connection, or (embedded) its NATS server has no route to a
// majority of the cluster. An isolated site can acknowledge no write
// (JetStream needs a quorum), so the gateway then answers 503 at once and
// drops its WebSockets, sending clients to a site that can serve them,
// instead of letting them wait on a site that cannot.
func (s *Site) watchIsolation(ctx context.Context) {
	size := s.siteCount()
	hbTimeout := s.cfg.HeartbeatTimeout
	if hbTimeout <= 0 {
		hbTimeout = DefaultHeartbeatTimeout
	}
	t := time.NewTicker(isolationCheck)
	defer t.Stop()
	var since, isolatedAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if s.node != nil && s.node.JetStreamPaused() && !s.node.Running() {
			// A pause or resume that could not start the new server left
			// none, and without one the site cannot even hear whether it
			// is cut off: start it again, with JetStream (still isolated,
			// so serving nothing until it hears a majority).
			s.rejoin()
		}
		peers := -1 // unknown with an external cluster
		cut := !s.store.Conn().IsConnected()
		if s.node != nil {
			peers = s.node.ConnectedPeers()
			cut = cut || size > 1 && peers+1 <= size/2
		}
		// No heartbeat from a majority: a silent cut, already as old as
		// the heartbeat timeout, so no further grace.
		silent := size > 1 && s.hb.silent(size, hbTimeout)
		// A console drill isolating this site: as if cut off, at once.
		_, drilled := s.gw.DrillIsolation(time.Now())
		// JetStream pauses only once the site has been cut off for
		// pauseAfter: a real cut outlasts it, a starved process's late
		// heartbeats (CPU, GC) seldom do, and it is still well before a
		// follower's first campaign (4 s after it last heard its leader).
		if s.gw.Isolated() && !isolatedAt.IsZero() && time.Since(isolatedAt) >= pauseAfter {
			s.pauseJetStream()
		}
		switch {
		case drilled && !s.gw.Isolated():
			s.log.Warn("isolated by a drill; refusing requests so clients move")
			s.isolate()
			isolatedAt = time.Now()
		case silent && !s.gw.Isolated():
			s.log.Warn("no heartbeat from a majority of sites; refusing requests so clients move", "timeout", hbTimeout)
			s.isolate()
			isolatedAt = time.Now()
		case silent || drilled:
		case !cut:
			since = time.Time{}
			if s.gw.Isolated() {
				if !s.rejoin() {
					continue
				}
				s.log.Warn("reconnected to a majority of sites; serving again", "peers", peers)
				s.gw.SetIsolated(false)
				s.gather(true)
				isolatedAt = time.Time{}
			}
		case since.IsZero():
			since = time.Now()
		case time.Since(since) >= isolationGrace && !s.gw.Isolated():
			s.log.Warn("cut off from a majority of sites; refusing requests so clients move", "peers", peers)
			s.isolate()
			isolatedAt = time.Now()
		}
	}
}

// pauseAfter is how long a site stays cut off before it pauses its
// JetStream (see watchIsolation).
const pauseAfter = time.Second

// isolate marks the site cut off; watchIsolation pauses its JetStream if
// the cut lasts (see pauseJetStream).
func (s *Site) isolate() {
	s.gw.SetIsolated(true)
	s.gather(false)
}

// gather starts or stops this site taking the other sites' batches for
// the partitions it leads, and forwarding its own (jsstore.Store.Gather):
// off while it is cut off.
func (s *Site) gather(on bool) {
	if err := s.store.Gather(on); err != nil {
		s.log.Warn("cannot change batch gathering", "on", on, "err", err)
	}
}

// pauseJetStream pauses an embedded site's JetStream so that its replicas
// do not campaign alone while it is cut off (see natsnode.PauseJetStream):
// the heal then needs no election at the majority.
func (s *Site) pauseJetStream() {
	if s.node == nil || s.node.JetStreamPaused() {
		return
	}
	s.store.PauseAPI(true)
	if err := s.node.PauseJetStream(); err != nil {
		s.store.PauseAPI(false)
		s.log.Error("cannot pause JetStream while cut off", "err", err)
		return
	}
	s.log.Warn("JetStream paused while cut off: this site's replicas will rejoin as followers")
}

// rejoin resumes a paused JetStream once the site hears a majority again.
// Resuming restarts the embedded server (see natsnode.ResumeJetStream), so
// the site's connection drops and reconnects once, and for that moment it
// hears no heartbeats: that silence is its own, not its peers', and is
// not taken for a new cut. It reports whether the site may serve again;
// if not, the site stays isolated and watchIsolation tries again.
func (s *Site) rejoin() bool {
	if s.node == nil || !s.node.JetStreamPaused() {
		return true
	}
	start := time.Now()
	err := s.node.ResumeJetStream()
	if err != nil {
		s.log.Error("cannot resume JetStream: this site keeps refusing requests and tries again", "err", err)
		return false
	}
	s.hb.excuse(start, time.Now())
	s.store.PauseAPI(false)
	s.log.Warn("JetStream resumed", "took", time.Since(start))
	return true
}

// siteCount is how many sites the deployment has: its configured sites,
// else the embedded server's routes and itself.
func (s *Site) siteCount() int {
	if n := len(s.cfg.Sites); n > 0 {
		return n
	}
	return len(s.cfg.NATS.Routes) + 1
}

// isolationGrace keeps a brief route flap from bouncing every client.
const isolationGrace = 750 * time.Millisecond

// ensureSigningKey proposes a signing key; the first proposal in the log
// wins, at every site.
func (s *Site) ensureSigningKey(ctx context.Context) {
	id := gateway.NewKeyID()
	sealed, err := s.cfg.Secrets.SealKey(id, gateway.NewSigningKey())
	if err != nil {
		s.log.Error("cannot seal a signing key", "err", err)
		return
	}
	rec := salamander.Record{Type: salamander.RecSigningKey, KeyID: id, Key: sealed, At: time.Now().UTC()}
	opt := jsstore.AppendOptions{ExpectNew: true, MsgID: "key:" + s.cfg.Site + ":" + time.Now().Format(time.RFC3339Nano)}
	for ctx.Err() == nil && !s.view.HasSigningKey() {
		_, _, err := s.store.Append(ctx, jsstore.AccountsStream, "key", rec, opt)
		if err == nil || errors.Is(err, jsstore.ErrExists) {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// URL is the site's HTTP base URL.
func (s *Site) URL() string {
	if s.ln == nil {
		return ""
	}
	if s.https {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Name is the site's name.
func (s *Site) Name() string { return s.cfg.Site }

// Store is the site's connection to the log (for tests and the drill).
func (s *Site) Store() *jsstore.Store { return s.store }

// View is the site's read model (for tests).
func (s *Site) View() *view.View { return s.view }

// Gateway is the site's API (for tests).
func (s *Site) Gateway() *gateway.Gateway { return s.gw }

// Node is the embedded NATS server, or nil.
func (s *Site) Node() *natsnode.Node { return s.node }

// Ready waits until the site can serve every request: it has joined the
// cluster, every stream has a leader, and the signing key is applied.
func (s *Site) Ready(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-s.booted:
	}
	s.mu.Lock()
	err := s.bootErr
	s.mu.Unlock()
	if err != nil {
		return err
	}
	for {
		if s.view.HasSigningKey() && s.gw.CaughtUp() {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := s.store.Status(sctx)
			cancel()
			if err == nil && allLed(st) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("site %s not ready: %w", s.cfg.Site, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func allLed(st []jsstore.StreamStatus) bool {
	for _, s := range st {
		if s.Leader == "" {
			return false
		}
	}
	return len(st) > 0
}

// Close stops the site in reverse order of start: HTTP, gateway, read
// model, log connection, and last the embedded NATS server, which first
// hands its leaderships to other sites (lame duck) when graceful is set.
func (s *Site) Close() { s.stop(true) }

// Kill stops the site abruptly, the way a fire would look to its peers: the
// NATS server goes first, with no hand-over of leaderships.
func (s *Site) Kill() { s.stop(false) }

func (s *Site) stop(graceful bool) {
	s.stopOnce.Do(func() {
		if !graceful && s.node != nil {
			s.node.Shutdown()
			// The site is dead: fail everything waiting on the log now
			// rather than letting it retry against a server that is gone.
			if s.store != nil {
				s.store.Close()
			}
		}
		if s.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.http.Shutdown(ctx)
			cancel()
			_ = s.http.Close()
		} else if s.ln != nil {
			s.ln.Close() // Start failed before serving
		}
		if s.gw != nil {
			s.gw.Close()
		}
		if s.cancel != nil {
			s.cancel()
		}
		s.wg.Wait()
		if s.view != nil {
			_ = s.view.Close()
		}
		if s.store != nil {
			s.store.Close()
		}
		if s.node != nil {
			if graceful {
				s.node.LameDuckShutdown()
			} else {
				s.node.Shutdown()
			}
		}
		if s.lock != nil {
			s.lock.Close() // releases the lock
		}
	})
}
