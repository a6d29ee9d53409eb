package jsstore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// While the process has no record slot free, a stream's appends queue, and
// the record that gets the next slot carries all of them.
func TestAppendsWaitingForARecordSlotShareOneRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	stream := s.RoomStream("g_slots")
	// Take every slot, without a lease: nothing of this process appends
	// until the test gives them back.
	for range cap(currentSlots()) {
		currentSlots() <- struct{}{}
	}
	const n = 40
	// The requests are queued here, as append queues them, before the
	// test looks at the queue: with each append in a goroutine of its own,
	// 39 queued could also mean one not sent yet (and then sent after the
	// slots came back, in a record of its own).
	a := s.appender(stream)
	reqs := make([]*appendRequest, n)
	for i := range n {
		rec := salamander.Record{Type: salamander.RecMessageSent, Room: "g_slots", ClientID: fmt.Sprint(i)}
		body, err := salamander.EncodeRecord(&rec)
		if err != nil {
			t.Fatal(err)
		}
		reqs[i] = &appendRequest{typ: rec.Type, key: "g_slots", msgID: fmt.Sprint("m", i), body: body,
			done: make(chan appendResult, 1)}
		a.in <- reqs[i]
	}
	positions := make(chan salamander.Position, n)
	var wg sync.WaitGroup
	for _, req := range reqs {
		wg.Go(func() {
			r := a.await(ctx, req)
			if r.err != nil {
				t.Error(r.err)
			}
			positions <- r.pos
		})
	}
	// The appender holds the first request while it waits for a slot;
	// the others queue behind it.
	for len(a.in) > n-1 {
		if ctx.Err() != nil {
			t.Fatalf("the appender took none of %d queued appends", len(a.in))
		}
		time.Sleep(time.Millisecond)
	}
	if len(a.in) != n-1 {
		t.Fatalf("the appender took %d appends while the process had no record slot", n-len(a.in))
	}
	if len(positions) != 0 {
		t.Fatal("an append was answered while the process had no record slot")
	}
	for range cap(currentSlots()) {
		<-currentSlots()
	}
	wg.Wait()
	close(positions)
	records := map[uint64]int{}
	for p := range positions {
		records[RecordSeq(p.Seq)]++
	}
	if len(records) != 1 {
		t.Fatalf("%d appends that waited together took %d records: %v", n, len(records), records)
	}
}

// A record slot comes back when its record is answered, or after
// slotLease if the record is still in flight, and never twice.
func TestRecordSlotsComeBack(t *testing.T) {
	ctx := context.Background()
	var releases []func()
	for range cap(currentSlots()) {
		release, ok := takeRecordSlot(ctx)
		if !ok {
			t.Fatal("no slot in a process that has all of them free")
		}
		releases = append(releases, release)
	}
	full, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, ok := takeRecordSlot(full); ok {
		t.Fatal("took a slot while all were taken")
	}
	releases[0]()
	releases[0]() // a second release gives nothing back twice
	release, ok := takeRecordSlot(ctx)
	if !ok {
		t.Fatal("a released slot did not come back")
	}
	release()
	// The others are still held by the test: their leases give them back.
	deadline := time.Now().Add(10 * time.Second)
	for len(currentSlots()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d slots still taken long after their lease", len(currentSlots()))
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, r := range releases { // after the lease, a release is a no-op
		r()
	}
	if len(currentSlots()) != 0 {
		t.Fatalf("%d slots taken after late releases", len(currentSlots()))
	}
}

// SetRecordSlots refuses a bound outside 1–MaxRecordSlots and changes
// nothing then; a slot taken before a change goes back to the bound it
// came from.
func TestSetRecordSlots(t *testing.T) {
	before := currentSlots()
	defer recordSlots.Store(&before)
	for _, n := range []int{0, -1, MaxRecordSlots + 1} {
		if err := SetRecordSlots(n); err == nil {
			t.Errorf("SetRecordSlots(%d) accepted", n)
		}
		if currentSlots() != before {
			t.Fatalf("SetRecordSlots(%d) changed the slots", n)
		}
	}
	release, ok := takeRecordSlot(context.Background())
	if !ok || len(before) != 1 {
		t.Fatalf("took a slot: %v, %d taken", ok, len(before))
	}
	if err := SetRecordSlots(3); err != nil {
		t.Fatal(err)
	}
	if got := currentSlots(); cap(got) != 3 || len(got) != 0 {
		t.Fatalf("after SetRecordSlots(3): %d of %d taken", len(got), cap(got))
	}
	release()
	if len(before) != 0 || len(currentSlots()) != 0 {
		t.Fatalf("the slot went back to the wrong bound: old %d, new %d taken", len(before), len(currentSlots()))
	}
}
