package backup_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/backup"
)

// validManifest is a well-formed manifest of a cluster with n partitions.
func validManifest(n int) backup.Manifest {
	m := backup.Manifest{Format: 1, Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), ServerVersion: "2.15.2", Partitions: n}
	names := []string{"KV_SAL_CLUSTER"}
	for i := range n {
		names = append(names, fmt.Sprintf("SAL_P%d", i))
	}
	for i, name := range append(names, "SAL_ACCT") {
		last := uint64(i * 10)
		first := min(last, 1)
		m.Streams = append(m.Streams, backup.Stream{
			Name: name, File: name + ".snap", Bytes: int64(100 + i), SHA256: strings.Repeat("ab", 32),
			FirstSeq: first, LastSeq: last, Records: last,
			Config: json.RawMessage(fmt.Sprintf(`{"name":%q,"num_replicas":3}`, name)),
			State:  json.RawMessage(fmt.Sprintf(`{"messages":%d,"first_seq":%d,"last_seq":%d}`, last, first, last)),
		})
	}
	return m
}

// withStandbys is m with a standby stream after each partition's, as a
// backup of a cluster that has them lists them.
func withStandbys(m backup.Manifest) backup.Manifest {
	accts := m.Streams[len(m.Streams)-1]
	m.Streams = m.Streams[: len(m.Streams)-1 : len(m.Streams)-1]
	for i := range m.Partitions {
		name := fmt.Sprintf("SAL_S%d", i)
		m.Streams = append(m.Streams, backup.Stream{Name: name, File: name + ".snap", Bytes: 1, SHA256: strings.Repeat("cd", 32),
			Config: json.RawMessage(fmt.Sprintf(`{"name":%q,"num_replicas":3}`, name)), State: json.RawMessage(`{}`)})
	}
	m.Streams = append(m.Streams, accts)
	return m
}

func encode(t testing.TB, m backup.Manifest) []byte {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A manifest is refused unless it is whole, bounded and names only its own
// files.
func TestDecodeManifestRefusesBadManifests(t *testing.T) {
	if _, err := backup.DecodeManifest(bytes.NewReader(encode(t, validManifest(3)))); err != nil {
		t.Fatalf("a valid manifest: %v", err)
	}
	bad := map[string]func(m *backup.Manifest){
		"format":           func(m *backup.Manifest) { m.Format = 2 },
		"no partitions":    func(m *backup.Manifest) { m.Partitions = 0 },
		"missing stream":   func(m *backup.Manifest) { m.Streams = m.Streams[:len(m.Streams)-1] },
		"streams swapped":  func(m *backup.Manifest) { m.Streams[1], m.Streams[2] = m.Streams[2], m.Streams[1] },
		"file elsewhere":   func(m *backup.Manifest) { m.Streams[1].File = "../SAL_P0.snap" },
		"bad checksum":     func(m *backup.Manifest) { m.Streams[1].SHA256 = "xyz" },
		"negative size":    func(m *backup.Manifest) { m.Streams[1].Bytes = -1 },
		"config of other":  func(m *backup.Manifest) { m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P1"}`) },
		"summary disagree": func(m *backup.Manifest) { m.Streams[2].LastSeq++ },
		"state not json":   func(m *backup.Manifest) { m.Streams[2].State = json.RawMessage(`"x"`) },
		// Settings restored as written that would break a promise (a
		// flipped bit in a manifest that is still JSON).
		"one replica": func(m *backup.Manifest) { m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":1}`) },
		"records expire": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"max_age":1}`)
		},
		"records dropped": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"max_msgs":1000}`)
		},
		"no direct gets": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"allow_direct":false}`)
		},
		"in memory": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"storage":"memory"}`)
		},
		// As a site's start refuses them (jsstore.checkStream): any writer
		// could purge the stream, or make a record expire into a hole.
		"rollups": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"allow_rollup_hdrs":true}`)
		},
		"message TTLs": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"allow_msg_ttl":true}`)
		},
		"a mirror": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"mirror":{"name":"X"}}`)
		},
		"sources": func(m *backup.Manifest) {
			m.Streams[1].Config = json.RawMessage(`{"name":"SAL_P0","num_replicas":3,"sources":[{"name":"X"}]}`)
		},
	}
	// The cluster bucket keeps one value per key, as a KV bucket does.
	kv := validManifest(3)
	kv.Streams[0].Config = json.RawMessage(`{"name":"KV_SAL_CLUSTER","num_replicas":3,"max_msgs_per_subject":1,"allow_direct":true,"storage":"file","retention":"limits","max_msgs":-1,"max_bytes":-1,"max_age":0}`)
	if _, err := backup.DecodeManifest(bytes.NewReader(encode(t, kv))); err != nil {
		t.Fatalf("a cluster bucket as NATS describes it: %v", err)
	}
	for what, change := range bad {
		m := validManifest(3)
		change(&m)
		if _, err := backup.DecodeManifest(bytes.NewReader(encode(t, m))); !errors.Is(err, backup.ErrCorrupt) {
			t.Errorf("%s: %v", what, err)
		}
	}
	huge := append([]byte(`{"format":1,"server_version":"`), bytes.Repeat([]byte("x"), 1<<20)...)
	if _, err := backup.DecodeManifest(bytes.NewReader(append(huge, `"}`...))); !errors.Is(err, backup.ErrCorrupt) ||
		!strings.Contains(err.Error(), "larger") {
		t.Errorf("a manifest over 1 MiB: %v", err)
	}
	if _, err := backup.DecodeManifest(strings.NewReader(`{"format":1,"extra":true}`)); !errors.Is(err, backup.ErrCorrupt) {
		t.Errorf("an unknown key: %v", err)
	}
}

// Whatever the bytes, a manifest that decodes is consistent: its streams
// are the bucket, every partition and the accounts, in order, each in a
// file of its own name in the backup directory, and it encodes and decodes
// again to the same manifest. Anything else is refused as ErrCorrupt.
func FuzzDecodeManifest(f *testing.F) {
	f.Add(encode(f, validManifest(1)))
	f.Add(encode(f, validManifest(3)))
	f.Add(encode(f, withStandbys(validManifest(3))))
	f.Add([]byte(`{"format":1,"partitions":1024,"streams":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := backup.DecodeManifest(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, backup.ErrCorrupt) {
				t.Fatalf("refused without ErrCorrupt: %v", err)
			}
			return
		}
		if len(b) > 1<<20 {
			t.Fatalf("accepted %d bytes", len(b))
		}
		n := m.Partitions
		standbys := len(m.Streams) == 2*n+2
		if n < 1 || n > 1024 || len(m.Streams) != n+2 && !standbys {
			t.Fatalf("%d partitions, %d streams", n, len(m.Streams))
		}
		for i, s := range m.Streams {
			var want string
			switch {
			case i == 0:
				want = "KV_SAL_CLUSTER"
			case i == len(m.Streams)-1:
				want = "SAL_ACCT"
			case i <= n:
				want = "SAL_P" + fmt.Sprint(i-1)
			default: // the standbys, after the partitions
				want = "SAL_S" + fmt.Sprint(i-1-n)
			}
			if s.Name != want || s.File != want+".snap" || s.Bytes < 0 || len(s.SHA256) != 64 {
				t.Fatalf("stream %d: %+v", i, s)
			}
		}
		again, err := backup.DecodeManifest(bytes.NewReader(encode(t, *m)))
		if err != nil {
			t.Fatalf("an accepted manifest, encoded again, is refused: %v", err)
		}
		if again.Partitions != m.Partitions || !again.Created.Equal(m.Created) || len(again.Streams) != len(m.Streams) {
			t.Fatalf("round trip changed the manifest: %+v -> %+v", m, again)
		}
		for i := range m.Streams {
			a, b := m.Streams[i], again.Streams[i]
			a.Config, a.State, b.Config, b.State = nil, nil, nil, nil
			if !reflect.DeepEqual(a, b) {
				t.Fatalf("round trip changed stream %d: %+v -> %+v", i, a, b)
			}
		}
	})
}

// A backup's files must be its own regular files: a symbolic link to
// /dev/zero in a snapshot's place, or a named pipe for the manifest, is
// refused at once, where reading it would never end.
func TestVerifyRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	m := validManifest(1)
	if err := os.Symlink("/dev/zero", filepath.Join(dir, "SAL_P0.snap")); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(dir, backup.ManifestFile), 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 2)
	go func() { done <- m.Verify(dir, "SAL_P0") }()
	go func() { _, err := backup.ReadManifest(dir); done <- err }()
	for range 2 {
		select {
		case err := <-done:
			if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "not a regular file") {
				t.Errorf("got %v, want a refusal: not a regular file", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("still reading after 10 s")
		}
	}
}
