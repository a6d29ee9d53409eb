package salamander

import (
	"bytes"
	"runtime"
	"testing"
)

// batchOfBatches is a batch record of n entries, each an empty batch of
// its own (the direct path reads nested batches; readers skip them).
func batchOfBatches(n int, inner string) []byte {
	var b bytes.Buffer
	b.WriteString(`{"t":"batch","b":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"t":"","b":[` + inner + `]}`)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// allocatedBytes is what f allocates, in bytes.
func allocatedBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// Decoding a record allocates a small multiple of its size, whatever it
// holds: each entry of a batch costs one Record (~400 B) however few bytes
// it takes, and nested batches make room for no entries up front (each
// once made room for up to 1,024 of those, counted from every record
// opening after it: a 16 KiB record cost ~200 MB, 256 KiB ~6 GB, on every
// site's tail and again on every restart).
func TestDecodeRecordAllocationIsBoundedByItsSize(t *testing.T) {
	// A Record per 9 bytes (`{"t":""},`) is ~50 times its bytes, twice
	// that while a batch doubles as it grows; the rest is the string copy
	// and the top level's room for 1,024 entries (~440 KB).
	const perByte, fixed = 128, 1 << 20
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"nested empty batches", batchOfBatches(1000, ``)},
		{"nested batches of one", batchOfBatches(500, `{"t":""}`)},
		// Batches three deep leave the direct path for encoding/json.
		{"batches three deep", batchOfBatches(500, `{"t":"","b":[]}`)},
		{"nested batches, trailing garbage", append(batchOfBatches(1000, ``), ' ', 'x')},
	} {
		t.Run(tc.name, func(t *testing.T) {
			limit := uint64(perByte*len(tc.data) + fixed)
			got := allocatedBytes(func() { _, _ = DecodeRecord(tc.data) })
			if got > limit {
				t.Errorf("decoding %d bytes allocated %d bytes, want at most %d", len(tc.data), got, limit)
			}
			t.Logf("%d bytes: %d allocated (%.0f×)", len(tc.data), got, float64(got)/float64(len(tc.data)))
		})
	}
}
