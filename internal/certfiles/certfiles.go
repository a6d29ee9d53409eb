// Package certfiles serves a TLS certificate from its PEM files and
// re-reads them when they change, so that a renewed certificate (an ACME
// client replacing the files) needs no restart: `salamander serve`'s
// HTTPS and `salamander lb`'s use it.
package certfiles

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// Files serves a certificate from its PEM files, re-reading them (at
// most every Recheck) when either file's modification time
// changes: renewing a certificate (e.g. by an ACME client) is replacing
// the files. A renewal that does not load keeps the last good pair, and
// is logged (each time the files change and still do not load): it would
// otherwise go unnoticed until the old certificate expired.
type Files struct {
	certPath, keyPath string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

// Recheck is how often the files are looked at again, at most.
const Recheck = 10 * time.Second

// Load reads the certificate (chain) and key at certPath and keyPath,
// refusing a key every user of the host may read.
func Load(certPath, keyPath string, log *slog.Logger) (*Files, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("HTTPS needs both a certificate and its key")
	}
	c := &Files{certPath: certPath, keyPath: keyPath, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Files) load() error {
	stamp, err := c.stamps()
	if err != nil {
		return err
	}
	// The private key must not be readable by every user of the host.
	if fi, err := os.Stat(c.keyPath); err == nil && fi.Mode().Perm()&0o004 != 0 {
		return fmt.Errorf("HTTPS key %s is readable by every user (mode %04o); chmod o-r it", c.keyPath, fi.Mode().Perm())
	}
	pair, err := tls.LoadX509KeyPair(c.certPath, c.keyPath)
	if err != nil {
		return fmt.Errorf("HTTPS certificate: %w", err)
	}
	c.cert, c.stamp = &pair, stamp
	return nil
}

func (c *Files) stamps() ([2]time.Time, error) {
	var out [2]time.Time
	for i, p := range []string{c.certPath, c.keyPath} {
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("HTTPS certificate: %w", err)
		}
		out[i] = fi.ModTime()
	}
	return out, nil
}

// GetCertificate is the certificate to serve (tls.Config.GetCertificate).
func (c *Files) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	return c.cert, nil
}

// refresh re-reads the files if Recheck has passed since the last look
// and they changed. c.mu is held.
func (c *Files) refresh() {
	if now := time.Now(); now.Sub(c.checked) >= Recheck {
		c.checked = now
		if stamp, err := c.stamps(); err == nil && stamp != c.stamp {
			// A half-written or broken renewal: keep serving the last
			// good pair, and say so (again at the next change).
			if err := c.load(); err != nil {
				c.stamp = stamp
				c.log.Warn("the HTTPS certificate's files changed but do not load; serving the previous one", "err", err)
			}
		}
	}
}

// Expiry is when the certificate served now expires (its leaf's), after
// looking at the files as a handshake does: a renewal is seen without
// waiting for one (a balancer may keep its connections open for hours).
func (c *Files) Expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refresh()
	if c.cert == nil || c.cert.Leaf == nil {
		return time.Time{}
	}
	return c.cert.Leaf.NotAfter
}
