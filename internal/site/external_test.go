package site

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/natsnode"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// Sites pointed at an existing NATS JetStream cluster (three servers tagged
// by site, as operators would run them) serve exactly as embedded ones.
func TestSitesOnExternalNATSCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	names := []string{"a", "b", "c"}
	clusterPorts, monitorPorts := freePorts(t, 3), freePorts(t, 3)
	// The operators' servers admit the users of the deployment's secrets,
	// with the gateways' permissions, over TLS (as `salamander certs`
	// and the README set them up).
	secDir := filepath.Join(dir, "secrets")
	if err := secrets.Generate(secDir, secrets.Options{Sites: names, TLS: true, BcryptCost: bcrypt.MinCost}); err != nil {
		t.Fatal(err)
	}
	secs := map[string]*secrets.Site{}
	for _, n := range names {
		sec, err := secrets.LoadSite(secrets.SiteFile(secDir, n))
		if err != nil {
			t.Fatal(err)
		}
		secs[n] = sec
	}
	var nodes []*natsnode.Node
	for i, n := range names {
		cfg, err := embeddedNATS(Config{Site: n, NATS: natsnode.DefaultConfig(n), Secrets: secs[n]})
		if err != nil {
			t.Fatal(err)
		}
		cfg.StoreDir = filepath.Join(dir, "nats-"+n)
		cfg.MonitorAddr = fmt.Sprintf("127.0.0.1:%d", monitorPorts[i])
		cfg.SyncAlways = n != "c" // an operator's mistake the sites must report
		cfg.ClusterAddr = fmt.Sprintf("127.0.0.1:%d", clusterPorts[i])
		for j := range names {
			if j != i {
				cfg.Routes = append(cfg.Routes, fmt.Sprintf("127.0.0.1:%d", clusterPorts[j]))
			}
		}
		node, err := natsnode.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, node)
		t.Cleanup(node.Shutdown)
	}
	var urls []string
	for i, n := range names {
		cfg := DefaultConfig(n, filepath.Join(dir, "site-"+n))
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.NATSURLs = []string{nodes[i].ClientURL()}
		for _, p := range monitorPorts {
			cfg.NATSMonitor = append(cfg.NATSMonitor, fmt.Sprintf("http://127.0.0.1:%d", p))
		}
		cfg.Secrets = secs[n]
		// The public API over HTTPS, with the site's certificate (it
		// names 127.0.0.1).
		siteDir := filepath.Dir(secrets.SiteFile(secDir, n))
		cfg.TLSCert, cfg.TLSKey = filepath.Join(siteDir, "cert.pem"), filepath.Join(siteDir, "key.pem")
		cfg.Partitions = 2
		cfg.BcryptCost = bcrypt.MinCost
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
		urls = append(urls, s.URL())
	}
	rt, err := secs["a"].RouteTLS()
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
	// The server that does not fsync every commit is reported, and only it.
	res, err = hc.Get(urls[0] + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var status struct {
		Warnings []string `json:"warnings"`
	}
	err = json.NewDecoder(res.Body).Decode(&status)
	res.Body.Close()
	if err != nil || len(status.Warnings) != 1 || !strings.Contains(status.Warnings[0], "site-c") ||
		!strings.Contains(status.Warnings[0], "does not fsync") {
		t.Fatalf("status warnings %q (%v), want one about site-c's fsync", status.Warnings, err)
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
	deadline := time.Now().Add(10 * time.Second)
	for {
		page, err := bob.History(ctx, room.ID, client.HistoryQuery{})
		if err == nil && len(page.Messages) == 1 && page.Messages[0].Text == "over an external cluster" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's history at site c: %+v %v (%s)", page, err, salamander.ErrorCode(err))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out
}
