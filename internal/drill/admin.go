package drill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// The drill's operator view of the log. Besides the public API, a drill
// on a cluster it started reads the log the way `salamander admin` does:
// with the cluster's admin credential, through a site's NATS server. It
// reads only what the public API does not show — a standby stream's
// leader and last record, a partition's last merge record — and polls a
// partition's leader every few milliseconds while it elects, where
// GET /v1/ops/site shares one reading a second among its callers. It never
// writes.

// ErrNoAdmin is returned when the drill has no admin credential for the
// cluster (one it attached to).
var ErrNoAdmin = errors.New("drill: no admin credential for this cluster")

// admin returns a connection to the log through site i's NATS server
// alone, with the admin credential, opened on first use and closed by
// Close. It outlives the site's fires: it reconnects whenever the site's
// server is back. Use it only while the site is up (Alive).
func (c *Cluster) admin(i int) (*jsstore.Store, error) {
	if !c.hasAdmin() {
		return nil, ErrNoAdmin
	}
	c.adminMu.Lock()
	defer c.adminMu.Unlock()
	if c.adminsClosed {
		return nil, errors.New("drill: cluster closed")
	}
	if st := c.admins[i]; st != nil {
		return st, nil
	}
	cfg, _, err := jsstore.AdminConfig(secrets.AdminFile(c.secrets), "salamander-drill-"+c.sites[i].name, c.NATSURL(i))
	if err != nil {
		return nil, fmt.Errorf("drill: admin credential: %w", err)
	}
	// Through this site's server alone: were it to follow the servers the
	// cluster announces, a connection whose site burned would move to
	// another site's, and lose its way again when that one burns.
	cfg.ConfiguredOnly = true
	// Open connects in the background and retries while the server is
	// down; a request before it is connected fails like any other.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := jsstore.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("drill: admin connection to site %s: %w", c.sites[i].name, err)
	}
	if c.admins == nil {
		c.admins = map[int]*jsstore.Store{}
	}
	c.admins[i] = st
	return st, nil
}

// openAdmins opens the admin connection through every live site and
// waits (up to ctx) until each is connected, so that a fault's watch
// starts without a connection to make.
func (c *Cluster) openAdmins(ctx context.Context) error {
	for i := range c.sites {
		if !c.Alive(i) {
			continue
		}
		st, err := c.admin(i)
		if err != nil {
			return err
		}
		err = poll(ctx, 20*time.Millisecond, func() (bool, error) { return st.Conn().IsConnected(), nil })
		if err != nil {
			return fmt.Errorf("drill: admin connection to site %s: not connected: %w", c.sites[i].name, err)
		}
	}
	return nil
}

// hasAdmin reports whether the drill holds the cluster's admin
// credential (it started the cluster), without which admin fails with
// ErrNoAdmin.
func (c *Cluster) hasAdmin() bool { return !c.attached && c.secrets != "" }

// liveAdmin returns the admin connection through a live, connected site,
// trying them from site k on (so that callers can spread their requests);
// nil when there is none.
func (c *Cluster) liveAdmin(k int) *jsstore.Store {
	for j := range c.sites {
		i := (k + j) % len(c.sites)
		if !c.Alive(i) {
			continue
		}
		c.adminMu.Lock()
		st := c.admins[i]
		c.adminMu.Unlock()
		if st != nil && st.Conn().IsConnected() {
			return st
		}
	}
	return nil
}

// closeAdmins closes the admin connections.
func (c *Cluster) closeAdmins() {
	c.adminMu.Lock()
	admins := c.admins
	c.admins, c.adminsClosed = nil, true
	c.adminMu.Unlock()
	for _, st := range admins {
		st.Close()
	}
}
