// Package natsnode owns the lifecycle of an embedded nats-server: the options
// that make a site's server part of Salamander's one JetStream cluster (site
// tag, unique placement per site, durable flushing), starting it, waiting
// until it accepts connections, pausing its JetStream while its site is cut
// off and resuming it (each by restarting the server on the same ports and
// files), and stopping
// it — abruptly or by first handing its stream leaderships to other sites
// (lame duck).
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
	// AllowResponses lets a user limited by Publish answer a request it
	// was sent (once, within 2 minutes: allow_responses), whatever its
	// reply subject.
	AllowResponses bool
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

	// mu guards srv: ResumeJetStream replaces the server with a new one
	// (same name, ports and files), and Shutdown must stop whichever runs.
	mu     sync.RWMutex
	srv    *server.Server
	closed bool // Shutdown or LameDuckShutdown ran: start nothing more

	jsMu     sync.Mutex
	jsPaused bool // PauseJetStream is in effect
}

// server is the server running now.
func (n *Node) server() *server.Server {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.srv
}

// PauseJetStream stops this server's JetStream — its streams and Raft
// groups — keeping every file on disk. A server cut off from a majority
// pauses: otherwise its replicas campaign alone, raising their Raft terms,
// and when the cut heals the majority's leaders see the higher terms and
// step down, stalling writes at every site for an election.
//
// It restarts the server — same name, ports and files — without
// JetStream, rather than calling the server's ShutdownJetStream: that one,
// on the cluster's meta leader, first hands the leadership over and waits
// 2 s for it, which a cut-off server cannot do; its replicas could
// campaign meanwhile (measured: a pause 3.3 s after the site isolated
// itself, four leaders stepping down at the heal). A stopping server steps
// its leaders down without waiting. The server keeps its routes and
// clients; connections to it drop once and reconnect (the site's own
// through InProcessConn, which waits for the new server).
func (n *Node) PauseJetStream() error {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	if n.jsPaused {
		return nil
	}
	// Paused from here on even if the new server does not start: this one
	// has stopped, and ResumeJetStream starts the next with JetStream.
	n.jsPaused = true
	if err := n.restart(false); err != nil {
		return fmt.Errorf("natsnode: pause JetStream: %w", err)
	}
	return nil
}

// ResumeJetStream ends PauseJetStream: it restarts the server with
// JetStream — same name, ports and files — and the new server rejoins its
// groups as a follower, with the terms it had, and catches up.
//
// Why a restart and not the server's EnableJetStream (nats-server 2.15.2):
// EnableJetStream subscribes to the JetStream API before it sets up its
// cluster state, which the API handlers read without a lock ("only set
// once"); every site's requests (the log check asks for every stream's
// state every 2 s) reach this server over its routes meanwhile, and the
// race detector caught that race in CI. A starting server enables
// JetStream before it accepts routes or clients, so nothing can ask it
// anything until its cluster state is set up.
func (n *Node) ResumeJetStream() error {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	if !n.jsPaused {
		return nil
	}
	if err := n.restart(true); err != nil {
		return fmt.Errorf("natsnode: resume JetStream: %w", err)
	}
	n.jsPaused = false
	return nil
}

// restartTries bounds how often restart tries to start the new server
// (a port just closed can be taken by another process in between).
const restartTries = 5

// restart stops the server and starts a new one on the ports it had, with
// or without JetStream.
func (n *Node) restart(jetStream bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return errors.New("the server was shut down")
	}
	n.srv.Shutdown() // a no-op when an earlier restart left it stopped
	n.srv.WaitForShutdown()
	for try := 1; ; try++ {
		// The addresses in n.cfg name the ports the first server got.
		opts, err := n.cfg.options()
		if err != nil {
			return err
		}
		opts.JetStream = jetStream
		srv, err := startServer(context.Background(), n.cfg, opts)
		if err == nil {
			n.srv = srv
			return nil
		}
		if try == restartTries {
			return err
		}
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
	}
}

// JetStreamPaused reports whether PauseJetStream is in effect.
func (n *Node) JetStreamPaused() bool {
	n.jsMu.Lock()
	defer n.jsMu.Unlock()
	return n.jsPaused
}

// InProcessConn connects a client to the running server through a pipe
// (nats.InProcessServer). While ResumeJetStream restarts the server it
// waits for the new one, so a reconnecting client finds it at once.
func (n *Node) InProcessConn() (net.Conn, error) {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.closed {
		return nil, errors.New("natsnode: the server was shut down")
	}
	return n.srv.InProcessConn()
}

// Start starts the server and waits until it accepts client connections.
// It does not wait for the JetStream cluster to form: that needs a quorum of
// sites, which may not be up yet.
func Start(ctx context.Context, cfg Config) (*Node, error) {
	opts, err := cfg.options()
	if err != nil {
		return nil, err
	}
	srv, err := startServer(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	return &Node{cfg: cfg.withPortsOf(srv), srv: srv}, nil
}

// withPortsOf returns c with the ports srv listens on in place of any
// port 0, so that a restarted server (ResumeJetStream) listens where the
// first one did: routes and clients find it there.
func (c Config) withPortsOf(srv *server.Server) Config {
	pin := func(addr string, port int) string {
		host, _, err := net.SplitHostPort(addr)
		if err != nil || port <= 0 {
			return addr
		}
		return net.JoinHostPort(host, strconv.Itoa(port))
	}
	if a, ok := srv.Addr().(*net.TCPAddr); ok {
		c.ClientAddr = pin(c.ClientAddr, a.Port)
	}
	if a := srv.ClusterAddr(); a != nil && c.ClusterAddr != "" {
		c.ClusterAddr = pin(c.ClusterAddr, a.Port)
	}
	if a := srv.MonitorAddr(); a != nil && c.MonitorAddr != "" {
		c.MonitorAddr = pin(c.MonitorAddr, a.Port)
	}
	return c
}

// Running reports whether the server runs (false after a shutdown, or
// when ResumeJetStream could not start the new server).
func (n *Node) Running() bool { return n.server().Running() }

// startServer starts a server with opts and waits until it accepts client
// connections.
func startServer(ctx context.Context, cfg Config, opts *server.Options) (*server.Server, error) {
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
	return srv, nil
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
			if u.AllowResponses {
				su.Permissions.Response = &server.ResponsePermission{} // the server's defaults
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
func (n *Node) ClientURL() string { return n.server().ClientURL() }

// ClusterAddr is the address other servers route to.
func (n *Node) ClusterAddr() string {
	if a := n.server().ClusterAddr(); a != nil {
		return a.String()
	}
	return ""
}

// Name is the server's name in the cluster.
func (n *Node) Name() string { return n.server().Name() }

// ConnectedPeers counts the distinct other servers this one has a route to.
func (n *Node) ConnectedPeers() int {
	rz, err := n.server().Routez(&server.RoutezOptions{})
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

// Server exposes the running server for monitoring (e.g. Jsz, Varz). It
// changes when ResumeJetStream restarts the server: ask again rather than
// keep it.
func (n *Node) Server() *server.Server { return n.server() }

// Shutdown stops the server at once, as a crash would look to its peers
// (minus the lost page cache). Leaderships it held are re-elected elsewhere.
func (n *Node) Shutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
}

// LameDuckShutdown hands stream and meta leaderships to other servers, then
// stops. Planned stops (rolling restarts, drains) use it: leadership moves in
// well under a second instead of a 4-9 s election.
func (n *Node) LameDuckShutdown() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
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
