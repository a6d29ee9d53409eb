package site

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/secrets"
)

// A site whose certificates are about to expire says so (log and
// /v1/status warnings) while there is time to rotate them: `salamander
// certs` makes every site's certificate and the CA at once, so they
// expire together, and then every route and NATS connection of the
// deployment fails at the same moment.
func TestSiteWarnsOfCertificatesAboutToExpire(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(dir, secrets.Options{Sites: []string{"a"}, TLS: true, BcryptCost: 4, Valid: 10 * 24 * time.Hour}); err != nil {
		t.Fatal(err)
	}
	sec, err := secrets.LoadSite(secrets.SiteFile(dir, "a"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("a", filepath.Join(t.TempDir(), "data"))
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.NATS.ClientAddr, cfg.NATS.ClusterAddr = "127.0.0.1:0", ""
	cfg.Secrets = sec
	cfg.TLSCert = filepath.Join(filepath.Dir(secrets.SiteFile(dir, "a")), "cert.pem")
	cfg.TLSKey = filepath.Join(filepath.Dir(secrets.SiteFile(dir, "a")), "key.pem")
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	waitFor(t, 10*time.Second, func() error {
		var nats, https bool
		for _, w := range s.Gateway().Warnings() {
			nats = nats || strings.Contains(w, "NATS certificate") && strings.Contains(w, "expires")
			https = https || strings.Contains(w, "HTTPS certificate") && strings.Contains(w, "expires")
		}
		if !nats || !https {
			return fmt.Errorf("warnings %q: want the NATS and the HTTPS certificates' expiry", s.Gateway().Warnings())
		}
		return nil
	})
}
