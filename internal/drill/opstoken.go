package drill

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// The drill reads what a site knows of the log — how far its read model
// has applied each stream, every stream's leader and last record — from
// GET /v1/ops/site, which only an operator may read (the public GET
// /v1/status shows none of it). On a cluster it started, the drill makes
// itself an operator: it signs a user up and gives it the role with the
// admin credential, as `salamander admin set-role` does. A cluster it
// attached to needs an operator's session token from whoever attaches.

// ErrNoOpsToken is returned by what reads GET /v1/ops/site on a cluster
// the drill attached to without an operator's token.
var ErrNoOpsToken = errors.New("drill: no operator's session token for this cluster (GET /v1/ops/site)")

// OpsToken returns the operator's session token the drill reads the
// sites' technical status with ("" if it has none).
func (c *Cluster) OpsToken() string { return c.opsToken }

// makeOperator signs a new user up, makes it an operator with the admin
// credential and waits until every site lets it read GET /v1/ops/site.
func (c *Cluster) makeOperator(ctx context.Context) error {
	st, err := c.admin(0)
	if err != nil {
		return err
	}
	cl, err := client.New(client.Config{Sites: c.URLs(), HTTPClient: c.hc})
	if err != nil {
		return fmt.Errorf("drill: operator: %w", err)
	}
	name := "drillops" + client.NewClientID()[:8]
	s, err := cl.SignUp(ctx, name, "Drill operator", "drill-ops-pw-"+client.NewClientID())
	if err != nil {
		return fmt.Errorf("drill: signing the drill's operator up: %w", err)
	}
	at := time.Now().UTC()
	rec := salamander.Record{Type: salamander.RecRoleSet, User: name, Role: salamander.RoleOperator, Site: "drill", At: at}
	if _, _, err := st.Append(ctx, jsstore.AccountsStream, "role."+name, rec,
		jsstore.AppendOptions{MsgID: "drill-role:" + name + ":" + at.Format(time.RFC3339Nano)}); err != nil {
		return fmt.Errorf("drill: making %s an operator: %w", name, err)
	}
	c.opsToken = s.Token
	for i := range c.sites {
		var why error
		err := poll(ctx, 50*time.Millisecond, func() (bool, error) {
			_, why = c.Status(ctx, i)
			return why == nil, nil
		})
		if err != nil {
			return fmt.Errorf("drill: site %s does not let the drill's operator in (%v): %w", c.sites[i].name, why, err)
		}
	}
	return nil
}

// opsRequest is a GET of path at site i with the operator's token.
func (c *Cluster) opsRequest(ctx context.Context, i int, path string) (*http.Request, error) {
	if c.opsToken == "" {
		return nil, ErrNoOpsToken
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL(i)+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.opsToken)
	return req, nil
}
