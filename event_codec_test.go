package salamander

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// EncodeEvent writes what json.Marshal writes, for every kind of event.
func TestEncodeEventIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	s := func() string {
		if rng.IntN(2) == 0 {
			return ""
		}
		return randomString(rng)
	}
	zones := []*time.Location{time.UTC, time.FixedZone("KST", 9*3600)}
	at := func() time.Time {
		if rng.IntN(6) == 0 {
			return time.Time{}
		}
		return time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(zones[rng.IntN(2)])
	}
	direct := 0
	for i := range 20000 {
		ev := Event{
			Type:   []EventType{EventMessage, EventAck, EventRead, EventTyping, EventPresence, EventType(s())}[rng.IntN(6)],
			RoomID: s(), Action: s(), User: s(), Cursor: s(), ClientID: s(), Site: s(), At: at(),
			Online: rng.IntN(2) == 0, Duplicate: rng.IntN(2) == 0,
		}
		if rng.IntN(2) == 0 {
			ev.Seq = rng.Uint64() >> rng.IntN(64)
		}
		if rng.IntN(2) == 0 {
			ev.Pos = &Position{Stream: s(), Seq: rng.Uint64() >> rng.IntN(64)}
		}
		if rng.IntN(2) == 0 {
			ev.Message = &Message{Room: s(), Seq: rng.Uint64() >> rng.IntN(64), Sender: s(), ClientID: s(), Text: s(),
				SentAt: at(), Unread: rng.IntN(100) - 1, Held: rng.IntN(4) == 0}
		}
		for range rng.IntN(3) {
			ev.Users = append(ev.Users, randomString(rng))
		}
		switch rng.IntN(10) {
		case 0:
			ev.Room = &Room{ID: s(), Name: s()}
		case 1:
			ev.Error = &Error{Code: CodeUnavailable, Message: s()}
		case 2:
			ev.Incidents = []Incident{{ID: s()}}
		default:
			direct++
		}
		want, werr := json.Marshal(ev)
		got, gerr := EncodeEvent(&ev)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("event %d: EncodeEvent gave\n%s (%v)\njson.Marshal gave\n%s (%v)", i, got, gerr, want, werr)
		}
	}
	if direct < 10000 {
		t.Fatalf("only %d events on the direct path", direct)
	}
}

func BenchmarkEncodeEvent(b *testing.B) {
	now := time.Now().UTC()
	ev := Event{Type: EventMessage, Pos: &Position{Stream: "p3", Seq: 123456789}, RoomID: "d_0123456789abcdef",
		At: now, Message: &Message{Room: "d_0123456789abcdef", Seq: 4242, Sender: "u0042", ClientID: "c-0123456789",
			Text: "a hundred bytes of text, more or less, as the bench sends them: abcdefghijklmnopqrstuvwxyz0123", SentAt: now, Unread: 1}}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(&ev)
		}
	})
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			_, _ = EncodeEvent(&ev)
		}
	})
}
