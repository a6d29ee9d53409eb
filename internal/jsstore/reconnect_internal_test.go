package jsstore

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// An append that gave up while the connection was down is gone with it.
// nats.go keeps what is published while it reconnects and sends it once
// connected again, however late: an append its caller was told had failed
// (and resent at another site, and chatted past) would then land minutes
// later — a message stored twice, out of its order, or a room's rename
// undone by a stale one. The store's connection buffers nothing.
func TestAnAppendThatGaveUpIsNotSentOnReconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := loneServerConfig(t)
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(node.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	cfg.ClientAddr = u.Host // the restart listens where the store reconnects
	s := openTestStore(ctx, t, node.ClientURL(), func(c *Config) { c.AppendTimeout = time.Second })
	const room = "g_gaveup"
	stream := s.RoomStream(room)
	msg := func(id string) salamander.Record {
		return salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "u", ClientID: id, Text: id}
	}
	if _, _, err := s.Append(ctx, stream, room, msg("before"), AppendOptions{MsgID: "m:before"}); err != nil {
		t.Fatal(err)
	}

	node.Shutdown()
	waitUntil(t, ctx, func() bool { return !s.nc.IsConnected() })
	actx, acancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	_, _, err = s.Append(actx, stream, room, msg("gave-up"), AppendOptions{MsgID: "m:gave-up"})
	acancel()
	if err == nil {
		t.Fatal("an append with no server to take it succeeded")
	}

	node, err = natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	waitUntil(t, ctx, func() bool { return s.nc.IsConnected() })
	// Whatever the connection kept is sent before this append.
	var after salamander.Position
	for {
		after, _, err = s.Append(ctx, stream, room, msg("after"), AppendOptions{MsgID: "m:after"})
		if err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if n := RecordSeq(after.Seq); n != 2 {
		var positions []uint64
		for seq := uint64(1); seq <= n; seq++ {
			positions = append(positions, PositionOf(stream, seq, 0).Seq)
		}
		recs, err := s.Fetch(ctx, stream, positions)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, p := range positions {
			got = append(got, recs[p].ClientID)
		}
		t.Fatalf("the stream holds %q: the append that gave up was sent on reconnect", got)
	}
}

// waitUntil polls cond until it holds or ctx ends.
func waitUntil(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal(errors.New("condition not met before the test's deadline"))
		case <-time.After(10 * time.Millisecond):
		}
	}
}
