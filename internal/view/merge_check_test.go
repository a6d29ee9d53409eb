package view_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// mergeSite is one site's read model of a generated log: a store of its
// own (with its own copy of the log, in dir) and a view (dir/view.db),
// run until halted.
type mergeSite struct {
	t     *testing.T
	store *jsstore.Store
	v     *view.View // nil once halted
	stop  context.CancelFunc
	done  chan struct{}
	ev    *mergeEvents
}

// startMergeSite opens the site in dir and runs its view, its log cut by
// cut (nil: not cut); ev records what it emits (the same ev across
// restarts: a view resumes where it stopped).
func startMergeSite(t *testing.T, url, dir string, ev *mergeEvents, cut *mergeCut) *mergeSite {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	store := openMergeStore(t, url, mergeReader, filepath.Join(dir, "log"))
	v, err := view.Open(filepath.Join(dir, "view.db"), nil)
	if err != nil {
		store.Close()
		t.Fatal(err)
	}
	v.OnApply(ev.record)
	ctx, stop := context.WithCancel(context.Background())
	s := &mergeSite{t: t, store: store, v: v, stop: stop, done: make(chan struct{}), ev: ev}
	var src view.Source = store
	if cut != nil {
		src = cutLog{Store: store, cut: cut}
	}
	go func() {
		defer close(s.done)
		v.Run(ctx, src)
	}()
	t.Cleanup(func() { s.halt() })
	return s
}

func (s *mergeSite) running() bool { return s.v != nil }

// halt stops the view wherever its tails are, and closes it and the store.
// It says whether the view stopped in the middle of a record's entries.
func (s *mergeSite) halt() (midRecord bool) {
	if s.v == nil {
		return false
	}
	s.stop()
	<-s.done
	for _, pos := range s.v.Applied() {
		midRecord = midRecord || jsstore.RecordsApplied(pos) != jsstore.RecordSeq(pos)
	}
	if err := s.v.Close(); err != nil {
		s.t.Error(err)
	}
	s.store.Close()
	s.v = nil
	return midRecord
}

// haltAt waits until the site has applied its log up to cut (where its
// tail stops; at most 10 s), halts it, and says whether it stopped in the
// middle of a record.
func (s *mergeSite) haltAt(cut *mergeCut) bool {
	deadline := time.Now().Add(10 * time.Second)
	for s.v.Applied()[cut.stream]%jsstore.MaxBatch != cut.idx && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	return s.halt()
}

// mergeCut cuts a site's tail of one stream, once armed, after the entry
// at index idx of a record (only a merge record places that many), as if
// the site crashed there.
type mergeCut struct {
	stream string
	idx    uint64
	armed  atomic.Bool
}

// arm makes the cut (nil: none) cut from now on.
func (c *mergeCut) arm() {
	if c != nil {
		c.armed.Store(true)
	}
}

// cutLog is a site's log with its tail cut (see mergeCut).
type cutLog struct {
	*jsstore.Store
	cut *mergeCut
}

func (l cutLog) Tail(ctx context.Context, stream string, from uint64, deliver func(jsstore.Entry) bool) {
	l.Store.Tail(ctx, stream, from, func(e jsstore.Entry) bool {
		if stream == l.cut.stream && e.Pos.Seq%jsstore.MaxBatch > l.cut.idx && l.cut.armed.Load() {
			return false
		}
		return deliver(e)
	})
}

// mergeEvents records the message events a view emits, and what breaks
// the rules: a position not after the last one of its stream, a room seq
// or a client id emitted twice.
type mergeEvents struct {
	mu   sync.Mutex
	last map[string]uint64
	msgs map[string]refMsg // room/seq -> message
	ids  map[string]bool   // room/sender/client id
	errs []string
}

func (e *mergeEvents) record(batch []view.Emitted) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last == nil {
		e.last, e.msgs, e.ids = map[string]uint64{}, map[string]refMsg{}, map[string]bool{}
	}
	for _, em := range batch {
		ev := em.Event
		if ev.Pos == nil {
			e.errs = append(e.errs, fmt.Sprintf("%s event without a position", ev.Type))
			continue
		}
		if ev.Pos.Seq <= e.last[ev.Pos.Stream] {
			e.errs = append(e.errs, fmt.Sprintf("%s event at %s:%d after %d", ev.Type, ev.Pos.Stream, ev.Pos.Seq, e.last[ev.Pos.Stream]))
		}
		e.last[ev.Pos.Stream] = ev.Pos.Seq
		if ev.Type != salamander.EventMessage || ev.Message == nil {
			continue
		}
		m := ev.Message
		key, id := fmt.Sprintf("%s/%d", m.Room, m.Seq), m.Room+"/"+m.Sender+"/"+m.ClientID
		if _, dup := e.msgs[key]; dup {
			e.errs = append(e.errs, "message "+key+" emitted twice")
		}
		if e.ids[id] {
			e.errs = append(e.errs, "client id "+id+" emitted twice")
		}
		e.ids[id] = true
		e.msgs[key] = refMsg{room: m.Room, sender: m.Sender, clientID: m.ClientID, text: m.Text, seq: m.Seq,
			audience: slices.Sorted(slices.Values(em.Audience))}
	}
}

// diff compares what was emitted with the reference's messages.
func (e *mergeEvents) diff(ref *mergeRef) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.errs) > 0 {
		return fmt.Errorf("emitted events break the rules: %s", strings.Join(e.errs, "; "))
	}
	n := 0
	for _, room := range ref.rooms {
		for _, want := range room.msgs {
			n++
			key := fmt.Sprintf("%s/%d", want.room, want.seq)
			got, ok := e.msgs[key]
			if !ok {
				return fmt.Errorf("message %s (%s) not emitted", key, line(want))
			}
			if line(got) != line(want) || !slices.Equal(got.audience, want.audience) {
				return fmt.Errorf("message %s emitted as %s to %v, want %s to %v", key, line(got), got.audience, line(want), want.audience)
			}
		}
	}
	if len(e.msgs) != n {
		return fmt.Errorf("%d messages emitted, the reference places %d", len(e.msgs), n)
	}
	return nil
}

// check waits until site has applied everything appended so far and
// compares it with the reference: every room's history (with history
// set: it reads every message from the store, the slow part under -race),
// the held messages of every sender, and the messages it emitted (each
// with its seq, text and audience, from the model).
func (c *mergeCase) check(s *mergeSite, when string, history bool) {
	t := c.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for stream, last := range c.ends {
		if err := s.v.WaitApplied(ctx, jsstore.End(jsstore.PositionOf(stream, last, 0))); err != nil {
			t.Fatalf("%s: not caught up with %s:%d: %v (applied %v)", when, stream, last, err, s.v.Applied())
		}
	}
	for _, room := range c.rooms {
		if history {
			c.checkHistory(ctx, s, room, when)
		}
		for _, u := range mergeUsers {
			want := c.ref.held(func(m salamander.Record) bool { return m.Room == room && m.User == u })
			if err := sameLines(heldLines(s.v.Held(room, u)), recordLines(want)); err != nil {
				t.Fatalf("%s: Held(%s, %s): %v", when, room, u, err)
			}
		}
	}
	for _, u := range mergeUsers {
		want := c.ref.held(func(m salamander.Record) bool { return m.User == u })
		if err := sameLines(heldLines(s.v.HeldBy(u)), recordLines(want)); err != nil {
			t.Fatalf("%s: HeldBy(%s): %v", when, u, err)
		}
		c.ref.stats.HeldShown += len(want)
	}
	// The listeners are called once the model has applied a batch, which
	// may be just after WaitApplied returned.
	deadline := time.Now().Add(10 * time.Second)
	for err := s.ev.diff(c.ref); err != nil; err = s.ev.diff(c.ref) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", when, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// checkHistory compares a room's history with the reference's, and checks
// that it holds a client id once and, following the protocol, each
// sender's messages in the order sent.
func (c *mergeCase) checkHistory(ctx context.Context, s *mergeSite, room, when string) {
	t := c.t
	t.Helper()
	page, err := s.v.History(ctx, room, 0, 0, false, 1<<16)
	// A view answers unavailable until Run has started (it reads texts
	// it no longer holds from the log): a client tries again.
	for unavailable(err) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		page, err = s.v.History(ctx, room, 0, 0, false, 1<<16)
	}
	if err != nil || page.More {
		t.Fatalf("%s: history of %s: %v (more: %v)", when, room, err, page.More)
	}
	var got, want []string
	ids := map[string]bool{}
	for _, m := range page.Messages {
		got = append(got, line(refMsg{room: m.Room, sender: m.Sender, clientID: m.ClientID, text: m.Text, seq: m.Seq}))
		if ids[m.Sender+"/"+m.ClientID] {
			t.Errorf("%s: %s holds client id %s/%s twice", when, room, m.Sender, m.ClientID)
		}
		ids[m.Sender+"/"+m.ClientID] = true
	}
	for _, m := range c.ref.rooms[room].msgs {
		want = append(want, line(m))
	}
	if err := sameLines(got, want); err != nil {
		t.Fatalf("%s: history of %s: %v", when, room, err)
	}
	if c.protocol {
		c.checkSendOrder(room, page.Messages, when)
	}
}

// checkSendOrder checks that each sender's messages in a room's history
// are in the order they were sent.
func (c *mergeCase) checkSendOrder(room string, msgs []salamander.Message, when string) {
	last := map[string]int{}
	for _, m := range msgs {
		i := slices.Index(c.sent[room+"/"+m.Sender], m.ClientID)
		if i < last[m.Sender] {
			c.t.Fatalf("%s: %s's %s (sent #%d) placed after a message they sent later (#%d)", when, m.Sender, m.ClientID, i, last[m.Sender])
		}
		last[m.Sender] = i
	}
}

func unavailable(err error) bool {
	var coded *salamander.Error
	return errors.As(err, &coded) && coded.Code == salamander.CodeUnavailable
}

func line(m refMsg) string {
	return fmt.Sprintf("%s #%d %s %s %q", m.room, m.seq, m.sender, m.clientID, m.text)
}

func heldLines(msgs []salamander.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s %s %s %q held=%v", m.Room, m.Sender, m.ClientID, m.Text, m.Held))
	}
	return out
}

func recordLines(recs []salamander.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, fmt.Sprintf("%s %s %s %q held=true", r.Room, r.User, r.ClientID, r.Text))
	}
	return out
}

// sameLines reports the first difference between two lists.
func sameLines(got, want []string) error {
	for i := range max(len(got), len(want)) {
		g, w := "(none)", "(none)"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			return fmt.Errorf("%d entries, want %d; first difference at [%d]: got %s, want %s", len(got), len(want), i, g, w)
		}
	}
	return nil
}
