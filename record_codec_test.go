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

// directDecode is DecodeRecord's direct path alone.
func directDecode(data []byte) (Record, bool) {
	var r Record
	d := newRecordDecoder(data)
	ok := d.record(&r, 0) && d.i == len(data)
	return r, ok
}

// tricky strings: what encoding/json escapes or replaces, and what it
// leaves alone.
var trickyStrings = []string{
	"", "a", "alice", "안녕하세요, 세계", "emoji 🔥🧯", `quote " and backslash \`, "<b>&amp;</b>", "tab\tnew\nline\r",
	"\x00\x01\x1f\x7f", "\u2028\u2029", "bad \xff\xfe utf8", "\xed\xa0\x80 surrogate bytes", "/slash/", "ǅ ß ﬃ",
	strings.Repeat("long text ", 50),
}

func randomString(rng *rand.Rand) string {
	if rng.IntN(4) == 0 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		return string(b)
	}
	return trickyStrings[rng.IntN(len(trickyStrings))]
}

func randomRecord(rng *rand.Rand, depth int) Record {
	s := func() string {
		if rng.IntN(2) == 0 {
			return ""
		}
		return randomString(rng)
	}
	zones := []*time.Location{time.UTC, time.FixedZone("KST", 9*3600), time.FixedZone("odd", -(3*3600 + 30*60))}
	r := Record{
		Type: []RecordType{RecMessageSent, RecMessageRead, RecRoomCreated, RecUserCreated, RecordType(s())}[rng.IntN(5)],
		At:   time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(zones[rng.IntN(len(zones))]),
		User: s(), PasswordHash: s(), Session: s(), Friend: s(), Role: s(), Site: s(), KeyID: s(), Room: s(),
		Kind: RoomKind(s()), Name: s(), By: s(), ClientID: s(), Text: s(), Target: s(),
		Rotate: rng.IntN(2) == 0,
	}
	if rng.IntN(8) == 0 {
		r.At = time.Time{}
	}
	if rng.IntN(3) == 0 {
		v := s()
		r.DisplayName = &v
	}
	if rng.IntN(3) == 0 {
		v := s()
		r.Status = &v
	}
	if rng.IntN(3) == 0 {
		r.Key = []byte(randomString(rng))
	}
	if rng.IntN(2) == 0 {
		r.Seq = rng.Uint64() >> rng.IntN(64)
	}
	if n := rng.IntN(4); n > 0 {
		for range n {
			r.Members = append(r.Members, randomString(rng))
		}
	}
	if depth < 2 && rng.IntN(3) == 0 {
		for range 1 + rng.IntN(5) {
			r.Batch = append(r.Batch, randomRecord(rng, depth+1))
		}
	}
	if depth > 0 {
		return r
	}
	switch rng.IntN(16) {
	case 0:
		r.Merge = &MergeRange{Standby: "s1", From: rng.Uint64N(100), To: rng.Uint64N(1000)}
	case 1:
		r.Incident = &IncidentChange{ID: s(), State: "investigating", Message: Localized{EN: s(), KO: s()}}
	case 2:
		amount := rng.Int64()
		r.Report = &ReportChange{ID: s(), Note: s(), Amount: &amount}
	case 3:
		r.Drill = &Drill{ID: s(), Scenario: "fire", Started: r.At}
	}
	return r
}

// hasOpsObject says whether r or a record of its batch carries one of
// the ops plane's nested objects (those take encoding/json's path).
func hasOpsObject(r *Record) bool {
	if r.Merge != nil || r.Incident != nil || r.Report != nil || r.Drill != nil {
		return true
	}
	for i := range r.Batch {
		if hasOpsObject(&r.Batch[i]) {
			return true
		}
	}
	return false
}

// EncodeRecord writes what json.Marshal writes, and DecodeRecord reads it
// back as json.Unmarshal does; records as the gateway writes them take the
// direct path.
func TestRecordCodecIsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	direct := 0
	for i := range 20000 {
		rec := randomRecord(rng, 0)
		want, werr := json.Marshal(rec)
		got, gerr := EncodeRecord(&rec)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("record %d: EncodeRecord gave\n%s (%v)\njson.Marshal gave\n%s (%v)", i, got, gerr, want, werr)
		}
		if werr != nil {
			continue
		}
		var wantRec Record
		if err := json.Unmarshal(want, &wantRec); err != nil {
			t.Fatal(err)
		}
		gotRec, err := DecodeRecord(want)
		if err != nil || !reflect.DeepEqual(gotRec, wantRec) {
			t.Fatalf("record %d: %s\nDecodeRecord: %+v (%v)\njson.Unmarshal: %+v", i, want, gotRec, err, wantRec)
		}
		if _, ok := directDecode(want); ok {
			direct++
		} else if !hasOpsObject(&rec) && !strings.Contains(string(want), `\ud`) {
			t.Errorf("record %d took encoding/json's path: %s", i, want)
		}
	}
	if direct < 10000 {
		t.Errorf("only %d of 20000 records took the direct path", direct)
	}
}

// A batch record built from encoded entries is what json.Marshal writes
// for its type and entries, and decodes as that record.
func TestAppendBatchRecord(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var b Record
		b.Type = RecBatch
		var entries [][]byte
		for range 1 + rng.IntN(8) {
			rec := randomRecord(rng, 1)
			rec.Batch, rec.Merge, rec.Incident, rec.Report, rec.Drill = nil, nil, nil, nil, nil
			enc, err := EncodeRecord(&rec)
			if err != nil {
				continue
			}
			b.Batch = append(b.Batch, rec)
			entries = append(entries, enc)
		}
		if len(entries) == 0 {
			continue
		}
		// The appender's batch record: its type and entries (no time).
		want, err := json.Marshal(struct {
			Type  RecordType `json:"t"`
			Batch []Record   `json:"b"`
		}{RecBatch, b.Batch})
		if err != nil {
			t.Fatal(err)
		}
		got := AppendBatchRecord(nil, entries)
		if !bytes.Equal(got, want) {
			t.Fatalf("batch:\n%s\nwant\n%s", got, want)
		}
		var wantRec Record
		if err := json.Unmarshal(want, &wantRec); err != nil {
			t.Fatal(err)
		}
		if rec, err := DecodeRecord(got); err != nil || !reflect.DeepEqual(rec, wantRec) {
			t.Fatalf("batch decodes as %+v (%v), want %+v", rec, err, wantRec)
		}
	}
}

// FuzzDecodeRecord: whatever the bytes, the direct path either declines
// them or decodes exactly what json.Unmarshal decodes, and a decoded record
// encodes as json.Marshal encodes it.
func FuzzDecodeRecord(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 20 {
		rec := randomRecord(rng, 0)
		if enc, err := json.Marshal(rec); err == nil {
			f.Add(enc)
		}
	}
	f.Add([]byte(`{"t":"msg.sent","at":"2026-01-02T03:04:05Z","r":"d_1","u":"alice","cid":"c1","x":"hi \u00e9 \"q\""}`))
	f.Add([]byte(`{"t":"batch","b":[{"t":"msg.read","seq":7},{"t":"x","m":["a","b"],"k":"AAEC"}]}`))
	f.Add([]byte(`{"t":"batch","b":[{"t":"","b":[]},{"t":"","b":[{"t":"x"}]},{"t":"","b":[{"t":"","b":[]}]}]}`))
	f.Add([]byte(`{"t":"a","T":"b"}`))
	f.Add([]byte(`{"t":"a","u":"x","u":"y"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		want, werr := checkDecoder(t, data, directDecode, DecodeRecord)
		if werr != nil {
			return
		}
		wantEnc, werr := json.Marshal(want)
		gotEnc, gerr := EncodeRecord(&want)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(gotEnc, wantEnc) {
			t.Fatalf("%q: EncodeRecord %s (%v), json.Marshal %s (%v)", data, gotEnc, gerr, wantEnc, werr)
		}
	})
}

// checkDecoder checks a direct decoder against encoding/json on data:
// direct declines it or decodes what json.Unmarshal decodes, and decode
// (direct with its fallback) agrees with json.Unmarshal, error or not. It
// returns what json.Unmarshal gave.
func checkDecoder[T any](t *testing.T, data []byte, direct func([]byte) (T, bool), decode func([]byte) (T, error)) (T, error) {
	t.Helper()
	var want T
	werr := json.Unmarshal(data, &want)
	if got, ok := direct(data); ok {
		if werr != nil {
			t.Fatalf("direct path decoded %q, which json.Unmarshal refuses: %v", data, werr)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\ndirect  %+v\njson    %+v", data, got, want)
		}
	}
	got, err := decode(data)
	if (err != nil) != (werr != nil) || werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: decoded %+v (%v), json.Unmarshal %+v (%v)", data, got, err, want, werr)
	}
	return want, werr
}

func BenchmarkRecordCodec(b *testing.B) {
	rec := Record{Type: RecMessageSent, At: time.Now().UTC(), Room: "d_0123456789abcdef0123456789abcdef", User: "u0042",
		ClientID: "c-0123456789", Text: strings.Repeat("x", 100)}
	enc, _ := json.Marshal(rec)
	b.Run("encode/json", func(b *testing.B) {
		for b.Loop() {
			_, _ = json.Marshal(rec)
		}
	})
	b.Run("encode/direct", func(b *testing.B) {
		for b.Loop() {
			_, _ = EncodeRecord(&rec)
		}
	})
	b.Run("decode/json", func(b *testing.B) {
		for b.Loop() {
			var r Record
			_ = json.Unmarshal(enc, &r)
		}
	})
	b.Run("decode/direct", func(b *testing.B) {
		for b.Loop() {
			_, _ = DecodeRecord(enc)
		}
	})
	// A busy partition's record: ~20 messages in one batch.
	batch := Record{Type: RecBatch, At: rec.At}
	for range 20 {
		batch.Batch = append(batch.Batch, rec)
	}
	encBatch, _ := EncodeRecord(&batch)
	b.Run("decode/batch20", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeRecord(encBatch)
		}
	})
}
