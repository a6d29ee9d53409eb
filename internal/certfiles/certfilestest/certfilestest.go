// Package certfilestest makes HTTPS certificate files for tests: a pair
// made as `salamander certs` makes a site's, written in place of another
// as a renewal (an ACME client, an operator) replaces them. It owns no
// product code; only tests import it.
package certfilestest

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/secrets"
)

// Pair is a certificate and its key, in PEM.
type Pair struct{ Cert, Key []byte }

// NewPair makes a site's certificate and key, valid for valid from now
// (0: the secrets package's default).
func NewPair(t testing.TB, valid time.Duration) Pair {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "secrets")
	if err := secrets.Generate(dir, secrets.Options{Sites: []string{"a"}, TLS: true, BcryptCost: 4, Valid: valid}); err != nil {
		t.Fatal(err)
	}
	sd := filepath.Dir(secrets.SiteFile(dir, "a"))
	var p Pair
	var err error
	if p.Cert, err = os.ReadFile(filepath.Join(sd, "cert.pem")); err != nil {
		t.Fatal(err)
	}
	if p.Key, err = os.ReadFile(filepath.Join(sd, "key.pem")); err != nil {
		t.Fatal(err)
	}
	return p
}

// Files are where a server reads its certificate and key.
type Files struct{ Cert, Key string }

// NewFiles names a certificate's and a key's files in a directory of
// their own; Install writes them.
func NewFiles(t testing.TB) Files {
	dir := t.TempDir()
	return Files{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
}

// Install writes p to f (readable by its owner only), dated at: the
// files' time is what a server that re-reads them on a change looks at.
func (f Files) Install(t testing.TB, p Pair, at time.Time) {
	t.Helper()
	for path, b := range map[string][]byte{f.Cert: p.Cert, f.Key: p.Key} {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
	}
}
