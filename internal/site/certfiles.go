package site

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certFiles serves the HTTPS certificate from its PEM files, re-reading
// them (at most every certRecheck) when either file's modification time
// changes: renewing a certificate (e.g. by an ACME client) is replacing
// the files. A renewal that does not load keeps the last good pair, and
// is logged (each time the files change and still do not load): it would
// otherwise go unnoticed until the old certificate expired.
type certFiles struct {
	certPath, keyPath string
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   [2]time.Time
	checked time.Time
}

const certRecheck = 10 * time.Second

func newCertFiles(certPath, keyPath string, log *slog.Logger) (*certFiles, error) {
	if certPath == "" || keyPath == "" {
		return nil, errors.New("HTTPS needs both a certificate and its key")
	}
	c := &certFiles{certPath: certPath, keyPath: keyPath, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certFiles) load() error {
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

func (c *certFiles) stamps() ([2]time.Time, error) {
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

func (c *certFiles) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= certRecheck {
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
	return c.cert, nil
}

// expiry is when the certificate served now expires (its leaf's).
func (c *certFiles) expiry() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cert == nil || c.cert.Leaf == nil {
		return time.Time{}
	}
	return c.cert.Leaf.NotAfter
}

// certWarnBefore is how long before a certificate expires a site starts
// warning of it; certCheckEvery is how often it looks.
const (
	certWarnBefore = 30 * 24 * time.Hour
	certCheckEvery = time.Hour
)

// watchCertificates warns (log and /v1/status) once when the site's NATS
// certificates (its own and the CA, from its site file) or its HTTPS
// certificate come within certWarnBefore of expiring, and once more when
// they have: `salamander certs` makes every site's certificate and the
// CA at once, so they expire together, and then every route and NATS
// connection of the deployment fails at the same moment. A renewed HTTPS
// certificate is served without a restart (certFiles) and warned about
// afresh when its own time comes; the NATS ones need the sites restarted
// (README, Rotating), which starts this again.
func (s *Site) watchCertificates(ctx context.Context, https *certFiles) {
	warned := map[string]time.Time{} // what and stage -> the expiry warned of
	t := time.NewTicker(certCheckEvery)
	defer t.Stop()
	for {
		var checks []certCheck
		if at, err := s.cfg.Secrets.CertificateExpiry(); err != nil {
			s.log.Warn("cannot read the site's NATS certificates to check when they expire", "err", err)
		} else if !at.IsZero() {
			checks = append(checks, certCheck{"NATS certificate", at, "every route and NATS connection of this " +
				"site fails then, and at every site whose certificates were made with it; make new ones with " +
				"`salamander certs` and restart the sites one by one (README, Rotating)"})
		}
		if https != nil {
			if at := https.expiry(); !at.IsZero() {
				checks = append(checks, certCheck{"HTTPS certificate", at,
					"clients cannot reach this site then; replace its files (they are re-read without a restart)"})
			}
		}
		for _, c := range checks {
			stage, msg := c.stage(time.Now())
			key := c.what + " " + stage
			if stage == "" || warned[key].Equal(c.at) {
				continue
			}
			warned[key] = c.at
			s.gw.Warn(msg)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// certCheck is a certificate watchCertificates looks at: what it is, when
// it expires, and what to do about it.
type certCheck struct {
	what string
	at   time.Time
	fix  string
}

// stage says whether the certificate has expired ("expired"), will within
// certWarnBefore ("soon") or neither (""), and the warning for it.
func (c certCheck) stage(now time.Time) (stage, msg string) {
	left := c.at.Sub(now)
	switch {
	case left <= 0:
		return "expired", fmt.Sprintf("this site's %s expired at %s: %s", c.what, c.at.UTC().Format(time.RFC3339), c.fix)
	case left <= certWarnBefore:
		return "soon", fmt.Sprintf("this site's %s expires at %s, in %d days: %s", c.what,
			c.at.UTC().Format(time.RFC3339), int(left.Hours()/24), c.fix)
	}
	return "", ""
}
