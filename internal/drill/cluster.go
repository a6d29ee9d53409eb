package drill

import (
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
	"strconv"
	"strings"
	"sync"
	"time"
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
}

// Cluster is three `salamander serve` processes on loopback, one per site,
// whose NATS routes all run through link proxies owned by the Cluster so
// that any site can be cut off from the others while it stays up.
//
// Each site's real cluster port listens on its own loopback address
// (127.0.0.2, .3, .4), a port that is free on 127.0.0.1: NATS gossips
// route addresses built from a peer's source address (the proxies dial
// from 127.0.0.1) and its real port, so a gossiped address is refused and
// never bypasses a proxy (a server gives up on a refused gossiped route).
type Cluster struct {
	cfg     ClusterConfig
	log     *slog.Logger
	hc      *http.Client
	sites   []*siteProc
	proxies []*linkProxy

	mu sync.Mutex // guards siteProc.proc
}

// siteProc is one site's fixed addresses and its current process.
type siteProc struct {
	name        string
	httpAddr    string
	natsAddr    string
	clusterAddr string
	dataDir     string
	logPath     string
	routes      []string
	proc        *process // nil while down
}

// process is one running `salamander serve`.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited and been reaped
	log  *os.File
}

// siteStatus is the part of GET /v1/status the drill reads.
type siteStatus struct {
	Site    string `json:"site"`
	Streams []struct {
		Stream  string `json:"stream"`
		Leader  string `json:"leader"`
		LastSeq uint64 `json:"last_seq"`
	} `json:"streams"`
	StreamsError string `json:"streams_error"`
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
	c.log.Info("sites ready; waiting for stream leaders")
	if err := c.WaitLeaders(ctx); err != nil {
		return nil, err
	}
	c.log.Info("every stream has a leader")
	ok = true
	return c, nil
}

// layout picks every port and starts the six link proxies.
func (c *Cluster) layout() error {
	for i, name := range SiteNames {
		ports, err := freePorts(2)
		if err != nil {
			return err
		}
		clusterAddr, err := clusterPort(net.IPv4(127, 0, 0, byte(2+i)))
		if err != nil {
			return err
		}
		dir := filepath.Join(c.cfg.Dir, name)
		s := &siteProc{
			name:        name,
			httpAddr:    fmt.Sprintf("127.0.0.1:%d", ports[0]),
			natsAddr:    fmt.Sprintf("127.0.0.1:%d", ports[1]),
			clusterAddr: clusterAddr,
			dataDir:     dir,
			logPath:     filepath.Join(c.cfg.Dir, name+".log"),
		}
		c.sites = append(c.sites, s)
	}
	for _, from := range c.sites {
		for _, to := range c.sites {
			if from == to {
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

// start launches site i's process on its fixed ports and data directory.
func (c *Cluster) start(i int) error {
	s := c.sites[i]
	if err := os.MkdirAll(s.dataDir, 0o755); err != nil {
		return fmt.Errorf("drill: site %s data dir: %w", s.name, err)
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("drill: site %s log: %w", s.name, err)
	}
	var sites []string
	for _, o := range c.sites {
		sites = append(sites, o.name+"=http://"+o.httpAddr)
	}
	cmd := exec.Command(c.cfg.Binary, "serve",
		"--site", s.name,
		"--data", s.dataDir,
		"--http", s.httpAddr,
		"--nats-listen", s.natsAddr,
		"--cluster-listen", s.clusterAddr,
		"--routes", strings.Join(s.routes, ","),
		"--sites", strings.Join(sites, ","),
		"--partitions", strconv.Itoa(c.cfg.Partitions),
		"--log-level", c.cfg.SiteLogLevel,
	)
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("drill: start site %s: %w", s.name, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{}), log: logf}
	// The goroutine reaps the process; whoever stops it waits on done.
	go func() {
		_ = cmd.Wait() // the exit status of a killed site is expected
		logf.Close()
		close(p.done)
	}()
	c.mu.Lock()
	s.proc = p
	c.mu.Unlock()
	c.log.Info("site started", "site", s.name, "pid", cmd.Process.Pid, "http", s.httpAddr)
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
func (c *Cluster) URL(i int) string { return "http://" + c.sites[i].httpAddr }

// URLs returns every site's base URL in site order.
func (c *Cluster) URLs() []string {
	out := make([]string, len(c.sites))
	for i := range c.sites {
		out[i] = c.URL(i)
	}
	return out
}

// LogPath returns the file site i's process writes its log to.
func (c *Cluster) LogPath(i int) string { return c.sites[i].logPath }

// Alive reports whether site i's process is running.
func (c *Cluster) Alive(i int) bool {
	c.mu.Lock()
	p := c.sites[i].proc
	c.mu.Unlock()
	if p == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Kill sends SIGKILL to site i's process (a fire: no lame duck, nothing
// flushed beyond what the server already synced) and waits until it is gone.
func (c *Cluster) Kill(i int) error {
	c.mu.Lock()
	p := c.sites[i].proc
	c.sites[i].proc = nil
	c.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("drill: kill site %s: %w", c.sites[i].name, err)
	}
	<-p.done
	c.log.Info("site killed", "site", c.sites[i].name)
	return nil
}

// Restart starts site i again with its old ports and disk and waits until
// it is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	if c.Alive(i) {
		return fmt.Errorf("drill: site %s is still running", c.sites[i].name)
	}
	if err := c.start(i); err != nil {
		return err
	}
	return c.WaitReady(ctx, i)
}

// Cut closes every route connection touching the named site and refuses
// new ones, while its process keeps running.
func (c *Cluster) Cut(site string) {
	for _, p := range c.proxies {
		if p.touches(site) {
			p.SetCut(true)
		}
	}
	c.log.Info("site cut off", "site", site)
}

// Heal lets the named site's routes connect again.
func (c *Cluster) Heal(site string) {
	for _, p := range c.proxies {
		if p.touches(site) {
			p.SetCut(false)
		}
	}
	c.log.Info("site reconnected", "site", site)
}

// WaitReady polls site i's /readyz until it answers 200. It fails early
// if the process exits.
func (c *Cluster) WaitReady(ctx context.Context, i int) error {
	s := c.sites[i]
	err := poll(ctx, 200*time.Millisecond, func() (bool, error) {
		if !c.Alive(i) {
			return false, fmt.Errorf("site %s exited; log %s:\n%s", s.name, s.logPath, tail(s.logPath, 2000))
		}
		resp, err := c.hc.Get(c.URL(i) + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		return fmt.Errorf("drill: waiting for site %s to be ready: %w", s.name, err)
	}
	return nil
}

// Status fetches site i's /v1/status.
func (c *Cluster) Status(ctx context.Context, i int) (siteStatus, error) {
	var st siteStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+"/v1/status", nil)
	if err != nil {
		return st, fmt.Errorf("drill: status of site %s: %w", c.sites[i].name, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return st, fmt.Errorf("drill: status of site %s: %w", c.sites[i].name, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&st); err != nil {
		return st, fmt.Errorf("drill: status of site %s: %w", c.sites[i].name, err)
	}
	return st, nil
}

// Leaders returns, per stream, the site whose server leads it, as the
// first live site reports it. Streams without a leader are missing.
func (c *Cluster) Leaders(ctx context.Context) (map[string]string, error) {
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
		out := map[string]string{}
		for _, s := range st.Streams {
			if name, ok := strings.CutPrefix(s.Leader, "site-"); ok {
				out[s.Stream] = name
			}
		}
		if st.StreamsError != "" || len(st.Streams) == 0 {
			lastErr = fmt.Errorf("drill: site %s: streams not listed: %s", st.Site, st.StreamsError)
			continue
		}
		return out, nil
	}
	if lastErr == nil {
		lastErr = errors.New("drill: no live site")
	}
	return nil, lastErr
}

// WaitLeaders polls until every stream has a leader at a live site.
func (c *Cluster) WaitLeaders(ctx context.Context) error {
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

// Close kills every process and stops the proxies. The data directories
// stay.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range c.sites {
		wg.Go(func() { _ = c.Kill(i) })
	}
	wg.Wait()
	for _, p := range c.proxies {
		p.Close()
	}
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

// freePorts asks the kernel for n free ports on 127.0.0.1. They are
// released before use, so another process could take one in between.
func freePorts(n int) ([]int, error) {
	var out []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("drill: free port: %w", err)
		}
		lns = append(lns, l)
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
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
