package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/gateway"
	"github.com/salamander-chat/salamander/internal/secrets"
	"github.com/salamander-chat/salamander/internal/view"
)

// A config file sets what the command line does not; flags given on the
// command line win; unknown keys are errors.
func TestServeConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a", "b"}, BcryptCost: 4, TLS: true}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.json")
	if err := os.WriteFile(file, []byte(`{"site":"b","http":"127.0.0.1:1","routes":"h:1,h:2","partitions":9,"record_slots":2,"window_idle":"2h","presence_grace":"8s","secrets":"`+
		secrets.SiteFile(sec, "b")+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags([]string{"--http", "127.0.0.1:9999", "--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Site != "b" || c.HTTP != "127.0.0.1:9999" || c.Routes != "h:1,h:2" || c.Partitions != 9 || c.Sync != "always" || c.RecordSlots != 2 {
		t.Fatalf("merged config: %+v", c)
	}
	cfg, err := c.siteConfig()
	if err != nil || len(cfg.NATS.Routes) != 2 || !cfg.NATS.SyncAlways || cfg.BcryptCost != 10 || cfg.Secrets.Site != "b" ||
		cfg.WindowIdle != 2*time.Hour || cfg.PresenceGrace != 8*time.Second {
		t.Fatalf("site config: %+v %v", cfg, err)
	}
	if err := os.WriteFile(file, []byte(`{"site":"b","evil":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServeFlags([]string{"--config", file}); err == nil || !strings.Contains(err.Error(), "evil") {
		t.Fatalf("unknown key accepted: %v", err)
	}
	a := secrets.SiteFile(sec, "a")
	for _, bad := range [][]string{{"--site", "a", "--secrets", a, "--sync", "sometimes"}, {"--site", "a", "--secrets", a, "--partitions", "0"},
		{"--site", "a", "--secrets", a, "--sites", "a=ftp://x"}, {"--site", "a", "--secrets", a, "--bcrypt-cost", "3"}, {},
		{"--site", "a"}, {"--site", "a", "--secrets", secrets.SiteFile(sec, "b")}, {"--site", "a", "--secrets", secrets.AdminFile(sec)},
		{"--site", "a", "--secrets", a, "--trusted-proxies", "proxy.example"}, {"--site", "a", "--secrets", a, "--rate-limit-exempt", "10.0.0.0/33"},
		{"--site", "a", "--secrets", a, "--record-slots", "-1"}, {"--site", "a", "--secrets", a, "--record-slots", "1025"},
		{"--site", "a", "--secrets", a, "--window-idle", "9s"}, {"--site", "a", "--secrets", a, "--window-idle", "169h"},
		{"--site", "a", "--secrets", a, "--window-idle", "soon"},
		{"--site", "a", "--secrets", a, "--presence-grace", "999ms"}, {"--site", "a", "--secrets", a, "--presence-grace", "17s"},
		{"--site", "a", "--secrets", a, "--presence-grace", "0"}, {"--site", "a", "--secrets", a, "--presence-grace", "-5s"},
		{"--site", "a", "--secrets", a, "--presence-grace", "5"},
		// --sites must name the deployment's sites once each, this one too
		// (the site counts the deployment from it), and in embedded mode as
		// many as its routes reach and itself.
		{"--site", "a", "--secrets", a, "--routes", "h:1,h:2", "--sites", "a=http://a,b=http://b,b=http://b2"},
		{"--site", "a", "--secrets", a, "--routes", "h:1,h:2", "--sites", "b=http://b,c=http://c,d=http://d"},
		{"--site", "a", "--secrets", a, "--routes", "h:1,h:2", "--sites", "a=http://a,b=http://b,c=http://c,d=http://d"},
		{"--site", "a", "--secrets", a, "--routes", "h:1,h:2", "--sites", "a=http://a,b=http://b"}} {
		c, err := parseServeFlags(bad)
		if err == nil {
			_, err = c.siteConfig()
		}
		if err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
	good := []string{"--site", "a", "--secrets", a, "--routes", "h:1,h:2", "--sites", "a=http://a,b=http://b,c=http://c"}
	if c, err := parseServeFlags(good); err != nil {
		t.Fatal(err)
	} else if cfg, err := c.siteConfig(); err != nil || len(cfg.Sites) != 3 {
		t.Errorf("%v: %+v, %v", good, cfg.Sites, err)
	}
}

// Trusted proxies and rate-limit exemptions take addresses and CIDRs;
// "none" exempts nothing.
func TestServeProxyAndExemptFlags(t *testing.T) {
	sec := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a"),
		"--trusted-proxies", "10.0.0.0/8,192.0.2.7", "--rate-limit-exempt", "none"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.siteConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.TrustedProxies) != 2 || cfg.TrustedProxies[1].String() != "192.0.2.7/32" {
		t.Fatalf("trusted proxies %v", cfg.TrustedProxies)
	}
	if cfg.LimitExempt == nil || len(*cfg.LimitExempt) != 0 {
		t.Fatalf("exempt %v, want none", cfg.LimitExempt)
	}
}

// With --nats no server is embedded, so its settings would be ignored:
// they are refused, on the command line or in a config file, rather than
// silently dropped; --nats-monitor is refused without --nats.
func TestServeRefusesEmbeddedFlagsWithExternalNATS(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4, TLS: true}); err != nil {
		t.Fatal(err)
	}
	base := []string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a"), "--nats", "nats://n1:4222,nats://n2:4222"}
	for _, extra := range [][]string{{"--sync", "always"}, {"--routes", "h:1"}, {"--nats-listen", "127.0.0.1:4223"},
		{"--cluster-listen", "127.0.0.1:6223"}} {
		c, err := parseServeFlags(append(slices.Clone(base), extra...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.siteConfig(); err == nil || !strings.Contains(err.Error(), extra[0]+" has no effect with --nats") {
			t.Errorf("%v with --nats: %v", extra, err)
		}
	}
	file := filepath.Join(dir, "a.json")
	if err := os.WriteFile(file, []byte(`{"sync":"interval"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags(append(slices.Clone(base), "--config", file))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.siteConfig(); err == nil || !strings.Contains(err.Error(), "--sync has no effect") {
		t.Errorf("sync in a config file with --nats: %v", err)
	}
	c, err = parseServeFlags([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a"), "--nats-monitor", "http://n1:8222"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.siteConfig(); err == nil || !strings.Contains(err.Error(), "--nats-monitor goes with --nats") {
		t.Errorf("--nats-monitor without --nats: %v", err)
	}
	// The accepted external configuration names its instance after this
	// host and the HTTP port, unless told.
	c, err = parseServeFlags(append(slices.Clone(base), "--http", "127.0.0.1:8181", "--nats-monitor", "http://n1:8222"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.siteConfig()
	host, _ := os.Hostname()
	if err != nil || cfg.Instance != host+":8181" || len(cfg.NATSURLs) != 2 || len(cfg.NATSMonitor) != 1 {
		t.Fatalf("external config: instance %q, urls %v, monitor %v, %v", cfg.Instance, cfg.NATSURLs, cfg.NATSMonitor, err)
	}
	c, err = parseServeFlags(append(slices.Clone(base), "--instance", "gw-a-2"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg, err := c.siteConfig(); err != nil || cfg.Instance != "gw-a-2" {
		t.Fatalf("--instance: %q %v", cfg.Instance, err)
	}
}

// --presence-grace defaults to the gateway's grace and takes its bounds
// (1 s to the presence TTL); a value outside them is refused with a
// message that says them.
func TestServePresenceGrace(t *testing.T) {
	sec := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want time.Duration
	}{{nil, gateway.DefaultPresenceGrace}, {[]string{"--presence-grace", "1s"}, time.Second},
		{[]string{"--presence-grace", "16s"}, gateway.DefaultPresenceTTL}, {[]string{"--presence-grace", "2500ms"}, 2500 * time.Millisecond}} {
		c, err := parseServeFlags(append([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a")}, tc.args...))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := c.siteConfig()
		if err != nil || cfg.PresenceGrace != tc.want {
			t.Errorf("%v: grace %v (%v), want %v", tc.args, cfg.PresenceGrace, err, tc.want)
		}
	}
	c, err := parseServeFlags([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a"), "--presence-grace", "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.siteConfig(); err == nil || err.Error() != "serve: --presence-grace must be a duration from 1s to 16s, like 5s" {
		t.Fatalf("--presence-grace 1m: %v", err)
	}
}

// --window-idle defaults to the read model's own idle time.
func TestServeWindowIdleDefault(t *testing.T) {
	sec := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a")})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.siteConfig()
	if err != nil || cfg.WindowIdle != view.WindowIdle {
		t.Fatalf("default window idle %v (%v), want %v", cfg.WindowIdle, err, view.WindowIdle)
	}
}

// A site file without certificates (certs --plain) serves only on this
// host: a listener, route or plain NATS URL off it is refused, since its
// passwords would cross the network in the clear; tls:// URLs are not.
// Config keys are lower case: another case would be taken without
// counting as set.
func TestServeRefusesPlainLinksOffThisHost(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	base := []string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a")}
	for _, extra := range [][]string{{"--cluster-listen", "0.0.0.0:6222"}, {"--nats-listen", ":4222"},
		{"--routes", "127.0.0.1:6223,10.0.2.1:6222"}, {"--nats", "nats://10.0.1.1:4222"}} {
		c, err := parseServeFlags(append(slices.Clone(base), extra...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.siteConfig(); err == nil || !strings.Contains(err.Error(), "has no certificates") {
			t.Errorf("%v with a plain site file: %v", extra, err)
		}
	}
	for _, extra := range [][]string{{}, {"--routes", "127.0.0.1:6223,localhost:6224,[::1]:6225"}, {"--nats", "tls://n1:4222"},
		{"--nats", "nats://127.0.0.1:4222"}} {
		c, err := parseServeFlags(append(slices.Clone(base), extra...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.siteConfig(); err != nil {
			t.Errorf("%v with a plain site file: %v", extra, err)
		}
	}
	file := filepath.Join(dir, "a.json")
	if err := os.WriteFile(file, []byte(`{"Sync":"interval"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := parseServeFlags(append(slices.Clone(base), "--config", file)); err == nil || !strings.Contains(err.Error(), "lower case") {
		t.Errorf("a key not in lower case: %v", err)
	}
}

// --metrics-from takes CIDRs, none or any, defaults to loopback, and
// refuses anything else.
func TestServeMetricsFromFlag(t *testing.T) {
	sec := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	metricsFrom := func(args ...string) ([]netip.Prefix, error) {
		c, err := parseServeFlags(append([]string{"--site", "a", "--secrets", secrets.SiteFile(sec, "a")}, args...))
		if err != nil {
			return nil, err
		}
		cfg, err := c.siteConfig()
		if err != nil {
			return nil, err
		}
		return *cfg.MetricsFrom, nil
	}
	for _, tc := range []struct {
		args []string
		want []netip.Prefix
	}{
		{nil, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		{[]string{"--metrics-from", "none"}, nil},
		{[]string{"--metrics-from", "any"}, []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}},
		{[]string{"--metrics-from", "192.0.2.0/24,2001:db8::1"}, []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::1/128")}},
	} {
		got, err := metricsFrom(tc.args...)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%v: %v %v, want %v", tc.args, got, err, tc.want)
		}
	}
	if _, err := metricsFrom("--metrics-from", "prometheus.internal"); err == nil || !strings.Contains(err.Error(), "--metrics-from") {
		t.Fatalf("a name in --metrics-from: %v", err)
	}
}
