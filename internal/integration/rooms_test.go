package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/site"
)

// Both users create their 1:1 room at the same moment at different sites:
// exactly one room results, and both are told its id.
func TestConcurrentDirectRoomCreation(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	for round := 0; round < 5; round++ {
		a, aName := signedUp(t, 0, "dma")
		b, bName := signedUp(t, 1, "dmb")
		var wg sync.WaitGroup
		var ra, rb salamander.Room
		var ea, eb error
		start := make(chan struct{})
		wg.Add(2)
		go func() { defer wg.Done(); <-start; ra, ea = a.DirectRoom(ctx, bName) }()
		go func() { defer wg.Done(); <-start; rb, eb = b.DirectRoom(ctx, aName) }()
		close(start)
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("round %d: %v / %v", round, ea, eb)
		}
		if ra.ID != rb.ID {
			t.Fatalf("round %d: two rooms for one pair: %s and %s", round, ra.ID, rb.ID)
		}
		for _, c := range []*client.Client{a, b} {
			rooms, err := c.Rooms(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rooms) != 1 || rooms[0].ID != ra.ID || rooms[0].Kind != salamander.RoomDirect {
				t.Fatalf("round %d: rooms %+v", round, rooms)
			}
		}
	}
}

// A send retried with the same client id (at another site, too) yields one
// message; the retry is told it is a duplicate and gets the original.
func TestRetriedSendIsIdempotent(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "ida")
	_, bName := signedUp(t, 1, "idb")
	room, err := a.DirectRoom(ctx, bName)
	if err != nil {
		t.Fatal(err)
	}
	first, err := a.SendWithID(ctx, room.ID, "cid-1", "once")
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate {
		t.Fatal("first send reported as duplicate")
	}
	// The same id again, from a client pinned to another site.
	other := newClient(t, 2)
	other.SetToken(a.Token())
	for i := 0; i < 3; i++ {
		again, err := other.SendWithID(ctx, room.ID, "cid-1", "once")
		if err != nil {
			t.Fatal(err)
		}
		if !again.Duplicate || again.Message.Seq != first.Message.Seq {
			t.Fatalf("retry %d: %+v, first %+v", i, again, first)
		}
	}
	for site := 0; site < 3; site++ {
		c := newClient(t, site)
		c.SetToken(a.Token())
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			page, err := c.History(ctx, room.ID, clientHistory(0, 0, 50))
			if err != nil {
				return err
			}
			if len(page.Messages) != 1 {
				return fmt.Errorf("site %d has %d messages, want 1", site, len(page.Messages))
			}
			return nil
		})
	}
}

// Several members send concurrently at different sites: every site holds
// the same single order, seqs are contiguous, and each sender's messages
// keep the order they were sent in.
func TestConcurrentSendersOneOrder(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	const senders, perSender = 3, 15
	clients := make([]*client.Client, senders)
	names := make([]string, senders)
	for i := range clients {
		clients[i], names[i] = signedUp(t, i, "ord")
	}
	room, err := clients[0].CreateGroup(ctx, "order test", names[1:])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perSender; j++ {
				if _, err := c.Send(ctx, room.ID, fmt.Sprintf("%s-%03d", names[i], j)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var reference []string
	for site := 0; site < 3; site++ {
		c := newClient(t, site)
		c.SetToken(clients[0].Token())
		var texts []string
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			page, err := c.History(ctx, room.ID, clientHistory(0, 0, 200))
			if err != nil {
				return err
			}
			if len(page.Messages) != senders*perSender {
				return fmt.Errorf("site %d has %d messages", site, len(page.Messages))
			}
			texts = texts[:0]
			for k, m := range page.Messages {
				if m.Seq != uint64(k+1) {
					return fmt.Errorf("site %d: seq %d at index %d", site, m.Seq, k)
				}
				texts = append(texts, m.Text)
			}
			return nil
		})
		if reference == nil {
			reference = append([]string(nil), texts...)
		} else if fmt.Sprint(reference) != fmt.Sprint(texts) {
			t.Fatalf("site %d order differs:\n%v\n%v", site, texts, reference)
		}
	}
	for _, name := range names {
		var mine []string
		for _, s := range reference {
			if len(s) > len(name) && s[:len(name)+1] == name+"-" {
				mine = append(mine, s)
			}
		}
		if !sort.StringsAreSorted(mine) || len(mine) != perSender {
			t.Fatalf("%s's messages out of send order: %v", name, mine)
		}
	}
}

// Read receipts: each message carries how many members have not read it,
// updated live for everyone; the room list shows unread counts.
func TestReadReceiptsAndUnreadCounts(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, aName := signedUp(t, 0, "rra")
	b, bName := signedUp(t, 1, "rrb")
	c, cName := signedUp(t, 2, "rrc")
	room, err := a.CreateGroup(ctx, "receipts", []string{bName, cName})
	if err != nil {
		t.Fatal(err)
	}
	subA := a.Subscribe(ctx)
	defer subA.Close()
	for i := 0; i < 3; i++ {
		if _, err := a.Send(ctx, room.ID, fmt.Sprintf("m%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, cl := range []*client.Client{b, c} {
		// b and c read at other sites than a wrote at: poll until applied.
		checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
			r, err := cl.Room(ctx, room.ID)
			if err != nil {
				return err
			}
			if r.Unread != 3 || r.LastMessage == nil || r.LastMessage.Text != "m2" || r.LastMessage.Unread != 2 {
				return fmt.Errorf("before reading: %+v", r)
			}
			return nil
		})
	}
	if err := b.MarkRead(ctx, room.ID, 2); err != nil {
		t.Fatal(err)
	}
	// a hears b's receipt live.
	deadline := time.After(20 * time.Second)
	for got := false; !got; {
		select {
		case ev := <-subA.Events():
			got = ev.Type == salamander.EventRead && ev.User == bName && ev.Seq == 2
		case <-deadline:
			t.Fatal("read receipt not delivered live")
		}
	}
	want := []int{1, 1, 2} // m0, m1 unread by c only; m2 by b and c
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		page, err := c.History(ctx, room.ID, clientHistory(0, 0, 10))
		if err != nil {
			return err
		}
		for i, m := range page.Messages {
			if m.Unread != want[i] {
				return fmt.Errorf("message %d unread %d, want %d (%+v)", m.Seq, m.Unread, want[i], page.Messages)
			}
		}
		return nil
	})
	rb, err := b.Room(ctx, room.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rb.Unread != 1 || rb.ReadMarkers[aName] != 3 {
		t.Fatalf("b's room after reading: %+v", rb)
	}
}

// Group rooms: invite, rename, leave; a member who left can no longer read
// or post, and a non-member never could.
func TestGroupMembershipEnforced(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, _ := signedUp(t, 0, "gma")
	b, bName := signedUp(t, 1, "gmb")
	out, outName := signedUp(t, 2, "gmx")
	room, err := a.CreateGroup(ctx, "club", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Site c learns of the room within moments; until then it says not_found.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		if _, err := out.Send(ctx, room.ID, "let me in"); salamander.ErrorCode(err) != salamander.CodeForbidden {
			return fmt.Errorf("non-member send: %v", err)
		}
		return nil
	})
	if _, err := out.History(ctx, room.ID, clientHistory(0, 0, 10)); salamander.ErrorCode(err) != salamander.CodeForbidden {
		t.Fatalf("non-member history: %v", err)
	}
	if _, err := out.Invite(ctx, room.ID, outName); salamander.ErrorCode(err) != salamander.CodeForbidden {
		t.Fatalf("non-member invite: %v", err)
	}
	r, err := a.Invite(ctx, room.ID, bName)
	if err != nil || len(r.Members) != 2 {
		t.Fatalf("invite: %+v %v", r, err)
	}
	if _, err := b.Send(ctx, room.ID, "hi club"); err != nil {
		t.Fatal(err)
	}
	if r, err = b.Rename(ctx, room.ID, "the club"); err != nil || r.Name != "the club" {
		t.Fatalf("rename: %+v %v", r, err)
	}
	if err := b.Leave(ctx, room.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Send(ctx, room.ID, "still here?"); salamander.ErrorCode(err) != salamander.CodeForbidden {
		t.Fatalf("send after leaving: %v", err)
	}
	// a reads at another site than b wrote at: it sees the change within moments.
	checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
		ra, err := a.Room(ctx, room.ID)
		if err != nil || len(ra.Members) != 1 || ra.Name != "the club" || ra.LastSeq != 1 {
			return fmt.Errorf("room after leave: %+v %v", ra, err)
		}
		return nil
	})
}

// Creating a group with the same client id again (a retry after a lost
// answer, at any site) returns the first room instead of a second one.
func TestGroupCreationIsIdempotent(t *testing.T) {
	_, name := signedUp(t, 0, "grp")
	c := newClient(t, 0)
	ctx := testCtx(t, 30*time.Second)
	sess, err := c.Login(ctx, name, "correct horse battery")
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"name":"once","members":[],"client_id":"create-1"}`)
	first := raw(t, 0, "POST", "/v1/rooms/group", sess.Token, "", body)
	var r1, r2 salamander.Room
	if first.status != 201 || json.Unmarshal(first.body, &r1) != nil {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	again := raw(t, 2, "POST", "/v1/rooms/group", sess.Token, "", body)
	if again.status != 200 || json.Unmarshal(again.body, &r2) != nil || r2.ID != r1.ID {
		t.Fatalf("retry: %d %s, first room %s", again.status, again.body, r1.ID)
	}
	rooms, err := c.Rooms(ctx)
	if err != nil || len(rooms) != 1 {
		t.Fatalf("rooms: %+v %v", rooms, err)
	}
}

// A group's size counts people, not how often a request names them: a
// member list naming one friend 300 times makes a room of two, and an
// invite of members already in the room (a retry after a lost answer)
// adds no one and answers the room as it is.
func TestGroupSizeCountsPeople(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	a, _ := signedUp(t, 0, "gsa")
	_, bName := signedUp(t, 1, "gsb")
	many := make([]string, 300)
	for i := range many {
		many[i] = bName
	}
	room, err := a.CreateGroup(ctx, "repeats", many)
	if err != nil || len(room.Members) != 2 {
		t.Fatalf("a group naming one friend 300 times: %+v, %v", room.Members, err)
	}
	// (That it spends no budget: TestRateLimitsAnswer429WithRetryAfter.)
	again, err := a.Invite(ctx, room.ID, bName, bName)
	if err != nil || len(again.Members) != 2 {
		t.Fatalf("inviting a member again: %+v, %v", again.Members, err)
	}
}

// Logging out closes the session's open WebSockets too, at every site.
func TestLogoutClosesOpenSockets(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	a, name := signedUp(t, 2, "wsout")
	sub := a.Subscribe(ctx)
	defer sub.Close()
	waitReady(t, sub.Events())
	other := newClient(t, 0)
	if _, err := other.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := other.LogoutAll(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.Done():
		if salamander.ErrorCode(sub.Err()) != salamander.CodeUnauthorized {
			t.Fatalf("subscription ended with %v", sub.Err())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the revoked session's socket stayed open")
	}
}

// A logout at another site, or an admin's suspension, closes the open
// sockets it concerns as soon as a site applies it, not at the gateway's
// next periodic check of every socket's session: on this gateway of site
// a that check is an hour apart, so only the applied record can close
// them within the test.
func TestSessionsEndedInTheLogCloseSocketsAtOnce(t *testing.T) {
	ctx := testCtx(t, 90*time.Second)
	gw := extraGateway(t, ctx, cluster.Site(0).Node().ClientURL(), func(cfg *site.Config) {
		cfg.SessionRecheck = time.Hour
	})
	boss, bossName := signedUp(t, 0, "scboss")
	setRole(t, ctx, bossName, "admin")
	closedWith := func(sub *client.Subscription) error {
		select {
		case <-sub.Done():
			return sub.Err()
		case <-time.After(30 * time.Second):
			t.Fatal("the socket stayed open")
			return nil
		}
	}
	subscribeAtGateway := func(prefix string) (*client.Subscription, string) {
		name := uniqueName(prefix)
		c, err := client.New(client.Config{Sites: []string{gw.URL()}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SignUp(ctx, name, "Sock", "correct horse battery"); err != nil {
			t.Fatal(err)
		}
		sub := c.Subscribe(ctx)
		t.Cleanup(func() { sub.Close() })
		waitReady(t, sub.Events())
		return sub, name
	}

	// Logged out everywhere from another site.
	sub, name := subscribeAtGateway("scout")
	other := newClient(t, 2)
	if _, err := other.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	if err := other.LogoutAll(ctx); err != nil {
		t.Fatal(err)
	}
	if err := closedWith(sub); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("after a logout everywhere: the subscription ended with %v", err)
	}

	// Suspended by an admin at another site.
	sub, name = subscribeAtGateway("scsus")
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		if code, body := opsCall(t, 1, "POST", "/v1/ops/users/"+name+"/suspend", boss.Token(), nil); code != http.StatusOK {
			return fmt.Errorf("suspend: %d %s", code, body)
		}
		return nil
	})
	if err := closedWith(sub); err == nil {
		t.Fatal("after a suspension: the subscription ended without an error")
	}
}
