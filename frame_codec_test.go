package salamander

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// jsonFrame decodes a frame as the gateway's encoding/json path does:
// one object, no unknown fields, nothing after it.
func jsonFrame(data []byte) (ClientFrame, bool) {
	var f ClientFrame
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return ClientFrame{}, false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return ClientFrame{}, false
	}
	return f, true
}

// Frames as clients write them take the direct path and decode as
// encoding/json decodes them.
func TestReadClientFrameIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	direct := 0
	for i := range 20000 {
		f := ClientFrame{Type: []FrameType{FrameSend, FrameRead, FrameTyping, FramePing}[rng.IntN(4)]}
		if rng.IntN(4) > 0 {
			f.RoomID = randomString(rng)
		}
		if rng.IntN(4) > 0 {
			f.ClientID = randomString(rng)
		}
		if rng.IntN(2) == 0 {
			f.Text = randomString(rng)
		}
		f.Typing = rng.IntN(2) == 0
		if rng.IntN(2) == 0 {
			f.Seq = rng.Uint64() >> rng.IntN(64)
		}
		data, err := json.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		want, ok := jsonFrame(data)
		if !ok {
			t.Fatalf("frame %d does not decode: %s", i, data)
		}
		var got ClientFrame
		if ReadClientFrame(data, &got) {
			direct++
			if got != want {
				t.Fatalf("frame %d %s:\ndirect %+v\njson   %+v", i, data, got, want)
			}
		}
	}
	if direct < 19000 {
		t.Fatalf("only %d of 20000 frames took the direct path", direct)
	}
}

// FuzzReadClientFrame: whatever the bytes, the direct path declines them
// or decodes what encoding/json decodes.
func FuzzReadClientFrame(f *testing.F) {
	f.Add([]byte(`{"type":"send","room_id":"d_1","client_id":"c1","text":"hi \u00e9"}`))
	f.Add([]byte(`{"type":"typing","room_id":"g_1","typing":true}`))
	f.Add([]byte(`{"type":"read","room_id":"g_1","seq":42}`))
	f.Add([]byte(`{"type":"ping","client_id":"p"} `))
	f.Add([]byte(`{"Type":"send","room_id":"a","room_id":"b"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var got ClientFrame
		if !ReadClientFrame(data, &got) {
			return
		}
		want, ok := jsonFrame(data)
		if !ok {
			t.Fatalf("direct path decoded %q, which encoding/json refuses", data)
		}
		if got != want {
			t.Fatalf("%q:\ndirect %+v\njson   %+v", data, got, want)
		}
	})
}

func BenchmarkReadClientFrame(b *testing.B) {
	data := []byte(`{"type":"send","room_id":"d_0123456789abcdef0123456789abcdef","client_id":"c-0123456789","text":"a hundred bytes of text, more or less, as the bench sends them: abcdefghijklmnopqrstuvwxyz0123"}`)
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			_, _ = jsonFrame(data)
		}
	})
	b.Run("direct", func(b *testing.B) {
		var f ClientFrame
		for b.Loop() {
			_ = ReadClientFrame(data, &f)
		}
	})
}
