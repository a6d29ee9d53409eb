package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// dev refuses a record-slot bound outside 0–1024 before it starts or
// writes anything.
func TestDevRefusesABadRecordSlotBound(t *testing.T) {
	for _, bad := range []string{"-1", "1025"} {
		data := filepath.Join(t.TempDir(), "data")
		err := runDev(t.Context(), []string{"--data", data, "--record-slots", bad}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "--record-slots") {
			t.Errorf("--record-slots %s: %v", bad, err)
		}
		if _, statErr := os.Stat(data); !os.IsNotExist(statErr) {
			t.Errorf("--record-slots %s: the data directory was created (%v)", bad, statErr)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The chat command dev suggests runs as printed: chat refuses to start
// without a password, so the hint gives one.
func TestDevChatHintGivesAPassword(t *testing.T) {
	hint := devChatHint([]string{"http://127.0.0.1:8081", "http://127.0.0.1:8082", "http://127.0.0.1:8083"})
	want := "SALAMANDER_PASSWORD=correct-horse salamander chat --sites http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 --user alice --signup"
	if hint != want {
		t.Fatalf("hint %q, want %q", hint, want)
	}
}

// dev starts again on its own data, and, holding the admin credential,
// upgrades what an older version made: a cluster bucket any gateway could
// rewrite is made written-once (its sites logged an error at every start
// until an operator ran some admin command).
func TestDevUpgradesAnOlderClusterBucket(t *testing.T) {
	ports, err := freeport.Loopback(9)
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	args := []string{"--data", data, "--http-port", fmt.Sprint(ports[0]), "--nats-port", fmt.Sprint(ports[3]),
		"--cluster-port", fmt.Sprint(ports[6]), "--partitions", "2"}
	// Ports are given per site as consecutive numbers: freeport's are, or
	// the test takes its chance with the next ones.
	for i := 1; i < 3; i++ {
		if ports[i] != ports[0]+i || ports[3+i] != ports[3]+i || ports[6+i] != ports[6]+i {
			t.Skipf("no three consecutive free ports: %v", ports)
		}
	}
	run := func() (stop func()) {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		var out syncBuffer
		done := make(chan error, 1)
		go func() { done <- runDev(ctx, args, &out, io.Discard) }()
		deadline := time.Now().Add(90 * time.Second)
		for !strings.Contains(out.String(), "\nready.") {
			select {
			case err := <-done:
				cancel()
				t.Fatalf("dev ended: %v\n%s", err, out.String())
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("dev not ready in 90 s:\n%s", out.String())
			}
		}
		return func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("dev: %v", err)
			}
		}
	}
	bucket := func(change func(*jetstream.StreamConfig)) jetstream.StreamConfig {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cfg, _, err := jsstore.AdminConfig(filepath.Join(data, "secrets", "admin.json"), "test",
			fmt.Sprintf("nats://127.0.0.1:%d", ports[3]))
		if err != nil {
			t.Fatal(err)
		}
		store, err := jsstore.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		js, err := jetstream.New(store.Conn())
		if err != nil {
			t.Fatal(err)
		}
		st, err := js.Stream(ctx, "KV_SAL_CLUSTER")
		if err != nil {
			t.Fatal(err)
		}
		c := st.CachedInfo().Config
		if change != nil {
			change(&c)
			if _, err := js.UpdateStream(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	stop := run()
	// As an older version made it: a key's value overwritten by the next.
	bucket(func(c *jetstream.StreamConfig) { c.Discard, c.DiscardNewPerSubject = jetstream.DiscardOld, false })
	stop()
	stop = run()
	defer stop()
	if c := bucket(nil); c.AllowRollup || c.Discard != jetstream.DiscardNew || !c.DiscardNewPerSubject || c.MaxMsgsPerSubject != 1 {
		t.Fatalf("after dev started again: rollups %v, discard %v, new per subject %v, per subject %d",
			c.AllowRollup, c.Discard, c.DiscardNewPerSubject, c.MaxMsgsPerSubject)
	}
}
