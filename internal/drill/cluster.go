package drill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// SiteNames are the sites of a drill cluster, in order.
var SiteNames = []string{"a", "b", "c"}

// ClusterConfig configures a drill cluster.
type ClusterConfig struct {
	// Binary is the salamander executable to run `serve` with.
	Binary string
	// Dir holds each site's data directory and log file.
	Dir string
	// Partitions is passed to `serve --partitions`.
	Partitions int
	// SiteLogLevel is passed to `serve --log-level` (default warn).
	SiteLogLevel string
	// Logger receives the drill's own progress lines (default: discarded).
	Logger *slog.Logger
	// ServeArgs are extra arguments appended to every site's `serve`
	// command line (e.g. `--bcrypt-cost 4` for a benchmark).
	ServeArgs []string
	// DirectRoutes connects the sites' NATS servers straight to each other
	// instead of through link proxies: nothing in this process copies the
	// replication traffic (a benchmark wants that), and Cut, Heal and
	// SetLatency do nothing.
	DirectRoutes bool
	// Topology is TopologyEmbedded (default: one `serve` process per site,
	// its NATS server inside) or TopologyExternal: per site a standalone
	// nats-server process and GatewaysPerSite `serve --nats` processes
	// behind a load balancer (package balancer) whose URL is the site's.
	Topology string
	// GatewaysPerSite is the number of `serve --nats` processes per site
	// of an external topology (default 2).
	GatewaysPerSite int
	// NATSServer is the nats-server executable of an external topology.
	NATSServer string
}

// Topologies of a drill cluster.
const (
	TopologyEmbedded = "embedded"
	TopologyExternal = "external"
)

// Cluster is three `salamander serve` processes on loopback, one per site,
// whose NATS routes all run through link proxies owned by the Cluster so
// that any site can be cut off from the others while it stays up.
//
// Each site's real cluster port listens on its own loopback address
// (127.0.0.2, .3, .4), a port that is free on 127.0.0.1: NATS gossips
// route addresses built from a peer's source address (the proxies dial
// from 127.0.0.1) and its real port, so a gossiped address is refused and
// never bypasses a proxy (a server gives up on a refused gossiped route).
//
// With ClusterConfig.DirectRoutes the routes bypass the proxies (and every
// site listens on 127.0.0.1); such a cluster cannot be cut off or slowed.
//
// With ClusterConfig.Topology TopologyExternal a site is instead a
// standalone nats-server process and GatewaysPerSite `serve --nats`
// processes behind a load balancer the Cluster owns, whose URL is the
// site's (see external.go); its routes run through the proxies alike, and
// Kill, Term and Restart act on all of the site's processes together.
//
// A Cluster made by Attach drives sites it did not start: it has no
// processes or proxies, and every fault that needs them fails with
// ErrAttached.
type Cluster struct {
	cfg      ClusterConfig
	log      *slog.Logger
	hc       *http.Client
	sites    []*siteProc
	proxies  []*linkProxy
	lbs      *balancers // external topology: the sites' load balancers
	attached bool
	// secrets is the directory of the cluster's credentials and
	// certificates (none when attached).
	secrets string
	// opsToken is an operator's session token, for GET /v1/ops/site
	// (opstoken.go); "" on a cluster attached to without one.
	opsToken string

	// isolator (attached clusters) cuts a site off without the drill
	// owning its routes; see SetIsolator.
	isolator Isolator

	mu     sync.Mutex // guards siteProc.proc and closed
	closed bool       // Close ran: start nothing new

	// admins are the admin connections to the log, by site (admin.go);
	// adminsClosed is set when Close has closed them.
	adminMu      sync.Mutex
	admins       map[int]*jsstore.Store
	adminsClosed bool
}

// Isolator cuts a site of an attached cluster off from the others for a
// while, where the drill owns no processes or routes — the ops plane's
// isolation: the site refuses every request, drops its clients and
// pauses its replicas, and comes back by itself after d.
type Isolator interface {
	Isolate(ctx context.Context, site string, d time.Duration) error
}

// SetIsolator lets the partition scenario run on an attached cluster,
// cutting sites off through is (with a CutFor: the isolation ends by
// itself).
func (c *Cluster) SetIsolator(is Isolator) { c.isolator = is }

// cut cuts site off: through its route proxies, or the isolator on an
// attached cluster (for d). An isolation is in effect only once the site
// has heard of it, so cut returns when the site refuses its clients
// (/readyz no longer 200): the fault strikes then.
func (c *Cluster) cut(ctx context.Context, site string, mode CutMode, d time.Duration) error {
	if !c.attached {
		c.Cut(site, mode)
		return nil
	}
	if c.isolator == nil {
		return ErrAttached
	}
	if err := c.isolator.Isolate(ctx, site, d); err != nil {
		return err
	}
	i := c.Index(site)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := poll(wctx, 20*time.Millisecond, func() (bool, error) {
		res, err := c.hc.Get(c.URL(i) + "/readyz")
		if err != nil {
			return true, nil
		}
		res.Body.Close()
		return res.StatusCode != http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("drill: site %s did not isolate itself: %w", site, err)
	}
	c.log.Info("site isolated", "site", site, "for", d)
	return nil
}

// heal undoes cut (an isolation ends by itself).
func (c *Cluster) heal(site string) {
	if !c.attached {
		c.Heal(site)
	}
}

// ErrAttached is returned for a fault the drill cannot cause on a cluster
// it attached to (it does not own the sites' processes or routes).
var ErrAttached = errors.New("drill: not possible on a cluster the drill attached to")

// siteProc is one site's fixed addresses and its current processes.
type siteProc struct {
	name        string
	url         string // HTTP base URL (external: the load balancer's)
	httpAddr    string // embedded: the `serve` process's HTTP address
	natsAddr    string
	clusterAddr string
	dataDir     string
	logPath     string
	routes      []string
	// bin is the salamander executable the site's next start runs
	// ("": ClusterConfig.Binary); see SetBinary.
	bin string
	// unready is what kept the site from being ready in the last
	// WaitReady (see UnreadyWhy); guarded by Cluster.mu.
	unready string
	// external topology: the nats-server's monitoring address and the
	// gateways behind the balancer.
	monitorAddr string
	gateways    []gatewayAddr
	procs       []*process // the site's running processes; nil while down
	// stopped are its processes stopped or killed since it started, with
	// when (see runningSince).
	stopped []*process
}

// process is one running process of a site.
type process struct {
	role    ProcessRole
	url     string // its own HTTP address where it differs from the site's (a gateway's)
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited and been reaped
	log     *os.File
	logPath string
	started time.Time
	// ended is when the drill stopped it (just before the signal) or it
	// was found exited, whichever came first; zero while it runs. Guarded
	// by Cluster.mu.
	ended time.Time
}

// siteStatus is the part of GET /v1/ops/site the drill reads.
type siteStatus struct {
	Site string `json:"site"`
	// Instance names the gateway that answered (several per site behind
	// a balancer).
	Instance     string        `json:"instance"`
	Streams      []streamState `json:"streams"`
	StreamsError string        `json:"streams_error"`
	// Applied is the read model's applied position per stream.
	Applied map[string]uint64 `json:"applied"`
	// Limited is set when the site could not confirm the operator: the
	// answer then holds only what its public status does.
	Limited string `json:"limited"`
}

// streamState is one stream as GET /v1/ops/site lists it.
type streamState struct {
	Stream    string   `json:"stream"`
	Leader    string   `json:"leader"`
	LastSeq   uint64   `json:"last_seq"`
	Unhealthy []string `json:"unhealthy"`
}

// StartCluster starts every site and waits until each is ready and every
// stream has a leader. On error nothing is left running.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Binary == "" {
		return nil, errors.New("drill: no salamander binary given")
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = 6
	}
	if cfg.SiteLogLevel == "" {
		cfg.SiteLogLevel = "warn"
	}
	switch cfg.Topology {
	case "", TopologyEmbedded:
		cfg.Topology = TopologyEmbedded
	case TopologyExternal:
		if cfg.NATSServer == "" {
			return nil, errors.New("drill: an external topology needs a nats-server executable")
		}
		if cfg.GatewaysPerSite <= 0 {
			cfg.GatewaysPerSite = 2
		}
	default:
		return nil, fmt.Errorf("drill: unknown topology %q (%s, %s)", cfg.Topology, TopologyEmbedded, TopologyExternal)
	}
	c := &Cluster{
		cfg: cfg,
		log: cfg.Logger.With("system", "drill"),
		hc:  &http.Client{Timeout: 3 * time.Second},
	}
	ok := false
	defer func() {
		if !ok {
			c.Close()
		}
	}()
	if err := c.layout(); err != nil {
		return nil, err
	}
	// The drill runs the production set-up: mutual TLS between the sites'
	// servers, and credentials (each gateway's limited to its needs).
	c.secrets = filepath.Join(cfg.Dir, "secrets")
	hosts := map[string][]string{}
	for _, s := range c.sites {
		h, _, _ := net.SplitHostPort(s.clusterAddr)
		hosts[s.name] = []string{h}
	}
	if err := secrets.Generate(c.secrets, secrets.Options{Sites: c.names(), TLS: true, Hosts: hosts}); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if err := c.startBalancers(); err != nil {
		return nil, err
	}
	for i := range c.sites {
		if err := c.start(i); err != nil {
			return nil, err
		}
	}
	for i := range c.sites {
		if err := c.WaitReady(ctx, i); err != nil {
			return nil, err
		}
	}
	if err := c.makeOperator(ctx); err != nil {
		return nil, err
	}
	c.log.Info("sites ready; waiting for stream leaders")
	if err := c.WaitLeaders(ctx); err != nil {
		return nil, err
	}
	c.log.Info("every stream has a leader")
	ok = true
	return c, nil
}

// Attach returns a Cluster for sites already running elsewhere (for
// example `salamander dev`), given their HTTP base URLs and an operator's
// session token (opsToken; "" for none). It learns each site's name from
// its public /v1/status and waits until every stream has a leader (with
// no token, which the leaders need, until every site is ready). The drill
// can drive and check such a cluster, but not burn, cut or restart its
// sites.
func Attach(ctx context.Context, urls []string, opsToken string, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if len(urls) < 2 {
		return nil, errors.New("drill: attach needs the URLs of at least two sites")
	}
	c := &Cluster{
		log:      logger.With("system", "drill"),
		hc:       &http.Client{Timeout: 3 * time.Second},
		attached: true,
		opsToken: opsToken,
	}
	for _, u := range urls {
		c.sites = append(c.sites, &siteProc{url: strings.TrimRight(u, "/")})
	}
	seen := map[string]bool{}
	for i, s := range c.sites {
		var st publicStatus
		err := poll(ctx, 250*time.Millisecond, func() (bool, error) {
			var err error
			st, err = c.publicStatus(ctx, i)
			return err == nil && st.Site != "", nil
		})
		if err != nil {
			return nil, fmt.Errorf("drill: attaching to %s: no /v1/status answer naming the site: %w", s.url, err)
		}
		if seen[st.Site] {
			return nil, fmt.Errorf("drill: attaching: %s is site %s, given twice", s.url, st.Site)
		}
		seen[st.Site] = true
		s.name = st.Site
	}
	if err := c.WaitLeaders(ctx); err != nil {
		return nil, err
	}
	c.log.Info("attached", "sites", strings.Join(c.names(), ","))
	return c, nil
}

// names returns every site's name in order.
func (c *Cluster) names() []string {
	out := make([]string, len(c.sites))
	for i, s := range c.sites {
		out[i] = s.name
	}
	return out
}

// layout picks every port and, unless DirectRoutes is set, starts the six
// link proxies.
func (c *Cluster) layout() error {
	for i, name := range SiteNames {
		ports, err := freeport.Loopback(3)
		if err != nil {
			return err
		}
		clusterAddr := fmt.Sprintf("127.0.0.1:%d", ports[2])
		if !c.cfg.DirectRoutes {
			if clusterAddr, err = clusterPort(net.IPv4(127, 0, 0, byte(2+i))); err != nil {
				return err
			}
		}
		dir := filepath.Join(c.cfg.Dir, name)
		s := &siteProc{
			name:        name,
			url:         fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
			httpAddr:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
			natsAddr:    fmt.Sprintf("127.0.0.1:%d", ports[1]),
			clusterAddr: clusterAddr,
			dataDir:     dir,
			logPath:     filepath.Join(c.cfg.Dir, name+".log"),
		}
		if c.cfg.Topology == TopologyExternal {
			if err := c.layoutExternal(s); err != nil {
				return err
			}
		}
		c.sites = append(c.sites, s)
	}
	for _, from := range c.sites {
		for _, to := range c.sites {
			if from == to {
				continue
			}
			if c.cfg.DirectRoutes {
				from.routes = append(from.routes, to.clusterAddr)
				continue
			}
			p, err := startLinkProxy(from.name, to.name, to.clusterAddr)
			if err != nil {
				return err
			}
			c.proxies = append(c.proxies, p)
			from.routes = append(from.routes, p.Addr())
		}
	}
	return nil
}

// start launches site i's processes on their fixed ports and data
// directory.
func (c *Cluster) start(i int) error {
	s := c.sites[i]
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return fmt.Errorf("drill: site %s data dir: %w", s.name, err)
	}
	if c.cfg.Topology == TopologyExternal {
		return c.startExternal(i)
	}
	args := []string{"serve",
		"--site", s.name,
		"--data", s.dataDir,
		"--http", s.httpAddr,
		"--nats-listen", s.natsAddr,
		"--cluster-listen", s.clusterAddr,
		"--routes", strings.Join(s.routes, ","),
		"--sites", c.sitesFlag(),
		"--partitions", strconv.Itoa(c.cfg.Partitions),
		"--log-level", c.cfg.SiteLogLevel,
		"--secrets", secrets.SiteFile(c.secrets, s.name),
	}
	return c.spawn(i, RoleSite, "", s.logPath, c.Binary(i), append(args, c.cfg.ServeArgs...)...)
}

// Binary returns the salamander executable site i runs (external
// topology: its gateways; its nats-server is ClusterConfig.NATSServer),
// or starts with next.
func (c *Cluster) Binary(i int) string {
	if b := c.sites[i].bin; b != "" {
		return b
	}
	return c.cfg.Binary
}

// SetBinary makes site i run bin from its next start on (Restart): an
// upgrade, site by site. The site's data and addresses stay as they are.
func (c *Cluster) SetBinary(i int, bin string) {
	c.sites[i].bin = bin
}

// sitesFlag is every site's public URL as `serve --sites` takes them.
func (c *Cluster) sitesFlag() string {
	var sites []string
	for _, o := range c.sites {
		sites = append(sites, o.name+"="+o.url)
	}
	return strings.Join(sites, ",")
}

// spawn starts one of site i's processes, its output appended to logPath;
// role and url say what it is (see Processes).
func (c *Cluster) spawn(i int, role ProcessRole, url, logPath, bin string, args ...string) error {
	s := c.sites[i]
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("drill: site %s log: %w", s.name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logf
	cmd.Stderr = logf
	ownProcessGroup(cmd)
	// Start under the lock so that Close, once it has run, never misses a
	// process started concurrently.
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		logf.Close()
		return fmt.Errorf("drill: start site %s: cluster closed", s.name)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("drill: start site %s (%s): %w", s.name, filepath.Base(bin), err)
	}
	p := &process{role: role, url: url, cmd: cmd, done: make(chan struct{}), log: logf, logPath: logPath, started: time.Now()}
	// The goroutine reaps the process; whoever stops it waits on done.
	go func() {
		_ = cmd.Wait() // the exit status of a killed site is expected
		logf.Close()
		c.mu.Lock()
		if p.ended.IsZero() {
			p.ended = time.Now()
		}
		c.mu.Unlock()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	c.log.Info("site process started", "site", s.name, "cmd", filepath.Base(bin), "pid", cmd.Process.Pid, "log", logPath)
	return nil
}

// N is the number of sites.
func (c *Cluster) N() int { return len(c.sites) }

// Name returns site i's name.
func (c *Cluster) Name(i int) string { return c.sites[i].name }

// Index returns the index of the named site, or -1.
func (c *Cluster) Index(name string) int {
	for i, s := range c.sites {
		if s.name == name {
			return i
		}
	}
	return -1
}

// URL returns site i's HTTP base URL (stable across restarts).
func (c *Cluster) URL(i int) string { return c.sites[i].url }

// URLs returns every site's base URL in site order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.sites))
	for i := range c.sites {
		out[i] = c.URL(i)
	}
	return out
}

// NATSURL returns site i's NATS client URL (TLS), for `salamander admin
// --nats`; empty for an attached cluster.
func (c *Cluster) NATSURL(i int) string {
	if c.sites[i].natsAddr == "" {
		return ""
	}
	return "tls://" + c.sites[i].natsAddr
}

// AdminFile returns the cluster's admin credential (admin.json), for
// `salamander admin --creds`; empty for an attached cluster.
func (c *Cluster) AdminFile() string {
	if c.secrets == "" {
		return ""
	}
	return secrets.AdminFile(c.secrets)
}

// LogPath returns the file site i's process writes its log to.
func (c *Cluster) LogPath(i int) string { return c.sites[i].logPath }

// Attached reports whether the cluster was made by Attach.
func (c *Cluster) Attached() bool { return c.attached }

// Alive reports whether site i's process is running (always true for an
// attached cluster, whose processes the drill cannot see).
func (c *Cluster) Alive(i int) bool {
	if c.attached {
		return true
	}
	c.mu.Lock()
	procs := c.sites[i].procs
	c.mu.Unlock()
	return len(procs) > 0 && exited(procs) == nil
}

// exited returns the first of procs that has exited, or nil.
func exited(procs []*process) *process {
	for _, p := range procs {
		select {
		case <-p.done:
			return p
		default:
		}
	}
	return nil
}

// Pid returns the process id of site i's first running process (its
// `serve`, or in an external topology its nats-server), or 0 while it is
// down or when the cluster is attached.
func (c *Cluster) Pid(i int) int {
	if c.attached {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if procs := c.sites[i].procs; len(procs) > 0 {
		return procs[0].cmd.Process.Pid
	}
	return 0
}

// ProcessRole says what one of a site's processes does.
type ProcessRole string

const (
	// RoleSite serves a whole site: `salamander serve` with its NATS
	// server embedded.
	RoleSite ProcessRole = "site"
	// RoleGateway is one of a site's `salamander serve --nats` gateways
	// (the external topology): it holds WebSockets and a read model.
	RoleGateway ProcessRole = "gateway"
	// RoleNATSServer is a site's standalone nats-server (the external
	// topology).
	RoleNATSServer ProcessRole = "nats-server"
)

// Process is one running process of a site.
type Process struct {
	PID  int
	Role ProcessRole
	// URL is the process's own HTTP address where it differs from the
	// site's: a gateway behind the site's balancer. Empty otherwise.
	URL string
}

// Processes returns site i's running processes (none for an attached
// cluster, or a site that is down), its NATS server first.
func (c *Cluster) Processes(i int) []Process {
	if c.attached {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Process
	for _, p := range c.sites[i].procs {
		if p.ended.IsZero() {
			out = append(out, Process{PID: p.cmd.Process.Pid, Role: p.role, URL: p.url})
		}
	}
	return out
}

// detach takes site i's processes out of the cluster's hands for
// stopping; none (with ErrAttached on an attached cluster) when there are
// none.
func (c *Cluster) detach(i int) ([]*process, error) {
	if c.attached {
		return nil, ErrAttached
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	procs := c.sites[i].procs
	c.sites[i].procs = nil
	now := time.Now()
	for _, p := range procs {
		if p.ended.IsZero() {
			p.ended = now
		}
	}
	c.sites[i].stopped = append(c.sites[i].stopped, procs...)
	return procs, nil
}

// Kill sends SIGKILL to every process of site i at once (a fire: no lame
// duck, nothing flushed beyond what the server already synced) and waits
// until they are gone.
func (c *Cluster) Kill(i int) error {
	procs, err := c.detach(i)
	if len(procs) == 0 {
		return err
	}
	for _, p := range procs {
		if err := killGroup(p.cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("drill: kill site %s: %w", c.sites[i].name, err)
		}
	}
	for _, p := range procs {
		<-p.done
	}
	c.log.Info("site killed", "site", c.sites[i].name, "processes", len(procs))
	return nil
}

// Term stops site i gracefully with SIGTERM (the server lame-ducks and
// hands its leaderships over) and waits until it has exited, or SIGKILLs
// it after grace. It returns when the process has gone.
func (c *Cluster) Term(i int, grace time.Duration) error {
	procs, err := c.detach(i)
	if len(procs) == 0 {
		return err
	}
	for _, p := range procs {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("drill: stop site %s: %w", c.sites[i].name, err)
		}
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		case <-t.C:
		}
		c.log.Warn("site did not stop in time; killing it", "site", c.sites[i].name, "grace", grace)
		for _, p := range procs {
			if err := killGroup(p.cmd); err != nil && !errors.Is(err, os.ErrProcessDone) {
				return fmt.Errorf("drill: kill site %s: %w", c.sites[i].name, err)
			}
		}
		break
	}
	for _, p := range procs {
		<-p.done
	}
	c.log.Info("site stopped", "site", c.sites[i].name)
	return nil
}

// Wipe deletes site i's data directory (its NATS store and read model),
// so that it comes back with an empty disk. The site must be down.
func (c *Cluster) Wipe(i int) error {
	if c.attached {
		return ErrAttached
	}
	if c.running(i) {
		return fmt.Errorf("drill: site %s is still running", c.sites[i].name)
	}
	if err := os.RemoveAll(c.sites[i].dataDir); err != nil {
		return fmt.Errorf("drill: wiping site %s: %w", c.sites[i].name, err)
	}
	c.log.Info("site's disk wiped", "site", c.sites[i].name, "dir", c.sites[i].dataDir)
	return nil
}

// Restart starts site i again with its old ports, name and disk (or an
// empty one after Wipe) and waits until it is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.attached {
		return ErrAttached
	}
	if c.running(i) {
		return fmt.Errorf("drill: site %s is still running", c.sites[i].name)
	}
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitReady(ctx, i)
}

// Cut cuts every route link touching the named site, the way mode says,
// while its process keeps running.
func (c *Cluster) Cut(site string, mode CutMode) {
	for _, p := range c.proxies {
		if p.touches(site) {
			p.Cut(mode)
		}
	}
	c.log.Info("site cut off", "site", site, "cut", mode)
}

// SetLatency adds rtt ± jitter to the round trip of every route link
// (half of each in each direction); links touching the site far (when not
// empty) get farRTT ± jitter instead. Zeros remove the delay.
func (c *Cluster) SetLatency(rtt, jitter time.Duration, far string, farRTT time.Duration) {
	for _, p := range c.proxies {
		d := rtt
		if far != "" && p.touches(far) {
			d = farRTT
		}
		p.SetDelay(d/2, jitter/2)
	}
	if rtt > 0 || farRTT > 0 || jitter > 0 {
		c.log.Info("route latency injected", "rtt", rtt, "jitter", jitter, "far_site", far, "far_rtt", farRTT)
	}
}

// Heal lets the named site's routes carry bytes and connect again.
func (c *Cluster) Heal(site string) {
	for _, p := range c.proxies {
		if p.touches(site) {
			p.Heal()
		}
	}
	c.log.Info("site reconnected", "site", site)
}

// couldLead reports whether the site named site could have taken a
// leadership at the moment at: it had a running process then, and so did
// a majority of the sites (a leader needs a quorum's votes). False while
// it is down, or when its running processes started after at: a
// leadership a killed site's server took "after" the fault, as others
// still report it, was handed over while the fault struck. False too for
// a lone survivor, whose server goes on calling itself the leader of what
// it led until it notices it lost its quorum: no election either. True
// for an attached cluster (the drill does not run it) and for a name that
// is none of the drill's sites.
func (c *Cluster) couldLead(site string, at time.Time) bool {
	i := c.Index(site)
	if c.attached || i < 0 {
		return true
	}
	if !c.runningSince(i, at) {
		return false
	}
	up := 0
	for k := range c.sites {
		if c.runningSince(k, at) {
			up++
		}
	}
	return up > len(c.sites)/2
}

// running reports whether any of site i's processes is still running.
func (c *Cluster) running(i int) bool { return c.runningSince(i, time.Now()) }

// runningSince reports whether one of site i's processes that started at
// or before at was still running at at: it runs now, or it ended after at
// (the drill stopped or killed it later).
func (c *Cluster) runningSince(i int, at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range slices.Concat(c.sites[i].procs, c.sites[i].stopped) {
		if !p.started.After(at) && (p.ended.IsZero() || p.ended.After(at)) {
			return true
		}
	}
	return false
}

// WaitReady polls site i's /readyz until it answers 200 (in an external
// topology: every gateway's, and the balancer's once it has put every
// gateway in service). It fails early if a process of the site exits.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	s := c.sites[i]
	urls := []string{c.URL(i)}
	for _, g := range s.gateways {
		urls = append([]string{g.url()}, urls...)
	}
	why := ""
	begun := time.Now()
	c.mu.Lock()
	s.unready = ""
	c.mu.Unlock()
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		c.mu.Lock()
		procs := s.procs
		c.mu.Unlock()
		if len(procs) == 0 && !c.attached { // an attached cluster's processes are not the drill's
			return false, fmt.Errorf("site %s is down", s.name)
		}
		if p := exited(procs); p != nil {
			return false, fmt.Errorf("a process of site %s exited; log %s:\n%s", s.name, p.logPath, tail(p.logPath, 2000))
		}
		for _, u := range urls {
			resp, err := c.hc.Get(u + "/readyz")
			if err != nil {
				why = err.Error()
				return false, nil
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				// A site that refuses its log waits for an operator, not
				// for time: say so now rather than at the deadline. Asked
				// only of a site that stays unready a while, so that the
				// question does not slow the wait of a site that is
				// merely starting (ReadyMS).
				if time.Since(begun) >= alarmCheckAfter {
					rd := c.readiness(ctx, u)
					if rd.LogAlarm != "" {
						return false, fmt.Errorf("site %s raised the log alarm at %s: %s", s.name, u, rd.LogAlarm)
					}
					if w := rd.unready(); w != "" {
						c.mu.Lock()
						s.unready = w
						c.mu.Unlock()
					}
				}
				why = fmt.Sprintf("%s/readyz answers %d", u, resp.StatusCode)
				return false, nil
			}
		}
		if !c.lbs.inService(i) {
			why = "the balancer has not put every gateway in service yet"
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("drill: waiting for site %s to be ready (%s): %w", s.name, why, err)
	}
	return nil
}

// alarmCheckAfter is how long WaitReady waits for a site before it asks
// whether the site raised the log alarm; alarmCheckTimeout bounds the
// question.
const (
	alarmCheckAfter   = 2 * time.Second
	alarmCheckTimeout = time.Second
)

// readinessState is the part of GET /v1/ops/site that says why a site is
// not ready.
type readinessState struct {
	LogAlarm      string            `json:"log_alarm"`
	NATSConnected *bool             `json:"nats_connected"`
	SigningKey    *bool             `json:"signing_key"`
	Isolated      bool              `json:"isolated"`
	CaughtUp      *bool             `json:"caught_up"`
	Drained       bool              `json:"drained"`
	Stalled       map[string]string `json:"stalled"`
	ReadModel     string            `json:"read_model"`
}

// unready names the conditions rd says keep the site from being ready
// ("" when it names none, or was not read).
func (rd readinessState) unready() string {
	var out []string
	no := func(b *bool) bool { return b != nil && !*b }
	if no(rd.NATSConnected) {
		out = append(out, "NATS disconnected")
	}
	if no(rd.SigningKey) {
		out = append(out, "no signing key")
	}
	if rd.Isolated {
		out = append(out, "isolated")
	}
	if no(rd.CaughtUp) {
		out = append(out, "not caught up (the log, or other processes' online users)")
	}
	if rd.Drained {
		out = append(out, "drained")
	}
	for st, why := range rd.Stalled {
		out = append(out, "stream "+st+" stalled: "+why)
	}
	if rd.ReadModel != "" {
		out = append(out, "read model: "+rd.ReadModel)
	}
	slices.Sort(out)
	return strings.Join(out, "; ")
}

// readiness is what the gateway (or site) at base URL u says of its
// readiness in GET /v1/ops/site (nothing without an operator's token: the
// public /readyz says only that a site is not ready, not why).
func (c *Cluster) readiness(ctx context.Context, u string) readinessState {
	var rd readinessState
	ctx, cancel := context.WithTimeout(ctx, alarmCheckTimeout)
	defer cancel()
	if c.opsToken != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/v1/ops/site", nil)
		if err != nil {
			return rd
		}
		req.Header.Set("Authorization", "Bearer "+c.opsToken)
		_ = c.getJSON(req, u, &rd)
	}
	if rd.LogAlarm == "" && c.metricsSayLogAlarm(ctx, u) {
		// A site that cannot confirm the operator (the accounts' stream
		// is what it refuses, say) answers GET /v1/ops/site without the
		// alarm; its /metrics, which the drill's sites serve to loopback,
		// still says which condition holds.
		rd.LogAlarm = "salamander_not_ready{reason=\"log_alarm\"} is 1 in its /metrics (its log is not the one it applied; its log names the stream)"
	}
	return rd
}

// metricsSayLogAlarm reports whether the site's /metrics (served to
// loopback and its monitoring networks) says the log alarm keeps it from
// serving; false when it cannot be read.
func (c *Cluster) metricsSayLogAlarm(ctx context.Context, u string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
	if err != nil {
		return false
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "salamander_not_ready{") && strings.Contains(line, `reason="log_alarm"`) {
			return strings.HasSuffix(line, " 1")
		}
	}
	return false
}

// UnreadyWhy says what kept site i from being ready in its last
// WaitReady, as the site said once it had been unready for 2 s ("" when
// it was ready sooner, or did not say).
func (c *Cluster) UnreadyWhy(i int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sites[i].unready
}

// Status fetches site i's GET /v1/ops/site (ErrNoOpsToken without an
// operator's token). A limited answer (a site that refuses its users and
// could not confirm the operator yet) is an error: it has none of the
// site's positions or streams.
func (c *Cluster) Status(ctx context.Context, i int) (siteStatus, error) {
	var st siteStatus
	req, err := c.opsRequest(ctx, i, "/v1/ops/site")
	if err != nil {
		return st, fmt.Errorf("drill: status of site %s: %w", c.sites[i].name, err)
	}
	if err := c.getJSON(req, c.sites[i].name, &st); err != nil {
		return st, err
	}
	if st.Limited != "" {
		return st, fmt.Errorf("drill: status of site %s: limited: %s", c.sites[i].name, st.Limited)
	}
	return st, nil
}

// publicStatus is the part of the public GET /v1/status the drill reads.
type publicStatus struct {
	Site string `json:"site"`
}

// publicStatus fetches site i's public GET /v1/status.
func (c *Cluster) publicStatus(ctx context.Context, i int) (publicStatus, error) {
	var st publicStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+"/v1/status", nil)
	if err != nil {
		return st, fmt.Errorf("drill: status of site %s: %w", c.sites[i].name, err)
	}
	return st, c.getJSON(req, c.sites[i].name, &st)
}

// getJSON does req, a request to site, and decodes its 200 answer into v.
func (c *Cluster) getJSON(req *http.Request, site string, v any) error {
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("drill: status of site %s: %w", site, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("drill: status of site %s: HTTP %d", site, resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return fmt.Errorf("drill: status of site %s: %w", site, err)
	}
	return nil
}

// Leaders returns, per stream, the site whose server leads it, as the
// first live site reports it. Streams without a leader are missing.
func (c *Cluster) Leaders(ctx context.Context) (map[string]string, error) {
	streams, err := c.streams(ctx)
	if err != nil {
		return nil, err
	}
	return leadersOf(streams), nil
}

// leadersOf maps each stream with a leader to the leading site's name.
func leadersOf(streams []streamState) map[string]string {
	out := map[string]string{}
	for _, s := range streams {
		if name, ok := strings.CutPrefix(s.Leader, "site-"); ok {
			out[s.Stream] = name
		}
	}
	return out
}

// streams returns every stream's state as the first live site that can
// list them reports it.
func (c *Cluster) streams(ctx context.Context) ([]streamState, error) {
	var lastErr error
	for i := range c.sites {
		if !c.Alive(i) {
			continue
		}
		st, err := c.Status(ctx, i)
		if err != nil {
			lastErr = err
			continue
		}
		if st.StreamsError != "" || len(st.Streams) == 0 {
			lastErr = fmt.Errorf("drill: site %s: streams not listed: %s", st.Site, st.StreamsError)
			continue
		}
		return st.Streams, nil
	}
	if lastErr == nil {
		lastErr = errors.New("drill: no live site")
	}
	return nil, lastErr
}

// WaitLeaders polls until every stream has a leader at a live site. On a
// cluster attached to without an operator's token, which the leaders
// need, it waits until every live site is ready instead.
func (c *Cluster) WaitLeaders(ctx context.Context) error {
	if c.opsToken == "" {
		for i := range c.sites {
			if !c.Alive(i) {
				continue
			}
			if err := c.WaitReady(ctx, i); err != nil {
				return err
			}
		}
		return nil
	}
	err := poll(ctx, 250*time.Millisecond, func() (bool, error) {
		for i := range c.sites {
			if !c.Alive(i) {
				continue
			}
			st, err := c.Status(ctx, i)
			if err != nil || st.StreamsError != "" || len(st.Streams) == 0 {
				return false, nil
			}
			for _, s := range st.Streams {
				name, ok := strings.CutPrefix(s.Leader, "site-")
				if !ok {
					return false, nil
				}
				if j := c.Index(name); j < 0 || !c.Alive(j) {
					return false, nil
				}
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("drill: waiting for stream leaders: %w", err)
	}
	return nil
}

// WaitBalanced polls until the stream leaders are spread evenly: no site
// leads more than one stream more than any other.
func (c *Cluster) WaitBalanced(ctx context.Context) error {
	var count map[string]int
	err := poll(ctx, 500*time.Millisecond, func() (bool, error) {
		leaders, err := c.Leaders(ctx)
		if err != nil {
			return false, nil
		}
		count = map[string]int{}
		for _, s := range c.sites {
			count[s.name] = 0
		}
		for _, s := range leaders {
			count[s]++
		}
		lo, hi := len(leaders), 0
		for _, n := range count {
			lo, hi = min(lo, n), max(hi, n)
		}
		return hi-lo <= 1, nil
	})
	if err != nil {
		return fmt.Errorf("drill: waiting for evenly spread stream leaders (streams led per site: %v): %w", count, err)
	}
	return nil
}

// WaitCaughtUp polls until site i's read model has applied, on every
// stream, at least the last sequence the log held at another live site
// just before (so under load it is at most one poll behind), and, when
// replicas is set, no stream lists an unhealthy (offline or lagging)
// replica. It returns when that first held.
func (c *Cluster) WaitCaughtUp(ctx context.Context, i int, replicas bool) (time.Time, error) {
	var at time.Time
	var why string
	err := poll(ctx, 100*time.Millisecond, func() (bool, error) {
		why = ""
		var ref siteStatus
		got := false
		for j := range c.sites {
			if j == i || !c.Alive(j) {
				continue
			}
			st, err := c.Status(ctx, j)
			if err != nil || st.StreamsError != "" || len(st.Streams) == 0 {
				why = fmt.Sprintf("site %s lists no streams", c.sites[j].name)
				continue
			}
			ref, got = st, true
			break
		}
		if !got {
			return false, nil
		}
		st, err := c.Status(ctx, i)
		if err != nil {
			why = err.Error()
			return false, nil
		}
		for _, s := range ref.Streams {
			if st.Applied[s.Stream] < s.LastSeq {
				why = fmt.Sprintf("stream %s: applied %d of %d", s.Stream, st.Applied[s.Stream], s.LastSeq)
				return false, nil
			}
			if replicas && len(s.Unhealthy) > 0 {
				why = fmt.Sprintf("stream %s: replicas %v not current", s.Stream, s.Unhealthy)
				return false, nil
			}
		}
		at = time.Now()
		return true, nil
	})
	if err != nil {
		return at, fmt.Errorf("drill: waiting for site %s to catch up (%s): %w", c.sites[i].name, why, err)
	}
	return at, nil
}

// Close kills every process and stops the proxies; afterwards nothing
// can be started. It may be called more than once and concurrently with
// anything else (it is how an interrupted drill stops its sites). The
// data directories stay.
func (c *Cluster) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	var wg sync.WaitGroup
	for i := range c.sites {
		wg.Go(func() { _ = c.Kill(i) })
	}
	wg.Wait()
	c.closeAdmins()
	for _, p := range c.proxies {
		p.Close()
	}
	c.lbs.close()
}

// poll calls cond every interval until it reports true, returns an error,
// or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() (bool, error)) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// clusterPort finds a port free both on ip and on 127.0.0.1 and returns
// ip:port.
func clusterPort(ip net.IP) (string, error) {
	for range 50 {
		l, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			return "", fmt.Errorf("drill: listen on %s (the drill needs the 127.0.0.0/8 loopback range): %w", ip, err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		twin, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err != nil {
			continue
		}
		twin.Close()
		return fmt.Sprintf("%s:%d", ip, port), nil
	}
	return "", errNoPort
}

// tail returns up to the last n bytes of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}
