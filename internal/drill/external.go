package drill

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander/internal/balancer"
	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// The external topology is the production layout of README's "External
// NATS mode": per site one standalone nats-server process (tagged
// site:NAME, clustered with unique_tag "site:", sync_interval always, TLS
// on its client port and mutual TLS on its routes, admitting the
// deployment's users), GatewaysPerSite `salamander serve --nats`
// processes, and a load balancer (package balancer, run by the drill) in
// front of them whose URL is the site's. Burning a site SIGKILLs its
// server and all its gateways at once; its balancer stays up and answers
// 503 (a cloud balancer outliving its zone's machines), which sends the
// clients elsewhere as a refused connection would.

// gatewayAddr is one gateway process of a site of an external topology.
type gatewayAddr struct {
	instance string
	httpAddr string
	dataDir  string
	logPath  string
}

// url is the gateway's own base URL (not the balancer's).
func (g gatewayAddr) url() string { return "http://" + g.httpAddr }

// layoutExternal picks the ports of site s's server monitor and gateways;
// the site's URL becomes its balancer's.
func (c *Cluster) layoutExternal(s *siteProc) error {
	ports, err := freeport.Loopback(1 + c.cfg.GatewaysPerSite)
	if err != nil {
		return err
	}
	s.monitorAddr = fmt.Sprintf("127.0.0.1:%d", ports[0])
	for k := range c.cfg.GatewaysPerSite {
		inst := s.name + strconv.Itoa(k+1)
		s.gateways = append(s.gateways, gatewayAddr{
			instance: inst,
			httpAddr: fmt.Sprintf("127.0.0.1:%d", ports[1+k]),
			dataDir:  filepath.Join(s.dataDir, "gateway-"+inst),
			logPath:  filepath.Join(c.cfg.Dir, inst+".log"),
		})
	}
	s.logPath = filepath.Join(c.cfg.Dir, "nats-"+s.name+".log")
	return nil
}

// startExternal starts site i's nats-server, waits until its client port
// answers, and starts its gateways.
func (c *Cluster) startExternal(i int) error {
	s := c.sites[i]
	conf := filepath.Join(c.cfg.Dir, "nats-"+s.name+".conf")
	text, err := c.natsConf(s)
	if err != nil {
		return err
	}
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		return fmt.Errorf("drill: site %s server config: %w", s.name, err)
	}
	if err := c.spawn(i, RoleNATSServer, "", s.logPath, c.cfg.NATSServer, "-c", conf); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = poll(ctx, 50*time.Millisecond, func() (bool, error) {
		if !c.Alive(i) {
			return false, fmt.Errorf("nats-server of site %s exited; log %s:\n%s", s.name, s.logPath, tail(s.logPath, 2000))
		}
		conn, err := net.DialTimeout("tcp", s.natsAddr, time.Second)
		if err != nil {
			return false, nil
		}
		conn.Close()
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("drill: waiting for site %s's nats-server: %w", s.name, err)
	}
	var natsURLs, monitors []string
	for k := range c.sites {
		o := c.sites[(i+k)%len(c.sites)] // the site's own server first
		natsURLs = append(natsURLs, "tls://"+o.natsAddr)
		monitors = append(monitors, "http://"+o.monitorAddr)
	}
	for _, g := range s.gateways {
		args := []string{"serve",
			"--site", s.name,
			"--instance", g.instance,
			"--data", g.dataDir,
			"--http", g.httpAddr,
			"--nats", strings.Join(natsURLs, ","),
			"--nats-monitor", strings.Join(monitors, ","),
			"--sites", c.sitesFlag(),
			"--trusted-proxies", "127.0.0.1",
			"--partitions", strconv.Itoa(c.cfg.Partitions),
			"--log-level", c.cfg.SiteLogLevel,
			"--secrets", secrets.SiteFile(c.secrets, s.name),
		}
		if err := c.spawn(i, RoleGateway, g.url(), g.logPath, c.Binary(i), append(args, c.cfg.ServeArgs...)...); err != nil {
			return err
		}
	}
	return nil
}

// natsConf renders site s's nats-server configuration as an operator
// would write it (README, External NATS mode): the embedded server's
// settings, the deployment's users with the gateways' permissions, TLS
// from the site's certificate.
func (c *Cluster) natsConf(s *siteProc) (string, error) {
	siteFile := secrets.SiteFile(c.secrets, s.name)
	sec, err := secrets.LoadSite(siteFile)
	if err != nil {
		return "", fmt.Errorf("drill: %w", err)
	}
	if !sec.TLS() {
		return "", errors.New("drill: the external topology runs with TLS; the site file has no certificate")
	}
	dir := filepath.Dir(siteFile)
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	var users []string
	for _, u := range sec.Users {
		perm := ""
		if u.Role != secrets.RoleAdmin {
			site, ok := secrets.GatewaySite(u.Name)
			if !ok {
				return "", fmt.Errorf("drill: NATS user %s is a gateway's but not named gateway-SITE", u.Name)
			}
			pub, sub := jsstore.GatewayPermissions(site, c.cfg.Partitions)
			perm = fmt.Sprintf(", permissions: { publish: %s, subscribe: %s, allow_responses: true }", confList(pub), confList(sub))
		}
		users = append(users, fmt.Sprintf("    { user: %q, password: %q%s }", u.Name, u.PasswordHash, perm))
	}
	var routes []string
	for _, r := range s.routes {
		routes = append(routes, strconv.Quote("nats-route://"+secrets.RouteUser+":"+sec.RoutePassword+"@"+r))
	}
	tlsBlock := fmt.Sprintf("cert_file: %q, key_file: %q, ca_file: %q, timeout: 2", abs(sec.Cert), abs(sec.Key), abs(sec.CA))
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\n", "site-"+s.name)
	fmt.Fprintf(&b, "server_tags: [%q]\n", "site:"+s.name)
	fmt.Fprintf(&b, "listen: %q\n", s.natsAddr)
	fmt.Fprintf(&b, "http: %q\n", s.monitorAddr)
	b.WriteString("ping_interval: \"2s\"\nping_max: 3\n")
	fmt.Fprintf(&b, "tls { %s }\n", tlsBlock)
	fmt.Fprintf(&b, "authorization {\n  users: [\n%s\n  ]\n}\n", strings.Join(users, "\n"))
	fmt.Fprintf(&b, "jetstream { store_dir: %q, unique_tag: \"site:\", sync_interval: always }\n", filepath.Join(s.dataDir, "nats"))
	fmt.Fprintf(&b, "cluster {\n  name: salamander\n  listen: %q\n  pool_size: -1\n", s.clusterAddr)
	fmt.Fprintf(&b, "  authorization { user: %q, password: %q, timeout: 2 }\n", secrets.RouteUser, sec.RoutePassword)
	fmt.Fprintf(&b, "  tls { %s, verify: true }\n", tlsBlock)
	fmt.Fprintf(&b, "  routes: [%s]\n}\n", strings.Join(routes, ", "))
	return b.String(), nil
}

// confList renders subjects as a nats-server configuration list.
func confList(xs []string) string {
	q := make([]string, len(xs))
	for i, x := range xs {
		q[i] = strconv.Quote(x)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// balancers are the load balancers of an external topology's sites, one
// per site at the site's URL, running until close.
type balancers struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	srvs   []*http.Server
	bs     []*balancer.Balancer // by site index
}

// inService reports whether site i's balancer sends traffic to every one
// of its gateways (true without balancers).
func (l *balancers) inService(i int) bool {
	if l == nil {
		return true
	}
	b := l.bs[i]
	return len(b.Ready()) == len(b.Backends())
}

// startBalancers starts, for an external topology, each site's balancer
// in front of its gateways.
func (c *Cluster) startBalancers() error {
	if c.cfg.Topology != TopologyExternal {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.lbs = &balancers{cancel: cancel}
	for _, s := range c.sites {
		var backends []string
		for _, g := range s.gateways {
			backends = append(backends, g.url())
		}
		cfg := balancer.DefaultConfig(backends...)
		cfg.Interval = 250 * time.Millisecond
		cfg.Logger = c.cfg.Logger
		b, err := balancer.New(cfg)
		if err != nil {
			return fmt.Errorf("drill: %w", err)
		}
		addr := strings.TrimPrefix(s.url, "http://")
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("drill: site %s balancer: %w", s.name, err)
		}
		srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
		c.lbs.srvs = append(c.lbs.srvs, srv)
		c.lbs.bs = append(c.lbs.bs, b)
		c.lbs.wg.Go(func() { b.Run(ctx) })
		c.lbs.wg.Go(func() { _ = srv.Serve(ln) })
	}
	return nil
}

// close stops every balancer and waits for them.
func (l *balancers) close() {
	if l == nil {
		return
	}
	l.cancel()
	for _, s := range l.srvs {
		_ = s.Close()
	}
	l.wg.Wait()
}
