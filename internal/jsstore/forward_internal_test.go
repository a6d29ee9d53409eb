package jsstore

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// openSiteStores starts a one-server JetStream (R1, its server "site-a")
// and opens one store per site on it, each configured as that site's and
// gathering; siteOf, when set, replaces how a server's site is named.
func openSiteStores(ctx context.Context, t *testing.T, siteOf func(string) string, sites ...string) []*Store {
	t.Helper()
	url := startLoneServer(ctx, t)
	var stores []*Store
	for _, site := range sites {
		s := openTestStore(ctx, t, url, func(c *Config) { c.Site, c.SiteOf = site, siteOf })
		if err := s.Gather(true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Status(ctx); err != nil { // learns who leads each partition
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	return stores
}

// forwardEveryBatch makes the test's stores forward every batch, however
// small, so that what is forwarded does not depend on timing. Call it
// before opening the stores: it is undone after they are closed.
func forwardEveryBatch(t *testing.T) {
	n := forwardMinBatch
	forwardMinBatch = 1
	t.Cleanup(func() { forwardMinBatch = n })
}

func sendMessage(ctx context.Context, s *Store, room, clientID string) (salamander.Position, error) {
	rec := salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "u", ClientID: clientID, Text: clientID}
	pos, _, err := s.Append(ctx, s.RoomStream(room), room, rec, AppendOptions{Batch: true, MsgID: "m:" + clientID})
	return pos, err
}

// Sites that do not lead a partition hand their gathered sends to the
// site that does, whose appender stores them with its own: every send is
// answered with the position it has in the log, once, and the leading
// site forwards nothing.
func TestForwardedSendsLandOnceAtTheirPositions(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, nil, "a", "b", "c") // the server is site-a: a leads
	const room, perSite = "g_fwd", 100
	stream := stores[0].RoomStream(room)
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	for _, s := range stores {
		for i := range perSite {
			wg.Go(func() {
				cid := fmt.Sprintf("%s-%03d", s.cfg.Site, i)
				pos, err := sendMessage(ctx, s, room, cid)
				if err != nil {
					t.Error(cid, err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if other, ok := acked[pos.Seq]; ok || pos.Stream != stream {
					t.Errorf("%s answered at %v (already %q's)", cid, pos, other)
				}
				acked[pos.Seq] = cid
			})
		}
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, s := range stores {
		sent, back := s.Forwarded()
		switch {
		case i == 0 && sent != 0:
			t.Errorf("the leading site forwarded %d batches", sent)
		case i > 0 && (sent == 0 || back != 0):
			t.Errorf("site %s forwarded %d batches, %d of them appended itself after all", s.cfg.Site, sent, back)
		}
	}
	// The log holds each send once, where its sender was told.
	var seen int
	tctx, stop := context.WithCancel(ctx)
	stores[1].Tail(tctx, stream, 1, func(e Entry) bool {
		if want := acked[e.Pos.Seq]; e.Record.ClientID != want {
			t.Errorf("at %d the log holds %q, its sender was told %q", e.Pos.Seq, e.Record.ClientID, want)
		}
		if seen++; seen == len(acked) {
			stop()
		}
		return true
	})
	if seen != 3*perSite {
		t.Fatalf("the log holds %d sends, want %d", seen, 3*perSite)
	}
}

// A site that does not answer a forward (here: nobody serves the site
// the store believes leads) costs one try: the store appends the batch
// itself and leaves that site alone for a while.
func TestForwardNotAnsweredIsAppendedHere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, func(string) string { return "x" }, "b")
	s := stores[0]
	for i := range 2 {
		if _, err := sendMessage(ctx, s, "d_alone", fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	if sent, back := s.Forwarded(); sent != 1 || back != 1 {
		t.Fatalf("forwarded %d, appended here after all %d; want 1 and 1 (then the site is shunned)", sent, back)
	}
	// A store that is not gathering (its site cut off) forwards nothing.
	if err := s.Gather(false); err != nil {
		t.Fatal(err)
	}
	s.gather.mu.Lock()
	s.gather.shunned = nil
	s.gather.mu.Unlock()
	if _, err := sendMessage(ctx, s, "d_alone", "m2"); err != nil {
		t.Fatal(err)
	}
	if sent, _ := s.Forwarded(); sent != 1 {
		t.Fatalf("a store that is not gathering forwarded (%d batches)", sent)
	}
}

// A lone send is appended where it was gathered: below capacity a
// forward would cost more than it saves.
func TestLoneSendsAreNotForwarded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stores := openSiteStores(ctx, t, nil, "a", "b")
	for i := range 3 {
		if _, err := sendMessage(ctx, stores[1], "d_lone", fmt.Sprint("m", i)); err != nil {
			t.Fatal(err)
		}
	}
	if sent, _ := stores[1].Forwarded(); sent != 0 {
		t.Fatalf("%d lone sends forwarded", sent)
	}
}

// A forwarded batch that is malformed, or for a stream that is not one
// of the cluster's partitions, is refused with a reason and stores
// nothing.
func TestGathererRefusesBadBatches(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openSiteStores(ctx, t, nil, "a")[0]
	req := func(typ salamander.RecordType, body string) *appendRequest {
		return &appendRequest{typ: typ, key: "d_x", msgID: "m:x", body: []byte(body)}
	}
	good := encodeForward("p0", []*appendRequest{req(salamander.RecMessageSent, `{"t":"msg.sent"}`)})
	// Entries that would make the whole batch record undecodable, or are
	// not what a gatherer gathers, beside a good one.
	entry := func(rec salamander.Record) *appendRequest {
		body, err := salamander.EncodeRecord(&rec)
		if err != nil {
			t.Fatal(err)
		}
		return &appendRequest{typ: rec.Type, key: rec.Room, msgID: "m:" + rec.ClientID, body: body}
	}
	msg := func(room string) salamander.Record {
		return salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "u", ClientID: "c-" + room, Text: "hi"}
	}
	room := "g_here"
	stream := s.RoomStream(room)
	other := "g_0"
	for i := 1; s.RoomStream(other) == stream; i++ {
		other = fmt.Sprintf("g_%d", i)
	}
	withGood := func(bad *appendRequest) []byte {
		return encodeForward(stream, []*appendRequest{entry(msg(room)), bad})
	}
	misnamed := entry(msg(room))
	misnamed.key = "g_elsewhere"
	for name, data := range map[string][]byte{
		"an entry that does not decode":     withGood(&appendRequest{typ: salamander.RecMessageSent, key: room, msgID: "m:y", body: []byte(`{"t":`)}),
		"a room change":                     withGood(entry(salamander.Record{Type: salamander.RecRoomRenamed, Room: room, Name: "x", By: "u"})),
		"a message of another partition":    withGood(entry(msg(other))),
		"an entry keyed for another room":   withGood(misnamed),
		"an entry of another type than its": withGood(&appendRequest{typ: salamander.RecMessageRead, key: room, msgID: "m:z", body: entry(msg(room)).body}),
	} {
		reply, err := s.nc.RequestWithContext(ctx, subjGather+"a", data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := decodeForwardReply(reply.Data, 2); err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: answered %v, want a refusal", name, err)
		}
	}
	for name, data := range map[string][]byte{
		"not a partition":  encodeForward(AccountsStream, []*appendRequest{req(salamander.RecUserCreated, `{"t":"user.created"}`)}),
		"unknown stream":   encodeForward("p9", []*appendRequest{req(salamander.RecMessageSent, `{}`)}),
		"no entries":       encodeForward("p0", nil),
		"truncated":        good[:len(good)-3],
		"trailing bytes":   append(bytes.Clone(good), 0),
		"empty body":       encodeForward("p0", []*appendRequest{req(salamander.RecMessageSent, "")}),
		"oversized":        make([]byte, maxForwardBytes+1),
		"huge field count": append([]byte{2, 'p', '0'}, 0xff, 0xff, 0x03),
	} {
		reply, err := s.nc.RequestWithContext(ctx, subjGather+"a", data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		_, err = decodeForwardReply(reply.Data, 1)
		if err == nil || !strings.Contains(err.Error(), "refused") {
			t.Errorf("%s: answered %v, want a refusal", name, err)
		}
	}
	st, err := s.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range st {
		if ss.Stream != AccountsStream && ss.LastSeq != 0 {
			t.Errorf("a refused batch stored something in %s (last seq %d)", ss.Stream, ss.LastSeq)
		}
	}
}

// The forward's encoding carries every field of a batch and its answers.
func TestForwardEncodingRoundTrips(t *testing.T) {
	batch := []*appendRequest{
		{typ: salamander.RecMessageSent, key: "d_a", msgID: "m:1", body: []byte(`{"t":"msg.sent","x":1}`)},
		{typ: salamander.RecMessageRead, key: "g_b", body: []byte(`{}`)},
	}
	stream, got, err := decodeForward(encodeForward("p1", batch))
	if err != nil || stream != "p1" || len(got) != 2 {
		t.Fatalf("decoded %q, %d entries, %v", stream, len(got), err)
	}
	for i, r := range got {
		w := batch[i]
		if r.typ != w.typ || r.key != w.key || r.msgID != w.msgID || !bytes.Equal(r.body, w.body) || !r.forwarded || r.done == nil {
			t.Fatalf("entry %d: %+v, want %+v", i, r, w)
		}
	}
	results := []appendResult{
		{pos: salamander.Position{Stream: "p1", Seq: PositionOf("p1", 7, 3).Seq}, dup: true},
		{err: errNoQuorum},
		{err: fmt.Errorf("disk on fire")},
	}
	back, err := decodeForwardReply(encodeForwardReply(results), 3)
	if err != nil {
		t.Fatal(err)
	}
	if back[0].pos != results[0].pos || !back[0].dup || back[0].err != nil {
		t.Fatalf("answer 0: %+v", back[0])
	}
	if salamander.ErrorCode(back[1].err) != salamander.CodeUnavailable || salamander.ErrorMessage(back[1].err) != salamander.ErrorMessage(errNoQuorum) {
		t.Fatalf("answer 1: %v", back[1].err)
	}
	if salamander.ErrorCode(back[2].err) != salamander.CodeInternal || !strings.Contains(back[2].err.Error(), "disk on fire") {
		t.Fatalf("answer 2: %v", back[2].err)
	}
	if _, err := decodeForwardReply(encodeForwardReply(results), 2); err == nil {
		t.Fatal("an answer for 3 entries was taken for 2")
	}
}

// A site that knows of held messages of a partition not yet placed does
// not forward the partition's batches: the gatherer decides from what it
// knows itself, and may not know of them yet, so a sender's next message
// could be placed before its held one. The batch stays here, behind them.
func TestNoForwardWhileHeldMessagesWait(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, nil, "a", "b") // a leads
	b := stores[1]
	const room = "d_held_first"
	p := b.RoomStream(room)
	// What b's own hold of a moment ago leaves: a standby record it knows
	// of, not yet merged (no merger runs: the state is set by hand).
	b.standby(p, func(st *standbyState) { st.end, st.heldAt = 1, time.Now() })
	if _, err := sendMessage(ctx, b, room, "after-held"); err != nil {
		t.Fatal(err)
	}
	if sent, _ := b.Forwarded(); sent != 0 {
		t.Fatalf("forwarded %d batches while held messages waited for their merge", sent)
	}
	// Nor while the partition is suspected silent.
	b.standby(p, func(st *standbyState) { st.end, st.merged, st.suspect = 0, 0, true })
	if _, err := sendMessage(ctx, b, room, "while-suspect"); err != nil {
		t.Fatal(err)
	}
	if sent, _ := b.Forwarded(); sent != 0 {
		t.Fatalf("forwarded %d batches while the partition was suspect", sent)
	}
}

// A forwarded batch the gatherer held in the standby (its partition did
// not answer there) counts as held here too: the forwarding site's next
// batches wait for that hold's merge instead of going ahead of it.
func TestForwardHeldAtTheGathererIsKnownHere(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, nil, "a", "b") // a leads
	a, b := stores[0], stores[1]
	const room = "d_held_there"
	p := b.RoomStream(room)
	// a finds the partition silent: it holds what it is given at once.
	a.standby(p, func(st *standbyState) { st.suspect = true })
	pos, err := sendMessage(ctx, b, room, "held-there")
	if err != nil {
		t.Fatal(err)
	}
	if sent, back := b.Forwarded(); sent != 1 || back != 0 {
		t.Fatalf("forwarded %d, appended here after all %d; want 1 and 0", sent, back)
	}
	if pos.Stream != StandbyOf(p) {
		t.Fatalf("the gatherer answered %v, want a position in %s", pos, StandbyOf(p))
	}
	var end uint64
	b.standby(p, func(st *standbyState) { end = st.end })
	if end < RecordSeq(pos.Seq) {
		t.Fatalf("the forwarding site knows of held records up to %d, the gatherer held one at %d", end, RecordSeq(pos.Seq))
	}
}

// A store that closes answers every append it was given, also those still
// queued behind a record in flight and those given after it closed, and
// its gatherer answers a forward it was waiting on: nobody waits forever.
func TestClosedStoreAnswersEveryAppend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openSiteStores(ctx, t, nil, "a")[0]
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			_, err := sendMessage(ctx, s, fmt.Sprintf("d_close%d", i%3), fmt.Sprint("c", i))
			errs <- err
		})
	}
	s.Close()
	wg.Wait() // hangs (the test's deadline) if an append is never answered
	close(errs)
	for err := range errs {
		if err != nil && salamander.ErrorCode(err) != salamander.CodeUnavailable {
			t.Errorf("an append cut short by Close: %v, want unavailable", err)
		}
	}
	if _, err := sendMessage(ctx, s, "d_after_close", "late"); salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("an append after Close: %v, want unavailable", err)
	}
}

// Only a site's own gateways take the batches forwarded to it: another
// site's gateway credential (stolen) that could subscribe to the site's
// gather subject would take a share of its forwards and answer them as
// stored, and their senders would be told "sent" for messages the log
// never held.
func TestOnlyTheSitesGatewaysTakeItsForwards(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	cfg := loneServerConfig(t)
	for _, site := range []string{"a", "b", "c"} {
		hash, err := bcrypt.GenerateFromPassword([]byte("pw-"+site), 4)
		if err != nil {
			t.Fatal(err)
		}
		u := natsnode.User{Name: "gateway-" + site, PasswordHash: string(hash), AllowResponses: true}
		u.Publish, u.Subscribe = GatewayPermissions(site, 2) // openTestStore's partitions
		cfg.Users = append(cfg.Users, u)
	}
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	var stores []*Store
	for _, site := range []string{"a", "b"} { // the server is site-a: a leads
		s := openTestStore(ctx, t, node.ClientURL(), func(c *Config) {
			c.Site, c.User, c.Password = site, "gateway-"+site, "pw-"+site
		})
		if err := s.Gather(true); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Status(ctx); err != nil {
			t.Fatal(err)
		}
		stores = append(stores, s)
	}
	refused := make(chan error, 4)
	spy, err := nats.Connect(node.ClientURL(), nats.UserInfo("gateway-c", "pw-c"), nats.CustomInboxPrefix(InboxPrefix("gateway-c")),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	if _, err := spy.QueueSubscribe(subjGather+"a", gatherQueue, func(m *nats.Msg) {
		stream, batch, err := decodeForward(m.Data)
		if err != nil {
			return
		}
		res := make([]appendResult, len(batch))
		for i := range res {
			res[i].pos = PositionOf(stream, 1_000_000+uint64(i), 0)
		}
		_ = m.Respond(encodeForwardReply(res))
	}); err != nil {
		t.Fatal(err)
	}
	if err := spy.FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	const room, n = "g_spy", 20
	for i := range n {
		cid := fmt.Sprintf("b-%02d", i)
		pos, err := sendMessage(ctx, stores[1], room, cid)
		if err != nil {
			t.Fatal(cid, err)
		}
		if RecordSeq(pos.Seq) >= 1_000_000 {
			t.Fatalf("%s was answered as stored at record %d, by another site's gateway: the log never held it", cid, RecordSeq(pos.Seq))
		}
	}
	// Forwards still work under the gateways' permissions: the leading
	// site's gatherer answered each (allow_responses), none fell back.
	if sent, back := stores[1].Forwarded(); sent == 0 || back != 0 {
		t.Fatalf("forwarded %d batches, %d of them appended here after all; want some, none", sent, back)
	}
	select {
	case err := <-refused:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("the spy's subscription failed, but not for its permissions: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("another site's gateway may take this site's forwards")
	}
}
