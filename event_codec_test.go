package salamander

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// randomEvent returns an event of any kind, and whether EncodeEvent writes
// it directly (no room, error or incidents).
func randomEvent(rng *rand.Rand) (Event, bool) {
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
	ev := Event{
		Type:   []EventType{EventMessage, EventAck, EventRead, EventTyping, EventPresence, EventType(s())}[rng.IntN(6)],
		RoomID: s(), Action: s(), User: s(), Cursor: s(), ClientID: s(), Site: s(), At: at(),
		Online: rng.IntN(2) == 0, Typing: rng.IntN(2) == 0, Duplicate: rng.IntN(2) == 0,
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
		return ev, true
	}
	return ev, false
}

// EncodeEvent writes what json.Marshal writes, for every kind of event.
func TestEncodeEventIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	direct := 0
	for i := range 20000 {
		ev, isDirect := randomEvent(rng)
		if isDirect {
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

// directDecodeEvent is DecodeEvent's direct path alone.
func directDecodeEvent(data []byte) (Event, bool) {
	var ev Event
	d := newRecordDecoder(data)
	ok := d.event(&ev) && d.i == len(data)
	return ev, ok
}

// DecodeEvent decodes every event as json.Unmarshal does, and the events
// a site writes directly take the direct path (unless a string holds an
// escaped surrogate, which only encoding/json reads).
func TestDecodeEventIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	direct := 0
	for i := range 20000 {
		ev, isDirect := randomEvent(rng)
		data, err := EncodeEvent(&ev)
		if err != nil {
			continue // a time encoding/json cannot write either
		}
		var want Event
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		got := Event{Type: "left over", Users: []string{"from before"}}
		if err := DecodeEvent(data, &got); err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("event %d: %s\nDecodeEvent: %+v (%v)\njson.Unmarshal: %+v", i, data, got, err, want)
		}
		_, ok := directDecodeEvent(data)
		switch {
		case ok:
			direct++
		case isDirect && ev.Message != nil && ev.Message.Unread < 0:
		case isDirect && !strings.Contains(string(data), `\ud`):
			t.Errorf("event %d took encoding/json's path: %s", i, data)
		}
	}
	if direct < 10000 {
		t.Errorf("only %d of 20000 events took the direct path", direct)
	}
	var ev Event
	if err := DecodeEvent([]byte(`{"type":"message","message":{"seq":-1}}`), &ev); err == nil {
		t.Error("a negative seq decoded without an error")
	}
}

// FuzzDecodeEvent: whatever the bytes, the direct path declines them or
// decodes what json.Unmarshal decodes, and DecodeEvent agrees with it.
func FuzzDecodeEvent(f *testing.F) {
	rng := rand.New(rand.NewPCG(15, 16))
	for range 20 {
		ev, _ := randomEvent(rng)
		if enc, err := json.Marshal(ev); err == nil {
			f.Add(enc)
		}
	}
	f.Add([]byte(`{"type":"ack","client_id":"c1","message":{"room":"d_1","seq":7,"sender":"alice","client_id":"c1","text":"hi","sent_at":"2026-01-02T03:04:05Z","unread":1}}`))
	f.Add([]byte(`{"type":"read","room_id":"g_1","user":"bob","seq":9,"pos":{"stream":"p1","seq":12}}`))
	f.Add([]byte(`{"type":"a","Type":"b"}`))
	f.Add([]byte(`{"type":"message","message":{"unread":99999999999999999999}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecoder(t, data, directDecodeEvent, func(data []byte) (Event, error) {
			var ev Event
			err := DecodeEvent(data, &ev)
			return ev, err
		})
	})
}

// A message event, as sites send one per message and member, is encoded in
// one allocation: the buffer is sized for it up front.
func TestEncodeEventAllocatesOnce(t *testing.T) {
	now := time.Date(2026, 12, 1, 1, 42, 39, 123456789, time.UTC)
	room := "d_" + strings.Repeat("0123456789abcdef", 2)
	text := strings.Repeat("x", 100)
	for name, ev := range map[string]Event{
		"message": {Type: EventMessage, Pos: &Position{Stream: "p1023", Seq: 18446744073709551615}, RoomID: room,
			At: now, Message: &Message{Room: room, Seq: 18446744073709551615, Sender: "a-user-name-of-32-characters-max",
				ClientID: "c-" + strings.Repeat("9", 60), Text: text, SentAt: now, Unread: 1 << 30, Held: true}},
		"ack": {Type: EventAck, RoomID: room, ClientID: "c-" + strings.Repeat("9", 60), Duplicate: true,
			Message: &Message{Room: room, Seq: 7, Sender: "bob", ClientID: "c-" + strings.Repeat("9", 60), Text: `quotes " and \ escaped`, SentAt: now}},
		"presence": {Type: EventPresence, User: "a-user-name-of-32-characters-max", Online: true, At: now, Site: "site-a"},
	} {
		if n := testing.AllocsPerRun(20, func() { _, _ = EncodeEvent(&ev) }); n != 1 {
			t.Errorf("%s: %v allocations", name, n)
		}
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

func BenchmarkDecodeEvent(b *testing.B) {
	now := time.Now().UTC()
	data, err := EncodeEvent(&Event{Type: EventMessage, Pos: &Position{Stream: "p3", Seq: 123456789}, RoomID: "d_0123456789abcdef",
		At: now, Message: &Message{Room: "d_0123456789abcdef", Seq: 4242, Sender: "u0042", ClientID: "c-0123456789",
			Text: "a hundred bytes of text, more or less, as the bench sends them: abcdefghijklmnopqrstuvwxyz0123", SentAt: now, Unread: 1}})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			var ev Event
			_ = json.Unmarshal(data, &ev)
		}
	})
	b.Run("direct", func(b *testing.B) {
		for b.Loop() {
			var ev Event
			_ = DecodeEvent(data, &ev)
		}
	})
}
