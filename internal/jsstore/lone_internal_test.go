package jsstore

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// openLoneStore starts a one-server JetStream (R1) and opens a store with
// two partitions on it; both stop when the test ends.
func openLoneStore(ctx context.Context, t *testing.T) *Store {
	t.Helper()
	return openTestStore(ctx, t, startLoneServer(ctx, t), nil)
}

// startLoneServer starts a one-server JetStream (its server "site-a"),
// stopped when the test ends, and returns its client URL.
func startLoneServer(ctx context.Context, t *testing.T) string {
	t.Helper()
	node, err := natsnode.Start(ctx, loneServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return node.ClientURL()
}

// loneServerConfig is a one-server JetStream's configuration (its server
// "site-a"), storing in a directory of the test's.
func loneServerConfig(t *testing.T) natsnode.Config {
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir, cfg.ClusterAddr = filepath.Join(t.TempDir(), "nats"), ""
	return cfg
}

// openTestStore opens a store with two partitions, one replica each, on
// the server at url, its configuration changed by tweak (if set), and
// makes its streams; it is closed when the test ends.
func openTestStore(ctx context.Context, t *testing.T, url string, tweak func(*Config)) *Store {
	t.Helper()
	scfg := DefaultConfig(url)
	scfg.Replicas, scfg.Partitions = 1, 2
	if tweak != nil {
		tweak(&scfg)
	}
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

// A stream made by hand with settings that break a promise (here: no
// direct gets and a message limit) is refused, saying what is wrong. Each
// round of EnsureStreams is tried until one gets as far as that stream:
// a CI run under load once spent a whole 3 s deadline creating the
// cluster's bucket and the first stream.
func TestStreamsThatBreakAGuaranteeAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir, cfg.ClusterAddr = filepath.Join(t.TempDir(), "nats"), ""
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer node.Shutdown()
	scfg := DefaultConfig(node.ClientURL())
	scfg.Replicas, scfg.Partitions = 1, 2
	s, err := Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "SAL_P0", Subjects: []string{"sal.p0.>"},
		Storage: jetstream.FileStorage, MaxMsgs: 1000}); err != nil {
		t.Fatal(err)
	}
	for {
		err := s.ensureStreams(ctx, true)
		if errors.Is(err, ErrStreamConfig) {
			if !strings.Contains(err.Error(), "direct gets are off") || !strings.Contains(err.Error(), "may drop records") {
				t.Fatalf("refused without saying why: %v", err)
			}
			return
		}
		if err == nil || ctx.Err() != nil {
			t.Fatalf("a stream without direct gets and with a message limit: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // the server is still starting: try the round again
	}
}

// A stream that cannot be read (in a fire: one whose leader burned, until
// it elects) is listed with its error, and every other stream is still
// read and listed, in order.
func TestStatusListsEveryStreamWhenOneCannotBeRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openTestStore(ctx, t, startLoneServer(ctx, t), nil)
	names := append([]string{"NO_SUCH_STREAM"}, s.Streams()...)
	names = append(names, s.Standbys()...)
	st, err := s.statusOfAll(ctx, names)
	if err == nil || !strings.Contains(err.Error(), "NO_SUCH_STREAM") {
		t.Fatalf("error %v: want one naming the stream not read", err)
	}
	if len(st) != len(names) {
		t.Fatalf("%d streams listed, want %d: %+v", len(st), len(names), st)
	}
	for i, ss := range st {
		if ss.Stream != names[i] {
			t.Fatalf("stream %d is %s, want %s", i, ss.Stream, names[i])
		}
		if i == 0 {
			if ss.Error == "" || ss.Leader != "" {
				t.Fatalf("the missing stream listed as %+v: want an error and no leader", ss)
			}
			continue
		}
		if ss.Error != "" || ss.Leader == "" {
			t.Fatalf("stream %s listed as %+v: want it read, with its leader", ss.Stream, ss)
		}
		if IsStandby(ss.Stream) && ss.StandbyOf != PartitionOf(ss.Stream) {
			t.Fatalf("standby %s says it stands by %q", ss.Stream, ss.StandbyOf)
		}
	}
}

// UpgradeStreams (the admin CLI's) creates nothing: on a server without a
// cluster it says so and leaves it without one; on a cluster it learns
// the partition count; a stream gone from a set-up cluster is reported at
// once, not waited for and not made anew.
func TestUpgradeStreamsCreatesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	url := startLoneServer(ctx, t)
	scfg := DefaultConfig(url)
	scfg.Replicas, scfg.Partitions = 1, 2
	admin, err := Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	// (The server may still be electing its meta leader: ask until the
	// answer is about the cluster.)
	for err = admin.UpgradeStreams(ctx); !errors.Is(err, ErrNoCluster); err = admin.UpgradeStreams(ctx) {
		if ctx.Err() != nil {
			t.Fatalf("on an empty server: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := admin.js.KeyValue(ctx, clusterBucket); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Fatalf("the cluster bucket after UpgradeStreams on an empty server: %v", err)
	}
	site := openTestStore(ctx, t, url, nil) // a site sets the cluster up
	if err := admin.UpgradeStreams(ctx); err != nil || admin.partitions.Load() != 2 {
		t.Fatalf("on a set-up cluster: %v, %d partitions", err, admin.partitions.Load())
	}
	if err := site.js.DeleteStream(ctx, natsName("p1")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := admin.UpgradeStreams(ctx); !errors.Is(err, ErrStreamMissing) || time.Since(start) > 5*time.Second {
		t.Fatalf("with p1 gone: %v after %s", err, time.Since(start))
	}
	if _, err := admin.js.Stream(ctx, natsName("p1")); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("p1 after UpgradeStreams: %v", err)
	}
}

// checkStream refuses every setting by which the server itself would drop
// or let a writer drop records of the log, not only the limits: a limit
// of records per subject (every batch record shares one subject, so all
// but the newest would go), rollups (one publish by any gateway
// credential purges the stream), per-message TTLs (a record that expires
// leaves a hole no site applies past), and a mirror or sources (records
// the sites did not append). A stream as Salamander creates it passes.
func TestCheckStreamRefusesWhatCanDropRecords(t *testing.T) {
	s := &Store{cfg: Config{Replicas: 1}}
	good := func() jetstream.StreamConfig {
		return jetstream.StreamConfig{Name: "SAL_P0", Subjects: []string{"sal.p0.>"}, Storage: jetstream.FileStorage,
			Replicas: 1, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardNew, AllowDirect: true,
			MaxMsgsPerSubject: -1, RePublish: republish("p0")}
	}
	if err := s.checkStream("p0", &jetstream.StreamInfo{Config: good()}); err != nil {
		t.Fatalf("a stream as Salamander creates it: %v", err)
	}
	for name, change := range map[string]func(*jetstream.StreamConfig){
		"max msgs per subject": func(c *jetstream.StreamConfig) { c.MaxMsgsPerSubject = 1 },
		"rollups":              func(c *jetstream.StreamConfig) { c.AllowRollup = true },
		"message TTLs":         func(c *jetstream.StreamConfig) { c.AllowMsgTTL = true },
		"a mirror":             func(c *jetstream.StreamConfig) { c.Mirror = &jetstream.StreamSource{Name: "X"} },
		"sources":              func(c *jetstream.StreamConfig) { c.Sources = []*jetstream.StreamSource{{Name: "X"}} },
		"sealed":               func(c *jetstream.StreamConfig) { c.Sealed = true },
	} {
		cfg := good()
		change(&cfg)
		if err := s.checkStream("p0", &jetstream.StreamInfo{Config: cfg}); !errors.Is(err, ErrStreamConfig) {
			t.Errorf("a stream with %s: %v, want it refused", name, err)
		}
	}
}

// An account that holds another stream on Salamander's subjects (another
// application's data, or a stream made by hand) is refused, naming that
// stream: creating the log's streams there fails for good, and was
// logged as the cluster still forming.
func TestSubjectsTakenByAnotherStreamAreRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	scfg := DefaultConfig(startLoneServer(ctx, t))
	scfg.Replicas, scfg.Partitions = 1, 2
	s, err := Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER_APP", Subjects: []string{"sal.>"}}); err != nil {
		t.Fatal(err)
	}
	var last error
	for ctx.Err() == nil {
		last = s.ensureStreams(ctx, true)
		if errors.Is(last, ErrStreamConfig) && strings.Contains(last.Error(), "OTHER_APP") {
			break
		}
		time.Sleep(100 * time.Millisecond) // the server is still starting: try the round again
	}
	if !errors.Is(last, ErrStreamConfig) {
		t.Fatalf("a stream on sal.> in the account: %v; want it refused, naming OTHER_APP", last)
	}
	// The start looks again every half second until an operator acts, and
	// says so once a minute, not at every look.
	var logged bytes.Buffer
	s.log = slog.New(slog.NewTextHandler(&logged, nil))
	rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
	defer rcancel()
	if err := s.retryEnsure(rctx, true); err == nil {
		t.Fatal("the start went on beside OTHER_APP")
	}
	if n := strings.Count(logged.String(), "breaks a guarantee"); n != 1 {
		t.Fatalf("the refusal logged %d times in 2 s, want once:\n%s", n, logged.String())
	}
}
