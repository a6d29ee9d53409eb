package jsstore

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func copyRecord(seq uint64) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("record %d;", seq)), int(seq%7)+1)
}

// fillCopy opens a copy at path and adds records first..last.
func fillCopy(t *testing.T, path string, first, last uint64) *ownCopy {
	t.Helper()
	c, err := openCopy(path)
	if err != nil {
		t.Fatal(err)
	}
	for seq := first; seq <= last; seq++ {
		if err := c.add(seq, copyRecord(seq)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// checkCopy reads back every record the copy should hold and checks that
// it holds nothing else.
func checkCopy(t *testing.T, c *ownCopy, first, last uint64) {
	t.Helper()
	for seq := first; seq <= last; seq++ {
		got, ok := c.read(seq)
		if !ok || !bytes.Equal(got, copyRecord(seq)) {
			t.Fatalf("record %d: %q %v, want %q", seq, got, ok, copyRecord(seq))
		}
	}
	for _, seq := range []uint64{first - 1, last + 1, last + 100} {
		if _, ok := c.read(seq); ok {
			t.Fatalf("record %d read, but the copy holds %d..%d", seq, first, last)
		}
	}
	if got := c.next(); got != last+1 {
		t.Fatalf("next = %d, want %d", got, last+1)
	}
}

func TestOwnCopyReadsBackAndSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p0.log")
	c := fillCopy(t, path, 1, 200)
	checkCopy(t, c, 1, 200) // buffered records are flushed for the read
	// Records out of sequence are left out: the copy stays contiguous.
	for _, seq := range []uint64{150, 200, 202} {
		if err := c.add(seq, []byte("other")); err != nil {
			t.Fatal(err)
		}
	}
	checkCopy(t, c, 1, 200)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	c = fillCopy(t, path, 201, 260)
	defer c.close()
	checkCopy(t, c, 1, 260)
}

// A crash leaves a torn record at the end, or a damaged one: a copy with
// no index (made before copies had one) is read whole at its start, keeps
// what comes before the first such record and needs the rest from the log.
func TestOwnCopyCutsADamagedEnd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p0.log")
	c := fillCopy(t, path, 1, 100)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// The offset of record 61 (records 1..60 precede it).
	var at61 int64
	for seq := uint64(1); seq <= 60; seq++ {
		at61 += copyHeader + int64(len(copyRecord(seq)))
	}
	for _, tc := range []struct {
		name string
		file func() []byte
		last uint64
	}{
		{"torn header", func() []byte { return whole[:at61+5] }, 60},
		{"torn record", func() []byte { return whole[:at61+copyHeader+3] }, 60},
		{"damaged bytes", func() []byte {
			b := bytes.Clone(whole)
			b[at61+copyHeader+1] ^= 0xff
			return b
		}, 60},
		{"out of sequence", func() []byte {
			b := bytes.Clone(whole)
			b[at61] = 99 // record 61's header claims sequence 99
			return b
		}, 60},
		{"whole", func() []byte { return whole }, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reopenHolds(t, filepath.Join(dir, tc.name+".log"), tc.file(), nil, tc.last)
		})
	}
}

// reopenHolds writes a copy's file (and its index, if not nil) at path,
// opens it, checks that it holds records 1..last, and that it grows again
// from there.
func reopenHolds(t *testing.T, path string, data, index []byte, last uint64) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if index != nil {
		if err := os.WriteFile(path+".idx", index, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c, err := openCopy(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	checkCopy(t, c, 1, last)
	if err := c.add(last+1, copyRecord(last+1)); err != nil {
		t.Fatal(err)
	}
	checkCopy(t, c, 1, last+1)
}

func TestOwnCopyReset(t *testing.T) {
	c := fillCopy(t, filepath.Join(t.TempDir(), "p0.log"), 1, 50)
	defer c.close()
	if err := c.reset(); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.read(1); ok || c.next() != 1 {
		t.Fatal("a reset copy still holds records")
	}
	for seq := uint64(1); seq <= 10; seq++ {
		if err := c.add(seq, copyRecord(seq)); err != nil {
			t.Fatal(err)
		}
	}
	checkCopy(t, c, 1, 10)
}

// offsetOf is where record seq starts in a copy filled from record 1.
func offsetOf(seq uint64) int64 {
	var off int64
	for s := uint64(1); s < seq; s++ {
		off += copyHeader + int64(len(copyRecord(s)))
	}
	return off
}

// A start reads only what follows the last index entry it can trust, not
// the whole copy (which grows with the log for as long as the site runs):
// a record damaged before that is found when it is read, and read from
// the log instead, while the records around it are still read here.
func TestOwnCopyStartsFromItsIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p0.log")
	c := fillCopy(t, path, 1, 300)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[offsetOf(61)+copyHeader+1] ^= 0xff
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = openCopy(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if c.next() != 301 {
		t.Fatalf("next = %d after a start with a damaged record 61, want 301", c.next())
	}
	for seq := uint64(1); seq <= 300; seq++ {
		got, ok := c.read(seq)
		if want := seq != 61; ok != want || ok && !bytes.Equal(got, copyRecord(seq)) {
			t.Fatalf("record %d: %q %v, want read %v", seq, got, ok, want)
		}
	}
}

// An index torn short, or ahead of a copy torn shorter, is cut back to
// what it can trust and built on from the copy's records.
func TestOwnCopyMendsItsIndex(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p0.log")
	c := fillCopy(t, path, 1, 300)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	index, err := os.ReadFile(path + ".idx")
	if err != nil {
		t.Fatal(err)
	}
	if want := (300 + copyIndexEvery - 1) / copyIndexEvery * copyIndexEntry; len(index) != want {
		t.Fatalf("index of %d bytes for 300 records, want %d", len(index), want)
	}
	for _, tc := range []struct {
		name        string
		data, index []byte
		last        uint64
	}{
		{"no index", data, nil, 300},
		{"an index torn mid-entry", data, index[:3*copyIndexEntry+5], 300},
		{"an index with one entry", data, index[:copyIndexEntry], 300},
		{"an index ahead of a torn copy", data[:offsetOf(100)+7], index, 99},
		{"an index entry pointing elsewhere", data, append(bytes.Clone(index[:len(index)-copyIndexEntry]), 1, 2, 3, 4, 0, 0, 0, 0), 300},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reopenHolds(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".log"), tc.data, tc.index, tc.last)
		})
	}
}

// Only the newest index entries are kept in memory as well; reads of the
// others read their entry from the index file.
func TestOwnCopyKeepsOnlyTheNewestIndexInMemory(t *testing.T) {
	n := copyIndexNear
	copyIndexNear = 2
	t.Cleanup(func() { copyIndexNear = n })
	c := fillCopy(t, filepath.Join(t.TempDir(), "p0.log"), 1, 1000)
	defer c.close()
	if got := len(c.near); got == 0 || got > 2*copyIndexNear {
		t.Fatalf("%d index entries in memory, want 1..%d", got, 2*copyIndexNear)
	}
	checkCopy(t, c, 1, 1000)
}

// BenchmarkOwnCopyOpen opens a copy of 1,000,000 records of 200 bytes
// (~216 MB): what a site's start costs per stream copy of that size.
func BenchmarkOwnCopyOpen(b *testing.B) {
	path := filepath.Join(b.TempDir(), "p0.log")
	c, err := openCopy(path)
	if err != nil {
		b.Fatal(err)
	}
	rec := bytes.Repeat([]byte("x"), 200)
	for seq := uint64(1); seq <= 1_000_000; seq++ {
		if err := c.add(seq, rec); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		c, err := openCopy(path)
		if err != nil {
			b.Fatal(err)
		}
		if c.next() != 1_000_001 {
			b.Fatalf("next %d", c.next())
		}
		c.close()
	}
}

// The first record's header is checked like every other: the copy always
// starts at the stream's first record, so a header at the file's start
// that claims another sequence (a flipped bit in it: its checksum covers
// the record's bytes, not the header) is damage, not a copy of a log
// that starts there. Taken at its word, the first record's bytes were
// read back as that other record's, texts of other messages, for good.
func TestOwnCopyChecksTheFirstRecordsSequence(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p0.log")
	c := fillCopy(t, path, 1, 100)
	if err := c.close(); err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, claimed := range []byte{7, 33, 2} {
		b := bytes.Clone(whole)
		b[0] = claimed // record 1's header claims another sequence
		p := filepath.Join(dir, fmt.Sprintf("first-%d.log", claimed))
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := openCopy(p)
		if err != nil {
			t.Fatal(err)
		}
		for seq := uint64(1); seq <= 101; seq++ {
			if got, ok := c.read(seq); ok && !bytes.Equal(got, copyRecord(seq)) {
				c.close()
				t.Fatalf("header claiming %d: record %d read back as %q", claimed, seq, got)
			}
		}
		if got := c.next(); got != 1 {
			c.close()
			t.Fatalf("header claiming %d: the copy needs %d next, want 1 (nothing of it can be trusted)", claimed, got)
		}
		c.close()
	}
}

// A copy closed while it was stopped by a write error never grows again:
// its tail's keeper, which may still try to resume it until the tail
// ends, is told it is closed (errCopyClosed) and tries no more, instead
// of retrying on closed files.
func TestAStoppedCopyClosedStaysClosed(t *testing.T) {
	c := fillCopy(t, filepath.Join(t.TempDir(), "p0.log"), 1, 5)
	c.mu.Lock()
	_ = c.fail(errors.New("no space left on device"))
	c.mu.Unlock()
	if err := c.close(); err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("close of a stopped copy: %v, want the write error", err)
	}
	if _, err := c.state(); !errors.Is(err, errCopyClosed) {
		t.Errorf("state after close: %v, want errCopyClosed", err)
	}
	if err := c.resume(); !errors.Is(err, errCopyClosed) {
		t.Errorf("resume after close: %v, want errCopyClosed", err)
	}
}
