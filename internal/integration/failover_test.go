package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

// collect reads message events for room from events until it has n
// distinct seqs or d passes, and fails on a duplicate or out-of-order one.
func collect(t *testing.T, who string, events <-chan salamander.Event, room string, n int, d time.Duration) []string {
	t.Helper()
	var texts []string
	var last uint64
	timeout := time.After(d)
	for len(texts) < n {
		select {
		case ev := <-events:
			if ev.Type != salamander.EventMessage || ev.Message.Room != room {
				continue
			}
			if ev.Message.Seq != last+1 {
				t.Fatalf("%s: got seq %d after %d (duplicate or reordered)", who, ev.Message.Seq, last)
			}
			last = ev.Message.Seq
			texts = append(texts, ev.Message.Text)
		case <-timeout:
			t.Fatalf("%s: got %d of %d messages within %s: %v", who, len(texts), n, d, texts)
		}
	}
	return texts
}

// The SDK moves from a burned site to another by itself: the sender's
// messages all land once and in order, both members' live streams get each
// exactly once, and the site, when it returns, catches up.
func TestSDKFailsOverFromStoppedSite(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	alice, _ := signedUp(t, 0, "foa")
	bob, bobName := signedUp(t, 1, "fob")
	room, err := alice.DirectRoom(ctx, bobName)
	if err != nil {
		t.Fatal(err)
	}
	subA := alice.Subscribe(ctx)
	defer subA.Close()
	subB := bob.Subscribe(ctx)
	defer subB.Close()
	var want []string
	send := func(i int) {
		text := fmt.Sprintf("m%02d", i)
		if _, err := alice.Send(ctx, room.ID, text); err != nil {
			t.Fatalf("send %s: %v", text, err)
		}
		want = append(want, text)
	}
	for i := 0; i < 5; i++ {
		send(i)
	}
	if alice.Site() != cluster.URL(0) {
		t.Fatalf("alice should start at site a, is at %s", alice.Site())
	}
	cluster.Kill(0)
	t.Cleanup(func() {
		if cluster.Site(0) == nil {
			_ = cluster.Restart(testCtx(t, 60*time.Second), 0)
		}
	})
	for i := 5; i < 10; i++ {
		send(i)
	}
	if alice.Site() == cluster.URL(0) {
		t.Fatal("alice still on the burned site")
	}
	if got := collect(t, "bob", subB.Events(), room.ID, 10, 30*time.Second); !reflect.DeepEqual(got, want) {
		t.Fatalf("bob got %v, want %v", got, want)
	}
	if got := collect(t, "alice", subA.Events(), room.ID, 10, 30*time.Second); !reflect.DeepEqual(got, want) {
		t.Fatalf("alice got %v, want %v", got, want)
	}

	// Site a returns with its old disk and catches up.
	if err := cluster.Restart(ctx, 0); err != nil {
		t.Fatal(err)
	}
	atA := pinned(t, 0, alice.Token())
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		page, err := atA.History(ctx, room.ID, clientHistory(0, 0, 50))
		if err != nil {
			return err
		}
		if got := texts(page.Messages); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("site a history %v", got)
		}
		return nil
	})
	// The texts it applied before the fire are no longer in its memory:
	// it reads them back from its own copy of the log, never from another
	// site's replica (which JetStream would pick at random).
	reads := func() (own, replicas float64) {
		m := scrape(t, 0)
		own, _ = m.sum("salamander_log_reads_total", `from="own_copy"`)
		replicas, _ = m.sum("salamander_log_reads_total", `from="replicas"`)
		return own, replicas
	}
	own0, replicas0 := reads()
	if _, err := atA.History(ctx, room.ID, clientHistory(0, 0, 50)); err != nil {
		t.Fatal(err)
	}
	own1, replicas1 := reads()
	if own1 <= own0 || replicas1 != replicas0 {
		t.Fatalf("site a read %v records from its own copy and %v from the replicas; want some and none",
			own1-own0, replicas1-replicas0)
	}
}

// A site whose read model is deleted rebuilds it from the log at start and
// answers exactly as before.
func TestReadModelRebuildsFromLog(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	a, _ := signedUp(t, 2, "rba")
	b, bName := signedUp(t, 2, "rbb")
	room, err := a.CreateGroup(ctx, "rebuild", []string{bName})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if _, err := a.Send(ctx, room.ID, fmt.Sprintf("r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.MarkRead(ctx, room.ID, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := a.AddFriend(ctx, bName); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		c := pinned(t, 2, a.Token())
		rooms, err := c.Rooms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		page, err := c.History(ctx, room.ID, clientHistory(0, 0, 50))
		if err != nil {
			t.Fatal(err)
		}
		sync, err := c.Sync(ctx, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		friends, err := c.Friends(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal([]any{rooms, page, len(sync.Events), friends})
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	before := snapshot()
	cluster.Kill(2)
	if err := cluster.RemoveReadModel(2); err != nil {
		t.Fatal(err)
	}
	if err := cluster.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	checkFor(t, 20*time.Second, 50*time.Millisecond, func() error {
		if after := snapshot(); after != before {
			return fmt.Errorf("after rebuild:\n%s\nbefore:\n%s", after, before)
		}
		return nil
	})
}

// A client that was offline catches up exactly with sync, at any site.
func TestSyncCatchesUpExactly(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "sya")
	b, bName := signedUp(t, 1, "syb")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	first, err := pinned(t, 1, b.Token()).Sync(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 7; i++ {
		if _, err := a.Send(ctx, room.ID, fmt.Sprintf("s%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	var results []string
	for site := 0; site < 3; site++ {
		c := pinned(t, site, b.Token())
		var got []string
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			got = got[:0]
			cur := first.Cursor
			for {
				res, err := c.Sync(ctx, cur, 3) // small pages exercise "more"
				if err != nil {
					return err
				}
				for _, ev := range res.Events {
					if ev.Type == salamander.EventMessage {
						got = append(got, ev.Message.Text)
					}
				}
				cur = res.Cursor
				if !res.More {
					break
				}
			}
			if len(got) != 7 {
				return fmt.Errorf("site %d: %v", site, got)
			}
			return nil
		})
		results = append(results, fmt.Sprint(got))
	}
	if results[0] != results[1] || results[1] != results[2] || results[0] != "[s0 s1 s2 s3 s4 s5 s6]" {
		t.Fatalf("sync results differ: %v", results)
	}
}

// Typing and presence are delivered across sites and never stored.
func TestTypingAndPresenceAcrossSites(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "tpa")
	b, bName := signedUp(t, 2, "tpb")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.AddFriend(ctx, aName); err != nil {
		t.Fatal(err)
	}
	subB := b.Subscribe(ctx)
	defer subB.Close()
	waitReady(t, subB.Events())
	subA := a.Subscribe(ctx)
	defer subA.Close()
	sawPresence, sawTyping := false, false
	timeout := time.After(20 * time.Second)
	for !sawPresence || !sawTyping {
		if sawPresence && !sawTyping {
			if err := a.SetTyping(ctx, room.ID, true); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case ev := <-subB.Events():
			switch {
			case ev.Type == salamander.EventPresence && ev.User == aName && ev.Online:
				sawPresence = true
			case ev.Type == salamander.EventTyping && ev.User == aName && ev.RoomID == room.ID:
				sawTyping = true
			}
		case <-time.After(200 * time.Millisecond):
		case <-timeout:
			t.Fatalf("presence %v typing %v", sawPresence, sawTyping)
		}
	}
	ps, err := b.Presence(ctx, aName)
	if err != nil || len(ps) != 1 || !ps[0].Online {
		t.Fatalf("presence query: %+v %v", ps, err)
	}
	res, err := b.Sync(ctx, "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range res.Events {
		if ev.Type == salamander.EventTyping || ev.Type == salamander.EventPresence {
			t.Fatalf("ephemeral event stored: %+v", ev)
		}
	}
}

func waitReady(t *testing.T, events <-chan salamander.Event) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Type == salamander.EventReady {
				return
			}
		case <-timeout:
			t.Fatal("no ready event")
		}
	}
}

// pinned returns a client that talks to site i only, with token.
func pinned(t *testing.T, i int, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Sites: []string{cluster.URL(i)}, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(token)
	return c
}

func texts(ms []salamander.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.Text)
	}
	return out
}

// Sites spread the room partitions' leaders evenly, so that a fire stalls
// only the partitions whose leader burned, never all of them.
func TestPartitionLeadersSpreadOverSites(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	checkFor(t, 45*time.Second, 250*time.Millisecond, func() error {
		// A stream info asked while a leader is being elected gets no
		// answer: each try has its own deadline, so the poll goes on.
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		st, err := cluster.Site(1).Store().Status(cctx)
		if err != nil {
			return err
		}
		led := map[string]int{}
		for _, s := range st {
			if s.Stream != "acct" {
				led[s.Leader]++
			}
		}
		for server, n := range led {
			if server == "" || n > 1 {
				return fmt.Errorf("partition leaders not spread: %v", led)
			}
		}
		return nil
	})
}

// A site that returns answers nothing from a read model still catching up:
// from the moment it starts, every history it serves is complete, and
// /readyz says 200 only once it is.
func TestReturningSiteServesNoStaleRead(t *testing.T) {
	ctx := testCtx(t, 120*time.Second)
	a, _ := signedUp(t, 0, "sta")
	_, bName := signedUp(t, 1, "stb")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	cluster.Kill(2)
	t.Cleanup(func() {
		if cluster.Site(2) == nil {
			_ = cluster.Restart(testCtx(t, 60*time.Second), 2)
		}
	})
	const n = 150
	for i := range n {
		if _, err := a.Send(ctx, room.ID, fmt.Sprintf("s%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := cluster.Start(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	at := pinned(t, 2, a.Token())
	served, ready := 0, false
	for !ready {
		if ctx.Err() != nil {
			t.Fatalf("site c never became ready (%d histories served)", served)
		}
		res, err := http.Get(cluster.URL(2) + "/readyz")
		if err == nil {
			res.Body.Close()
			ready = res.StatusCode == http.StatusOK
		}
		page, err := at.History(ctx, room.ID, clientHistory(0, 0, n))
		if err != nil {
			continue // refused while catching up: fine
		}
		served++
		if len(page.Messages) != n {
			t.Fatalf("site c served a stale history: %d of %d messages (ready %v)", len(page.Messages), n, ready)
		}
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
}
