package site

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/certfiles/certfilestest"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// A site whose certificates are about to expire says so (log and
// GET /v1/ops/site warnings) while there is time to rotate them: `salamander
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

// A warning of an HTTPS certificate about to expire goes once the
// certificate is renewed (its files replaced, which the site serves
// without a restart) and the site has looked again: it stayed in
// the warnings until the next restart, which is what re-reading the files
// spares (a restart drops every WebSocket of the site).
func TestRenewedHTTPSCertificateIsNoLongerWarnedOf(t *testing.T) {
	defer func(every time.Duration) { certCheckEvery = every }(certCheckEvery)
	certCheckEvery = 100 * time.Millisecond
	files := certfilestest.NewFiles(t)
	certPath, keyPath := files.Cert, files.Key
	files.Install(t, certfilestest.NewPair(t, 10*24*time.Hour), time.Now().Add(-time.Hour))

	dir := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(dir, secrets.Options{Sites: []string{"a"}, BcryptCost: 4}); err != nil {
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
	cfg.TLSCert, cfg.TLSKey = certPath, keyPath
	s, err := Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	warned := func() bool {
		return slices.ContainsFunc(s.Gateway().Warnings(), func(w string) bool {
			return strings.Contains(w, "HTTPS certificate") && strings.Contains(w, "expires")
		})
	}
	waitFor(t, 10*time.Second, func() error {
		if !warned() {
			return fmt.Errorf("warnings %q: want the HTTPS certificate's expiry", s.Gateway().Warnings())
		}
		return nil
	})

	renewed := certfilestest.NewPair(t, 0) // two years
	files.Install(t, renewed, time.Now())
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}}
	waitFor(t, 30*time.Second, func() error {
		res, err := hc.Get(s.URL() + "/readyz") // each request a handshake: the files are looked at again
		if err != nil {
			return err
		}
		res.Body.Close()
		if !bytes.Equal(res.TLS.PeerCertificates[0].Raw, firstCert(t, renewed.Cert)) {
			return errors.New("the renewed certificate is not served yet")
		}
		if warned() {
			return fmt.Errorf("the renewed certificate is served, and warnings still say %q", s.Gateway().Warnings())
		}
		return nil
	})
}

// firstCert is the DER of the first certificate in a PEM file's bytes.
func firstCert(t *testing.T, pemBytes []byte) []byte {
	t.Helper()
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("no PEM block")
	}
	return block.Bytes
}
