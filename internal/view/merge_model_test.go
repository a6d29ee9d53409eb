package view_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/natsnode"
)

// TestMergeModel checks the merge rules (standby partitions: "No send
// waits for an election" in docs/ARCHITECTURE.md) against a reference,
// mergeRef. Each case is a log generated from a seed and appended to a
// real JetStream (one server, two partitions and their standbys): rooms
// and membership changes, messages to pK alone and in batches, messages
// held in sK alone and in batches, a message in both (an append to pK
// that timed out and landed after all, either order), a client id resent
// to either, gap-free merge records (up to a random record, or all of
// them; some placing only duplicates), a merge naming more than 1,023
// messages (at the budget's edge: four records of 1,023 or 1,024), stale
// repeats of an earlier merge, and malformed merges (another standby,
// To <= From, no range). Three sites' read models apply it, each with a
// store of its own: one from the start; one stopped at a random step (or
// cut in the middle of the big merge's entries) and started again later
// with its database, or rebuilt without it; and one started once the log
// is complete, then restarted with nothing new to apply. Each must show,
// for every room, the reference's history (seqs, senders, client ids,
// texts; a client id once), and at every checkpoint the reference's held
// messages (View.Held, View.HeldBy) and every placed message emitted
// once, at strictly increasing positions per stream, to the room's
// members at its place. In half the cases the generator follows the
// appender's protocol (a sender's message goes to pK only once a merge
// placed their held ones; no room change while the partition holds
// messages; only a message placed or held is resent), and each sender's
// messages must then appear in the order they were sent.
//
// The sites' stores connect as a NATS user that may not append: their
// tails see held records, and their mergers (refused) would otherwise
// append merge records of their own; here the generator alone writes.
//
// A case takes about 0.3 s, or 1.5–2 s with -race on two cores: 6 cases
// run by default (any six seeds in a row cover every kind of case, and
// the test checks that they did: about 10 s with -race), 2 with -short. The seed comes from the
// clock unless -merge.seed sets it; -merge.cases=N runs more (N seeds
// from it), and a failing case prints the command that repeats it alone.
func TestMergeModel(t *testing.T) {
	seed := *mergeSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano() % 1_000_000_000)
	}
	cases := *mergeCases
	if cases == 0 {
		cases = 6
		if testing.Short() {
			cases = 2
		}
	}
	t.Logf("seed %d, %d cases", seed, cases)
	stats := &mergeStats{}
	for i := range uint64(cases) {
		s := seed + i
		ok := t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) {
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("reproduce: go test ./internal/view -run 'TestMergeModel$' -merge.seed=%d -merge.cases=1", s)
				}
			})
			runMergeCase(t, s, stats)
		})
		if !ok {
			return
		}
	}
	t.Logf("covered: %+v", *stats)
	if cases < 6 {
		return
	}
	// Any six seeds in a row must cover every kind (see runMergeCase): a
	// generator that stopped making one would pass without testing it.
	v := reflect.ValueOf(*stats)
	for i := range v.NumField() {
		if v.Field(i).Int() == 0 {
			t.Errorf("the generated logs covered no %s", v.Type().Field(i).Name)
		}
	}
}

var (
	mergeSeed  = flag.Uint64("merge.seed", 0, "TestMergeModel: seed of the first case (0: from the clock)")
	mergeCases = flag.Int("merge.cases", 0, "TestMergeModel: how many cases (0: 6, or 2 with -short)")
)

// The generated logs' users, and the NATS users: the generator appends,
// the sites only read.
var mergeUsers = []string{"ann", "bob", "cat", "dan", "eve"}

const (
	mergeWriter   = "writer"
	mergeReader   = "reader"
	mergePassword = "secret"
)

// runMergeCase generates one log from seed, applies it at three sites'
// read models and checks them against the reference.
func runMergeCase(t *testing.T, seed uint64, stats *mergeStats) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5a1a3a4de5))
	url := startMergeLog(t)
	gen := openMergeStore(t, url, mergeWriter, "")
	js, err := jetstream.New(gen.Conn())
	if err != nil {
		t.Fatal(err)
	}
	// What a case covers follows from its seed, so that any six seeds in a
	// row cover every combination of protocol, rebuild and over-budget
	// merge (of both shapes).
	c := &mergeCase{t: t, rng: rng, js: js, ref: newMergeRef(stats), protocol: seed/2%2 == 0, exact: seed/3%2 == 0,
		ends: map[string]uint64{}, lastHeld: map[string]uint64{}, sent: map[string][]string{},
		at: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	c.rooms, c.streamOf = mergeRooms(gen)
	steps, big := 50+rng.IntN(80), -1
	if seed%3 == 0 {
		big = rng.IntN(steps)
	}
	// The crash site stops at a random step, wherever its tails are
	// (mid-record at times), and starts again later — or only once the
	// log is complete — with its database, or rebuilding without it.
	stopAt, startAt, rebuild := rng.IntN(steps), steps, seed%2 == 1
	bigP, cut := c.streamOf[c.pick(c.rooms, 1)[0]], (*mergeCut)(nil)
	if big >= 0 && (!c.exact || rng.IntN(2) == 0) {
		// Or in the middle of the big merge's entries, and resumes there.
		stopAt, rebuild = big, false
		cut = &mergeCut{stream: bigP, idx: 300 + rng.Uint64N(400)}
	}
	if rng.IntN(2) == 0 {
		startAt = stopAt + 1 + rng.IntN(steps-stopAt)
	}
	checkpoints := map[int]bool{}
	for range 3 {
		checkpoints[rng.IntN(steps)] = true
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("protocol %v, crash site stopped after step %d, started after %d (rebuilt %v), checkpoints %v; the log:\n%s",
				c.protocol, stopAt, startAt, rebuild, slices.Sorted(maps.Keys(checkpoints)), strings.Join(c.dump, "\n"))
		}
	})

	dir := t.TempDir()
	live := startMergeSite(t, url, filepath.Join(dir, "live"), &mergeEvents{}, nil)
	crashEv := &mergeEvents{}
	crash := startMergeSite(t, url, filepath.Join(dir, "crash"), crashEv, cut)
	restart := func() {
		if rebuild {
			removeDB(t, filepath.Join(dir, "crash"))
			crashEv = &mergeEvents{} // it applies the log again, from the start
		}
		crash = startMergeSite(t, url, filepath.Join(dir, "crash"), crashEv, nil)
	}
	for _, room := range c.rooms {
		members := c.pick(mergeUsers, 2+c.rng.IntN(3))
		c.append(c.streamOf[room], room, salamander.Record{Type: salamander.RecRoomCreated, Room: room,
			Kind: salamander.RoomGroup, Name: room, Members: members, By: members[0]})
	}
	for step := range steps {
		if step == big {
			cut.arm()
			c.overBudget(bigP)
			if cut != nil && crash.haltAt(cut) {
				stats.MidRecordStops++
			}
			c.check(live, "live, between an over-budget merge and the next", false)
			c.mergeAll(bigP)
		} else {
			c.step()
		}
		switch step {
		case stopAt:
			if crash.running() && crash.halt() {
				stats.MidRecordStops++
			}
		case startAt:
			restart()
		}
		if checkpoints[step] {
			c.check(live, "live, at a checkpoint", false)
			if crash.running() {
				c.check(crash, "stopped and restarted, at a checkpoint", false)
			}
		}
	}
	if !crash.running() {
		restart()
	}
	c.check(live, "live, at the end", true)
	c.check(crash, "stopped and restarted, at the end", true)
	lateEv := &mergeEvents{}
	late := startMergeSite(t, url, filepath.Join(dir, "late"), lateEv, nil)
	c.check(late, "started after the whole log existed", true)
	late.halt()
	late = startMergeSite(t, url, filepath.Join(dir, "late"), lateEv, nil)
	c.check(late, "restarted with nothing new to apply", true)
}

// removeDB deletes the read model's database in dir.
func removeDB(t *testing.T, dir string) {
	t.Helper()
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Remove(filepath.Join(dir, "view.db") + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

// startMergeLog starts a lone JetStream server (R1, no fsync: durability
// is not what this test is about) with a user that may append and one
// that may only read and ask the JetStream API, and returns its URL.
func startMergeLog(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hash, err := bcrypt.GenerateFromPassword([]byte(mergePassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := natsnode.DefaultConfig("a")
	cfg.StoreDir = filepath.Join(t.TempDir(), "nats")
	cfg.ClusterAddr = ""
	cfg.SyncAlways = false
	cfg.Users = []natsnode.User{
		{Name: mergeWriter, PasswordHash: string(hash)},
		{Name: mergeReader, PasswordHash: string(hash), Publish: []string{"$JS.API.>", "$KV.>", "_INBOX.>"}, Subscribe: []string{">"}},
	}
	node, err := natsnode.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Shutdown)
	return node.ClientURL()
}

// openMergeStore opens a store on the log as user, with its own copy of
// the log in copyDir ("": none), its streams created.
func openMergeStore(t *testing.T, url, user, copyDir string) *jsstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := jsstore.DefaultConfig(url)
	cfg.Replicas, cfg.Partitions = 1, 2
	cfg.User, cfg.Password = user, mergePassword
	cfg.CopyDir = copyDir
	s, err := jsstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureStreams(ctx); err != nil {
		s.Close()
		t.Fatal(err)
	}
	return s
}

// mergeRooms names two rooms in each of the two partitions.
func mergeRooms(s *jsstore.Store) ([]string, map[string]string) {
	var rooms []string
	streamOf := map[string]string{}
	count := map[string]int{}
	for i := 0; len(rooms) < 4; i++ {
		room := fmt.Sprintf("g_room%d", i)
		p := s.RoomStream(room)
		if count[p] < 2 {
			count[p]++
			rooms = append(rooms, room)
			streamOf[room] = p
		}
	}
	return rooms, streamOf
}

// mergeCase is one generated log: what was appended, and the reference's
// account of it.
type mergeCase struct {
	t        *testing.T
	rng      *rand.Rand
	js       jetstream.JetStream
	protocol bool // follow the appender's protocol (see TestMergeModel)
	exact    bool // an over-budget merge places 1,023 messages exactly
	rooms    []string
	streamOf map[string]string // room -> partition
	ref      *mergeRef
	ends     map[string]uint64 // stream -> records appended
	dump     []string          // the log, a line a record
	at       time.Time
	nextID   int
	// lastHeld is the last standby record holding a message of a sender
	// (key standby + "/" + sender).
	lastHeld map[string]uint64
	// sent lists each sender's client ids per room in the order sent
	// (key room + "/" + sender).
	sent map[string][]string
	// msgs are the messages sent so far, for resends.
	msgs []salamander.Record
	// merges are the valid merges appended, for stale repeats.
	merges []mergeAt
}

type mergeAt struct {
	partition string
	m         salamander.MergeRange
}

// step appends a few records of a random kind.
func (c *mergeCase) step() {
	switch n := c.rng.IntN(100); {
	case n < 40:
		c.sendOne()
	case n < 55:
		c.sendBatch()
	case n < 62:
		c.landedAfterAll()
	case n < 68:
		c.resend()
	case n < 80:
		c.merge(c.rng.IntN(4) == 0)
	case n < 85:
		c.malformedMerge()
	case n < 88 && !c.protocol && len(c.merges) > 0:
		// A merge of a range placed before: its messages are duplicates.
		m := c.merges[c.rng.IntN(len(c.merges))]
		c.appendMerge(m.partition, m.m)
	default:
		c.membership()
	}
}

// sendOne sends one message to a random room: to its partition, or held.
func (c *mergeCase) sendOne() {
	room := c.pick(c.rooms, 1)[0]
	m := c.message(room, c.sender(room))
	p := c.streamOf[room]
	if c.mustHold(p, m.User) || (!c.protocol && c.rng.IntN(3) == 0) {
		c.hold(p, []salamander.Record{m})
		return
	}
	c.append(p, room, m)
}

// sendBatch sends a batch of messages (and at times read markers) to the
// rooms of one partition: appended as one record, or held as one.
func (c *mergeCase) sendBatch() {
	p := c.streamOf[c.pick(c.rooms, 1)[0]]
	var entries []salamander.Record
	hold := !c.protocol && c.rng.IntN(3) == 0
	for range 2 + c.rng.IntN(5) {
		room := c.pick(c.rooms, 1)[0]
		if c.streamOf[room] != p {
			continue
		}
		if c.rng.IntN(6) == 0 {
			entries = append(entries, salamander.Record{Type: salamander.RecMessageRead, Room: room,
				User: c.sender(room), Seq: uint64(c.rng.IntN(20)), At: c.at})
			continue
		}
		m := c.message(room, c.sender(room))
		hold = hold || c.mustHold(p, m.User)
		entries = append(entries, m)
	}
	switch {
	case len(entries) == 0:
	case hold:
		if c.protocol { // the appender holds only the messages
			entries = slices.DeleteFunc(entries, func(e salamander.Record) bool { return e.Type != salamander.RecMessageSent })
		}
		c.hold(p, entries)
	case len(entries) == 1:
		c.append(p, entries[0].Room, entries[0])
	default:
		c.append(p, "batch", salamander.Record{Type: salamander.RecBatch, At: c.at, Batch: entries})
	}
}

// landedAfterAll sends a message whose append to the partition timed out
// and was held, but landed after all: it is in both.
func (c *mergeCase) landedAfterAll() {
	room := c.pick(c.rooms, 1)[0]
	p := c.streamOf[room]
	m := c.message(room, c.sender(room))
	if c.mustHold(p, m.User) { // the appender would not have tried the partition
		c.hold(p, []salamander.Record{m})
		return
	}
	held := m
	held.Text += " (held)"
	if c.rng.IntN(2) == 0 {
		c.append(p, room, m)
		c.hold(p, []salamander.Record{held})
	} else {
		c.hold(p, []salamander.Record{held})
		c.append(p, room, m)
	}
}

// resend sends an earlier message again with its client id: held, or to
// the partition. Following the protocol, only a message placed or held
// is sent again (its answer was lost); one refused is not.
func (c *mergeCase) resend() {
	msgs := c.msgs
	if c.protocol {
		msgs = slices.DeleteFunc(slices.Clone(msgs), func(m salamander.Record) bool {
			key := m.User + "\x00" + m.ClientID
			return !c.ref.rooms[m.Room].ids[key] &&
				len(c.ref.held(func(h salamander.Record) bool { return h.Room == m.Room && h.User+"\x00"+h.ClientID == key })) == 0
		})
	}
	if len(msgs) == 0 {
		return
	}
	m := msgs[c.rng.IntN(len(msgs))]
	m.Text += " (resent)"
	m.At = c.at
	p := c.streamOf[m.Room]
	if c.mustHold(p, m.User) || (!c.protocol && c.rng.IntN(2) == 0) {
		c.hold(p, []salamander.Record{m})
		return
	}
	c.append(p, m.Room, m)
}

// merge appends the next merge record of a partition whose standby holds
// unplaced records: up to a random one of them, or all.
func (c *mergeCase) merge(all bool) {
	var ps []string
	for _, room := range c.rooms {
		if p := c.streamOf[room]; c.ref.unplaced(jsstore.StandbyOf(p)) && !slices.Contains(ps, p) {
			ps = append(ps, p)
		}
	}
	if len(ps) == 0 {
		return
	}
	p := ps[c.rng.IntN(len(ps))]
	s := jsstore.StandbyOf(p)
	from, end := c.ref.placed[s], uint64(len(c.ref.standby[s]))
	to := end
	if !all {
		to = from + 1 + c.rng.Uint64N(end-from)
	}
	c.appendMerge(p, salamander.MergeRange{Standby: s, From: from, To: to})
}

// mergeAll merges partition's standby up to its end.
func (c *mergeCase) mergeAll(p string) {
	s := jsstore.StandbyOf(p)
	for c.ref.unplaced(s) {
		before := c.ref.placed[s]
		c.appendMerge(p, salamander.MergeRange{Standby: s, From: before, To: uint64(len(c.ref.standby[s]))})
		if c.ref.placed[s] == before {
			c.t.Fatalf("a merge of %s from %d placed nothing", s, before)
		}
	}
}

// malformedMerge appends a merge record that must place nothing: of
// another standby, with To <= From, or without a range.
func (c *mergeCase) malformedMerge() {
	p := c.streamOf[c.pick(c.rooms, 1)[0]]
	s := jsstore.StandbyOf(p)
	from, end := c.ref.placed[s], uint64(len(c.ref.standby[s]))
	var m *salamander.MergeRange
	switch c.rng.IntN(5) {
	case 0: // the other partition's standby, a range it could place
		other := jsstore.StandbyOf("p" + fmt.Sprint(1-int(p[1]-'0')))
		m = &salamander.MergeRange{Standby: other, From: c.ref.placed[other], To: uint64(len(c.ref.standby[other]))}
	case 1:
		m = &salamander.MergeRange{Standby: "s9", From: from, To: end}
	case 2:
		m = &salamander.MergeRange{Standby: p, From: from, To: end}
	case 3:
		m = &salamander.MergeRange{Standby: s, From: end, To: from}
	} // 4: no range
	c.append(p, "merge", salamander.Record{Type: salamander.RecMerge, At: c.at, Merge: m})
}

// appendMerge appends a valid merge record and remembers it.
func (c *mergeCase) appendMerge(p string, m salamander.MergeRange) {
	c.append(p, "merge", salamander.Record{Type: salamander.RecMerge, At: c.at, Merge: &m})
	c.merges = append(c.merges, mergeAt{partition: p, m: m})
}

// overBudget holds more messages than one merge places (records of up to
// 256, as the appender's) in partition p, appends one merge record naming
// them all, then a message or two; the next merge is the caller's. The
// first four records are at the budget's edge: they hold 1,023 messages
// (with exact: they fit) or 1,024 (the fourth does not).
func (c *mergeCase) overBudget(p string) {
	c.mergeAll(p)
	sizes := []int{256, 256, 256, 256}
	if c.exact {
		sizes[c.rng.IntN(4)] = 255
	}
	sizes = append(sizes, 1+c.rng.IntN(64))
	var rooms []string
	for _, room := range c.rooms {
		if c.streamOf[room] == p {
			rooms = append(rooms, room)
		}
	}
	for _, n := range sizes {
		batch := make([]salamander.Record, 0, n)
		for range n {
			room := c.pick(rooms, 1)[0]
			batch = append(batch, c.message(room, c.sender(room)))
		}
		c.hold(p, batch)
	}
	s := jsstore.StandbyOf(p)
	c.appendMerge(p, salamander.MergeRange{Standby: s, From: c.ref.placed[s], To: uint64(len(c.ref.standby[s]))})
	// Messages between it and the next merge show where the rest went.
	for _, room := range rooms {
		if u := c.sender(room); !c.mustHold(p, u) {
			c.append(p, room, c.message(room, u))
		}
	}
}

// membership adds members to a room or has one leave it (at times one
// who may not: a non-member inviting, a non-member leaving). Following
// the protocol, a room change waits until the partition's held messages
// are placed.
func (c *mergeCase) membership() {
	room := c.pick(c.rooms, 1)[0]
	p := c.streamOf[room]
	if c.protocol {
		c.mergeAll(p)
	}
	members := c.ref.rooms[room].members
	if c.rng.IntN(2) == 0 && len(members) > 1 {
		c.append(p, room, salamander.Record{Type: salamander.RecRoomLeft, Room: room, User: c.sender(room), At: c.at})
		return
	}
	c.append(p, room, salamander.Record{Type: salamander.RecRoomJoined, Room: room, By: c.sender(room),
		Members: c.pick(mergeUsers, 1+c.rng.IntN(2)), At: c.at})
}

// message makes a new message.
func (c *mergeCase) message(room, sender string) salamander.Record {
	c.nextID++
	id := fmt.Sprintf("c%d", c.nextID)
	m := salamander.Record{Type: salamander.RecMessageSent, Room: room, User: sender, ClientID: id, Text: "m" + id[1:], At: c.at}
	c.sent[room+"/"+sender] = append(c.sent[room+"/"+sender], id)
	c.msgs = append(c.msgs, m)
	return m
}

// sender picks a member of room, or now and then anyone.
func (c *mergeCase) sender(room string) string {
	members := slices.Sorted(maps.Keys(c.ref.rooms[room].members))
	if len(members) == 0 || c.rng.IntN(8) == 0 {
		return c.pick(mergeUsers, 1)[0]
	}
	return c.pick(members, 1)[0]
}

// mustHold says whether, following the protocol, sender's next message
// to partition p must be held: a message of theirs is held unplaced.
func (c *mergeCase) mustHold(p, sender string) bool {
	s := jsstore.StandbyOf(p)
	return c.protocol && c.lastHeld[s+"/"+sender] > c.ref.placed[s]
}

// hold appends entries to partition p's standby as one record.
func (c *mergeCase) hold(p string, entries []salamander.Record) {
	s := jsstore.StandbyOf(p)
	if len(entries) == 1 {
		c.append(s, entries[0].Room, entries[0])
	} else {
		c.append(s, "batch", salamander.Record{Type: salamander.RecBatch, At: c.at, Batch: entries})
	}
	for _, e := range entries {
		c.lastHeld[s+"/"+e.User] = c.ends[s]
	}
}

// append publishes rec to stream under key and hands it to the reference.
func (c *mergeCase) append(stream, key string, rec salamander.Record) {
	c.t.Helper()
	body, err := json.Marshal(rec)
	if err != nil {
		c.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := c.js.Publish(ctx, "sal."+stream+"."+key, body)
	if err != nil {
		c.t.Fatalf("append to %s: %v", stream, err)
	}
	c.ends[stream]++
	if ack.Sequence != c.ends[stream] {
		c.t.Fatalf("appended at %s:%d, want %d", stream, ack.Sequence, c.ends[stream])
	}
	c.ref.add(stream, rec)
	c.dump = append(c.dump, fmt.Sprintf("%s:%d %s", stream, ack.Sequence, describe(rec)))
	c.at = c.at.Add(time.Millisecond)
}

// pick returns n distinct elements of from, in random order.
func (c *mergeCase) pick(from []string, n int) []string {
	out := slices.Clone(from)
	c.rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:min(n, len(out))]
}

// describe is one line for a record of the log.
func describe(rec salamander.Record) string {
	switch rec.Type {
	case salamander.RecBatch:
		if len(rec.Batch) > 8 {
			return fmt.Sprintf("batch of %d: %s … %s", len(rec.Batch), describe(rec.Batch[0]), describe(rec.Batch[len(rec.Batch)-1]))
		}
		parts := make([]string, len(rec.Batch))
		for i, e := range rec.Batch {
			parts[i] = describe(e)
		}
		return "batch [" + strings.Join(parts, "; ") + "]"
	case salamander.RecMerge:
		if rec.Merge == nil {
			return "merge (no range)"
		}
		return fmt.Sprintf("merge %s %d..%d", rec.Merge.Standby, rec.Merge.From, rec.Merge.To)
	case salamander.RecMessageSent:
		return fmt.Sprintf("msg %s %s %s %q", rec.Room, rec.User, rec.ClientID, rec.Text)
	case salamander.RecMessageRead:
		return fmt.Sprintf("read %s %s %d", rec.Room, rec.User, rec.Seq)
	case salamander.RecRoomLeft:
		return fmt.Sprintf("left %s %s", rec.Room, rec.User)
	default:
		return fmt.Sprintf("%s %s by %s %v", rec.Type, rec.Room, rec.By, rec.Members)
	}
}
