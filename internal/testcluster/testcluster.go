// Package testcluster starts a three-site Salamander cluster inside one
// process for tests: real embedded NATS servers clustered over loopback,
// real read models on disk, real HTTP gateways. Sites can be stopped
// (abruptly, like a fire), restarted on the same ports and disk, or have
// their read model deleted.
//
// A fresh JetStream cluster needs seconds to elect leaders, so a test
// package starts one cluster in TestMain and isolates its tests by unique
// user and room names.
package testcluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/site"
	"golang.org/x/crypto/bcrypt"
)

// Names are the sites of a test cluster.
var Names = []string{"a", "b", "c"}

// Cluster is a running test cluster.
type Cluster struct {
	dir string
	// secrets is the directory of the cluster's credentials.
	secrets string
	log     *slog.Logger
	mu      sync.Mutex
	cfgs    []site.Config
	sites   []*site.Site
}

// Start starts three sites under dir and waits until all are ready. Ports
// are picked free just before use; if another process takes one in between,
// Start tries again with fresh ports.
func Start(ctx context.Context, dir string, logger *slog.Logger) (*Cluster, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *Cluster
		c, err = start(ctx, filepath.Join(dir, fmt.Sprintf("try%d", attempt)), logger)
		if err == nil {
			return c, nil
		}
		logger.Warn("test cluster failed to start; retrying with fresh ports", "attempt", attempt, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, err
}

func start(ctx context.Context, dir string, logger *slog.Logger) (*Cluster, error) {
	c := &Cluster{dir: dir, log: logger}
	type ports struct{ http, client, cluster int }
	ps := make([]ports, len(Names))
	for i := range Names {
		p, err := freeport.Loopback(3)
		if err != nil {
			return nil, err
		}
		ps[i] = ports{p[0], p[1], p[2]}
	}
	var infos []gateway.SiteInfo
	for i, n := range Names {
		infos = append(infos, gateway.SiteInfo{Name: n, URL: fmt.Sprintf("http://127.0.0.1:%d", ps[i].http)})
	}
	// The secure path is the tested path: mutual TLS between the sites'
	// servers, TLS and a limited credential for each gateway.
	c.secrets = filepath.Join(dir, "secrets")
	if err := secrets.Generate(c.secrets, secrets.Options{Sites: Names, TLS: true, BcryptCost: bcrypt.MinCost}); err != nil {
		return nil, err
	}
	for i, n := range Names {
		cfg := site.DefaultConfig(n, filepath.Join(dir, n))
		sec, err := secrets.LoadSite(secrets.SiteFile(c.secrets, n))
		if err != nil {
			return nil, err
		}
		cfg.Secrets = sec
		cfg.HTTPAddr = fmt.Sprintf("127.0.0.1:%d", ps[i].http)
		cfg.NATS.ClientAddr = fmt.Sprintf("127.0.0.1:%d", ps[i].client)
		cfg.NATS.ClusterAddr = fmt.Sprintf("127.0.0.1:%d", ps[i].cluster)
		for j := range Names {
			if j != i {
				cfg.NATS.Routes = append(cfg.NATS.Routes, fmt.Sprintf("127.0.0.1:%d", ps[j].cluster))
			}
		}
		cfg.Partitions = 3
		cfg.Sites = infos
		cfg.BcryptCost = bcrypt.MinCost
		// Three sites in one process under the race detector, on a
		// machine running other test packages: heartbeats can be late by
		// more than the production timeout without any cut. (The drill
		// measures production timing on separate processes.)
		cfg.HeartbeatTimeout = 3 * time.Second
		cfg.Logger = logger
		c.cfgs = append(c.cfgs, cfg)
	}
	c.sites = make([]*site.Site, len(Names))
	for i := range Names {
		s, err := site.Start(ctx, c.cfgs[i])
		if err != nil {
			c.Close()
			return nil, err
		}
		c.sites[i] = s
	}
	if err := c.WaitReady(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// WaitReady waits until every running site is ready.
func (c *Cluster) WaitReady(ctx context.Context) error {
	for i := range Names {
		if s := c.Site(i); s != nil {
			if err := s.Ready(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Site returns site i, or nil while it is stopped.
func (c *Cluster) Site(i int) *site.Site {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sites[i]
}

// NATSURL is site i's NATS client URL (TLS, credentials required).
func (c *Cluster) NATSURL(i int) string { return "tls://" + c.cfgs[i].NATS.ClientAddr }

// AdminFile and SiteFile are the cluster's admin credential and site i's
// site file.
func (c *Cluster) AdminFile() string     { return secrets.AdminFile(c.secrets) }
func (c *Cluster) SiteFile(i int) string { return secrets.SiteFile(c.secrets, Names[i]) }

// AdminNATS connects to the sites' NATS servers (site i's first) with the
// admin credential, as `salamander admin` would.
func (c *Cluster) AdminNATS(i int) (*nats.Conn, error) {
	urls := []string{c.NATSURL(i)}
	for j := range Names {
		if j != i {
			urls = append(urls, c.NATSURL(j))
		}
	}
	cfg, _, err := jsstore.AdminConfig(c.AdminFile(), "salamander-test-admin", urls...)
	if err != nil {
		return nil, err
	}
	return nats.Connect(strings.Join(cfg.URLs, ","), nats.Name(cfg.Name), nats.UserInfo(cfg.User, cfg.Password),
		nats.Secure(cfg.TLS), nats.Timeout(5*time.Second))
}

// URL is site i's HTTP base URL (stable across restarts).
func (c *Cluster) URL(i int) string { return "http://" + c.cfgs[i].HTTPAddr }

// URLs lists every site's URL.
func (c *Cluster) URLs() []string {
	out := make([]string, len(Names))
	for i := range Names {
		out[i] = c.URL(i)
	}
	return out
}

// Kill stops site i abruptly.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	s := c.sites[i]
	c.sites[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Kill()
	}
}

// Restart starts site i again on its old ports and disk, and waits until it
// is ready.
func (c *Cluster) Restart(ctx context.Context, i int) error {
	s, err := c.Start(ctx, i)
	if err != nil {
		return err
	}
	return s.Ready(ctx)
}

// Start starts site i again on its old ports and disk, without waiting
// for it to be ready.
func (c *Cluster) Start(ctx context.Context, i int) (*site.Site, error) {
	s, err := site.Start(ctx, c.cfgs[i])
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.sites[i] = s
	c.mu.Unlock()
	return s, nil
}

// RemoveReadModel deletes site i's read model files; the site must be stopped.
func (c *Cluster) RemoveReadModel(i int) error {
	p := filepath.Join(c.cfgs[i].DataDir, "view.db")
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(p + suffix); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// Close stops every site.
func (c *Cluster) Close() {
	var wg sync.WaitGroup
	for i := range Names {
		c.mu.Lock()
		s := c.sites[i]
		c.sites[i] = nil
		c.mu.Unlock()
		if s != nil {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.Kill()
			}()
		}
	}
	wg.Wait()
}

// Timeout is a generous bound for cluster start in tests.
const Timeout = 90 * time.Second
