package certfiles

import (
	"bytes"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/certfiles/certfilestest"
)

// A renewed certificate (its files replaced) is served without a restart.
func TestHTTPSCertificateIsReReadWhenItsFilesChange(t *testing.T) {
	pairs := [2]certfilestest.Pair{certfilestest.NewPair(t, 0), certfilestest.NewPair(t, 0)} // two deployments
	files := certfilestest.NewFiles(t)
	certPath, keyPath := files.Cert, files.Key
	install := func(i int, at time.Time) { files.Install(t, pairs[i], at) }
	install(0, time.Now().Add(-time.Hour))
	var logged bytes.Buffer
	c, err := Load(certPath, keyPath, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	first, _ := c.GetCertificate(nil)
	install(1, time.Now())
	c.mu.Lock()
	c.checked = time.Time{} // as if Recheck had passed
	c.mu.Unlock()
	second, _ := c.GetCertificate(nil)
	if bytes.Equal(first.Certificate[0], second.Certificate[0]) {
		t.Fatal("the renewed certificate was not served")
	}
	if _, err := Load(certPath, "", slog.Default()); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}

	// A renewal that does not load keeps the last good pair, and is said.
	if err := os.WriteFile(keyPath, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.checked = time.Time{}
	c.mu.Unlock()
	if third, _ := c.GetCertificate(nil); third != second {
		t.Fatal("a broken renewal replaced the certificate served")
	}
	if !strings.Contains(logged.String(), "do not load") {
		t.Fatalf("a broken renewal was not logged: %q", logged.String())
	}

	// A key every user of the host may read is refused.
	install(0, time.Now())
	if err := os.Chmod(keyPath, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(certPath, keyPath, slog.Default()); err == nil || !strings.Contains(err.Error(), "readable by every user") {
		t.Fatalf("a world-readable key: %v", err)
	}
}

// Expiry is that of the certificate in the files, re-read as they change,
// whether or not a handshake has come since: a site's warning of its
// certificate's expiry (site.watchCertificates) reads it, and a site
// behind a balancer that keeps its connections open may see no new
// handshake for hours after a renewal.
func TestExpiryFollowsARenewalWithoutAHandshake(t *testing.T) {
	pairs := [2]certfilestest.Pair{certfilestest.NewPair(t, 10*24*time.Hour), certfilestest.NewPair(t, 0)}
	files := certfilestest.NewFiles(t)
	certPath, keyPath := files.Cert, files.Key
	install := func(i int, at time.Time) { files.Install(t, pairs[i], at) }
	install(0, time.Now().Add(-time.Hour))
	c, err := Load(certPath, keyPath, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	soon := c.Expiry()
	if time.Until(soon) > 11*24*time.Hour {
		t.Fatalf("the first certificate expires at %s, want within 10 days", soon)
	}
	install(1, time.Now())
	c.mu.Lock()
	c.checked = time.Time{} // as if Recheck had passed
	c.mu.Unlock()
	if later := c.Expiry(); !later.After(soon.Add(300 * 24 * time.Hour)) {
		t.Fatalf("after the renewal Expiry says %s, the old certificate's %s", later, soon)
	}
}
