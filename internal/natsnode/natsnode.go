// Package natsnode owns the lifecycle of an embedded nats-server: the options
// that make a site's server part of Salamander's one JetStream cluster (site
// tag, unique placement per site, durable flushing), starting it, waiting
// until it accepts connections, and stopping it — abruptly or by first handing
// its stream leaderships to other sites (lame duck).
package natsnode

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// ClusterName is the NATS cluster name every Salamander site joins.
const ClusterName = "salamander"

// SiteTagPrefix prefixes a server's site tag; JetStream places one replica
// of every stream per distinct value (its unique_tag).
const SiteTagPrefix = "site:"

// Config describes one embedded server. Use DefaultConfig for defaults.
type Config struct {
	// Site is the site this server belongs to ("a", "b", …).
	Site string
	// Name is the server's name; unique in the cluster. Defaults to "site-<Site>".
	Name string
	// StoreDir holds JetStream's files.
	StoreDir string
	// ClientAddr is host:port for client connections ("127.0.0.1:0" picks a port).
	ClientAddr string
	// ClusterAddr is host:port for routes from the other servers; empty runs
	// a lone server outside any cluster.
	ClusterAddr string
	// Routes are the cluster addresses (host:port) of the other servers.
	Routes []string
	// SyncAlways flushes JetStream's files to disk on every write. It is what
	// makes an acknowledged write survive power loss (see DESIGN "Engine
	// facts"); turning it off is a documented speed-for-safety trade.
	SyncAlways bool
	// PingInterval detects dead peers; NATS's default of 2 minutes is far too slow.
	PingInterval time.Duration
	// LameDuckDuration bounds a planned shutdown that first moves leaderships.
	LameDuckDuration time.Duration
	// Users are the client users the server admits. Without any, anyone
	// who reaches the client port may do anything: only unit tests run
	// that way; a site always has users.
	Users []User
	// RoutePassword, when set, is required of every route (user "route"),
	// on top of the peer's certificate when RouteTLS is set.
	RoutePassword string
	// RouteTLS encrypts routes; it should require and verify the peer's
	// certificate both ways (mutual TLS).
	RouteTLS *tls.Config
	// ClientTLS encrypts the client port.
	ClientTLS *tls.Config
	// MonitorAddr, when set, serves the server's HTTP monitoring (/varz,
	// /jsz, …) at host:port.
	MonitorAddr string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// Debug passes the server's debug lines to Logger too.
	Debug bool
}

// User is a client user of the server.
type User struct {
	Name string
	// PasswordHash is a bcrypt hash of the password.
	PasswordHash string
	// Publish and Subscribe list the subjects the user may publish and
	// subscribe to (wildcards allowed); nil allows every subject.
	Publish, Subscribe []string
}

// RouteUser is the user name routes authenticate with.
const RouteUser = "route"

// DefaultConfig returns a Config with Salamander's defaults.
func DefaultConfig(site string) Config {
	return Config{
		Site:             site,
		ClientAddr:       "127.0.0.1:0",
		ClusterAddr:      "127.0.0.1:0",
		SyncAlways:       true,
		PingInterval:     2 * time.Second,
		LameDuckDuration: 5 * time.Second,
	}
}

// Node is a running embedded nats-server.
type Node struct {
	cfg Config
	srv *server.Server

	jsMu     sync.Mutex
	jsPaused *server.JetStreamConfig // set while JetStream is paused
}

// PauseJetStream stops this server's JetStream — its streams and Raft
// groups — keeping every file on disk. A server cut off from a majority
// pauses: otherwise its replicas campaign alone, raising their Raft terms,
// and when the cut heals the majority's leaders see the higher terms and
// step down, stalling writes at every site for an election.
func (n *Node) PauseJetStream() error {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	if n.jsPaused != nil {
		return nil
	}
	cfg := n.srv.JetStreamConfig()
	if cfg == nil {
		return errors.New("natsnode: JetStream is not running")
	}
	if err := n.srv.ShutdownJetStream(); err != nil {
		return fmt.Errorf("natsnode: pause JetStream: %w", err)
	}
	n.jsPaused = cfg
	return nil
}

// ResumeJetStream starts JetStream again from its files after
// PauseJetStream: the server rejoins its groups as a follower, with the
// terms it had, and catches up.
//
// Known upstream flaw (nats-server 2.15.2): EnableJetStream subscribes to
// the JetStream API before it sets up its cluster state, which its API
// handlers then read without a lock ("only set once"). A request another
// site sends in between (a status request, say) races that write; the race
// detector has caught it once in our tests. The sites keep such requests
// few: a balance round reads every stream's status once
// (site.balanceOnce).
func (n *Node) ResumeJetStream() error {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	if n.jsPaused == nil {
		return nil
	}
	cfg := *n.jsPaused
	cfg.StoreDir = n.cfg.StoreDir // EnableJetStream adds its own directory under it
	if err := n.srv.EnableJetStream(&cfg); err != nil {
		return fmt.Errorf("natsnode: resume JetStream: %w", err)
	}
	n.jsPaused = nil
	return nil
}

// JetStreamPaused reports whether PauseJetStream is in effect.
func (n *Node) JetStreamPaused() bool {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	return n.jsPaused != nil
}

// Start starts the server and waits until it accepts client connections.
// It does not wait for the JetStream cluster to form: that needs a quorum of
// sites, which may not be up yet.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsnode: create server for site %s: %w", cfg.Site, err)
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	adapter := &slogAdapter{l: logger.With("system", "nats", "server", opts.ServerName), fatal: make(chan string, 1)}
	srv.SetLoggerV2(adapter, cfg.Debug, false, false)
	srv.Start()
	// A server that has not opened its ports in 10 s never will; one that
	// reports a fatal error (typically: the address is taken) never will
	// either, and says why.
	deadline := time.Now().Add(10 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for !srv.ReadyForConnections(100 * time.Millisecond) {
		select {
		case msg := <-adapter.fatal:
			srv.Shutdown()
			return nil, fmt.Errorf("natsnode: server for site %s: %s", cfg.Site, msg)
		default:
		}
		if time.Now().After(deadline) {
			srv.Shutdown()
			return nil, fmt.Errorf("natsnode: server for site %s not ready by %s", cfg.Site, deadline.Format(time.TimeOnly))
		}
	}
	return &Node{cfg: cfg, srv: srv}, nil
}

func (c Config) options() (*server.Options, error) {
	if c.Site == "" {
		return nil, errors.New("natsnode: site is required")
	}
	if c.StoreDir == "" {
		return nil, errors.New("natsnode: store directory is required")
	}
	name := c.Name
	if name == "" {
		name = "site-" + c.Site
	}
	host, port, err := splitHostPort(c.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("natsnode: client address: %w", err)
	}
	routes := make([]*url.URL, 0, len(c.Routes))
	for _, r := range c.Routes {
		u, err := url.Parse("nats-route://" + r)
		if err != nil {
			return nil, fmt.Errorf("natsnode: route %q: %w", r, err)
		}
		if c.RoutePassword != "" {
			u.User = url.UserPassword(RouteUser, c.RoutePassword)
		}
		routes = append(routes, u)
	}
	opts := &server.Options{
		ServerName:          name,
		Host:                host,
		Port:                port,
		JetStream:           true,
		StoreDir:            c.StoreDir,
		SyncAlways:          c.SyncAlways,
		JetStreamUniqueTag:  SiteTagPrefix,
		Tags:                []string{SiteTagPrefix + c.Site},
		PingInterval:        c.PingInterval,
		MaxPingsOut:         3,
		LameDuckDuration:    c.LameDuckDuration,
		LameDuckGracePeriod: time.Second,
		NoSigs:              true,
		NoSystemAccount:     false,
	}
	if c.ClusterAddr != "" { // empty: a lone server, for tests and tiny set-ups
		chost, cport, err := splitHostPort(c.ClusterAddr)
		if err != nil {
			return nil, fmt.Errorf("natsnode: cluster address: %w", err)
		}
		opts.Cluster = server.ClusterOpts{Name: ClusterName, Host: chost, Port: cport, PoolSize: -1}
		if c.RoutePassword != "" {
			opts.Cluster.Username, opts.Cluster.Password = RouteUser, c.RoutePassword
		}
		if c.RouteTLS != nil {
			opts.Cluster.TLSConfig = c.RouteTLS
			opts.Cluster.TLSTimeout = 2
		}
		opts.Routes = routes
	}
	for _, u := range c.Users {
		su := &server.User{Username: u.Name, Password: u.PasswordHash}
		if u.Publish != nil || u.Subscribe != nil {
			su.Permissions = &server.Permissions{
				Publish:   &server.SubjectPermission{Allow: u.Publish},
				Subscribe: &server.SubjectPermission{Allow: u.Subscribe},
			}
		}
		opts.Users = append(opts.Users, su)
	}
	if c.MonitorAddr != "" {
		mhost, mport, err := splitHostPort(c.MonitorAddr)
		if err != nil {
			return nil, fmt.Errorf("natsnode: monitor address: %w", err)
		}
		opts.HTTPHost, opts.HTTPPort = mhost, mport
	}
	if c.ClientTLS != nil {
		opts.TLSConfig = c.ClientTLS
		opts.TLS = true
		opts.TLSTimeout = 2
	}
	if c.SyncAlways {
		opts.SyncInterval = 2 * time.Minute
	}
	return opts, nil
}

// ClientURL is the URL clients (the site's gateway) connect to.
func (n *Node) ClientURL() string { return n.srv.ClientURL() }

// ClusterAddr is the address other servers route to.
func (n *Node) ClusterAddr() string {
	if a := n.srv.ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Name is the server's name in the cluster.
func (n *Node) Name() string { return n.srv.Name() }

// ConnectedPeers counts the distinct other servers this one has a route to.
func (n *Node) ConnectedPeers() int {
	rz, err := n.srv.Routez(&server.RoutezOptions{})
	if err != nil {
		return 0
	}
	peers := map[string]bool{}
	for _, r := range rz.Routes {
		if r.RemoteName != "" {
			peers[r.RemoteName] = true
		} else {
			peers[r.RemoteID] = true
		}
	}
	return len(peers)
}

// Server exposes the embedded server for monitoring (e.g. Jsz, Varz).
func (n *Node) Server() *server.Server { return n.srv }

// Shutdown stops the server at once, as a crash would look to its peers
// (minus the lost page cache). Leaderships it held are re-elected elsewhere.
func (n *Node) Shutdown() {
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// LameDuckShutdown hands stream and meta leaderships to other servers, then
// stops. Planned stops (rolling restarts, drains) use it: leadership moves in
// well under a second instead of a 4-9 s election.
func (n *Node) LameDuckShutdown() {
	n.srv.LameDuckShutdown()
	n.srv.WaitForShutdown()
}

func splitHostPort(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// slogAdapter passes the server's log to slog. Fatal errors are also
// handed to Start, which fails with them. Route-connection retries are
// expected while peers start or are down, so they are logged at Info: the
// site's own isolation watch warns when peers are really lost.
type slogAdapter struct {
	l     *slog.Logger
	fatal chan string
}

func (a *slogAdapter) Noticef(f string, v ...any) { a.l.Info(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Warnf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.HasPrefix(msg, "Waiting for routing") || strings.Contains(msg, "not established contact with a meta leader") {
		a.l.Info(msg)
		return
	}
	a.l.Warn(msg)
}
func (a *slogAdapter) Fatalf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	a.l.Error(msg)
	select {
	case a.fatal <- msg:
	default:
	}
}
func (a *slogAdapter) Errorf(f string, v ...any) {
	msg := fmt.Sprintf(f, v...)
	if strings.Contains(msg, "Error trying to connect to route") {
		a.l.Info(msg)
		return
	}
	a.l.Error(msg)
}
func (a *slogAdapter) Debugf(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a *slogAdapter) Tracef(f string, v ...any) { a.l.Debug(fmt.Sprintf(f, v...)) }
