package jsstore_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/freeport"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
	"github.com/salamander-chat/salamander/internal/natsnode/natsnodetest"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// openStore starts a one-server JetStream (R1) and opens a store on it.
func openStore(t *testing.T) *jsstore.Store {
	t.Helper()
	s, _ := openStoreOn(t, "", "")
	return s
}

// openStoreOn opens a store with its own copy of the log in copyDir ("":
// none) on the server at url, or on a new one-server JetStream (R1) when
// url is empty. It returns the server's URL.
func openStoreOn(t *testing.T, url, copyDir string) (*jsstore.Store, string) {
	t.Helper()
	return openStoreWith(t, url, func(c *jsstore.Config) { c.CopyDir = copyDir })
}

// openStoreWith is openStoreOn with the store's configuration changed by
// tweak (after the defaults: Replicas 1, Partitions 2).
func openStoreWith(t *testing.T, url string, tweak func(*jsstore.Config)) (*jsstore.Store, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if url == "" {
		cfg := natsnode.DefaultConfig("a")
		cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
		cfg.ClusterAddr = "" // a lone server, no cluster
		node, err := natsnode.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.Shutdown)
		url = node.ClientURL()
	}
	scfg := jsstore.DefaultConfig(url)
	scfg.Replicas = 1
	scfg.Partitions = 2
	tweak(&scfg)
	s, err := jsstore.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	if err := s.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	return s, url
}

func TestAppendUniquenessAndDedupe(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	rec := salamander.Record{Type: salamander.RecUserCreated, User: "alice", At: time.Now()}
	pos, dup, err := s.Append(ctx, jsstore.AccountsStream, "user.alice", rec, jsstore.AppendOptions{ExpectNew: true})
	if err != nil || dup || pos != jsstore.PositionOf(jsstore.AccountsStream, 1, 0) {
		t.Fatalf("first create: %v %v %v", pos, dup, err)
	}
	if _, _, err := s.Append(ctx, jsstore.AccountsStream, "user.alice", rec, jsstore.AppendOptions{ExpectNew: true}); !errors.Is(err, jsstore.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
	msg := salamander.Record{Type: salamander.RecMessageSent, Room: "d_0", Text: "x"}
	room := s.RoomStream("d_0")
	p1, dup1, err := s.Append(ctx, room, "d_0", msg, jsstore.AppendOptions{MsgID: "m1"})
	if err != nil || dup1 {
		t.Fatal(err, dup1)
	}
	p2, dup2, err := s.Append(ctx, room, "d_0", msg, jsstore.AppendOptions{MsgID: "m1"})
	if err != nil || !dup2 || p2 != p1 {
		t.Fatalf("retry: %v %v %v, first %v", p2, dup2, err, p1)
	}
	last, err := s.LastPosition(ctx, room)
	if err != nil || last != jsstore.End(p1) {
		t.Fatalf("last position %v %v, want %v", last, err, p1)
	}
}

func TestTailDeliversInOrderFromAPosition(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	room := s.RoomStream("g_1")
	for i := 0; i < 10; i++ {
		rec := salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", Seq: uint64(i)}
		if _, _, err := s.Append(ctx, room, "g_1", rec, jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	tctx, stop := context.WithCancel(ctx)
	s.Tail(tctx, room, jsstore.PositionOf(room, 4, 0).Seq, func(e jsstore.Entry) bool {
		if e.Err != nil {
			t.Error(e.Err)
		}
		got = append(got, jsstore.RecordSeq(e.Pos.Seq))
		if len(got) == 7 {
			stop()
		}
		return true
	})
	want := []uint64{4, 5, 6, 7, 8, 9, 10}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestRoomStreamIsStable(t *testing.T) {
	s := openStore(t)
	if s.RoomStream("g_abc") != s.RoomStream("g_abc") {
		t.Fatal("unstable partition")
	}
	if got := s.Streams(); len(got) != 3 || got[0] != jsstore.AccountsStream {
		t.Fatalf("streams %v", got)
	}
}

// A tail follows commit announcements (no polling): records appended while
// it runs arrive in order, and a record missing from the log stops it at
// the hole — reported by Stalled — instead of being skipped.
func TestTailFollowsCommitsAndRefusesGaps(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	room := s.RoomStream("g_2")
	appendN := func(n int) {
		for i := 0; i < n; i++ {
			if _, _, err := s.Append(ctx, room, "g_2", salamander.Record{Type: salamander.RecMessageSent, Room: "g_2"},
				jsstore.AppendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(3)
	got := make(chan uint64, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Tail(ctx, room, 1, func(e jsstore.Entry) bool {
			got <- jsstore.RecordSeq(e.Pos.Seq)
			return true
		})
	}()
	next := func() uint64 {
		select {
		case seq := <-got:
			return seq
		case <-ctx.Done():
			t.Fatal("tail delivered nothing")
			return 0
		}
	}
	for want := uint64(1); want <= 3; want++ {
		if seq := next(); seq != want {
			t.Fatalf("got %d, want %d", seq, want)
		}
	}
	fills := s.GapFills()
	appendN(2) // announced live: applied from the announcements, no direct get
	for want := uint64(4); want <= 5; want++ {
		if seq := next(); seq != want {
			t.Fatalf("got %d, want %d", seq, want)
		}
	}
	if got := s.GapFills(); got != fills {
		t.Fatalf("live records needed %d gap fills; want them from the announcements alone", got-fills)
	}
	// Make a hole at 7: a tail from 6 must deliver 6 and stop before 8.
	appendN(3)
	for want := uint64(6); want <= 8; want++ {
		next()
	}
	js, err := jetstream.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "SAL_"+strings.ToUpper(room))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.DeleteMsg(ctx, 7); err != nil {
		t.Fatal(err)
	}
	var from6 []uint64
	s.Tail(ctx, room, jsstore.PositionOf(room, 6, 0).Seq, func(e jsstore.Entry) bool {
		from6 = append(from6, jsstore.RecordSeq(e.Pos.Seq))
		return true
	})
	if fmt.Sprint(from6) != "[6]" {
		t.Fatalf("tail over a hole delivered %v, want [6] and a stop", from6)
	}
	if why := s.Stalled()[room]; !strings.Contains(why, ":7") {
		t.Fatalf("Stalled()[%s] = %q, want the hole at 7", room, why)
	}
	cancel()
	<-done
}

// Concurrent batchable appends share records; every entry still gets its
// own position, in the order the tail delivers them, and a tail resumed in
// the middle of a record delivers exactly the rest of it.
func TestBatchedAppendsShareRecords(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	room := s.RoomStream("g_3")
	const n = 300
	positions := make(chan salamander.Position, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			rec := salamander.Record{Type: salamander.RecMessageSent, Room: "g_3", ClientID: fmt.Sprint(i)}
			pos, _, err := s.Append(ctx, room, "g_3", rec, jsstore.AppendOptions{Batch: true, MsgID: fmt.Sprint("m", i)})
			if err != nil {
				t.Error(err)
				return
			}
			positions <- pos
		}(i)
	}
	wg.Wait()
	close(positions)
	acked := map[uint64]bool{}
	records := map[uint64]bool{}
	for p := range positions {
		if acked[p.Seq] {
			t.Fatalf("position %d acknowledged twice", p.Seq)
		}
		acked[p.Seq] = true
		records[jsstore.RecordSeq(p.Seq)] = true
	}
	if len(records) >= n {
		t.Fatalf("%d appends took %d records: nothing was batched", n, len(records))
	}
	t.Logf("%d concurrent appends in %d records", n, len(records))
	var seen []jsstore.Entry
	tctx, stop := context.WithCancel(ctx)
	s.Tail(tctx, room, 1, func(e jsstore.Entry) bool {
		seen = append(seen, e)
		if len(seen) == n {
			stop()
		}
		return true
	})
	last := uint64(0)
	cids := map[string]bool{}
	for i, e := range seen {
		if !acked[e.Pos.Seq] || e.Pos.Seq <= last {
			t.Fatalf("entry %d at %d: acknowledged %v, previous %d", i, e.Pos.Seq, acked[e.Pos.Seq], last)
		}
		last = e.Pos.Seq
		cids[e.Record.ClientID] = true
		nextInRecord := i+1 < len(seen) && jsstore.RecordSeq(seen[i+1].Pos.Seq) == jsstore.RecordSeq(e.Pos.Seq)
		if e.Last == nextInRecord {
			t.Fatalf("entry at %d: Last = %v", e.Pos.Seq, e.Last)
		}
	}
	if len(cids) != n {
		t.Fatalf("tail delivered %d distinct records, want %d", len(cids), n)
	}
	// Fetch reads entries back by position, from shared and lone records.
	var all []uint64
	for p := range acked {
		all = append(all, p)
	}
	got, err := s.Fetch(ctx, room, all)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range seen {
		if got[e.Pos.Seq].ClientID != e.Record.ClientID {
			t.Fatalf("fetch at %d: client id %q, tail had %q", e.Pos.Seq, got[e.Pos.Seq].ClientID, e.Record.ClientID)
		}
	}
	// Resume after the first entry of the first shared record.
	var mid salamander.Position
	for i := 0; i+1 < len(seen); i++ {
		if !seen[i].Last {
			mid = seen[i].Pos
			break
		}
	}
	var rest []uint64
	s.Tail(ctx, room, mid.Seq+1, func(e jsstore.Entry) bool {
		rest = append(rest, e.Pos.Seq)
		return !e.Last // stop at the end of that record
	})
	if len(rest) == 0 || rest[0] != mid.Seq+1 || jsstore.RecordSeq(rest[len(rest)-1]) != jsstore.RecordSeq(mid.Seq) {
		t.Fatalf("resumed after %d: got %v", mid.Seq, rest)
	}
}

// A site reads message texts from its own copy of the log, not from
// whichever replica JetStream picks: the test counts who answered.
func TestFetchReadsTheSitesOwnCopy(t *testing.T) {
	copyDir := t.TempDir()
	s, url := openStoreOn(t, "", copyDir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := s.RoomStream("d_own")
	const n = 40
	for i := 1; i <= n; i++ {
		rec := salamander.Record{Type: salamander.RecMessageSent, Room: "d_own", Text: fmt.Sprint("text ", i)}
		if _, _, err := s.Append(ctx, room, "d_own", rec, jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// tail follows room from `from` until it has delivered every record,
	// and returns the positions it delivered.
	tail := func(s *jsstore.Store, from uint64) []uint64 {
		var got []uint64
		tctx, stop := context.WithCancel(ctx)
		defer stop()
		s.Tail(tctx, room, from, func(e jsstore.Entry) bool {
			got = append(got, e.Pos.Seq)
			if jsstore.RecordSeq(e.Pos.Seq) == n {
				stop()
			}
			return true
		})
		return got
	}
	all := tail(s, 0)
	if len(all) != n {
		t.Fatalf("tail delivered %d entries, want %d", len(all), n)
	}
	// fetch reads every position through s and returns how many records
	// came from its own copy and how many from the replicas.
	fetch := func(s *jsstore.Store, positions []uint64) (own, replicas int64) {
		t.Helper()
		own0, rep0 := s.Reads()
		got, err := s.Fetch(ctx, room, positions)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range positions {
			if want := fmt.Sprint("text ", jsstore.RecordSeq(p)); got[p].Text != want {
				t.Fatalf("position %d: %q, want %q", p, got[p].Text, want)
			}
		}
		own1, rep1 := s.Reads()
		return own1 - own0, rep1 - rep0
	}
	if own, replicas := fetch(s, all); own != n || replicas != 0 {
		t.Fatalf("with its own copy: %d records from it, %d from the replicas; want %d and 0", own, replicas, n)
	}
	// The count is real: a store without a copy asks the replicas.
	other, _ := openStoreOn(t, url, "")
	if own, replicas := fetch(other, all); own != 0 || replicas != n {
		t.Fatalf("without a copy: %d records from it, %d from the replicas; want 0 and %d", own, replicas, n)
	}

	// A restarted site resumes its tail at its read model's position and
	// still reads the older records from its copy.
	s.Close()
	restarted, _ := openStoreOn(t, url, copyDir)
	if got := tail(restarted, all[29]); len(got) != n-29 || got[0] != all[29] {
		t.Fatalf("restarted tail delivered %v, want from %d on", got, all[29])
	}
	if own, replicas := fetch(restarted, all[:10]); own != 10 || replicas != 0 {
		t.Fatalf("after a restart: %d records from the copy, %d from the replicas; want 10 and 0", own, replicas)
	}

	// A copy lost with its disk (or its unflushed end lost in a crash) is
	// filled from the log by the tail, which delivers only what the reader
	// has not applied.
	restarted.Close()
	if err := os.RemoveAll(copyDir); err != nil {
		t.Fatal(err)
	}
	refilled, _ := openStoreOn(t, url, copyDir)
	if got := tail(refilled, all[29]); len(got) != n-29 || got[0] != all[29] {
		t.Fatalf("tail over a lost copy delivered %v, want from %d on", got, all[29])
	}
	if own, replicas := fetch(refilled, all); own != n || replicas != 0 {
		t.Fatalf("after the copy was lost and refilled: %d records from it, %d from the replicas; want %d and 0",
			own, replicas, n)
	}

	// The log is replaced (a restore from an older backup, say) and the
	// read model rebuilt from scratch: the copy is rebuilt with it, and
	// never serves a record of the log it was made of.
	refilled.Close()
	js, err := jetstream.New(other.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "SAL_"+strings.ToUpper(room))
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, cfg.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	rebuilt, _ := openStoreOn(t, url, copyDir)
	for i := 1; i <= n; i++ {
		rec := salamander.Record{Type: salamander.RecMessageSent, Room: "d_own", Text: fmt.Sprint("new text ", i)}
		if _, _, err := rebuilt.Append(ctx, room, "d_own", rec, jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	tail(rebuilt, 1) // as a read model that has applied nothing asks
	got, err := rebuilt.Fetch(ctx, room, all[:3])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range all[:3] {
		if want := fmt.Sprint("new text ", jsstore.RecordSeq(p)); got[p].Text != want {
			t.Fatalf("after the log was replaced, position %d reads %q, want %q", p, got[p].Text, want)
		}
	}
}

// A store opened with ConfiguredOnly stays on its configured servers: the
// servers the cluster announces (another site's) are not added to the ones
// it would reconnect to, while a default store learns them.
func TestConfiguredOnlyIgnoresAnnouncedServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ports, err := freeport.Loopback(2)
	if err != nil {
		t.Fatal(err)
	}
	addr := func(i int) string { return fmt.Sprintf("127.0.0.1:%d", ports[i]) }
	start := func(site string, own, peer int) *natsnode.Node {
		cfg := natsnode.DefaultConfig(site)
		cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
		cfg.ClusterAddr, cfg.Routes = addr(own), []string{addr(peer)}
		node, err := natsnode.Start(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(node.Shutdown)
		return node
	}
	a := start("a", 0, 1)
	b := start("b", 1, 0)
	open := func(only bool) *jsstore.Store {
		cfg := jsstore.DefaultConfig(a.ClientURL())
		cfg.ConfiguredOnly = only
		st, err := jsstore.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(st.Close)
		return st
	}
	learns, stays := open(false), open(true)
	// The default store learns b once the route is up (the announcement
	// reaches every connected client).
	for len(learns.Conn().DiscoveredServers()) == 0 {
		if ctx.Err() != nil {
			t.Fatalf("the cluster never announced %s to a default store", b.ClientURL())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !stays.Conn().IsConnected() {
		t.Fatal("not connected")
	}
	if got := stays.Conn().DiscoveredServers(); len(got) != 0 {
		t.Errorf("ConfiguredOnly store learned %v", got)
	}
	if got := stays.Conn().Servers(); len(got) != 1 {
		t.Errorf("ConfiguredOnly store may reconnect to %v, want only %s", got, a.ClientURL())
	}
}

// LearnPartitions reads the partition count while the cluster bucket has
// no leader: with two of three servers gone, the one left holds a replica
// that answers direct gets. Opening the bucket asks for its stream info,
// which only its leader, the meta leader or (after 10 s of JetStream) a
// member that knows it has no leader answers: the earlier way failed here
// in about half the runs. The admin CLI relies on it to act in a fire
// while streams elect.
func TestLearnPartitionsWithoutABucketLeader(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	nodes := natsnodetest.StartThree(t, ctx)
	urls := []string{nodes[0].ClientURL(), nodes[1].ClientURL(), nodes[2].ClientURL()}
	scfg := jsstore.DefaultConfig(urls...)
	scfg.Partitions = 3
	maker, err := jsstore.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer maker.Close()
	if err := maker.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(maker.Conn())
	if err != nil {
		t.Fatal(err)
	}
	bucket, err := js.Stream(ctx, "KV_SAL_CLUSTER")
	if err != nil {
		t.Fatal(err)
	}
	// The server kept leads neither the bucket nor the cluster's meta
	// group, which answers a stream's info while the stream has no leader.
	leader := bucket.CachedInfo().Cluster.Leader
	kept := slices.IndexFunc(nodes, func(n *natsnode.Node) bool {
		return n.Name() != leader && !n.Server().JetStreamIsLeader()
	})
	// The kept follower answers direct gets once it has caught up.
	direct := "$JS.API.DIRECT.GET.KV_SAL_CLUSTER"
	for {
		sz, err := nodes[kept].Server().Subsz(&server.SubszOptions{Subscriptions: true, Test: direct})
		if err != nil {
			t.Fatal(err)
		}
		if len(sz.Subs) > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("%s never answered direct gets of the cluster bucket", nodes[kept].Name())
		}
		time.Sleep(20 * time.Millisecond) // polling the follower
	}
	for i, n := range nodes {
		if i != kept {
			n.Shutdown()
		}
	}

	cfg := jsstore.DefaultConfig(nodes[kept].ClientURL())
	cfg.ConfiguredOnly = true
	tool, err := jsstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	lctx, lcancel := context.WithTimeout(ctx, 5*time.Second)
	defer lcancel()
	if err := tool.LearnPartitions(lctx); err != nil {
		t.Fatal(err)
	}
	if got, want := tool.Streams(), maker.Streams(); !slices.Equal(got, want) {
		t.Fatalf("learned the streams %v, want %v", got, want)
	}
}

// A record's own headers come back with it, before the ones the server
// adds (the stream, the sequence) to an announcement or a direct get's
// answer: a writer of the log that sets them itself (any NATS user that
// may append, a stolen gateway credential) must not be able to tell the
// sites where its record lies, nor make its answer look like "not found".
func TestTailTrustsOnlyTheServersHeaders(t *testing.T) {
	s := openStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	room := s.RoomStream("g_3")
	appendOne := func() {
		if _, _, err := s.Append(ctx, room, "g_3", salamander.Record{Type: salamander.RecMessageSent, Room: "g_3"},
			jsstore.AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	got := make(chan uint64, 100)
	done := make(chan struct{})
	tctx, stop := context.WithCancel(ctx)
	go func() {
		defer close(done)
		s.Tail(tctx, room, 1, func(e jsstore.Entry) bool {
			got <- jsstore.RecordSeq(e.Pos.Seq)
			return true
		})
	}()
	appendOne()
	appendOne()
	body, err := salamander.EncodeRecord(&salamander.Record{Type: salamander.RecMessageSent, Room: "g_3"})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(s.Conn())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []nats.Header{
		{"Nats-Stream": {"SAL_" + strings.ToUpper(room)}, "Nats-Sequence": {"5"}}, // record 3
		{"Status": {"404"}}, // record 4
	} {
		msg := &nats.Msg{Subject: "sal." + room + ".g_3", Data: body, Header: h}
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
	appendOne() // 5
	appendOne() // 6
	var live []uint64
	for len(live) < 6 {
		select {
		case seq := <-got:
			live = append(live, seq)
		case <-time.After(5 * time.Second):
			t.Fatalf("live tail delivered %v, then nothing (stalled: %q)", live, s.Stalled()[room])
		}
	}
	stop()
	<-done
	if fmt.Sprint(live) != "[1 2 3 4 5 6]" {
		t.Fatalf("live tail delivered %v, want [1 2 3 4 5 6]", live)
	}
	// Read from the log alone (a site rebuilding its read model).
	var read []uint64
	rctx, rstop := context.WithTimeout(ctx, 5*time.Second)
	defer rstop()
	s.Tail(rctx, room, 1, func(e jsstore.Entry) bool {
		read = append(read, jsstore.RecordSeq(e.Pos.Seq))
		if len(read) == 6 {
			rstop()
		}
		return true
	})
	if fmt.Sprint(read) != "[1 2 3 4 5 6]" {
		t.Fatalf("a tail reading the log delivered %v, want [1 2 3 4 5 6] (stalled: %q)", read, s.Stalled()[room])
	}
	// A history read of the records (no own copy here: by direct get).
	recs, err := s.Fetch(ctx, room, []uint64{jsstore.PositionOf(room, 3, 0).Seq, jsstore.PositionOf(room, 4, 0).Seq})
	if err != nil || len(recs) != 2 {
		t.Fatalf("Fetch of records 3 and 4: %d records, %v", len(recs), err)
	}
}

// The cluster bucket's values are fixed once written: every gateway may
// publish to it (a new cluster's first site creates it), so the server
// itself must refuse a second value for a key and a rollup that wipes
// them — a stolen gateway credential could otherwise give every site that
// starts next another partition count (rooms hashed to other streams) or
// another cluster id (every site refusing its own data).
func TestClusterBucketIsWrittenOnce(t *testing.T) {
	s, url := openStoreOn(t, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc := s.Conn()
	for _, m := range []*nats.Msg{
		{Subject: "$KV.SAL_CLUSTER.partitions", Data: []byte("1")},
		{Subject: "$KV.SAL_CLUSTER.cluster-id", Header: nats.Header{"KV-Operation": {"PURGE"}, "Nats-Rollup": {"all"}}},
		{Subject: "$KV.SAL_CLUSTER.partitions", Header: nats.Header{"KV-Operation": {"DEL"}}},
	} {
		m.Reply = nats.NewInbox()
		res, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(res.Data), `"error"`) {
			t.Errorf("the cluster bucket took %s %v: %s", m.Subject, m.Header, res.Data)
		}
	}
	again, _ := openStoreWith(t, url, func(c *jsstore.Config) { c.Partitions = 5 })
	if got := len(again.Streams()); got != 3 {
		t.Fatalf("a store opened after the writes has %d streams, want 3 (the accounts and 2 partitions)", got)
	}
}

// A cluster bucket made by an older version (a plain key-value bucket) is
// made written-once by the admin CLI's UpgradeStreams; a site, which may
// not change a stream, still starts on it.
func TestUpgradeFixesAnOldClusterBucket(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.ClusterAddr = ""
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	nc, err := nats.Connect(node.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "SAL_CLUSTER", Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	openStoreOn(t, node.ClientURL(), "") // a site sets the cluster up on it
	acfg := jsstore.DefaultConfig(node.ClientURL())
	acfg.Replicas = 1
	admin, err := jsstore.Open(ctx, acfg)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := admin.UpgradeStreams(ctx); err != nil {
		t.Fatal(err)
	}
	res, err := nc.RequestWithContext(ctx, "$KV.SAL_CLUSTER.partitions", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(res.Data), `"error"`) {
		t.Fatalf("the upgraded cluster bucket took a new partition count: %s", res.Data)
	}
}

// startWithGateways starts a one-server JetStream that admits the gateway
// users named (password "pw-" + name), each with a gateway's permissions,
// and returns its client URL.
func startWithGateways(ctx context.Context, t *testing.T, names ...string) string {
	t.Helper()
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.ClusterAddr = ""
	for _, name := range names {
		hash, err := bcrypt.GenerateFromPassword([]byte("pw-"+name), 4)
		if err != nil {
			t.Fatal(err)
		}
		site, _ := secrets.GatewaySite(name)
		pub, sub := jsstore.GatewayPermissions(site, 2) // openStoreWith's partitions
		cfg.Users = append(cfg.Users, natsnode.User{Name: name, PasswordHash: string(hash), Publish: pub, Subscribe: sub,
			AllowResponses: true})
	}
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return node.ClientURL()
}

// One gateway's credential can neither read the replies another
// gateway's connection is sent nor answer its requests: a stolen one
// could otherwise watch a tail's direct gets (their reply subjects are
// numbered in order), answer the next one itself before the server does,
// and have that site apply a record no one appended in place of the one
// a user was told was sent.
func TestGatewayCannotAnswerAnotherGatewaysRequests(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := startWithGateways(ctx, t, "gateway-a", "gateway-b")
	s, _ := openStoreWith(t, url, func(c *jsstore.Config) { c.User, c.Password = "gateway-a", "pw-gateway-a" })
	room := s.RoomStream("g_5")
	forged, err := salamander.EncodeRecord(&salamander.Record{Type: salamander.RecMessageSent, Room: "forged"})
	if err != nil {
		t.Fatal(err)
	}
	refused := make(chan error, 10)
	spy, err := nats.Connect(url, nats.UserInfo("gateway-b", "pw-gateway-b"), nats.CustomInboxPrefix("_INBOX.gateway-b"),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	forgedOne := make(chan struct{}, 1)
	// Every reply seen (a tail's probe of the log, every 500 ms) is
	// answered in advance for the next request of the same tail.
	if _, err := spy.Subscribe("_INBOX.>", func(m *nats.Msg) {
		i := strings.LastIndexByte(m.Subject, '.')
		n, err := strconv.Atoi(m.Subject[i+1:])
		if err != nil || strings.HasPrefix(m.Subject, "_INBOX.gateway-b.") {
			return
		}
		next := m.Subject[:i+1] + strconv.Itoa(n+1)
		_ = spy.PublishMsg(&nats.Msg{Subject: next, Data: forged, Header: nats.Header{
			"Nats-Stream": {"SAL_" + strings.ToUpper(room)}, "Nats-Sequence": {"1"}}})
		select {
		case forgedOne <- struct{}{}:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	got := make(chan jsstore.Entry, 10)
	tctx, stop := context.WithCancel(ctx)
	defer stop()
	go s.Tail(tctx, room, 1, func(e jsstore.Entry) bool {
		got <- e
		return true
	})
	select {
	case <-forgedOne:
		// The spy read a reply of the tail's and answered the next
		// request in advance: with nothing appended yet, whatever the
		// tail delivers now is its forgery.
		select {
		case e := <-got:
			t.Fatalf("with nothing appended, the tail delivered record %d of room %q, answered by another gateway",
				jsstore.RecordSeq(e.Pos.Seq), e.Record.Room)
		case <-ctx.Done():
			t.Fatal("the tail delivered nothing")
		}
	case err := <-refused:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("the spy's subscription failed, but not for its permissions: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the spy neither saw a reply of the tail's nor was refused")
	}
	if _, _, err := s.Append(ctx, room, "g_5", salamander.Record{Type: salamander.RecMessageSent, Room: "g_5"},
		jsstore.AppendOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case e := <-got:
		if e.Record.Room != "g_5" || jsstore.RecordSeq(e.Pos.Seq) != 1 {
			t.Fatalf("the tail delivered record %d of room %q; want 1 of g_5, the one appended", jsstore.RecordSeq(e.Pos.Seq), e.Record.Room)
		}
	case <-ctx.Done():
		t.Fatal("the tail delivered nothing")
	}
}

// A connection the NATS server's certificate refuses (expired, another
// CA's, another name) says why in the log: nats.go reports a failed TLS
// handshake only to a reconnect-error handler, and without one a site
// whose server's certificate had expired logged a disconnection and then
// nothing, waiting for ever.
func TestRefusedServerCertificateIsLogged(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tlsOf [2]*secrets.Site
	for i := range tlsOf {
		dir := filepath.Join(t.TempDir(), "s")
		if err := secrets.Generate(dir, secrets.Options{Sites: []string{"a"}, TLS: true, BcryptCost: 4}); err != nil {
			t.Fatal(err)
		}
		sec, err := secrets.LoadSite(secrets.SiteFile(dir, "a"))
		if err != nil {
			t.Fatal(err)
		}
		tlsOf[i] = sec
	}
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.ClusterAddr = ""
	var err error
	if cfg.ClientTLS, err = tlsOf[0].ClientPortTLS(); err != nil {
		t.Fatal(err)
	}
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	var logged syncBuffer
	scfg := jsstore.DefaultConfig(node.ClientURL())
	if scfg.TLS, err = tlsOf[1].ClientTLS(); err != nil { // trusts another deployment's CA
		t.Fatal(err)
	}
	scfg.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	s, err := jsstore.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for !strings.Contains(logged.String(), "certificate") {
		if ctx.Err() != nil {
			t.Fatalf("a server certificate from another CA was never logged: %q", logged.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
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

// A site configured for fewer partitions than its cluster has refuses to
// serve, saying what to start it with: its gateways' NATS permissions
// name the streams of as many partitions as it is configured for, so it
// could not append to the others.
func TestSiteWithFewerPartitionsThanItsClusterRefuses(t *testing.T) {
	_, url := openStoreWith(t, "", func(c *jsstore.Config) { c.Partitions = 3 })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	scfg := jsstore.DefaultConfig(url)
	scfg.Replicas, scfg.Partitions = 1, 2
	s, err := jsstore.Open(ctx, scfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ectx, ecancel := context.WithTimeout(ctx, 3*time.Second)
	defer ecancel()
	err = s.EnsureStreams(ectx)
	if !errors.Is(err, jsstore.ErrPartitions) || !strings.Contains(err.Error(), "--partitions 3") {
		t.Fatalf("a site configured for 2 of the cluster's 3 partitions: %v", err)
	}
}

// What the servers refuse a store's connection for want of permission is
// counted and the last refusal kept, naming the subject: a gateway whose
// NATS user's permissions do not match what it uses is otherwise
// connected and ready, and only some of its sends, or its presence, fail.
func TestRefusedPermissionsAreCounted(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	url := startWithGateways(ctx, t, "gateway-a")
	s, _ := openStoreWith(t, url, func(c *jsstore.Config) { c.User, c.Password = "gateway-a", "pw-gateway-a" })
	if n, _, _ := s.Refusals(); n != 0 {
		t.Fatalf("%d refusals before anything was refused", n)
	}
	if err := s.Conn().Publish("sal.eph.presence.v2", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := s.Conn().FlushWithContext(ctx); err != nil {
		t.Fatal(err)
	}
	// The refusal arrives after the flush's pong at the latest; poll for
	// it, as the error handler runs on nats.go's own goroutine.
	for {
		n, last, at := s.Refusals()
		if n == 1 && strings.Contains(last, "sal.eph.presence.v2") && time.Since(at) < 10*time.Second {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("refusals: %d, last %q at %v", n, last, at)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
