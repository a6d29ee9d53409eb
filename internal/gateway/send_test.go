package gateway

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// A send is a duplicate only when the room holds another request's
// message with its client id. When the store retries an append during an
// election and the retry is refused as a duplicate of its own first
// attempt, the message found is this request's own: 201, not
// "duplicate: true".
func TestSendOutcomeTellsOwnRecordFromAnEarlierOne(t *testing.T) {
	at := time.Date(2026, 11, 23, 8, 44, 0, 691054852, time.UTC)
	rec := salamander.Record{Type: salamander.RecMessageSent, Room: "d_0123456789abcdef", User: "mina", ClientID: "c1",
		Text: "did the fire reach you?", At: at}
	own := salamander.Message{Room: rec.Room, Seq: 7, Sender: "mina", ClientID: "c1", Text: rec.Text,
		SentAt: at.Local()} // as read back: the same instant
	if res, ok := sendOutcome(rec, own, true); !ok || res.Duplicate || res.Message.Seq != 7 {
		t.Fatalf("own record found after a retried append: %+v %v, want created", res, ok)
	}
	earlier := own
	earlier.SentAt = at.Add(-time.Nanosecond)
	if res, ok := sendOutcome(rec, earlier, true); !ok || !res.Duplicate {
		t.Fatalf("an earlier request's message: %+v %v, want duplicate", res, ok)
	}
	other := own
	other.Text = "another text, same instant"
	if res, ok := sendOutcome(rec, other, true); !ok || !res.Duplicate {
		t.Fatalf("another request's message: %+v %v, want duplicate", res, ok)
	}
	if _, ok := sendOutcome(rec, salamander.Message{}, false); ok {
		t.Fatal("nothing found must not be an outcome (the sender left)")
	}
}
