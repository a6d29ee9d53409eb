package jsstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// silencePartition deletes room's partition stream on s's server, so that
// appends to it go unanswered as while it elects a leader; its standby
// stays.
func silencePartition(ctx context.Context, t *testing.T, s *Store, room string) string {
	t.Helper()
	p := s.RoomStream(room)
	if err := s.js.DeleteStream(ctx, natsName(p)); err != nil {
		t.Fatal(err)
	}
	return p
}

// heldCopies counts the messages with clientID in every record of s's
// standby of partition p.
func heldCopies(ctx context.Context, t *testing.T, s *Store, p, clientID string) int {
	t.Helper()
	info, err := s.js.Stream(ctx, natsName(StandbyOf(p)))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.readStandby(ctx, StandbyOf(p), 0, info.CachedInfo().State.LastSeq)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, rec := range recs {
		for _, e := range recordEntries(rec) {
			if e.Type == salamander.RecMessageSent && e.ClientID == clientID {
				n++
			}
		}
	}
	return n
}

// sendTogether sends one message per client id to room from s, as one
// batch (they queue while the process has no record slot), and returns
// their answers and how long the slowest took.
func sendTogether(ctx context.Context, t *testing.T, s *Store, room string, clientIDs ...string) ([]salamander.Position, []error, time.Duration) {
	t.Helper()
	for range cap(currentSlots()) {
		currentSlots() <- struct{}{}
	}
	pos, errs := make([]salamander.Position, len(clientIDs)), make([]error, len(clientIDs))
	var wg sync.WaitGroup
	for i, cid := range clientIDs {
		wg.Go(func() { pos[i], errs[i] = sendMessage(ctx, s, room, cid) })
	}
	a := s.appender(s.RoomStream(room))
	for len(a.in) < len(clientIDs)-1 { // the first waits for a slot, the others queue
		if ctx.Err() != nil {
			t.Fatalf("only %d sends queued", len(a.in))
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	for range cap(currentSlots()) {
		<-currentSlots()
	}
	wg.Wait()
	return pos, errs, time.Since(start)
}

// A batch forwarded to a site that does not answer (cut off silently: the
// request is neither answered nor refused) while the partition is silent
// too — its leader is at that site — is held HoldAfter after it was first
// tried, as a batch not forwarded is: the time the forward waited counts.
// Before, the site's own append started a full HoldAfter after the
// forward gave up: the send waited forwardTimeout + HoldAfter, ~1.5 s.
func TestAForwardNotAnsweredCountsTowardsHoldAfter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	b := openSiteStores(ctx, t, func(string) string { return "x" }, "b")[0] // x leads
	// Site x's gatherer takes the request and never answers.
	silent, err := nats.Connect(b.cfg.URLs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if _, err := silent.Subscribe(subjGather+"x", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := silent.Flush(); err != nil {
		t.Fatal(err)
	}
	const room = "d_cut_leader"
	p := silencePartition(ctx, t, b, room)
	start := time.Now()
	pos, err := sendMessage(ctx, b, room, "m1")
	took := time.Since(start)
	if err != nil || pos.Stream != StandbyOf(p) {
		t.Fatalf("a send to a silent partition: %v %v, want a position in %s", pos, err, StandbyOf(p))
	}
	if sent, back := b.Forwarded(); sent != 1 || back != 1 {
		t.Fatalf("forwarded %d, appended here after all %d; want 1 and 1", sent, back)
	}
	if hold := b.cfg.HoldAfter; took > hold+hold/4 {
		t.Fatalf("held after %v, want about HoldAfter (%v): the forward's %v came on top", took, hold, forwardTimeout)
	}
}

// A batch forwarded to the leader's site while the partition is silent
// (its leader gone, and the forwarding site still names that site, as
// its last status read said) is held once, HoldAfter after it was first
// tried. The gatherer holds only after HoldAfter, when the forwarding site
// has long stopped waiting for its answer and appended the batch itself:
// before, the send waited forwardTimeout + HoldAfter, ~1.5 s, and both
// sites held its messages.
func TestAForwardToASilentPartitionIsHeldOnce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, nil, "a", "b") // the server is site-a: a leads
	a, b := stores[0], stores[1]
	const room = "d_silent_leader"
	p := silencePartition(ctx, t, b, room)
	// Two messages, one batch: a batch record has an id of its own, so
	// the standby keeps each copy of it (a lone send's message id would
	// make the second a duplicate of the first).
	pos, errs, took := sendTogether(ctx, t, b, room, "fwd1", "fwd2")
	for i := range pos {
		if errs[i] != nil || pos[i].Stream != StandbyOf(p) {
			t.Fatalf("a send to a silent partition: %v %v, want a position in %s", pos[i], errs[i], StandbyOf(p))
		}
	}
	if sent, _ := b.Forwarded(); sent != 1 {
		t.Fatalf("forwarded %d batches, want 1", sent)
	}
	if hold := b.cfg.HoldAfter; took > hold+hold/4 {
		t.Errorf("held after %v, want about HoldAfter (%v)", took, hold)
	}
	// The gatherer's appender has answered what it took before this: it
	// keeps one record in flight.
	if _, err := sendMessage(ctx, a, room, "after"); err != nil {
		t.Fatal(err)
	}
	for _, cid := range []string{"fwd1", "fwd2"} {
		if n := heldCopies(ctx, t, b, p, cid); n != 1 {
			t.Errorf("the standby holds the forwarded message %s %d times, want once", cid, n)
		}
	}
}

// With a HoldAfter under twice forwardTimeout the forwarding site waits
// only half of it (forwardWait) before it holds the batch itself; the
// gatherer must stop holding what it was forwarded just as early, not
// forwardTimeout after it took the batch, or both sites hold it.
func TestAForwardIsHeldOnceWithAShortHoldAfter(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	forwardEveryBatch(t)
	stores := openSiteStores(ctx, t, nil, "a", "b") // the server is site-a: a leads
	a, b := stores[0], stores[1]
	const hold = 400 * time.Millisecond // forwardWait: 200 ms
	a.cfg.HoldAfter, b.cfg.HoldAfter = hold, hold
	const room = "d_silent_short"
	p := silencePartition(ctx, t, b, room)
	pos, errs, took := sendTogether(ctx, t, b, room, "short1", "short2")
	for i := range pos {
		if errs[i] != nil || pos[i].Stream != StandbyOf(p) {
			t.Fatalf("a send to a silent partition: %v %v, want a position in %s", pos[i], errs[i], StandbyOf(p))
		}
	}
	if sent, _ := b.Forwarded(); sent != 1 {
		t.Fatalf("forwarded %d batches, want 1", sent)
	}
	if took > hold+hold/2 {
		t.Errorf("held after %v, want about HoldAfter (%v)", took, hold)
	}
	if _, err := sendMessage(ctx, a, room, "after-short"); err != nil {
		t.Fatal(err)
	}
	for _, cid := range []string{"short1", "short2"} {
		if n := heldCopies(ctx, t, b, p, cid); n != 1 {
			t.Errorf("the standby holds the forwarded message %s %d times, want once", cid, n)
		}
	}
}
