package salamander

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzRecordJSON: every site decodes the records of the log from their
// stored bytes, and the read models must agree on what a record says. A
// record that decodes must encode again, and its encoding must decode to
// the same record (the encoding is stable), so that a record re-appended
// (a batch's entries, a re-published record) means the same everywhere.
func FuzzRecordJSON(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		enc, err := json.Marshal(r)
		if err != nil {
			t.Fatalf("record decoded from %q does not encode: %v", data, err)
		}
		var r2 Record
		if err := json.Unmarshal(enc, &r2); err != nil {
			t.Fatalf("encoding %q of a decoded record does not decode: %v", enc, err)
		}
		enc2, err := json.Marshal(r2)
		if err != nil {
			t.Fatalf("second encoding failed: %v", err)
		}
		if !bytes.Equal(enc, enc2) {
			t.Fatalf("record encoding is not stable:\ninput  %q\nfirst  %s\nsecond %s", data, enc, enc2)
		}
		if !r.At.Equal(r2.At) || r.Type != r2.Type || len(r.Batch) != len(r2.Batch) {
			t.Fatalf("round trip changed the record: %+v -> %+v", r, r2)
		}
	})
}
