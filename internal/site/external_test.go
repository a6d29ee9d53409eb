package site

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// externalCluster is an operator's NATS cluster as the sites' tests see it:
// three standalone servers (one per site, tagged by site, clustered by
// routes) that admit the users of the deployment's secrets with the
// gateways' permissions, over TLS, as `salamander certs` and the README
// set them up. Its servers keep their ports, so one can be stopped and
// started again.
type externalCluster struct {
	t        *testing.T
	dir      string
	names    []string
	secs     map[string]*secrets.Site
	cfgs     []natsnode.Config
	nodes    []*natsnode.Node
	monitors []string
}

// externalPartitions is the partition count of the sites on an external
// cluster, whose servers' gateway users may use as many partitions'
// streams.
const externalPartitions = 2

// startExternalCluster starts the servers; tweak, when set, changes a
// server's configuration first.
func startExternalCluster(ctx context.Context, t *testing.T, tweak func(site string, cfg *natsnode.Config)) *externalCluster {
	t.Helper()
	x := &externalCluster{t: t, dir: t.TempDir(), names: []string{"a", "b", "c"}, secs: map[string]*secrets.Site{}}
	secDir := filepath.Join(x.dir, "secrets")
	if err := secrets.Generate(secDir, secrets.Options{Sites: x.names, TLS: true, BcryptCost: bcrypt.MinCost}); err != nil {
		t.Fatal(err)
	}
	for _, n := range x.names {
		sec, err := secrets.LoadSite(secrets.SiteFile(secDir, n))
		if err != nil {
			t.Fatal(err)
		}
		x.secs[n] = sec
	}
	clientPorts, clusterPorts, monitorPorts := freePorts(t, 3), freePorts(t, 3), freePorts(t, 3)
	for i, n := range x.names {
		cfg, err := embeddedNATS(Config{Site: n, NATS: natsnode.DefaultConfig(n), Secrets: x.secs[n],
			Partitions: externalPartitions})
		if err != nil {
			t.Fatal(err)
		}
		cfg.StoreDir = filepath.Join(x.dir, "nats-"+n)
		cfg.ClientAddr = fmt.Sprintf("127.0.0.1:%d", clientPorts[i])
		cfg.MonitorAddr = fmt.Sprintf("127.0.0.1:%d", monitorPorts[i])
		cfg.ClusterAddr = fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])
		for j := range x.names {
			if j != i {
				cfg.Routes = append(cfg.Routes, fmt.Sprintf("127.0.0.1:%d", clusterPorts[j]))
			}
		}
		if tweak != nil {
			tweak(n, &cfg)
		}
		x.cfgs = append(x.cfgs, cfg)
		x.monitors = append(x.monitors, "http://"+cfg.MonitorAddr)
	}
	x.nodes = make([]*natsnode.Node, len(x.names))
	for i := range x.names {
		x.start(ctx, i)
	}
	return x
}

// start starts server i (again).
func (x *externalCluster) start(ctx context.Context, i int) {
	x.t.Helper()
	node, err := natsnode.Start(ctx, x.cfgs[i])
	if err != nil {
		x.t.Fatal(err)
	}
	x.nodes[i] = node
	x.t.Cleanup(node.Shutdown)
}

// url is server i's client URL.
func (x *externalCluster) url(i int) string { return "nats://" + x.cfgs[i].ClientAddr }

// siteConfig is a site of the cluster, its own server first in its list.
func (x *externalCluster) siteConfig(i int, dataDir string) Config {
	cfg := DefaultConfig(x.names[i], filepath.Join(x.dir, dataDir))
	cfg.HTTPAddr = "127.0.0.1:0"
	for j := range x.names {
		cfg.NATSURLs = append(cfg.NATSURLs, x.url((i+j)%len(x.names)))
	}
	cfg.NATSMonitor = x.monitors
	cfg.Secrets = x.secs[x.names[i]]
	cfg.Partitions = externalPartitions
	cfg.BcryptCost = bcrypt.MinCost
	return cfg
}

// startSite starts a site and waits until it is ready.
func startSite(ctx context.Context, t *testing.T, cfg Config) *Site {
	t.Helper()
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if s.Node() != nil {
		t.Fatal("a site with NATS URLs embedded a server")
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

// waitFor polls cond until it returns nil, failing the test with its
// last error after d.
func waitFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for err := cond(); err != nil; err = cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Sites pointed at an existing NATS JetStream cluster (three servers tagged
// by site, as operators would run them) serve exactly as embedded ones,
// report what weakens a promise, and keep the streams' leaders spread over
// the sites — with two gateways at one site balancing the same servers.
func TestSitesOnExternalNATSCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	x := startExternalCluster(ctx, t, func(site string, cfg *natsnode.Config) {
		cfg.SyncAlways = site != "c" // an operator's mistake the sites must report
	})
	var urls []string
	var sites []*Site
	for i := range x.names {
		cfg := x.siteConfig(i, "site-"+x.names[i])
		// The public API over HTTPS, with the site's certificate (it
		// names 127.0.0.1).
		siteDir := filepath.Dir(secrets.SiteFile(filepath.Join(x.dir, "secrets"), x.names[i]))
		cfg.TLSCert, cfg.TLSKey = filepath.Join(siteDir, "cert.pem"), filepath.Join(siteDir, "key.pem")
		s := startSite(ctx, t, cfg)
		sites = append(sites, s)
		urls = append(urls, s.URL())
	}
	// A second gateway at site b: its own process, read model and name.
	cfg := x.siteConfig(1, "site-b2")
	cfg.Instance = "b2"
	b2 := startSite(ctx, t, cfg)

	rt, err := x.secs["a"].RouteTLS()
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: rt.RootCAs}}}
	res, err := hc.Get(urls[1] + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if !strings.HasPrefix(urls[1], "https://") || res.Header.Get("Strict-Transport-Security") == "" {
		t.Fatalf("%s answered without HSTS: %v", urls[1], res.Header)
	}
	// The server that does not fsync every commit is reported, and only
	// it (operators read the warnings in GET /v1/ops/site); the metrics
	// name the process.
	for _, s := range []*Site{sites[0], b2} {
		if w := s.Gateway().Warnings(); len(w) != 1 || !strings.Contains(w[0], "site-c") || !strings.Contains(w[0], "does not fsync") {
			t.Fatalf("%s: warnings %q, want one about site-c's fsync", s.URL(), w)
		}
		res, err = hc.Get(s.URL() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(res.Body)
		res.Body.Close()
		want := strings.TrimPrefix(s.URL(), "https://")
		if s == b2 {
			want = "b2"
		}
		if err != nil || res.StatusCode != http.StatusOK || !strings.Contains(string(body), `instance="`+want+`"`) {
			t.Fatalf("%s: metrics %d without instance %q (%v)", s.URL(), res.StatusCode, want, err)
		}
	}
	alice, err := client.New(client.Config{Sites: urls, Prefer: 0, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := client.New(client.Config{Sites: urls, Prefer: 2, HTTPClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SignUp(ctx, "alice", "Alice", "password one"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SignUp(ctx, "bob", "Bob", "password two"); err != nil {
		t.Fatal(err)
	}
	room, err := alice.DirectRoom(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	sub := bob.Subscribe(ctx) // a WebSocket over TLS
	defer sub.Close()
	if _, err := alice.Send(ctx, room.ID, "over an external cluster"); err != nil {
		t.Fatal(err)
	}
	for got := false; !got; {
		select {
		case ev := <-sub.Events():
			got = ev.Type == salamander.EventMessage && ev.Message.Text == "over an external cluster"
		case <-ctx.Done():
			t.Fatal("bob's live stream never got the message")
		}
	}
	waitFor(t, 10*time.Second, func() error {
		page, err := bob.History(ctx, room.ID, client.HistoryQuery{})
		if err == nil && len(page.Messages) == 1 && page.Messages[0].Text == "over an external cluster" {
			return nil
		}
		return fmt.Errorf("bob's history at site c: %+v %v (%s)", page, err, salamander.ErrorCode(err))
	})

	// Every partition handed to site b's server: site b's gateways hand
	// them back out until no server leads more than its share (one each).
	store := sites[0].Store()
	for _, p := range []string{"p0", "p1"} {
		waitFor(t, 20*time.Second, func() error {
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second) // a stream electing answers nothing
			defer cancel()
			st, err := store.StatusOf(cctx, p)
			if err != nil || st.Leader == "site-b" {
				return err
			}
			if err := store.StepDown(cctx, p, "site-b"); err != nil {
				return err
			}
			return errors.New("moved; checking")
		})
	}
	waitFor(t, 30*time.Second, func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		led := map[string]int{}
		for _, p := range []string{"p0", "p1"} {
			st, err := store.StatusOf(cctx, p)
			if err != nil {
				return err
			}
			led[st.Leader]++
		}
		if led["site-b"] > 1 || led[""] > 0 {
			return fmt.Errorf("partition leaders by server: %v", led)
		}
		return nil
	})
}

// A site's connection to an external cluster moves to another site's
// server when its own fails, and back once its own is healthy again,
// without failing a send.
func TestSiteOnExternalNATSMovesBackHome(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	x := startExternalCluster(ctx, t, nil)
	var urls []string
	var a *Site
	for i := range x.names {
		cfg := x.siteConfig(i, "site-"+x.names[i])
		cfg.HomeInterval = 200 * time.Millisecond
		s := startSite(ctx, t, cfg)
		if i == 0 {
			a = s
		}
		urls = append(urls, s.URL())
	}
	nc := a.Store().Conn()
	if got := nc.ConnectedServerName(); got != "site-a" {
		t.Fatalf("site a starts on %s, not its own server", got)
	}
	x.nodes[0].Shutdown()
	waitFor(t, 20*time.Second, func() error {
		if got := nc.ConnectedServerName(); !nc.IsConnected() || got == "site-a" {
			return fmt.Errorf("site a is on %q (connected %v), waiting for it to move", got, nc.IsConnected())
		}
		return nil
	})
	// Site a serves from the far server: a user signs up and talks there.
	alice, err := client.New(client.Config{Sites: urls[:1]})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		_, err := alice.SignUp(ctx, "alice", "Alice", "password one")
		return err
	})
	room, err := alice.CreateGroup(ctx, "home", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Site a's server returns; the site moves back to it while alice
	// keeps sending at site a, and no send fails.
	x.start(ctx, 0)
	sent := 0
	for deadline := time.Now().Add(30 * time.Second); nc.ConnectedServerName() != "site-a" || sent < 50; sent++ {
		if time.Now().After(deadline) {
			t.Fatalf("site a still on %s after %d sends", nc.ConnectedServerName(), sent)
		}
		if _, err := alice.Send(ctx, room.ID, fmt.Sprintf("m%d", sent)); err != nil {
			t.Fatalf("send %d while site a moves home (on %s): %v", sent, nc.ConnectedServerName(), err)
		}
	}
	if got := a.Store().Conn().Stats().Reconnects; got < 2 {
		t.Fatalf("site a reconnected %d times, want at least 2 (away and back)", got)
	}
	// Every message once, in order: read forward page by page (a slow
	// move home leaves more than one page).
	var texts []string
	for q := (client.HistoryQuery{Forward: true, Limit: 200}); ; {
		page, err := alice.History(ctx, room.ID, q)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.Messages {
			texts = append(texts, m.Text)
			q.After = m.Seq
		}
		if !page.More || len(page.Messages) == 0 {
			break
		}
	}
	if len(texts) != sent || texts[0] != "m0" || texts[sent-1] != fmt.Sprintf("m%d", sent-1) {
		t.Fatalf("history after the move: %d of %d messages: %q", len(texts), sent, texts)
	}
}

// A site refuses to serve on an external NATS server that cannot keep its
// promises (here: JetStream not clustered), and says why.
func TestSiteRefusesUnclusteredExternalNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	x := startExternalCluster(ctx, t, func(site string, cfg *natsnode.Config) { cfg.ClusterAddr = "" })
	cfg := x.siteConfig(0, "site-a")
	cfg.NATSURLs, cfg.NATSMonitor = cfg.NATSURLs[:1], x.monitors[:1]
	cfg.ClusterFormWait = time.Second // it will never form
	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "does not run JetStream clustered") {
		t.Fatalf("ready on a lone server: %v", err)
	}
	if alarm := s.Gateway().LogAlarm(); !strings.Contains(alarm, "site-a") || !strings.Contains(alarm, "clustered") {
		t.Fatalf("log alarm %q", alarm)
	}
}

// Servers older than 2.11 are refused; newer ones and pre-releases pass.
func TestCheckVersion(t *testing.T) {
	for v, ok := range map[string]bool{"2.9.25": false, "2.10.29": false, "2.11.0": true, "2.12.0-beta.1": true,
		"2.15.2": true, "3.0.0": true, "v2.11.4": true, "2.11": false, "": false, "x.y.z": false} {
		if err := jsstore.CheckVersion("n1", v); (err == nil) != ok {
			t.Errorf("version %q: %v", v, err)
		}
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := freeport.Loopback(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// A cluster whose servers are at fewer sites than a stream has replicas
// (here: site c's server tagged site:b), or none of whose servers is this
// site's, is reported: with unique_tag no stream can be placed on it, and
// the site only waited, logging the cluster as still forming; nor could it
// tell its own servers.
func TestSiteReportsExternalServersAtTooFewSites(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	x := startExternalCluster(ctx, t, func(site string, cfg *natsnode.Config) {
		if site == "c" {
			cfg.Name, cfg.Site = "site-c", "b"
		}
	})
	for _, name := range []string{"a", "d"} {
		cfg := x.siteConfig(0, "site-"+name)
		cfg.Site = name
		s, err := Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		waitFor(t, 30*time.Second, func() error {
			var sites, own bool
			for _, w := range s.Gateway().Warnings() {
				sites = sites || strings.Contains(w, "at 2 sites (a, b)")
				own = own || strings.Contains(w, "site:"+name+" tag")
			}
			if !sites || own != (name == "d") {
				return fmt.Errorf("site %s's warnings %q: want the 2 sites, and (site d only) no server of its own", name, s.Gateway().Warnings())
			}
			return nil
		})
	}
}
