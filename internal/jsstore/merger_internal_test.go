package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// A merge record that places nothing (another standby's range, To <= From)
// as a partition's last merge stops its mergers with an error; it crashed
// the process that ran one (a nil range), at every site that knew of held
// messages, again after every restart.
func TestMergerStopsAtMalformedLastMerge(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	var held uint64
	appendRec := func(subject string, rec salamander.Record) {
		t.Helper()
		body, _ := json.Marshal(rec)
		ack, err := s.js.Publish(ctx, subject, body)
		if err != nil {
			t.Fatal(err)
		}
		if subject == "sal.s0.g_1" {
			held = ack.Sequence
		}
	}
	hold := func() {
		appendRec("sal.s0.g_1", salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "ann", ClientID: "c", Text: "x"})
	}
	merge := func(m salamander.MergeRange) {
		appendRec("sal.p0."+mergeSubject, salamander.Record{Type: salamander.RecMerge, Merge: &m})
	}
	hold()
	merge(salamander.MergeRange{Standby: "s0", From: 0, To: held})
	if err := s.mergeOnce(ctx, "p0", "s0", held); err != nil {
		t.Fatalf("after a valid merge of everything: %v", err)
	}
	for _, bad := range []salamander.MergeRange{
		{Standby: "s1", From: held, To: held + 1},
		{Standby: "s0", From: held + 1, To: held + 1},
		{Standby: "s0", From: held + 1, To: held},
	} {
		hold()
		merge(bad)
		if err := s.mergeOnce(ctx, "p0", "s0", held); err == nil {
			t.Fatalf("a merge after %+v was not refused", bad)
		}
	}
}

// Held records this process knows of go first: an append of messages
// waits for their merge. How long depends on whether the partition has
// answered since the newest of them was held. If it has, its leader is
// there and the merge lands within a merger's round, so the append waits
// for it (up to HoldAfter) and goes to the partition, instead of being held
// too after placeGrace: under load, merges slower than placeGrace kept a
// partition in that mode, every send held, long after its election (190
// sends in a fire drill). If it has not, the partition is most likely
// still electing, and the append is held after placeGrace.
func TestAppendWaitsForAMergeOnlyOnceThePartitionAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	mergeLandsAfter := 500 * time.Millisecond // > placeGrace, < HoldAfter
	if mergeLandsAfter <= placeGrace || mergeLandsAfter >= s.cfg.HoldAfter {
		t.Fatalf("placeGrace %v and HoldAfter %v leave no room for the test", placeGrace, s.cfg.HoldAfter)
	}
	for i, c := range []struct {
		answered bool // since the held record
		want     string
	}{
		{answered: true, want: "p0"},
		{answered: false, want: "s0"},
	} {
		// This process knows of a held record of p0 that is not placed:
		// announced at heldAt; the partition last answered at answered.
		now := time.Now()
		base := uint64(100 * (i + 1))
		s.standby("p0", func(st *standbyState) {
			st.end, st.merged, st.merging, st.suspect = base+1, base, true, false
			st.heldAt, st.answered = now, now.Add(-time.Second)
			if c.answered {
				st.answered = now.Add(time.Millisecond)
			}
		})
		done := make(chan salamander.Position, 1)
		go func() {
			rec := salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "ann", ClientID: fmt.Sprint("w", i), Text: "x"}
			pos, _, err := s.Append(ctx, "p0", "g_1", rec, AppendOptions{MsgID: fmt.Sprint("w", i), Batch: true})
			if err != nil {
				t.Error(err)
			}
			done <- pos
		}()
		var pos salamander.Position
		start := time.Now()
		if c.answered {
			select {
			case pos = <-done:
			case <-time.After(mergeLandsAfter):
				s.noteMerged("s0", base+1) // the merge lands
				pos = <-done
			}
		} else {
			pos = <-done // no merge lands: it is held after placeGrace
			if took := time.Since(start); took >= s.cfg.HoldAfter {
				t.Errorf("held after %v, want well before HoldAfter (%v)", took, s.cfg.HoldAfter)
			}
			s.noteMerged("s0", base+1)
		}
		if pos.Stream != c.want {
			t.Errorf("answered since the hold %v: the send went to %v, want %s", c.answered, pos, c.want)
		}
	}
}

// Every server receives a JetStream API request; one that sees no leader
// (just started, or resumed after a cut) answers at once "temporarily
// unavailable" while the leader is still reading. That answer must not
// win: a returning site's server made every merger's LastMerge fail for
// 10 s in fire drills, and held messages waited that long for their place.
// Here a subscriber answers every request on the partition's API subjects
// as such a server does, at once; the store must still get the leader's
// answers.
func TestAPIRequestsOutwaitALaggingServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	body, _ := json.Marshal(salamander.Record{Type: salamander.RecMerge, Merge: &salamander.MergeRange{Standby: "s0", From: 0, To: 3}})
	if _, err := s.js.Publish(ctx, "sal.p0."+mergeSubject, body); err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"$JS.API.STREAM.MSG.GET.SAL_P0", "$JS.API.STREAM.INFO.SAL_P0"} {
		lagging, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
			_ = m.Respond([]byte(unavailableAnswer))
		})
		if err != nil {
			t.Fatal(err)
		}
		defer lagging.Unsubscribe()
	}
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 { // the lagging answer is the first one, most of the time
		seq, m, err := s.LastMerge(ctx, "p0")
		if err != nil || seq == 0 || m.To != 3 {
			t.Fatalf("LastMerge %d: seq %d, %+v, %v", i, seq, m, err)
		}
		st, err := s.StatusOf(ctx, "p0")
		if err != nil || st.LastSeq != 1 {
			t.Fatalf("StatusOf %d: %+v, %v", i, st, err)
		}
		if pos, err := s.LastPosition(ctx, "p0"); err != nil || RecordSeq(pos.Seq) != 1 {
			t.Fatalf("LastPosition %d: %v, %v", i, pos, err)
		}
	}
}

// apiRequest takes the first answer that is not "temporarily unavailable",
// even when that one comes first; the unavailable one only when no other
// comes within unavailableGrace; and says so when nobody answers at all.
func TestAPIRequestPrefersAnAnswerToUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	answer := func(subject string, after time.Duration, body string) {
		t.Helper()
		sub, err := s.nc.Subscribe(subject, func(m *nats.Msg) {
			time.Sleep(after)
			_ = m.Respond([]byte(body))
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	answer("test.both", 0, unavailableAnswer)
	answer("test.both", 100*time.Millisecond, `{"ok":true}`)
	answer("test.lagging", 0, unavailableAnswer)
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.apiRequest(ctx, "test.both", nil, false, nil); err != nil || string(got) != `{"ok":true}` {
		t.Errorf("with a lagging server and a leader: %s, %v", got, err)
	}
	start := time.Now()
	got, err := s.apiRequest(ctx, "test.lagging", nil, false, nil)
	if err != nil || string(got) != unavailableAnswer {
		t.Errorf("with only a lagging server: %s, %v", got, err)
	}
	if took := time.Since(start); took < unavailableGrace {
		t.Errorf("gave up on another answer after %v, want %v", took, unavailableGrace)
	}
	if _, err := s.apiRequest(ctx, "test.nobody", nil, false, nil); !errors.Is(err, nats.ErrNoResponders) {
		t.Errorf("with nobody to answer: %v, want no responders", err)
	}
}

// During an election every member answers a read "unavailable" at once; a
// leader elected a moment later must still be asked within the same
// attempt, not at the caller's next one: apiRequest asks a read again
// while only such answers come.
func TestAPIRequestAsksAReadAgainWhileOnlyUnavailableAnswers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	elected := time.Now().Add(150 * time.Millisecond) // < unavailableGrace
	sub, err := s.nc.Subscribe("test.electing", func(m *nats.Msg) {
		if time.Now().Before(elected) {
			_ = m.Respond([]byte(unavailableAnswer))
			return
		}
		_ = m.Respond([]byte(`{"ok":true}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := s.apiRequest(ctx, "test.electing", nil, true, nil); err != nil || string(got) != `{"ok":true}` {
		t.Errorf("a read during an election that ends within the attempt: %s, %v", got, err)
	}
	// A write (a step-down) is not sent twice.
	var asked atomic.Int32
	sub2, err := s.nc.Subscribe("test.write", func(m *nats.Msg) {
		asked.Add(1)
		_ = m.Respond([]byte(unavailableAnswer))
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub2.Unsubscribe()
	if err := s.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.apiRequest(ctx, "test.write", nil, false, nil); err != nil {
		t.Fatal(err)
	}
	if n := asked.Load(); n != 1 {
		t.Errorf("a write was sent %d times", n)
	}
}

// unavailableAnswer is what a server that sees no leader answers a
// JetStream API request with.
const unavailableAnswer = `{"error":{"code":503,"err_code":10008,"description":"JetStream system temporarily unavailable"}}`

// A standby record that does not decode (written by another version, or
// by anything else with the gateways' credential) holds no message: a
// merge places nothing of it, alike everywhere, as every tail skips an
// undecodable record of a partition. Reading it failed the merge: no
// merger could name it, so every message held after it waited for a
// repair (and with them every later send to the partition, held behind
// them), and a merge record that named it stopped every site's tail of
// the partition at that record, for good.
func TestAnUndecodableHeldRecordPlacesNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s := openLoneStore(ctx, t)
	publish := func(subject string, rec any) {
		t.Helper()
		body, ok := rec.([]byte)
		if !ok {
			body, _ = json.Marshal(rec)
		}
		if _, err := s.js.Publish(ctx, subject, body); err != nil {
			t.Fatal(err)
		}
	}
	msg := func(text string) salamander.Record {
		return salamander.Record{Type: salamander.RecMessageSent, Room: "g_1", User: "ann", ClientID: text, Text: text}
	}
	publish("sal.s0.g_1", []byte(`{"t":"msg.sent","r":"g_1","seq":"not a number"}`))
	publish("sal.s0.g_1", msg("held"))
	if err := s.mergeOnce(ctx, "p0", "s0", 2); err != nil {
		t.Fatalf("merge: %v", err)
	}
	// Another site's merger named it too (the merge record's own range).
	publish("sal.s0.g_1", []byte(`not json`))
	publish("sal.s0.g_1", msg("held 2"))
	publish("sal.p0."+mergeSubject, salamander.Record{Type: salamander.RecMerge,
		Merge: &salamander.MergeRange{Standby: "s0", From: 2, To: 4}})
	publish("sal.p0.g_1", msg("after"))
	var got []string
	tctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	s.Tail(tctx, "p0", 0, func(e Entry) bool {
		if e.Record.Type == salamander.RecMessageSent {
			got = append(got, e.Record.Text)
			if e.Record.Text == "after" {
				stop()
			}
		}
		return true
	})
	if want := []string{"held", "held 2", "after"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("the partition places %q, want %q", got, want)
	}
}
