package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander/internal/secrets"
)

// A config file sets what the command line does not; flags given on the
// command line win; unknown keys are errors.
func TestServeConfigFileAndFlags(t *testing.T) {
	dir := t.TempDir()
	sec := filepath.Join(dir, "secrets")
	if err := secrets.Generate(sec, secrets.Options{Sites: []string{"a", "b"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "b.json")
	if err := os.WriteFile(file, []byte(`{"site":"b","http":"127.0.0.1:1","routes":"h:1,h:2","partitions":9,"secrets":"`+
		secrets.SiteFile(sec, "b")+`"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := parseServeFlags([]string{"--http", "127.0.0.1:9999", "--config", file})
	if err != nil {
		t.Fatal(err)
	}
	if c.Site != "b" || c.HTTP != "127.0.0.1:9999" || c.Routes != "h:1,h:2" || c.Partitions != 9 || c.Sync != "always" {
		t.Fatalf("merged config: %+v", c)
	}
	cfg, err := c.siteConfig()
	if err != nil || len(cfg.NATS.Routes) != 2 || !cfg.NATS.SyncAlways || cfg.BcryptCost != 10 || cfg.Secrets.Site != "b" {
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
		{"--site", "a", "--secrets", a, "--trusted-proxies", "proxy.example"}, {"--site", "a", "--secrets", a, "--rate-limit-exempt", "10.0.0.0/33"}} {
		c, err := parseServeFlags(bad)
		if err == nil {
			_, err = c.siteConfig()
		}
		if err == nil {
			t.Errorf("%v accepted", bad)
		}
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
