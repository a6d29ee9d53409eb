package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	"github.com/salamander-chat/salamander"
)

// FuzzTailRecord feeds stored record bytes, as a tail receives them from
// the log, through the tail's decoder (emit, which Fetch shares through
// entriesOf). Whatever the bytes: it never panics; it delivers at most
// MaxBatch entries, at strictly increasing positions inside the record's
// own range, none before the tail's start; an undecodable record is one
// entry with an error (so it still advances the position); a decodable
// one is the record itself or its batch, never a nested batch; the last
// entry is marked Last; and Fetch, which finds an entry by its index in
// recordEntries, finds exactly what the tail delivered at that position.
func FuzzTailRecord(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, seq uint64, skip uint16) {
		seq = 1 + seq%(1<<53-1) // positions fit 63 bits for 2^53 records
		if r := (salamander.Record{}); json.Unmarshal(data, &r) == nil && r.Type == salamander.RecMerge {
			t.Skip("a merge record's entries come from the standby (standby_test.go)")
		}
		first := PositionOf("p0", seq, 0).Seq
		from := first + uint64(skip)%(MaxBatch+1)
		var got []Entry
		tl := &tailer{stream: "p0", next: seq, from: from, deliver: func(e Entry) bool {
			got = append(got, e)
			return true
		}}
		if err := tl.emit(context.Background(), seq, data); err != nil {
			t.Fatalf("emit: %v", err)
		}
		if tl.next != seq+1 {
			t.Fatalf("after record %d the tail expects %d", seq, tl.next)
		}
		if len(got) > MaxBatch {
			t.Fatalf("%d entries from one record; at most %d", len(got), MaxBatch)
		}
		var rec salamander.Record
		decodeErr := json.Unmarshal(data, &rec)
		var entries []salamander.Record
		if decodeErr == nil {
			entries = recordEntries(rec)
		} else {
			entries = []salamander.Record{{}}
		}
		if n := len(entries); n == 0 || n > MaxBatch {
			t.Fatalf("recordEntries gave %d entries", n)
		}
		if want := max(0, len(entries)-int(from-first)); len(got) != want {
			t.Fatalf("%d of %d entries delivered from position offset %d", len(got), len(entries), from-first)
		}
		var prev uint64
		for i, e := range got {
			if e.Pos.Stream != "p0" || RecordSeq(e.Pos.Seq) != seq || e.Pos.Seq < from {
				t.Fatalf("entry %d at %v: outside record %d or before %d", i, e.Pos, seq, from)
			}
			if i > 0 && e.Pos.Seq <= prev {
				t.Fatalf("positions do not increase: %d then %d", prev, e.Pos.Seq)
			}
			prev = e.Pos.Seq
			idx := int(e.Pos.Seq & idxMask)
			if e.Last != (idx == len(entries)-1) {
				t.Fatalf("entry %d of %d: Last=%v", idx, len(entries), e.Last)
			}
			if (e.Err != nil) != (decodeErr != nil) {
				t.Fatalf("entry error %v, decode error %v", e.Err, decodeErr)
			}
			if e.Record.Type == salamander.RecBatch {
				t.Fatalf("entry %d is a nested batch", idx)
			}
			if decodeErr == nil && !reflect.DeepEqual(e.Record, entries[idx]) {
				t.Fatalf("tail and Fetch disagree on entry %d:\n%+v\n%+v", idx, e.Record, entries[idx])
			}
		}
		if decodeErr == nil && rec.Type != salamander.RecBatch && len(got) == 1 && !reflect.DeepEqual(got[0].Record, rec) {
			t.Fatalf("a plain record was delivered as %+v, want %+v", got[0].Record, rec)
		}
		if decodeErr == nil && rec.Type == salamander.RecBatch {
			if want := max(1, min(len(rec.Batch), MaxBatch)); len(entries) != want {
				t.Fatalf("batch of %d gave %d entries, want %d", len(rec.Batch), len(entries), want)
			}
		}
		// A record other than the one due is a gap, never delivered.
		got = got[:0]
		if err := tl.emit(context.Background(), seq+2, data); !errors.Is(err, ErrLogGap) || len(got) != 0 || tl.next != seq+1 {
			t.Fatalf("record %d while %d was due: err %v, %d delivered", seq+2, seq+1, err, len(got))
		}
	})
}
