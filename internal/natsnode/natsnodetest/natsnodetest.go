// Package natsnodetest starts embedded NATS servers for tests: three of
// them routed to one another, one per site, as a three-site cluster's
// engine without the sites.
package natsnodetest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// StartThree starts the servers of sites a, b and c on free loopback
// ports, each routed to the other two with its store in a directory of
// its own, and shuts them down when the test ends.
func StartThree(t testing.TB, ctx context.Context) []*natsnode.Node {
	t.Helper()
	ports, err := freeport.Loopback(3)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	nodes := make([]*natsnode.Node, 3)
	for i, site := range []string{"a", "b", "c"} {
		cfg := natsnode.DefaultConfig(site)
		cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
		cfg.ClusterAddr = addr(i)
		for j := range 3 {
			if j != i {
				cfg.Routes = append(cfg.Routes, addr(j))
			}
		}
		node, err := natsnode.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.Shutdown)
		nodes[i] = node
	}
	return nodes
}
