package backup

import (
	"archive/tar"
	"bytes"
	"strings"
	"testing"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server/archive"
)

// Both layouts of snapshot decode whole, and each cut short where a lost
// last chunk could cut it — between two s2 blocks and two entries, where
// nothing but the end marker is missing — is refused. (A real snapshot
// with chunks lost on the way: TestABackupRefusesASnapshotWithAChunkLost.)
func TestCheckArchiveRefusesAnArchiveCutShort(t *testing.T) {
	entries := []string{"state.json", "sal.p0.a", "sal.p0.b"}
	// s2 flushes one block per entry, so that a cut between entries is a
	// cut between blocks too.
	natsArchive := func(withEnd bool) []byte {
		var buf bytes.Buffer
		enc := s2.NewWriter(&buf)
		w := archive.NewWriter(enc)
		for i, name := range entries {
			body := []byte(strings.Repeat(name, 100))
			if err := w.WriteHeader(&archive.Header{Name: name, Sequence: uint64(i), PayloadSize: int64(len(body))}); err != nil {
				t.Fatal(err)
			}
			w.Write(body)
			enc.Flush()
		}
		if withEnd {
			w.WriteHeader(&archive.Header{})
		}
		enc.Close()
		return buf.Bytes()
	}
	tarArchive := func(withEnd bool) []byte {
		var buf bytes.Buffer
		enc := s2.NewWriter(&buf)
		w := tar.NewWriter(enc)
		for _, name := range entries {
			body := []byte(strings.Repeat(name, 100))
			if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			w.Write(body)
			w.Flush()
			enc.Flush()
		}
		if withEnd {
			w.Close()
		}
		enc.Close()
		return buf.Bytes()
	}
	for name, build := range map[string]func(bool) []byte{"nats archive": natsArchive, "tar": tarArchive} {
		whole := build(true)
		if err := checkArchive(bytes.NewReader(whole)); err != nil {
			t.Fatalf("%s, whole: %v", name, err)
		}
		if err := checkArchive(bytes.NewReader(build(false))); err == nil || !strings.Contains(err.Error(), "without its end") {
			t.Fatalf("%s without its end marker: %v", name, err)
		}
		if err := checkArchive(bytes.NewReader(whole[:len(whole)-1])); err == nil {
			t.Fatalf("%s, one byte short: taken", name)
		}
		flipped := bytes.Clone(whole)
		flipped[len(flipped)/2] ^= 1
		if err := checkArchive(bytes.NewReader(flipped)); err == nil {
			t.Fatalf("%s, a bit flipped: taken", name)
		}
		if err := checkArchive(bytes.NewReader(append(bytes.Clone(whole), build(true)...))); err == nil {
			t.Fatalf("%s, twice: taken", name)
		}
	}
}
