package jsstore

import (
	"context"
	"encoding/json"
	"testing"
	"time"

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
