package jsstore

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/salamander-chat/salamander/internal/natsnode"
)

// openLoneStore starts a one-server JetStream (R1) and opens a store with
// two partitions on it; both stop when the test ends.
func openLoneStore(ctx context.Context, t *testing.T) *Store {
	t.Helper()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir, cfg.ClusterAddr = filepath.Join(t.TempDir(), "nats"), ""
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	scfg := DefaultConfig(node.ClientURL())
	scfg.Replicas, scfg.Partitions = 1, 2
	s, err := Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}
