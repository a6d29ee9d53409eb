package gateway

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander"
)

// The ring holds nothing while empty, grows by doubling, shrinks as it
// drains, and keeps FIFO order across wrap-arounds and resizes.
func TestRingGrowsShrinksAndKeepsOrder(t *testing.T) {
	var r ring
	if r.buf != nil {
		t.Fatal("empty ring holds a slice")
	}
	next, want := 0, 0
	push := func(n int) {
		for range n {
			r.push(outFrame{data: []byte(fmt.Sprint(next))})
			next++
		}
	}
	pop := func(n int) {
		for range n {
			f := r.pop()
			if string(f.data) != fmt.Sprint(want) {
				t.Fatalf("popped %s, want %d", f.data, want)
			}
			want++
		}
	}
	push(1)
	if len(r.buf) != ringMin {
		t.Fatalf("first push allocated %d slots, want %d", len(r.buf), ringMin)
	}
	push(2)
	pop(2) // head moves: the next growth wraps around
	push(5)
	if len(r.buf) != 8 {
		t.Fatalf("%d slots for %d frames, want 8", len(r.buf), r.n)
	}
	push(100)
	peak := len(r.buf)
	pop(100)
	if len(r.buf) >= peak || len(r.buf) > 4*r.n {
		t.Fatalf("%d slots left for %d frames (peak %d)", len(r.buf), r.n, peak)
	}
	pop(r.n)
	if r.buf != nil || r.n != 0 || r.head != 0 {
		t.Fatalf("drained ring still holds %d slots", len(r.buf))
	}
}

// Replies go first and events wait for the replay; the byte count follows
// every push and pop.
func TestOutQueue(t *testing.T) {
	var q outQueue
	q.pushEvent(outFrame{data: []byte("event")})
	q.pushReply(outFrame{data: []byte("reply")})
	if !q.fits(outFrame{data: make([]byte, 10)}, 20) || q.fits(outFrame{data: make([]byte, 11)}, 20) {
		t.Fatalf("fits wrong at %d bytes", q.bytes)
	}
	if !q.hasWork(false) {
		t.Fatal("no work with a reply queued")
	}
	if f, ok := q.next(false); !ok || string(f.data) != "reply" {
		t.Fatalf("next = %q %v, want the reply", f.data, ok)
	}
	if q.hasWork(false) {
		t.Fatal("an event is due before the replay is done")
	}
	if _, ok := q.next(false); ok {
		t.Fatal("next gave an event before the replay is done")
	}
	if f, ok := q.next(true); !ok || string(f.data) != "event" || q.bytes != 0 {
		t.Fatalf("next = %q %v, bytes %d", f.data, ok, q.bytes)
	}
}

func TestDecodeFrame(t *testing.T) {
	long := strings.Repeat("a", wsMaxFrameBytes)
	for _, tc := range []struct {
		name, in   string
		code       salamander.Code
		room, cid  string
		over       bool
		wantFields salamander.ClientFrame
	}{
		{name: "send", in: `{"type":"send","room_id":"r1","client_id":"c1","text":"hi"}`,
			wantFields: salamander.ClientFrame{Type: "send", RoomID: "r1", ClientID: "c1", Text: "hi"}},
		{name: "typing", in: `{"type":"typing","room_id":"r1","typing":true}`,
			wantFields: salamander.ClientFrame{Type: "typing", RoomID: "r1", Typing: true}},
		{name: "read with id", in: `{"type":"read","room_id":"r1","seq":3,"client_id":"x"}`,
			wantFields: salamander.ClientFrame{Type: "read", RoomID: "r1", Seq: 3, ClientID: "x"}},
		{name: "not json", in: `hello`, code: salamander.CodeInvalid},
		{name: "array", in: `[1]`, code: salamander.CodeInvalid},
		{name: "trailing", in: `{"type":"send"} {}`, code: salamander.CodeInvalid},
		{name: "unknown field", in: `{"client_id":"c2","type":"send","room_id":"r2","text":"x","zz":1}`,
			code: salamander.CodeInvalid, room: "r2", cid: "c2"},
		{name: "wrong type", in: `{"room_id":"r3","client_id":"c3","seq":"x"}`, code: salamander.CodeInvalid, room: "r3", cid: "c3"},
		{name: "bad utf8", in: "{\"type\":\"send\",\"text\":\"\xff\"}", code: salamander.CodeInvalid},
		{name: "too long", in: `{"type":"send","client_id":"c4","room_id":"r4","text":"` + long + `"}`,
			over: true, code: salamander.CodeTooLarge, room: "r4", cid: "c4"},
		{name: "unknown type", in: `{"type":"shout","room_id":"r5","client_id":"c5"}`, code: salamander.CodeInvalid},
		{name: "send without id", in: `{"type":"send","room_id":"r6","text":"x"}`, code: salamander.CodeInvalid},
		{name: "bad id", in: `{"type":"typing","room_id":"r6","client_id":"a b"}`, code: salamander.CodeInvalid},
		{name: "no room", in: `{"type":"typing","typing":true}`, code: salamander.CodeInvalid},
	} {
		got, over := cutFrame([]byte(tc.in))
		if over != tc.over {
			t.Fatalf("%s: over = %v", tc.name, over)
		}
		var f salamander.ClientFrame
		err := decodeFrame(got, over, &f)
		if err != nil {
			room, cid := frameIDs(got)
			if room != tc.room || cid != tc.cid {
				t.Errorf("%s: frameIDs = %q %q, want %q %q", tc.name, room, cid, tc.room, tc.cid)
			}
		} else {
			err = checkFrame(&f)
		}
		if got := codeOf(err); got != tc.code {
			t.Errorf("%s: code %q (%v), want %q", tc.name, got, err, tc.code)
		}
		if tc.code == "" && f != tc.wantFields {
			t.Errorf("%s: frame %+v, want %+v", tc.name, f, tc.wantFields)
		}
	}
}

// A frame of the longest message fits the frame limit in the most
// wasteful escaping JSON allows.
func TestLongestMessageFitsAFrame(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(`{"type":"send","room_id":"` + strings.Repeat("r", 64) + `","client_id":"` +
		strings.Repeat("c", salamander.MaxClientIDBytes) + `","text":"`)
	for range salamander.MaxMessageBytes {
		b.WriteString(`\u0041`)
	}
	b.WriteString(`"}`)
	got, over := cutFrame(b.Bytes())
	if over {
		t.Fatalf("a %d-byte frame is over the limit", b.Len())
	}
	var f salamander.ClientFrame
	if err := decodeFrame(got, over, &f); err != nil || len(f.Text) != salamander.MaxMessageBytes {
		t.Fatalf("decode: %v (%d bytes of text)", err, len(f.Text))
	}
}

// cutFrame is a message as the socket's reader hands it to Message: at
// most wsMaxFrameBytes of it, and whether it was longer.
func cutFrame(data []byte) ([]byte, bool) {
	if len(data) > wsMaxFrameBytes {
		return data[:wsMaxFrameBytes], true
	}
	return data, false
}

func codeOf(err error) salamander.Code {
	if err == nil {
		return ""
	}
	return salamander.ErrorCode(err)
}
