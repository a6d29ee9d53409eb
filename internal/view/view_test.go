package view

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// history builds a log of records on two streams as the gateway would
// append them, including the cases the rules must neutralize.
func history() []jsstore.Entry {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	dn := "Alice"
	recs := []struct {
		stream string
		rec    salamander.Record
	}{
		{"acct", salamander.Record{Type: salamander.RecSigningKey, Key: []byte("k1")}},
		{"acct", salamander.Record{Type: salamander.RecSigningKey, Key: []byte("k2")}},             // loses: first writer wins
		{"acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "x", Key: []byte("k3")}}, // loses: not a rotation
		{"acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "r2", Key: []byte("k4"), Rotate: true}},
		{"acct", salamander.Record{Type: salamander.RecSigningKey, KeyID: "r2", Key: []byte("k5"), Rotate: true}}, // loses: id taken
		{"acct", salamander.Record{Type: salamander.RecUserCreated, User: "alice", DisplayName: &dn, PasswordHash: "h"}},
		{"acct", salamander.Record{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "h"}},
		{"acct", salamander.Record{Type: salamander.RecUserCreated, User: "eve", PasswordHash: "h"}},
		{"acct", salamander.Record{Type: salamander.RecFriendAdded, User: "alice", Friend: "bob"}},
		{"p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup, Name: "g",
			Members: []string{"alice", "bob", "alice"}, By: "alice"}},
		{"p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c1", Text: "one"}},
		{"p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c1", Text: "one"}}, // duplicate
		{"p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "eve", ClientID: "e1", Text: "spam"}},  // not a member
		{"p0", salamander.Record{Type: salamander.RecRoomJoined, Room: "g_1", Members: []string{"eve"}, By: "eve"}},         // can't self-invite
		{"p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "bob", ClientID: "c1", Text: "two"}},
		{"p0", salamander.Record{Type: salamander.RecMessageRead, Room: "g_1", User: "alice", Seq: 99}}, // clamped to last
		{"p0", salamander.Record{Type: salamander.RecRoomLeft, Room: "g_1", User: "bob"}},
		{"p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "bob", ClientID: "c2", Text: "gone"}}, // left
		{"p0", salamander.Record{Type: salamander.RecRoomRenamed, Room: "g_1", Name: "renamed", By: "alice"}},
	}
	seq := map[string]uint64{}
	var out []jsstore.Entry
	for _, r := range recs {
		seq[r.stream]++
		r.rec.At = at
		at = at.Add(time.Second)
		out = append(out, jsstore.Entry{Pos: salamander.Position{Stream: r.stream, Seq: seq[r.stream]}, Record: r.rec})
	}
	return out
}

// p0Entries numbers records as the entries of stream p0, from 1, each
// dated the same fixed time.
type p0Entries struct{ seq uint64 }

func (l *p0Entries) entry(r salamander.Record) jsstore.Entry {
	l.seq++
	r.At = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: l.seq}, Record: r}
}

// memLog is a log held in memory for these unit tests: the view reads
// message texts it no longer holds from its Source. (Integration tests
// run the real JetStream log.)
type memLog struct {
	mu      sync.Mutex
	entries map[salamander.Position]salamander.Record
}

func (l *memLog) add(entries []jsstore.Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.entries == nil {
		l.entries = map[salamander.Position]salamander.Record{}
	}
	for _, e := range entries {
		l.entries[e.Pos] = e.Record
	}
}

func (l *memLog) Streams() []string  { return nil }
func (l *memLog) Standbys() []string { return nil }

func (l *memLog) Tail(ctx context.Context, _ string, _ uint64, _ func(jsstore.Entry) bool) {
	<-ctx.Done()
}

func (l *memLog) Fetch(_ context.Context, stream string, positions []uint64) (map[uint64]salamander.Record, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[uint64]salamander.Record{}
	for _, p := range positions {
		if r, ok := l.entries[salamander.Position{Stream: stream, Seq: p}]; ok {
			out[p] = r
		}
	}
	return out, nil
}

// apply applies entries to v as Run would, with the log holding them.
func apply(t *testing.T, v *View, log *memLog, entries []jsstore.Entry) {
	t.Helper()
	log.add(entries)
	v.src = log
	if err := v.applyBatch(entries); err != nil {
		t.Fatal(err)
	}
}

// openAt opens the read model at path; the caller closes it (a test may
// reopen the same store).
func openAt(t *testing.T, path string) *View {
	t.Helper()
	v, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func openTemp(t *testing.T) *View {
	t.Helper()
	v := openAt(t, filepath.Join(t.TempDir(), "view.db"))
	t.Cleanup(func() { v.Close() })
	return v
}

func state(t *testing.T, v *View) string {
	t.Helper()
	ctx := context.Background()
	room, err := v.Room(ctx, "g_1", "alice")
	if err != nil {
		t.Fatal(err)
	}
	page, err := v.History(ctx, "g_1", 0, 0, false, 50)
	if err != nil {
		t.Fatal(err)
	}
	sync, err := v.Sync(ctx, "alice", salamander.Cursor{}, 100)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := v.CurrentKey()
	old, _ := v.KeyByID("")
	b, _ := json.Marshal([]any{room, page, sync, cur, old})
	return string(b)
}

// The rules are deterministic: the same log gives the same state, whether
// applied in one batch or record by record, and redelivered records are
// applied once.
func TestApplyIsDeterministicAndIdempotent(t *testing.T) {
	h := history()
	one := openTemp(t)
	if err := one.applyBatch(h); err != nil {
		t.Fatal(err)
	}
	two := openTemp(t)
	for i, e := range h {
		if err := two.applyBatch([]jsstore.Entry{e}); err != nil {
			t.Fatal(err)
		}
		if err := two.applyBatch(h[:i+1]); err != nil { // redelivery after a consumer reset
			t.Fatal(err)
		}
	}
	if a, b := state(t, one), state(t, two); a != b {
		t.Fatalf("states differ:\n%s\n%s", a, b)
	}
	ctx := context.Background()
	page, _ := one.History(ctx, "g_1", 0, 0, false, 50)
	if len(page.Messages) != 2 || page.Messages[0].Text != "one" || page.Messages[1].Text != "two" {
		t.Fatalf("messages: %+v", page.Messages)
	}
	room, _ := one.Room(ctx, "g_1", "alice")
	if room.Name != "renamed" || len(room.Members) != 1 || room.ReadSeq != 2 || room.Unread != 0 {
		t.Fatalf("room: %+v", room)
	}
	// The first key signed until the rotation, which made r2 current; the
	// first key is kept (retired) to verify the tokens it signed.
	cur, _ := one.CurrentKey()
	first, ok := one.KeyByID("")
	if cur.ID != "r2" || string(cur.Sealed) != "k4" || !cur.Retired.IsZero() {
		t.Fatalf("current key %+v, want the rotation's", cur)
	}
	if !ok || string(first.Sealed) != "k1" || !first.Retired.Equal(cur.Created) {
		t.Fatalf("first key %+v, want k1 retired at %s", first, cur.Created)
	}
	if _, ok := one.KeyByID("x"); ok {
		t.Fatal("a second first key was taken")
	}
	if ok, _ := one.IsMember(ctx, "g_1", "eve"); ok {
		t.Fatal("eve invited herself")
	}
	if got := one.Applied(); got["acct"] != 9 || got["p0"] != 10 {
		t.Fatalf("applied %v", got)
	}
}

// A corrupt or foreign database file is replaced by an empty model, which
// the site then rebuilds from the log.
func TestCorruptModelIsRebuilt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	if err := os.WriteFile(path, []byte("this is not a database, just garbage bytes of some length"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := openAt(t, path)
	defer v.Close()
	if len(v.Applied()) != 0 {
		t.Fatal("expected an empty model")
	}
	if err := v.applyBatch(history()); err != nil {
		t.Fatal(err)
	}
}

// WaitApplied returns once the position is applied, and gives up with
// CodeUnavailable when the context ends first.
func TestWaitApplied(t *testing.T) {
	v := openTemp(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := v.WaitApplied(ctx, salamander.Position{Stream: "p0", Seq: 1}); salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("got %v", err)
	}
	done := make(chan error, 1)
	go func() {
		done <- v.WaitApplied(context.Background(), salamander.Position{Stream: "p0", Seq: 3})
	}()
	if err := v.applyBatch(history()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Sync returns what each user was sent when it happened: a message sent
// before a member left still reaches their offline device, and one sent
// while they were out never does.
func TestSyncFollowsMembershipAtEventTime(t *testing.T) {
	v := openTemp(t)
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup, Name: "g", Members: []string{"alice", "bob"}, By: "alice"},
		{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "1", Text: "hi bob"},
		{Type: salamander.RecRoomLeft, Room: "g_1", User: "bob"},
		{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "2", Text: "secret"},
		{Type: salamander.RecRoomJoined, Room: "g_1", Members: []string{"bob"}, By: "alice"},
		{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "3", Text: "welcome back"},
	}
	var batch []jsstore.Entry
	for i, r := range recs {
		r.At = at.Add(time.Duration(i) * time.Second)
		batch = append(batch, jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: uint64(i + 1)}, Record: r})
	}
	if err := v.applyBatch(batch); err != nil {
		t.Fatal(err)
	}
	res, err := v.Sync(context.Background(), "bob", salamander.Cursor{"p0": 1}, 100)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range res.Events {
		switch {
		case ev.Message != nil:
			got = append(got, ev.Message.Text)
		default:
			got = append(got, ev.Action)
		}
	}
	want := "[hi bob left joined welcome back]"
	if fmt.Sprint(got) != want {
		t.Fatalf("bob's sync: %v, want %s", got, want)
	}
	if res.Cursor != "p0:6" {
		t.Fatalf("cursor %s", res.Cursor)
	}
}

// A restarted site loads its model from the store and answers exactly as
// before, and goes on applying the log where the store left off.
func TestModelReloadsFromStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	h := history()
	log := &memLog{}
	apply(t, v, log, h[:12])
	before := state(t, v)
	v.Close()
	w := openAt(t, path)
	defer w.Close()
	log.add(h)
	w.src = log // texts now come from the log: the model's recent messages are gone
	if after := state(t, w); after != before {
		t.Fatalf("reloaded state differs:\n%s\n%s", before, after)
	}
	if err := w.applyBatch(h); err != nil { // redelivers the first 12
		t.Fatal(err)
	}
	fresh := openTemp(t)
	if err := fresh.applyBatch(h); err != nil {
		t.Fatal(err)
	}
	if a, b := state(t, w), state(t, fresh); a != b {
		t.Fatalf("restarted and fresh models differ:\n%s\n%s", a, b)
	}
	followers, _ := w.Followers(context.Background(), "bob")
	if fmt.Sprint(followers) != "[alice]" {
		t.Fatalf("followers of bob after reload: %v", followers)
	}
}

// A held message whose client id is placed already (its append to the
// partition landed after all) is not listed as held, also after a restart,
// before anything is placed in its room again.
func TestHeldLeavesOutPlacedAfterRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	apply(t, v, &memLog{}, history())
	v.Close()
	w := openAt(t, path)
	defer w.Close()
	held := func(i int, cid string) jsstore.Entry {
		return jsstore.Entry{Pos: jsstore.PositionOf("s0", 1, i), Last: i == 1, Record: salamander.Record{
			Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: cid, Text: cid}}
	}
	if err := w.applyBatch([]jsstore.Entry{held(0, "c1"), held(1, "c9")}); err != nil {
		t.Fatal(err)
	}
	if got := w.Held("g_1", "alice"); len(got) != 1 || got[0].ClientID != "c9" {
		t.Fatalf("held after a restart: %+v, want c9 only (c1 is placed)", got)
	}
	// A held send's own answer agrees: the placed one is not answered as
	// held (the gateway then answers it with its seq).
	if _, ok := w.HeldMessage(held(0, "c1").Pos); ok {
		t.Fatal("HeldMessage answers a placed message as held")
	}
	if m, ok := w.HeldMessage(held(1, "c9").Pos); !ok || m.ClientID != "c9" || !m.Held {
		t.Fatalf("HeldMessage of the held one: %+v, %v", m, ok)
	}
}

// A message held twice (a resend another site held again before it read
// the first hold) is placed once, and listed once as held.
func TestHeldListsAClientIDOnce(t *testing.T) {
	v := openAt(t, filepath.Join(t.TempDir(), "view.db"))
	defer v.Close()
	apply(t, v, &memLog{}, history())
	held := func(seq uint64, cid string) jsstore.Entry {
		return jsstore.Entry{Pos: jsstore.PositionOf("s0", seq, 0), Last: true, Record: salamander.Record{
			Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: cid, Text: cid}}
	}
	if err := v.applyBatch([]jsstore.Entry{held(1, "h1"), held(2, "h2"), held(3, "h1")}); err != nil {
		t.Fatal(err)
	}
	if got := v.Held("g_1", "alice"); len(got) != 2 || got[0].ClientID != "h1" || got[1].ClientID != "h2" {
		t.Fatalf("held: %+v, want h1 and h2 once each", got)
	}
	if got := v.HeldBy("alice"); len(got) != 2 {
		t.Fatalf("held by alice: %+v, want h1 and h2 once each", got)
	}
	if m, ok := v.HeldByClientID("g_1", "alice", "h1"); !ok || !m.Held || m.ClientID != "h1" {
		t.Fatalf("held by client id: %+v, %v", m, ok)
	}
	if _, ok := v.HeldByClientID("g_1", "bob", "h1"); ok {
		t.Fatal("another sender's client id answered as held")
	}
}

// A client id is recognized within the room's newest DedupeWindow
// messages, also after a restart, when the window is loaded from the store.
func TestDedupeWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	entry := (&p0Entries{}).entry
	send := func(cid string) jsstore.Entry {
		return entry(salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: cid, Text: "x"})
	}
	batch := []jsstore.Entry{entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup,
		Name: "g", Members: []string{"alice"}, By: "alice"})}
	for i := 0; i < DedupeWindow; i++ {
		batch = append(batch, send(fmt.Sprintf("c%d", i)))
	}
	log := &memLog{}
	apply(t, v, log, batch)
	v.Close()
	v = openAt(t, path)
	defer v.Close()
	v.src = log
	ctx := context.Background()
	// c0 is still in the window: a resend is a duplicate, found by client id.
	if m, ok, err := v.MessageByClientID(ctx, "g_1", "alice", "c0"); err != nil || !ok || m.Seq != 1 {
		t.Fatalf("c0 before the window moved: %+v %v %v", m, ok, err)
	}
	apply(t, v, log, []jsstore.Entry{send("c0"), send("new")})
	room, _ := v.Room(ctx, "g_1", "alice")
	if room.LastSeq != DedupeWindow+1 {
		t.Fatalf("last seq %d, want %d (the resend of c0 must be dropped)", room.LastSeq, DedupeWindow+1)
	}
	// "new" pushed c0 out of the window: c0 is now a new message.
	apply(t, v, log, []jsstore.Entry{send("c0")})
	if room, _ = v.Room(ctx, "g_1", "alice"); room.LastSeq != DedupeWindow+2 {
		t.Fatalf("last seq %d, want %d", room.LastSeq, DedupeWindow+2)
	}
}

// tailLog is a memLog whose Tail hands over its entries of a stream, as
// the log's tail would, then waits.
type tailLog struct{ memLog }

func (l *tailLog) Streams() []string { return []string{"acct", "p0"} }

func (l *tailLog) Tail(ctx context.Context, stream string, from uint64, fn func(jsstore.Entry) bool) {
	l.mu.Lock()
	var out []jsstore.Entry
	for seq := from; ; seq++ {
		r, ok := l.entries[salamander.Position{Stream: stream, Seq: seq}]
		if !ok {
			break
		}
		out = append(out, jsstore.Entry{Pos: salamander.Position{Stream: stream, Seq: seq}, Record: r})
	}
	l.mu.Unlock()
	for _, e := range out {
		if !fn(e) {
			return
		}
	}
	<-ctx.Done()
}

// A query that needs the store does not wait for the writer's pace: it
// asks the writer to commit now.
func TestStoreQueryHurriesTheWriter(t *testing.T) {
	v := openTemp(t)
	v.pace = time.Hour
	log := &tailLog{}
	log.add(history())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx, log)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	if err := v.WaitApplied(testContext(t), salamander.Position{Stream: "p0", Seq: 10}); err != nil {
		t.Fatal(err)
	}
	page, err := v.History(testContext(t), "g_1", 0, 0, false, 50)
	if err != nil {
		t.Fatalf("history waited for a writer that gathers for an hour: %v", err)
	}
	if len(page.Messages) != 2 {
		t.Fatalf("history holds %d messages, want 2", len(page.Messages))
	}
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Roles change only by the admin credential or an account that is an
// admin at that point of the log; each change is in the audit trail.
func TestRoleChangesFollowTheLog(t *testing.T) {
	v := openTemp(t)
	log := &memLog{}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	recs := []salamander.Record{
		{Type: salamander.RecUserCreated, User: "alice", PasswordHash: "h"},
		{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "h"},
		{Type: salamander.RecRoleSet, User: "bob", Role: "admin", By: "alice", Site: "a"}, // alice is no admin yet
		{Type: salamander.RecRoleSet, User: "alice", Role: "admin", Site: "cli"},
		{Type: salamander.RecRoleSet, User: "bob", Role: "operator", By: "alice", Site: "b"},
		{Type: salamander.RecRoleSet, User: "bob", Role: "root", By: "alice", Site: "b"}, // no such role
	}
	var entries []jsstore.Entry
	for i, r := range recs {
		r.At = at.Add(time.Duration(i) * time.Second)
		entries = append(entries, jsstore.Entry{Pos: salamander.Position{Stream: "acct", Seq: uint64(i + 1)}, Record: r})
	}
	apply(t, v, log, entries)
	if v.Role("alice") != "admin" || v.Role("bob") != "operator" || v.Role("nobody") != "user" {
		t.Fatalf("roles: alice %s, bob %s", v.Role("alice"), v.Role("bob"))
	}
	trail, err := v.Audit(context.Background(), time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(trail) != 2 || trail[0].User != "bob" || trail[0].By != "alice" || trail[0].Site != "b" ||
		trail[1].User != "alice" || trail[1].Site != "cli" {
		t.Fatalf("audit trail %+v", trail)
	}
}

// An entry that fails to apply (the store cannot be read to load its
// room's client ids) stops the batch there, but what the entries before it
// changed reaches the store: the model applied them, and the store must not
// hold a hole once later entries move its applied position on.
func TestAFailedEntryKeepsWhatWasAppliedBeforeIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	h := history()
	apply(t, v, &memLog{}, h)
	v.Close()
	w := openAt(t, path)
	end := jsstore.RecordSeq(h[len(h)-1].Pos.Seq)
	at := func(stream string, seq uint64, rec salamander.Record) jsstore.Entry {
		return jsstore.Entry{Pos: jsstore.PositionOf(stream, seq, 0), Last: true, Record: rec}
	}
	// g_1's client ids are not loaded after the restart: with the readers
	// closed (the applier's own too), its next message cannot be applied.
	w.r.Close()
	w.own.Close()
	batch := []jsstore.Entry{
		at("acct", end+1, salamander.Record{Type: salamander.RecUserCreated, User: "zoe", PasswordHash: "h"}),
		at("p0", end+2, salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c7", Text: "x"}),
	}
	if err := w.applyBatch(batch); err == nil {
		t.Fatal("a message whose room's client ids cannot be loaded was applied")
	}
	w.Close()
	x := openAt(t, path)
	defer x.Close()
	if _, err := x.User(context.Background(), "zoe"); err != nil {
		t.Fatalf("the user created before the failed entry is not in the store: %v", err)
	}
	if got := jsstore.RecordsApplied(x.Applied()["p0"]); got >= end+2 {
		t.Fatalf("the failed entry's stream is recorded as applied up to %d", got)
	}
}

// The writer writes what many applied batches changed in one transaction,
// a room, a member or a user once with its latest state: the store then
// holds what it holds after writing the batches one by one.
func TestOneWriteOfManyBatchesKeepsTheLatestRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	h := history()
	log := &memLog{}
	log.add(h)
	v.src = log
	var batches []*dbBatch
	for _, e := range h { // one batch per record, as the tails hand them over
		b, err := v.applyModel([]jsstore.Entry{e})
		if err != nil {
			t.Fatal(err)
		}
		if b != nil {
			batches = append(batches, b)
		}
	}
	if len(batches) < 10 {
		t.Fatalf("%d batches", len(batches))
	}
	if err := v.write(batches); err != nil {
		t.Fatal(err)
	}
	v.Close()
	reloaded := openAt(t, path)
	defer reloaded.Close()
	reloaded.src = log
	fresh := openTemp(t)
	apply(t, fresh, log, h)
	if a, b := state(t, reloaded), state(t, fresh); a != b {
		t.Fatalf("one write of many batches, reloaded, differs from one batch:\n%s\n%s", a, b)
	}
}

// Sync reads a span's messages by seq between the sparse position marks
// (message_marks): for any cursor, end and limit it returns what a plain
// scan by position returns, across marks, joins, leaves and rejoins.
func TestSyncBetweenMarksIsSyncByPosition(t *testing.T) {
	v := openTemp(t)
	log := &memLog{}
	rng := rand.New(rand.NewPCG(7, 8))
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	seq := map[string]uint64{}
	var entries []jsstore.Entry
	add := func(stream string, rec salamander.Record) {
		seq[stream]++
		rec.At = at
		entries = append(entries, jsstore.Entry{Pos: jsstore.PositionOf(stream, seq[stream], 0), Last: true, Record: rec})
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		add("acct", salamander.Record{Type: salamander.RecUserCreated, User: u, PasswordHash: "h"})
	}
	add("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup, Name: "one",
		Members: []string{"alice", "bob"}, By: "alice"})
	add("p0", salamander.Record{Type: salamander.RecRoomCreated, Room: "g_2", Kind: salamander.RoomGroup, Name: "two",
		Members: []string{"alice", "bob", "carol"}, By: "carol"})
	bobIn := true
	for i := range 600 {
		switch n := rng.IntN(40); {
		case n == 0 && bobIn:
			add("p0", salamander.Record{Type: salamander.RecRoomLeft, Room: "g_1", User: "bob"})
			bobIn = false
		case n == 1 && !bobIn:
			add("p0", salamander.Record{Type: salamander.RecRoomJoined, Room: "g_1", Members: []string{"bob"}, By: "alice"})
			bobIn = true
		case n < 25:
			add("p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: fmt.Sprint("a", i), Text: "x"})
		case n < 27: // read markers: room events other than messages
			add("p0", salamander.Record{Type: salamander.RecMessageRead, Room: "g_2", User: []string{"alice", "bob"}[n%2], Seq: uint64(i)})
		case n < 29: // a run of them: a page of room events alone
			for k := range 1 + rng.IntN(20) {
				add("p0", salamander.Record{Type: salamander.RecRoomRenamed, Room: "g_2", By: "carol", Name: fmt.Sprint("two ", i, k)})
			}
		default:
			add("p0", salamander.Record{Type: salamander.RecMessageSent, Room: "g_2", User: "carol", ClientID: fmt.Sprint("c", i), Text: "y"})
		}
	}
	apply(t, v, log, entries)
	// The query before the marks: every message of the span by position.
	const byPosition = `SELECT m.pos, m.seq FROM spans s JOIN rooms r ON r.id = s.room JOIN messages m ON m.room = r.no
		AND m.pos > max(?1, s.from_seq - 1) AND m.pos <= min(s.to_seq, ?2)
		WHERE s.user = ?3 AND s.stream = ?4 AND s.to_seq > ?1 ORDER BY m.pos LIMIT ?5`
	rows := func(q string, args ...any) string {
		t.Helper()
		r, err := v.r.Query(q, args...)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var pos, mseq uint64
			var kind int
			var room, body string
			if strings.HasPrefix(q, "SELECT m.pos") {
				err = r.Scan(&pos, &mseq)
			} else {
				err = r.Scan(&pos, &kind, &room, &body, &mseq)
				if kind != 1 {
					continue
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(pos, "/", mseq))
		}
		return strings.Join(out, " ")
	}
	// events is the sync query's page: each event's position and kind.
	events := func(after, upTo uint64, user string, limit int) []string {
		t.Helper()
		r, err := v.r.Query(syncQuery, after, upTo, user, "p0", limit)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []string
		for r.Next() {
			var pos, mseq uint64
			var kind int
			var room, body string
			if err := r.Scan(&pos, &kind, &room, &body, &mseq); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(pos, ":", kind))
		}
		return out
	}
	end := seq["p0"]
	messages := 0
	for range 60 {
		pos := func() uint64 { return jsstore.PositionOf("p0", rng.Uint64N(end+2), 0).Seq }
		after, upTo := pos(), pos()
		for _, user := range []string{"alice", "bob", "carol"} {
			// Messages only (the limit counts every event), in order.
			got := rows(syncQuery, after, upTo, user, "p0", 100000)
			want := rows(byPosition, after, upTo, user, "p0", 100000)
			if got != want {
				t.Fatalf("%s after %d up to %d:\nmarks    %s\nposition %s", user, after, upTo, got, want)
			}
			messages += strings.Count(got, "/")
			// A page of any size is the first events of the whole: the
			// per-span bounds leave out none that belongs in it.
			whole := events(after, upTo, user, 100000)
			lim := 1 + rng.IntN(80)
			if page, first := events(after, upTo, user, lim), whole[:min(lim, len(whole))]; !slices.Equal(page, first) {
				t.Fatalf("%s after %d up to %d, limit %d:\npage  %v\nfirst %v", user, after, upTo, lim, page, first)
			}
		}
	}
	if messages < 1500 {
		t.Fatalf("only %d messages compared", messages)
	}
	var marks int
	if err := v.r.QueryRow(`SELECT count(*) FROM message_marks`).Scan(&marks); err != nil || marks < 10 {
		t.Fatalf("%d marks (%v)", marks, err)
	}
}

// The dedupe window knows messages by client key; a lookup by client id
// answers only with a message that sender sent under that id, so a key two
// ids share (~2^-64, forced here) never hands one sender another's message.
func TestMessageByClientIDChecksSenderAndID(t *testing.T) {
	v := openTemp(t)
	log := &memLog{}
	apply(t, v, log, history())
	ctx := context.Background()
	m, ok, err := v.MessageByClientID(ctx, "g_1", "alice", "c1")
	if err != nil || !ok || m.Sender != "alice" || m.ClientID != "c1" {
		t.Fatalf("alice's c1: %+v %v %v", m, ok, err)
	}
	v.mu.Lock()
	v.m.rooms["g_1"].ids.forge(clientKeyOf("bob", "forged"), m.Seq)
	v.mu.Unlock()
	if got, ok, err := v.MessageByClientID(ctx, "g_1", "bob", "forged"); err != nil || ok {
		t.Fatalf("a colliding key answered bob with %+v (%v, %v)", got, ok, err)
	}
}

// What the applier reads while it holds the model's lock (here: a room's
// dedupe window, not preloaded) never waits for a connection of the
// readers' pool: queries hold those while they wait for the lock (Sync,
// for its whole transaction), and the site would stop.
func TestApplierReadsDoNotWaitForQueriesConnections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	h := history()
	apply(t, v, &memLog{}, h)
	v.Close()
	w := openAt(t, path)
	defer w.Close()
	ctx := context.Background()
	for range 8 { // every reader's connection taken, as by eight Syncs
		conn, err := w.r.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
	}
	end := jsstore.RecordSeq(h[len(h)-1].Pos.Seq)
	next := jsstore.Entry{Pos: jsstore.PositionOf("p0", end+1, 0), Last: true,
		Record: salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c-late", Text: "x"}}
	done := make(chan error, 1)
	go func() { done <- w.applyBatch([]jsstore.Entry{next}) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the applier waited for a reader's connection under the model's lock")
	}
}

// A logout is remembered until its token has expired (plus a day for
// clocks), then forgotten, in memory and in the store: every site would
// otherwise keep every logout ever made.
func TestExpiredLogoutsAreForgotten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	now := time.Now() // a restart below loads by the real clock
	v.SetSessionTTL(30 * 24 * time.Hour)
	var entries []jsstore.Entry
	revoke := func(sid string, at time.Time) {
		entries = append(entries, jsstore.Entry{Pos: jsstore.PositionOf("acct", uint64(len(entries)+1), 0), Last: true,
			Record: salamander.Record{Type: salamander.RecSessionRevoked, User: "alice", Session: sid, At: at}})
	}
	revoke("old-1", now.Add(-40*24*time.Hour))
	revoke("old-2", now.Add(-32*24*time.Hour))
	revoke("recent", now.Add(-30*24*time.Hour-time.Hour)) // its token may still be valid (clocks)
	revoke("new", now.Add(-time.Hour))
	apply(t, v, &memLog{}, entries)
	revoked := func(v *View, sid string) bool {
		ok, err := v.SessionRevoked(context.Background(), sid)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	before := v.pruneRevoked()
	if before == 0 {
		t.Fatal("nothing pruned")
	}
	for sid, want := range map[string]bool{"old-1": false, "old-2": false, "recent": true, "new": true} {
		if got := revoked(v, sid); got != want {
			t.Errorf("after pruning, %s revoked: %v, want %v", sid, got, want)
		}
	}
	if v.pruneRevoked() != 0 {
		t.Fatal("a second sweep within the hour told the store to forget again")
	}
	if err := v.write([]*dbBatch{{reached: map[string]uint64{}, revokedBefore: before}}); err != nil {
		t.Fatal(err)
	}
	v.Close()
	w := openAt(t, path) // the store forgot them too
	defer w.Close()
	for sid, want := range map[string]bool{"old-1": false, "old-2": false, "recent": true, "new": true} {
		if got := revoked(w, sid); got != want {
			t.Errorf("after a restart, %s revoked: %v, want %v", sid, got, want)
		}
	}
}

// The queue of logouts forgets the oldest first, at most as many as
// asked; one dated later than those after it holds them back only until
// it goes too.
func TestPruneRevokedOrderAndBound(t *testing.T) {
	m := newModel()
	for i, at := range []int64{10, 20, 50, 30, 40, 60} {
		m.revoke(fmt.Sprint("s", i), at)
	}
	if n := m.pruneRevoked(45, 1); n != 1 || len(m.revoked) != 5 {
		t.Fatalf("bounded to 1: pruned %d, %d left", n, len(m.revoked))
	}
	if n := m.pruneRevoked(45, 100); n != 1 || len(m.revoked) != 4 { // s2 (50) holds s3 and s4 back
		t.Fatalf("up to the later one: pruned %d, %d left", n, len(m.revoked))
	}
	if n := m.pruneRevoked(55, 100); n != 3 || len(m.revoked) != 1 || m.revokedOrder.len() != 1 {
		t.Fatalf("once it goes: pruned %d, %d left, %d queued", n, len(m.revoked), m.revokedOrder.len())
	}
	if _, ok := m.revoked["s5"]; !ok {
		t.Fatal("the newest was pruned")
	}
}

// A sync page is bounded in bytes as well as in events: of 600 messages of
// the longest text, a page of up to 1,000 events holds fewer, says there
// is more, and the pages from its cursor on hold the rest, in order, once.
func TestSyncPageIsBoundedInBytes(t *testing.T) {
	v := openTemp(t)
	entry := (&p0Entries{}).entry
	entries := []jsstore.Entry{entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_big", Kind: salamander.RoomGroup,
		Name: "big", Members: []string{"alice", "bob"}, By: "alice"})}
	const n = 600
	text := strings.Repeat("가", salamander.MaxMessageBytes/3)
	for i := range n {
		entries = append(entries, entry(salamander.Record{Type: salamander.RecMessageSent, Room: "g_big", User: "alice",
			ClientID: fmt.Sprint("c", i), Text: text}))
	}
	apply(t, v, &memLog{}, entries)
	var cur salamander.Cursor
	var seqs []uint64
	pages := 0
	for {
		res, err := v.Sync(context.Background(), "bob", cur, salamander.MaxSyncEvents)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		size := 0
		for _, e := range res.Events {
			size += eventSize(&e)
			if e.Message != nil {
				seqs = append(seqs, e.Message.Seq)
			}
		}
		if size > maxSyncPageBytes && len(res.Events) > 1 {
			t.Fatalf("page %d: %d events, ~%d bytes", pages, len(res.Events), size)
		}
		if cur, err = salamander.ParseCursor(res.Cursor); err != nil {
			t.Fatal(err)
		}
		if !res.More {
			break
		}
		if pages > 10 {
			t.Fatal("no end of pages")
		}
	}
	if pages < 2 || len(seqs) != n {
		t.Fatalf("%d pages, %d messages: want the %d in more than one page", pages, len(seqs), n)
	}
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("message %d has seq %d", i, s)
		}
	}
}

// TestSyncPagesAcrossStreams pages a user's events spread over several
// streams with small pages: each stream's query is bounded by the page's
// limit, not by what is left of the page (see syncStream), so a page that
// ends inside a later stream must stop at the page's size, and the pages
// together are every event once, in each stream's order — what one page
// of them all holds.
func TestSyncPagesAcrossStreams(t *testing.T) {
	v := openTemp(t)
	log := &memLog{}
	seq := map[string]uint64{}
	var entries []jsstore.Entry
	add := func(stream string, rec salamander.Record) {
		seq[stream]++
		entries = append(entries, jsstore.Entry{Pos: jsstore.PositionOf(stream, seq[stream], 0), Last: true, Record: rec})
	}
	for _, u := range []string{"alice", "bob"} {
		add("acct", salamander.Record{Type: salamander.RecUserCreated, User: u, PasswordHash: "h"})
	}
	streams := []string{"p0", "p1", "p2"}
	for k, s := range streams {
		room := fmt.Sprint("g_", s)
		add(s, salamander.Record{Type: salamander.RecRoomCreated, Room: room, Kind: salamander.RoomGroup, Name: s,
			Members: []string{"alice", "bob"}, By: "alice"})
		for i := range 5 + 4*k {
			add(s, salamander.Record{Type: salamander.RecMessageSent, Room: room, User: "alice", ClientID: fmt.Sprint(s, i), Text: "x"})
		}
	}
	apply(t, v, log, entries)
	key := func(e salamander.Event) string {
		if e.Pos != nil {
			return fmt.Sprintf("%s:%d", e.Pos.Stream, e.Pos.Seq)
		}
		return fmt.Sprint(e.Type, e.RoomID)
	}
	all, err := v.Sync(context.Background(), "bob", salamander.Cursor{}, 1000)
	if err != nil || all.More {
		t.Fatalf("one page: more %v, %v", all.More, err)
	}
	var want []string
	for _, e := range all.Events {
		want = append(want, key(e))
	}
	if len(want) < 27 {
		t.Fatalf("one page holds %d events: %v", len(want), want)
	}
	for _, limit := range []int{1, 2, 3, 4, 7} {
		var cur salamander.Cursor
		var got []string
		for pages := 0; ; pages++ {
			res, err := v.Sync(context.Background(), "bob", cur, limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Events) > limit || (res.More && len(res.Events) < limit) {
				t.Fatalf("limit %d, page %d: %d events, more %v", limit, pages, len(res.Events), res.More)
			}
			for _, e := range res.Events {
				got = append(got, key(e))
			}
			if cur, err = salamander.ParseCursor(res.Cursor); err != nil {
				t.Fatal(err)
			}
			if !res.More {
				break
			}
			if pages > len(want) {
				t.Fatalf("limit %d: no end of pages", limit)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("limit %d: pages hold\n%v\nwant\n%v", limit, got, want)
		}
	}
}

// TestRoomHeadIsRoomWithoutMembers: RoomHead answers what Room answers
// (the same codes, seqs and names) but leaves out the members, their read
// markers and the newest message.
func TestRoomHeadIsRoomWithoutMembers(t *testing.T) {
	v := openTemp(t)
	entry := (&p0Entries{}).entry
	entries := []jsstore.Entry{entry(salamander.Record{Type: salamander.RecRoomCreated, Room: "g_head", Kind: salamander.RoomGroup,
		Name: "head", Members: []string{"alice", "bob", "carol"}, By: "alice"})}
	for i := range 5 {
		entries = append(entries, entry(salamander.Record{Type: salamander.RecMessageSent, Room: "g_head", User: "alice",
			ClientID: fmt.Sprint("h", i), Text: "x"}))
	}
	entries = append(entries, entry(salamander.Record{Type: salamander.RecMessageRead, Room: "g_head", User: "bob", Seq: 3}))
	apply(t, v, &memLog{}, entries)
	ctx := context.Background()
	for _, viewer := range []string{"alice", "bob", "carol", ""} {
		full, err := v.Room(ctx, "g_head", viewer)
		if err != nil {
			t.Fatal(err)
		}
		head, err := v.RoomHead(ctx, "g_head", viewer)
		if err != nil {
			t.Fatal(err)
		}
		full.Members, full.ReadMarkers, full.LastMessage = nil, nil, nil
		if !reflect.DeepEqual(head, full) {
			t.Errorf("viewer %q: head %+v, room %+v", viewer, head, full)
		}
	}
	for _, c := range []struct {
		room, viewer string
		code         salamander.Code
	}{{"g_head", "dave", salamander.CodeForbidden}, {"g_none", "alice", salamander.CodeNotFound}} {
		_, errRoom := v.Room(ctx, c.room, c.viewer)
		_, errHead := v.RoomHead(ctx, c.room, c.viewer)
		if salamander.ErrorCode(errRoom) != c.code || salamander.ErrorCode(errHead) != c.code {
			t.Errorf("%s for %s: room %v, head %v; want %s", c.room, c.viewer, errRoom, errHead, c.code)
		}
	}
}

// A room's records count only in its own partition: the sites tail the
// streams independently, so a record about the room in another stream — a
// message held in another partition's standby and placed by that
// partition's merge, a creation of the room there too, any record a
// writer put in the wrong partition — was applied before or after the
// room's own records depending on each site's timing. Two sites applying
// the same log then gave the room different seqs, senders and members,
// and history read the stray message's text from the room's stream at
// the wrong position (a blank message).
func TestARoomsRecordsCountOnlyInItsPartition(t *testing.T) {
	const parts = 2
	own := jsstore.RoomPartition("g_1", parts)
	other := "p0"
	if own == other {
		other = "p1"
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	entry := func(stream string, seq uint64, r salamander.Record) jsstore.Entry {
		r.At = at
		return jsstore.Entry{Pos: jsstore.PositionOf(stream, seq, 0), Record: r, Last: true}
	}
	users := []jsstore.Entry{
		entry("acct", 1, salamander.Record{Type: salamander.RecUserCreated, User: "alice", PasswordHash: "h"}),
		entry("acct", 2, salamander.Record{Type: salamander.RecUserCreated, User: "bob", PasswordHash: "h"}),
		entry("acct", 3, salamander.Record{Type: salamander.RecUserCreated, User: "eve", PasswordHash: "h"}),
	}
	created := entry(own, 1, salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup,
		Name: "g", Members: []string{"alice", "bob"}, By: "alice"})
	sent := entry(own, 2, salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: "c1", Text: "one"})
	strayCreated := entry(other, 1, salamander.Record{Type: salamander.RecRoomCreated, Room: "g_1", Kind: salamander.RoomGroup,
		Name: "stray", Members: []string{"eve", "bob"}, By: "eve"})
	straySent := entry(other, 2, salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "bob", ClientID: "c2", Text: "two"})
	var states []string
	for _, order := range [][]jsstore.Entry{
		{created, sent, strayCreated, straySent},
		{strayCreated, straySent, created, sent},
		{created, straySent, sent, strayCreated},
	} {
		v := openTemp(t)
		v.parts = parts
		apply(t, v, &memLog{}, append(slices.Clone(users), order...))
		states = append(states, state(t, v))
		page, err := v.History(context.Background(), "g_1", 0, 0, false, 50)
		if err != nil {
			t.Fatal(err)
		}
		if len(page.Messages) != 1 || page.Messages[0].Text != "one" {
			t.Errorf("history %+v, want the room's own message alone", page.Messages)
		}
	}
	for i := 1; i < len(states); i++ {
		if states[i] != states[0] {
			t.Fatalf("two orders of the streams give two states:\n%s\n%s", states[0], states[i])
		}
	}
}

// fillDisk makes v's database full, as a full disk does: SQLite answers
// SQLITE_FULL ("database or disk is full") to a write that needs a page
// more than it has (max_page_count, on the writer's one connection), and
// room again when pages is 0.
func fillDisk(t *testing.T, v *View, full bool) {
	t.Helper()
	limit := int64(1 << 30)
	if full {
		if err := v.w.QueryRow(`PRAGMA page_count`).Scan(&limit); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := v.w.Exec(fmt.Sprintf(`PRAGMA max_page_count = %d`, limit)); err != nil {
		t.Fatal(err)
	}
}

// chatter is history with n more messages of alice's to g_1 after it,
// enough rows that the store needs pages it does not have yet.
func chatter(n int) []jsstore.Entry {
	h := history()
	last := h[len(h)-1]
	for i := range n {
		r := salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "alice", ClientID: fmt.Sprintf("f%d", i),
			Text: strings.Repeat("x", 200), At: last.Record.At.Add(time.Duration(i+1) * time.Second)}
		h = append(h, jsstore.Entry{Pos: salamander.Position{Stream: "p0", Seq: last.Pos.Seq + uint64(i) + 1}, Record: r})
	}
	return h
}

// A disk that fills up while the log is applied holds the store back (its
// queries answer unavailable, never a store with a hole), and a site that
// stops meanwhile stops: the store is written behind the model and holds
// a prefix of the log, which the next start applies on from. The writer
// retried the failing write for as long as the process lived, so Run never
// returned and a site's Close (a SIGTERM) hung.
func TestAFullDiskNeitherHolesTheStoreNorHangsAStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	h := chatter(2000)
	log := &tailLog{}
	log.add(h)
	fillDisk(t, v, true)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		v.Run(ctx, log)
	}()
	if err := v.WaitApplied(testContext(t), h[len(h)-1].Pos); err != nil {
		t.Fatal(err)
	}
	short, stop := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := v.History(short, "g_1", 0, 0, false, 50)
	stop()
	if salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("history from a store that cannot be written: %v, want unavailable", err)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of its end while the disk was full")
	}
	v.Close()

	// The next start, with room again, applies the log on from what the
	// store holds, and ends where a fresh read model does.
	w := openAt(t, path)
	defer w.Close()
	ctx, cancel = context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, log)
	}()
	defer func() {
		cancel()
		<-done
	}()
	if err := w.WaitApplied(testContext(t), h[len(h)-1].Pos); err != nil {
		t.Fatal(err)
	}
	fresh := openTemp(t)
	apply(t, fresh, &log.memLog, h)
	if a, b := state(t, w), state(t, fresh); a != b {
		t.Fatalf("restarted after a full disk and fresh models differ:\n%s\n%s", a, b)
	}
}
