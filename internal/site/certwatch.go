package site

import (
	"context"
	"fmt"
	"time"

	"github.com/salamander-chat/salamander/internal/certfiles"
)

// certWarnBefore is how long before a certificate expires a site starts
// warning of it; certCheckEvery is how often it looks (a variable for
// tests).
const certWarnBefore = 30 * 24 * time.Hour

var certCheckEvery = time.Hour

// watchCertificates warns (log and GET /v1/ops/site) once when the site's NATS
// certificates (its own and the CA, from its site file) or its HTTPS
// certificate come within certWarnBefore of expiring, and once more when
// they have: `salamander certs` makes every site's certificate and the
// CA at once, so they expire together, and then every route and NATS
// connection of the deployment fails at the same moment. A renewed HTTPS
// certificate is served without a restart (certfiles): its warning goes
// at the next look (each is the site's warning under its own key, not
// one added for good), and it is warned about afresh when its own time
// comes; the NATS ones need the sites restarted (README, Rotating), which
// starts this again.
func (s *Site) watchCertificates(ctx context.Context, https *certfiles.Files) {
	warned := map[string]string{} // what -> its stage and expiry warned of
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
			if at := https.Expiry(); !at.IsZero() {
				checks = append(checks, certCheck{"HTTPS certificate", at,
					"clients cannot reach this site then; replace its files (they are re-read without a restart)"})
			}
		}
		for _, c := range checks {
			stage, msg := c.stage(time.Now())
			if stage == "" {
				s.gw.SetWarning("certificate: "+c.what, "") // renewed, or not due yet
				delete(warned, c.what)
				continue
			}
			if state := stage + " " + c.at.String(); warned[c.what] != state {
				warned[c.what] = state
				s.gw.SetWarning("certificate: "+c.what, msg)
			}
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
