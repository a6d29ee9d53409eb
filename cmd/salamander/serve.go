package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/site"
	"github.com/salamander-chat/salamander/internal/view"
	"golang.org/x/crypto/bcrypt"
)

// serveConfig is everything `serve` can be told, by flags or by a JSON
// config file with the same names (flags given on the command line win).
type serveConfig struct {
	Site          string `json:"site"`
	Data          string `json:"data"`
	HTTP          string `json:"http"`
	NATS          string `json:"nats"`
	NATSListen    string `json:"nats_listen"`
	ClusterListen string `json:"cluster_listen"`
	Routes        string `json:"routes"`
	Sites         string `json:"sites"`
	Partitions    int    `json:"partitions"`
	Sync          string `json:"sync"`
	BcryptCost    int    `json:"bcrypt_cost"`
	LogLevel      string `json:"log_level"`
	Pprof         string `json:"pprof"`
	Secrets       string `json:"secrets"`
	TLSCert       string `json:"tls_cert"`
	TLSKey        string `json:"tls_key"`
	TrustedProxy  string `json:"trusted_proxies"`
	Origins       string `json:"allowed_origins"`
	LimitExempt   string `json:"rate_limit_exempt"`
	MetricsFrom   string `json:"metrics_from"`
	NATSMonitor   string `json:"nats_monitor"`
	Instance      string `json:"instance"`
	RecordSlots   int    `json:"record_slots"`
	WindowIdle    string `json:"window_idle"`
	PresenceGrace string `json:"presence_grace"`

	// set names the settings given, on the command line or in the config
	// file (by flag name): some only make sense with others.
	set map[string]bool `json:"-"`
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseServeFlagsTo(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, c.LogLevel)
	if err != nil {
		return err
	}
	cfg, err := c.siteConfig()
	if err != nil {
		return err
	}
	cfg.Logger = log
	if err := setRecordSlots(c.RecordSlots); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	privateFiles()
	s, err := site.Start(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "site %s serving at %s\n", cfg.Site, s.URL())
	if c.Pprof != "" {
		stop, url, err := startPprof(c.Pprof, log)
		if err != nil {
			s.Close()
			return err
		}
		defer stop()
		fmt.Fprintf(stdout, "profiles at %s\n", url)
	}
	<-ctx.Done()
	log.Info("stopping: handing leaderships to other sites")
	s.Close()
	return nil
}

// parseServeFlags parses serve's flags (and --config file), discarding usage output.
func parseServeFlags(args []string) (serveConfig, error) { return parseServeFlagsTo(args, io.Discard) }

func parseServeFlagsTo(args []string, stderr io.Writer) (serveConfig, error) {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c serveConfig
	configFile := fs.String("config", "", "JSON file with any of the settings below (flags override it)")
	fs.StringVar(&c.Site, "site", "", "this site's name (required), e.g. a")
	fs.StringVar(&c.Data, "data", "", "data directory (default ./salamander-data/SITE)")
	fs.StringVar(&c.HTTP, "http", "127.0.0.1:8080", "HTTP and WebSocket listen address")
	fs.StringVar(&c.Secrets, "secrets", "", "this site's file from salamander certs (required): its NATS credentials, the users its server admits, its certificates")
	fs.StringVar(&c.TLSCert, "tls-cert", "", "PEM certificate (chain) for HTTPS; with --tls-key the API is served over HTTPS only, with HSTS, and the files are re-read when they change")
	fs.StringVar(&c.TLSKey, "tls-key", "", "PEM private key for --tls-cert")
	fs.StringVar(&c.Origins, "allowed-origins", "", "comma-separated browser origins (https://chat.example.com) that may call this site's API and open WebSockets, besides every site's own (from --sites): e.g. a load balancer's name the web client is served under")
	fs.StringVar(&c.TrustedProxy, "trusted-proxies", "", "comma-separated addresses or CIDRs of reverse proxies and load balancers in front of this site: rate limits count their requests against the client their X-Forwarded-For names")
	fs.StringVar(&c.LimitExempt, "rate-limit-exempt", "127.0.0.0/8,::1/128", "comma-separated CIDRs no rate limit applies to (failed logins per account and per device excepted), or none; such a peer sending X-Forwarded-For is a proxy: its clients are counted")
	fs.StringVar(&c.MetricsFrom, "metrics-from", defaultMetricsFrom, "comma-separated CIDRs that may read /metrics without a token (the monitoring networks; behind --trusted-proxies, the client's address counts), none, or any; anyone else needs an operator's token")
	fs.StringVar(&c.NATS, "nats", "", "comma-separated URLs of an existing NATS JetStream cluster; no server is embedded")
	fs.StringVar(&c.NATSMonitor, "nats-monitor", "", "with --nats: comma-separated monitoring URLs of the cluster's servers (http://host:8222), read to check that they fsync every commit")
	fs.StringVar(&c.NATSListen, "nats-listen", "127.0.0.1:4222", "embedded NATS client listen address")
	fs.StringVar(&c.ClusterListen, "cluster-listen", "127.0.0.1:6222", "embedded NATS cluster (route) listen address")
	fs.StringVar(&c.Routes, "routes", "", "comma-separated cluster addresses (host:port) of the other sites' NATS servers")
	fs.StringVar(&c.Sites, "sites", "", "every site's public URL for client failover: a=http://…,b=http://…")
	fs.IntVar(&c.Partitions, "partitions", 6, "room partitions (streams) when creating a new cluster")
	fs.StringVar(&c.Sync, "sync", "always", "JetStream disk flush: always (an ack survives power loss) or interval (faster; a crash of a quorum may lose the last 2 minutes)")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", bcrypt.DefaultCost, "password hashing cost, 4-31 (lower is faster to sign up and log in, and cheaper to guess; benchmarks use 4)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.Instance, "instance", "", "this process's name among the site's gateways, on every metric (label instance) and in /v1/ops/site (default: this host's name and the port of --http)")
	fs.IntVar(&c.RecordSlots, "record-slots", 0, "replicated records this process keeps in flight, all partitions together, 1-1024 (0: one per core); see README, External NATS mode")
	fs.StringVar(&c.WindowIdle, "window-idle", view.WindowIdle.String(), "how long a room's dedupe window (client ids of its newest messages, up to 48 KiB) stays in memory after the room's last message, 10s-168h; longer keeps more memory, shorter reads windows back from disk more often")
	fs.StringVar(&c.PresenceGrace, "presence-grace", gateway.DefaultPresenceGrace.String(), fmt.Sprintf("how long a user whose last device left this process is still shown online, and how long the other processes keep this one's users when it stops, so that a reconnect elsewhere (a restart, a drain) shows no offline and online again; %v-%v, the upper bound being the presence TTL (a stopped process's users are kept no longer than a dead one's)", minPresenceGrace, maxPresenceGrace))
	fs.StringVar(&c.Pprof, "pprof", "", "serve Go profiles (net/http/pprof) at http://ADDR/debug/pprof/ on a listener of their own; a bare :PORT binds loopback (default: off)")
	if err := fs.Parse(args); err != nil {
		return c, flagError(err)
	}
	c.set = map[string]bool{}
	if *configFile != "" {
		if err := loadServeConfig(*configFile, fs, &c); err != nil {
			return c, err
		}
	}
	fs.Visit(func(f *flag.Flag) { c.set[f.Name] = true })
	return c, nil
}

// loadServeConfig reads a JSON config file into c; flags set on the
// command line keep their values (they override the file).
func loadServeConfig(path string, fs *flag.FlagSet, c *serveConfig) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	set := map[string]string{} // taken before the file overwrites the variables
	fs.Visit(func(f *flag.Flag) { set[f.Name] = f.Value.String() })
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("config %s: one JSON object expected; something follows it", path)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(b, &keys); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	for k := range keys {
		// JSON fields match whatever their case; the settings' names are
		// lower case, and a key in another case would be taken without
		// counting as set (and so escape the checks that refuse a
		// setting that does nothing).
		if k != strings.ToLower(k) {
			return fmt.Errorf("config %s: key %q: the keys are lower case (%q)", path, k, strings.ToLower(k))
		}
		c.set[strings.ReplaceAll(k, "_", "-")] = true
	}
	// Re-apply the command line over the file.
	for name, v := range set {
		if err := fs.Set(name, v); err != nil {
			return fmt.Errorf("flag --%s: %w", name, err)
		}
	}
	return nil
}

// plainOnLoopbackOnly refuses a site file without certificates (`certs
// --plain`) unless every link it would carry stays on this host: its
// passwords would cross the network in the clear, and the route password
// alone lets a server join the cluster and read or write the whole log.
func plainOnLoopbackOnly(sec *secrets.Site, cfg site.Config) error {
	if sec.TLS() {
		return nil
	}
	var off []string
	addrs := append([]string{}, cfg.NATS.Routes...)
	if len(cfg.NATSURLs) == 0 {
		addrs = append(addrs, cfg.NATS.ClientAddr, cfg.NATS.ClusterAddr)
	}
	for _, u := range cfg.NATSURLs {
		pu, err := url.Parse(u)
		switch {
		case err == nil && pu.Scheme == "tls":
			// TLS to the cluster's servers, verified against the
			// system's roots: the password does not cross in the clear.
		case err == nil && pu.Host != "":
			addrs = append(addrs, pu.Host)
		default:
			addrs = append(addrs, u)
		}
	}
	for _, a := range addrs {
		if a != "" && !loopbackAddr(a) {
			off = append(off, a)
		}
	}
	if len(off) > 0 {
		return fmt.Errorf("serve: %s has no certificates (made with certs --plain: for loopback only), and %s "+
			"would carry its passwords unencrypted off this host; make the deployment's secrets without --plain",
			sec.Site, strings.Join(off, ", "))
	}
	return nil
}

// loopbackAddr says whether host:port (or a bare host) names this host
// only: a loopback address or "localhost" (an empty host is every
// interface).
func loopbackAddr(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

func (c serveConfig) siteConfig() (site.Config, error) {
	if c.Site == "" {
		return site.Config{}, fmt.Errorf("serve: --site is required")
	}
	data := c.Data
	if data == "" {
		data = filepath.Join("salamander-data", c.Site)
	}
	cfg := site.DefaultConfig(c.Site, data)
	if c.Secrets == "" {
		return cfg, fmt.Errorf("serve: --secrets is required: create a deployment's secrets with " +
			"`salamander certs --dir DIR --sites a,b,c --hosts …` and pass DIR/site-SITE/site.json")
	}
	sec, err := secrets.LoadSite(c.Secrets)
	if err != nil {
		return cfg, fmt.Errorf("serve: %w", err)
	}
	if sec.Site != c.Site {
		return cfg, fmt.Errorf("serve: %s is site %s's file, not site %s's", c.Secrets, sec.Site, c.Site)
	}
	cfg.Secrets = sec
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return cfg, fmt.Errorf("serve: --tls-cert and --tls-key go together")
	}
	cfg.TLSCert, cfg.TLSKey = c.TLSCert, c.TLSKey
	for _, o := range splitList(c.Origins) {
		if u, err := url.Parse(o); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
			return cfg, fmt.Errorf("serve: --allowed-origins: %q is not an origin like https://chat.example.com", o)
		}
		cfg.AllowedOrigins = append(cfg.AllowedOrigins, o)
	}
	if cfg.TrustedProxies, err = parsePrefixes(c.TrustedProxy); err != nil {
		return cfg, fmt.Errorf("serve: --trusted-proxies: %w", err)
	}
	exempt, err := parsePrefixes(c.LimitExempt)
	if err != nil {
		return cfg, fmt.Errorf("serve: --rate-limit-exempt: %w", err)
	}
	cfg.LimitExempt = &exempt
	metricsFrom, err := parseMetricsFrom(c.MetricsFrom)
	if err != nil {
		return cfg, fmt.Errorf("serve: --metrics-from: %w", err)
	}
	cfg.MetricsFrom = &metricsFrom
	cfg.HTTPAddr = c.HTTP
	cfg.NATSURLs = splitList(c.NATS)
	cfg.NATSMonitor = splitList(c.NATSMonitor)
	if err := c.checkEngineFlags(len(cfg.NATSURLs) > 0); err != nil {
		return cfg, err
	}
	if cfg.Instance, err = c.instance(); err != nil {
		return cfg, err
	}
	cfg.NATS.ClientAddr = c.NATSListen
	cfg.NATS.ClusterAddr = c.ClusterListen
	cfg.NATS.Routes = splitList(c.Routes)
	if err := plainOnLoopbackOnly(sec, cfg); err != nil {
		return cfg, err
	}
	if c.Partitions < 1 || c.Partitions > 1024 {
		return cfg, fmt.Errorf("serve: --partitions must be 1-1024")
	}
	cfg.Partitions = c.Partitions
	if err := checkRecordSlots(c.RecordSlots); err != nil {
		return cfg, fmt.Errorf("serve: %w", err)
	}
	if cfg.WindowIdle, err = parseWindowIdle(c.WindowIdle); err != nil {
		return cfg, fmt.Errorf("serve: %w", err)
	}
	if cfg.PresenceGrace, err = parsePresenceGrace(c.PresenceGrace); err != nil {
		return cfg, fmt.Errorf("serve: %w", err)
	}
	if c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost {
		return cfg, fmt.Errorf("serve: --bcrypt-cost must be %d-%d", bcrypt.MinCost, bcrypt.MaxCost)
	}
	cfg.BcryptCost = c.BcryptCost
	switch c.Sync {
	case "always":
		cfg.NATS.SyncAlways = true
	case "interval":
		cfg.NATS.SyncAlways = false
	default:
		return cfg, fmt.Errorf("serve: --sync must be always or interval")
	}
	sites, err := parseSites(c.Sites)
	if err != nil {
		return cfg, err
	}
	if err := checkSites(sites, c.Site, len(cfg.NATSURLs) == 0, len(cfg.NATS.Routes)); err != nil {
		return cfg, err
	}
	cfg.Sites = sites
	return cfg, nil
}

// checkSites refuses a --sites list that does not name the deployment's
// sites once each: the site counts the deployment's sites from it, and a
// site that hears from no more than half of them stops serving as cut off
// (a fourth entry in a three-site deployment would make each survivor of
// a fire refuse every request). It must name this site, and in embedded
// mode as many sites as this one's routes reach, and itself.
func checkSites(sites []gateway.SiteInfo, self string, embedded bool, routes int) error {
	if len(sites) == 0 {
		return nil
	}
	seen := map[string]bool{}
	for _, s := range sites {
		if seen[s.Name] {
			return fmt.Errorf("serve: --sites names site %s twice", s.Name)
		}
		seen[s.Name] = true
	}
	if !seen[self] {
		return fmt.Errorf("serve: --sites does not name this site, %s: list every site of the deployment, this one too", self)
	}
	if embedded && len(sites) != routes+1 {
		return fmt.Errorf("serve: --sites names %d sites, but --routes reach %d others: list every site of the deployment once",
			len(sites), routes)
	}
	return nil
}

// Bounds of --window-idle: below a few seconds windows would be read back
// from disk for nearly every message of a room; a week keeps nearly every
// room's window for good.
const (
	minWindowIdle = 10 * time.Second
	maxWindowIdle = 168 * time.Hour
)

// parseWindowIdle reads a --window-idle value ("" is the default).
func parseWindowIdle(s string) (time.Duration, error) {
	if s == "" {
		return view.WindowIdle, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < minWindowIdle || d > maxWindowIdle {
		return 0, fmt.Errorf("--window-idle must be a duration from %v to %v, like 30m", minWindowIdle, maxWindowIdle)
	}
	return d, nil
}

// Bounds of --presence-grace: under a second, a device's ordinary
// reconnect to another process (hundreds of milliseconds) would show its
// user offline and online again; the other processes keep a stopped
// process's users for its grace but never past its TTL (as if it had
// died), so a longer grace would not cover a stop.
const (
	minPresenceGrace = time.Second
	maxPresenceGrace = gateway.DefaultPresenceTTL
)

// parsePresenceGrace reads a --presence-grace value ("" is the default).
func parsePresenceGrace(s string) (time.Duration, error) {
	if s == "" {
		return gateway.DefaultPresenceGrace, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < minPresenceGrace || d > maxPresenceGrace {
		return 0, fmt.Errorf("--presence-grace must be a duration from %v to %v, like 5s", minPresenceGrace, maxPresenceGrace)
	}
	return d, nil
}

// checkRecordSlots refuses a --record-slots value (serve, dev, bench)
// outside 0 (the default, one per core) to jsstore.MaxRecordSlots.
func checkRecordSlots(n int) error {
	if n < 0 || n > jsstore.MaxRecordSlots {
		return fmt.Errorf("--record-slots must be 0 (one per core) or 1-%d", jsstore.MaxRecordSlots)
	}
	return nil
}

// setRecordSlots bounds the replicated records this process keeps in
// flight (n: 0 keeps the default).
func setRecordSlots(n int) error {
	if err := checkRecordSlots(n); err != nil || n == 0 {
		return err
	}
	return jsstore.SetRecordSlots(n)
}

// embeddedOnly are the settings of the embedded NATS server, and why an
// external cluster has no use for them.
var embeddedOnly = []struct{ flag, instead string }{
	{"sync", "set sync_interval: always in the servers' own configuration (--nats-monitor checks it)"},
	{"routes", "the servers' cluster is configured in their own configuration"},
	{"nats-listen", "no NATS server is embedded; --nats names the cluster's servers"},
	{"cluster-listen", "no NATS server is embedded; the servers' cluster is configured in their own configuration"},
}

// checkEngineFlags refuses settings that the engine in use would ignore:
// an operator who gives them expects them to take effect.
func (c serveConfig) checkEngineFlags(external bool) error {
	if !external {
		if c.set["nats-monitor"] {
			return fmt.Errorf("serve: --nats-monitor goes with --nats (an external cluster); the embedded server is checked by this process")
		}
		return nil
	}
	for _, e := range embeddedOnly {
		if c.set[e.flag] {
			return fmt.Errorf("serve: --%s has no effect with --nats: %s; remove it", e.flag, e.instead)
		}
	}
	return nil
}

// instance is --instance, or this host's name and the port of --http.
func (c serveConfig) instance() (string, error) {
	if c.Instance != "" {
		return c.Instance, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("serve: no --instance, and this host's name is unknown: %w", err)
	}
	_, port, err := net.SplitHostPort(c.HTTP)
	if err != nil {
		return "", fmt.Errorf("serve: --http %q: %w", c.HTTP, err)
	}
	return net.JoinHostPort(host, port), nil
}

// defaultMetricsFrom is gateway.DefaultMetricsFrom as --metrics-from says it.
var defaultMetricsFrom = func() string {
	var out []string
	for _, p := range gateway.DefaultMetricsFrom() {
		out = append(out, p.String())
	}
	return strings.Join(out, ",")
}()

// parseMetricsFrom parses --metrics-from: parsePrefixes, or "any".
func parseMetricsFrom(s string) ([]netip.Prefix, error) {
	if s == "any" {
		return []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, nil
	}
	return parsePrefixes(s)
}

// parsePrefixes parses comma-separated addresses and CIDRs ("none" or ""
// for none).
func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	if s == "none" {
		return out, nil
	}
	for _, item := range splitList(s) {
		if p, err := netip.ParsePrefix(item); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", item)
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// parseSites parses "a=http://…,b=http://…".
func parseSites(s string) ([]gateway.SiteInfo, error) {
	var out []gateway.SiteInfo
	for _, item := range splitList(s) {
		name, raw, ok := strings.Cut(item, "=")
		u, err := url.Parse(raw)
		if !ok || name == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("serve: --sites item %q is not NAME=http(s)://HOST[:PORT][/PATH]", item)
		}
		out = append(out, gateway.SiteInfo{Name: name, URL: raw})
	}
	return out, nil
}
