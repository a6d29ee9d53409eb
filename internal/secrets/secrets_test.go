package secrets

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGenerateWritesLoadableLockedFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	o := Options{Sites: []string{"a", "b"}, TLS: true, Hosts: map[string][]string{"a": {"db1.example", "10.0.0.1"}}, BcryptCost: 4}
	if err := Generate(dir, o); err != nil {
		t.Fatal(err)
	}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		if want := os.FileMode(0o600); fi.IsDir() {
			want = 0o700
			if fi.Mode().Perm() != want {
				t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
			}
		} else if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := LoadSite(SiteFile(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadSite(SiteFile(dir, "b"))
	if err != nil {
		t.Fatal(err)
	}
	if a.NATSUser == b.NATSUser || a.NATSPassword == b.NATSPassword || a.RoutePassword != b.RoutePassword {
		t.Fatal("sites must have their own credentials and share the route password")
	}
	if len(a.Users) != 3 {
		t.Fatalf("users %+v, want two gateways and the admin", a.Users)
	}
	admin, err := LoadAdmin(AdminFile(dir))
	if err != nil {
		t.Fatal(err)
	}
	if admin.NATSUser != AdminUser || admin.NATSPassword == a.NATSPassword {
		t.Fatalf("admin credential %+v", admin)
	}
	// Site a's certificate is issued by the CA, for its hosts and loopback,
	// as server and as client (routes go both ways).
	rt, err := a.RouteTLS()
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(rt.Certificates[0].Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"db1.example", "10.0.0.1", "127.0.0.1", "localhost"} {
		for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
			if _, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: rt.RootCAs, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
				t.Errorf("certificate for %s (%v): %v", host, usage, err)
			}
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "evil.example", Roots: rt.RootCAs}); err == nil {
		t.Error("certificate valid for a host it does not name")
	}
	// Never overwritten.
	if err := Generate(dir, o); err == nil {
		t.Fatal("Generate overwrote a deployment's secrets")
	}
}

func TestLoadRefusesWhatItShouldNotTrust(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	if err := Generate(dir, Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	site := SiteFile(dir, "a")
	if s, err := LoadSite(site); err != nil || s.TLS() {
		t.Fatalf("plain site file: %+v %v", s, err)
	}
	if err := os.Chmod(site, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSite(site); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a world-readable secrets file was loaded: %v", err)
	}
	if _, err := LoadSite(AdminFile(dir)); err == nil {
		t.Fatal("the admin file loaded as a site file")
	}
	if _, err := LoadAdmin(site); err == nil {
		t.Fatal("a site file loaded as the admin file")
	}
	bad := filepath.Join(dir, "bad.json")
	for _, body := range []string{`{}`, `{"site":"a","nats_user":"u","nats_password":"p","route_password":"r","users":[{"name":"x","role":"root","password_hash":"$2a$04$abcdefghijklmnopqrstuu"}]}`,
		`{"site":"a","nats_user":"u","nats_password":"p","route_password":"r","users":[{"name":"x","role":"gateway","password_hash":"plain"}]}`,
		`{"site":"a","nats_user":"u","nats_password":"p","route_password":"r","cert":"c.pem","users":[]}`, `not json`} {
		if err := os.WriteFile(bad, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadSite(bad); err == nil {
			t.Errorf("loaded %s", body)
		}
	}
	if err := Generate(filepath.Join(t.TempDir(), "x"), Options{Sites: []string{"A/../b"}}); err == nil {
		t.Fatal("a site name with a path in it was accepted")
	}

	// A site's private key is held like its site file.
	tdir := filepath.Join(t.TempDir(), "t")
	if err := Generate(tdir, Options{Sites: []string{"a"}, BcryptCost: 4, TLS: true}); err != nil {
		t.Fatal(err)
	}
	ts, err := LoadSite(SiteFile(tdir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ClientPortTLS(); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(filepath.Dir(SiteFile(tdir, "a")), "key.pem"), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.ClientPortTLS(); err == nil || !strings.Contains(err.Error(), "readable by others") {
		t.Fatalf("a site key others may read was used: %v", err)
	}
}

func TestSealedSigningKeysOpenOnlyWithTheLogKeyAndTheirID(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "s")
	if err := Generate(dir, Options{Sites: []string{"a", "b"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	a, _ := LoadSite(SiteFile(dir, "a"))
	b, _ := LoadSite(SiteFile(dir, "b"))
	admin, _ := LoadAdmin(AdminFile(dir))
	key := []byte("0123456789abcdef0123456789abcdef")
	sealed, err := admin.SealKey("k2", key)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(sealed), string(key)) {
		t.Fatal("the sealed key holds the key")
	}
	for _, s := range []*Site{a, b} {
		got, err := s.OpenKey("k2", sealed)
		if err != nil || string(got) != string(key) {
			t.Fatalf("site %s: %q %v", s.Site, got, err)
		}
	}
	if _, err := a.OpenKey("k3", sealed); err == nil {
		t.Fatal("a sealed key opened under another id")
	}
	other := filepath.Join(t.TempDir(), "o")
	if err := Generate(other, Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
		t.Fatal(err)
	}
	o, _ := LoadSite(SiteFile(other, "a"))
	if _, err := o.OpenKey("k2", sealed); err == nil {
		t.Fatal("another deployment's log key opened the key")
	}
	if _, err := a.OpenKey("k2", sealed[:5]); err == nil {
		t.Fatal("a truncated sealed key opened")
	}
}
