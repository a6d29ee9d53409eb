package gateway

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// A retry of a message acknowledged held (its partition elects a leader),
// not placed yet, is answered as its duplicate — the held original, once
// — not held a second time: it was answered 202 as a new message, and the
// sender's history listed the message twice under held.
func TestAResendOfAHeldMessageIsItsDuplicate(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const room = "g_0123456789abcdef0123456789abcdef"
	g, store, v := startLoneGateway(t, ctx, func(c *jsstore.Config) { c.HoldAfter = 300 * time.Millisecond },
		salamander.Record{Type: salamander.RecUserCreated, User: "ann", PasswordHash: "x"},
		salamander.Record{Type: salamander.RecRoomCreated, Room: room, Kind: salamander.RoomGroup, Name: "g", Members: []string{"ann"}, By: "ann"})
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, err := v.Room(ctx, room, "ann"); err != nil {
			return err
		}
		return nil
	})

	// The room's partition stops answering: its messages are held.
	js, err := jetstream.New(store.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(ctx, "SAL_"+"P0"); err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddr("192.0.2.1")
	req := salamander.SendRequest{ClientID: "c1", Text: "held once"}
	first, err := g.send(ctx, "ann", addr, room, req)
	if err != nil || !first.Message.Held || first.Duplicate {
		t.Fatalf("the first send: %+v, %v; want held, not a duplicate", first, err)
	}
	// The resend goes with others, as under load: in a batch record of
	// its own message id, which the log's dedupe cannot recognize.
	results := make([]salamander.SendResult, 8)
	errs := make([]error, 8)
	var sends sync.WaitGroup
	for i := range results {
		r := req
		if i > 0 {
			r = salamander.SendRequest{ClientID: fmt.Sprint("c", i+1), Text: fmt.Sprint("held too ", i+1)}
		}
		sends.Go(func() { results[i], errs[i] = g.send(ctx, "ann", addr, room, r) })
	}
	sends.Wait()
	again := results[0]
	if errs[0] != nil || !again.Message.Held || !again.Duplicate || again.Message.ClientID != "c1" || !again.Message.SentAt.Equal(first.Message.SentAt) {
		t.Fatalf("its resend: %+v, %v; want the held original as a duplicate", again, errs[0])
	}
	for i, res := range results[1:] {
		if errs[i+1] != nil || !res.Message.Held || res.Duplicate {
			t.Fatalf("send c%d: %+v, %v; want held", i+2, res, errs[i+1])
		}
	}
	if held := v.Held(room, "ann"); len(held) != 8 {
		t.Fatalf("held: %d messages, want 8: %+v", len(held), held)
	}
	if held := v.HeldBy("ann"); len(held) != 8 {
		t.Fatalf("held by ann: %d messages, want 8: %+v", len(held), held)
	}
}

// startLoneGateway starts a gateway of site "a" on a lone NATS server (R1,
// one partition; tweak changes the store's settings), its read model
// applying the log, with recs appended first (room records to their room's
// partition, the others to the accounts stream).
func startLoneGateway(t *testing.T, ctx context.Context, tweak func(*jsstore.Config), recs ...salamander.Record) (*Gateway, *jsstore.Store, *view.View) {
	t.Helper()
	cfg := jsstore.DefaultConfig(presenceNATS(t))
	cfg.Replicas, cfg.Partitions = 1, 1
	if tweak != nil {
		tweak(&cfg)
	}
	return startGatewayOn(t, ctx, cfg, recs...)
}

// startGatewayOn starts a gateway of site "a" on a store opened with cfg,
// its read model applying the log, with recs appended first (as
// startLoneGateway).
func startGatewayOn(t *testing.T, ctx context.Context, cfg jsstore.Config, recs ...salamander.Record) (*Gateway, *jsstore.Store, *view.View) {
	t.Helper()
	store, err := jsstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	for i, r := range recs {
		r.At = time.Now().UTC()
		stream := jsstore.AccountsStream
		if r.Room != "" {
			stream = store.RoomStream(r.Room)
		}
		if _, _, err := store.Append(ctx, stream, string(r.Type), r, jsstore.AppendOptions{MsgID: fmt.Sprint("setup-", i)}); err != nil {
			t.Fatal(err)
		}
	}
	v := runView(t, store)
	g := New(DefaultConfig("a", store, v))
	if err := g.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, store, v
}

// runView opens an empty read model that applies store's log until the
// test ends.
func runView(t *testing.T, store *jsstore.Store) *view.View {
	t.Helper()
	v, err := view.Open(filepath.Join(t.TempDir(), "view.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { v.Run(runCtx, store) })
	t.Cleanup(func() {
		stop()
		wg.Wait()
		_ = v.Close()
	})
	return v
}
