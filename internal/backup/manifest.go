package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

const (
	// ManifestFile is the manifest's name in a backup directory.
	ManifestFile   = "manifest.json"
	manifestFormat = 1
	// maxManifestSize bounds the manifest a restore reads: a few KiB per
	// stream, for at most 1,024 partitions.
	maxManifestSize = 1 << 20
	snapshotExt     = ".snap"
)

// ErrCorrupt is returned (wrapped, with the details) when a backup's
// manifest cannot be read or a file does not match it.
var ErrCorrupt = errors.New("backup: corrupted or incomplete backup")

// Manifest describes a backup.
type Manifest struct {
	Format  int       `json:"format"`
	Created time.Time `json:"created"`
	// ServerVersion is the version of the nats-server the backup was taken
	// from; a restore needs the same or a later one.
	ServerVersion string `json:"server_version"`
	// ClusterID is the id the cluster's bucket gave it at its creation
	// (SAL_CLUSTER's cluster-id): a restore tells a cluster that is not the
	// one backed up. Empty in a backup taken before it was recorded.
	ClusterID string `json:"cluster_id,omitempty"`
	// Partitions is the cluster's partition count: rooms are placed by it,
	// so a restore refuses a cluster created with another.
	Partitions int      `json:"partitions"`
	Streams    []Stream `json:"streams"`
}

// Stream is one stream's snapshot in a backup.
type Stream struct {
	// Name is the NATS stream, e.g. SAL_P0, SAL_ACCT or KV_SAL_CLUSTER.
	Name string `json:"name"`
	// File, Bytes and SHA256 name and check the snapshot file.
	File   string `json:"file"`
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
	// FirstSeq and LastSeq bound the records the snapshot holds; Records
	// counts them and Deleted counts the sequences in between with none.
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Records  uint64 `json:"records"`
	Deleted  int    `json:"deleted"`
	// Config and State are the stream's configuration and state as the
	// server reported them with the snapshot; a restore sends them back
	// unchanged.
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

// streamState is the part of the server's stream state a manifest checks.
type streamState struct {
	Msgs       uint64 `json:"messages"`
	FirstSeq   uint64 `json:"first_seq"`
	LastSeq    uint64 `json:"last_seq"`
	NumDeleted int    `json:"num_deleted"`
}

var (
	streamNameRE = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,63}$`)
	sha256RE     = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// ReadManifest reads and checks the manifest of the backup in dir. It does
// not read the snapshot files; Verify does.
func ReadManifest(dir string) (*Manifest, error) {
	f, err := openRegular(filepath.Join(dir, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer f.Close()
	return DecodeManifest(f)
}

// openRegular opens the regular file at path, and nothing else: a backup's
// files are its own, and a symbolic link to /dev/zero or a named pipe in
// their place would read forever (or hang at the open) instead of being
// refused.
func openRegular(path string) (*os.File, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (%s)", filepath.Base(path), fi.Mode().Type())
	}
	return os.Open(path)
}

// DecodeManifest decodes a manifest from r (at most 1 MiB) and checks that
// it is whole and consistent.
func DecodeManifest(r io.Reader) (*Manifest, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read the manifest: %v", ErrCorrupt, err)
	}
	if len(b) > maxManifestSize {
		return nil, fmt.Errorf("%w: the manifest is larger than %d bytes", ErrCorrupt, maxManifestSize)
	}
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: the manifest: %v", ErrCorrupt, err)
	}
	if err := m.check(); err != nil {
		return nil, fmt.Errorf("%w: the manifest: %v", ErrCorrupt, err)
	}
	return &m, nil
}

func (m *Manifest) check() error {
	if m.Format != manifestFormat {
		return fmt.Errorf("format %d, this version reads %d", m.Format, manifestFormat)
	}
	if m.Partitions < 1 || m.Partitions > maxPartitions {
		return fmt.Errorf("partition count %d", m.Partitions)
	}
	standbys := len(m.Streams) == 2*m.Partitions+2
	if len(m.Streams) != m.Partitions+2 && !standbys {
		return fmt.Errorf("%d streams for %d partitions (want the bucket, the partitions, their standbys if the "+
			"cluster has them, and the accounts)", len(m.Streams), m.Partitions)
	}
	for i, want := range streamNames(m.Partitions, standbys) {
		s := &m.Streams[i]
		if s.Name != want {
			return fmt.Errorf("stream %d is %q, want %s", i, s.Name, want)
		}
		if err := s.check(); err != nil {
			return fmt.Errorf("stream %s: %v", s.Name, err)
		}
	}
	return nil
}

// minReplicas is the fewest replicas a stream of the log may have: one
// per site, and Salamander runs on three sites at least.
const minReplicas = 3

func (s *Stream) check() error {
	if !streamNameRE.MatchString(s.Name) {
		return fmt.Errorf("bad name")
	}
	if s.File != s.Name+snapshotExt {
		return fmt.Errorf("file %q, want %s", s.File, s.Name+snapshotExt)
	}
	if !sha256RE.MatchString(s.SHA256) || s.Bytes < 0 {
		return fmt.Errorf("bad checksum or size")
	}
	var cfg struct {
		Name       string  `json:"name"`
		Replicas   int     `json:"num_replicas"`
		Storage    *string `json:"storage"`
		Retention  *string `json:"retention"`
		MaxMsgs    int64   `json:"max_msgs"`
		MaxBytes   int64   `json:"max_bytes"`
		MaxAge     int64   `json:"max_age"`
		Direct     *bool   `json:"allow_direct"`
		Discard    *string `json:"discard"`
		MaxPerSubj int64   `json:"max_msgs_per_subject"`
		Rollup     bool    `json:"allow_rollup_hdrs"`
		MsgTTL     bool    `json:"allow_msg_ttl"`
		MarkerTTL  int64   `json:"subject_delete_marker_ttl"`
		Mirror     any     `json:"mirror"`
		Sources    []any   `json:"sources"`
		Sealed     bool    `json:"sealed"`
	}
	if err := json.Unmarshal(s.Config, &cfg); err != nil || cfg.Name != s.Name {
		return fmt.Errorf("its configuration does not name it (%v)", err)
	}
	// The settings are restored as written (the checksums cover the
	// snapshots, not the manifest): ones that would break a promise — a
	// record held by fewer sites than a quorum needs, records that expire
	// or are dropped — are refused here, not found at the sites' next
	// start. (KV_SAL_CLUSTER keeps one value per key: its limits differ.)
	var problems []string
	if cfg.Replicas < minReplicas {
		problems = append(problems, fmt.Sprintf("%d replica(s), fewer than one per site (%d)", cfg.Replicas, minReplicas))
	}
	if cfg.Storage != nil && *cfg.Storage != "file" {
		problems = append(problems, "not on file storage")
	}
	if cfg.Retention != nil && *cfg.Retention != "limits" || cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxAge > 0 {
		problems = append(problems, "its records may be dropped (retention other than limits, or a max msgs/bytes/age)")
	}
	if s.Name != "KV_"+clusterBucket && (cfg.Direct != nil && !*cfg.Direct || cfg.MaxPerSubj > 0) {
		problems = append(problems, "direct gets off, or a limit of records per subject")
	}
	// As a site's start refuses them (jsstore's checkStream): any writer
	// could purge the stream (a rollup) or make a record expire into a
	// hole, or records would come from elsewhere. (A cluster bucket made
	// before 2026-12-02 allows rollups; a restore makes it written-once: writeOnce.)
	if s.Name != "KV_"+clusterBucket && cfg.Rollup {
		problems = append(problems, "rollups allowed")
	}
	if cfg.MsgTTL || cfg.MarkerTTL > 0 || cfg.Mirror != nil || len(cfg.Sources) > 0 || cfg.Sealed {
		problems = append(problems, "message TTLs allowed, a mirror, sources or a seal")
	}
	if len(problems) > 0 {
		return fmt.Errorf("its settings break Salamander's guarantees: %s", strings.Join(problems, "; "))
	}
	st, err := s.decodeState()
	if err != nil {
		return err
	}
	if st.FirstSeq != s.FirstSeq || st.LastSeq != s.LastSeq || st.Msgs != s.Records || st.NumDeleted != s.Deleted {
		return fmt.Errorf("its summary (%d records, sequences %d–%d) disagrees with the server's state %s",
			s.Records, s.FirstSeq, s.LastSeq, s.State)
	}
	return nil
}

func (s *Stream) decodeState() (streamState, error) {
	var st streamState
	if err := json.Unmarshal(s.State, &st); err != nil {
		return st, fmt.Errorf("its state: %v", err)
	}
	return st, nil
}

// Verify checks the snapshot files of the named streams (every stream when
// none is named) against the manifest: present, of the recorded size and
// SHA-256, and decoding whole up to their archive's end marker. Errors wrap
// ErrCorrupt.
func (m *Manifest) Verify(dir string, names ...string) error {
	for _, s := range m.Streams {
		if len(names) > 0 && !slices.Contains(names, s.Name) {
			continue
		}
		if err := s.verify(dir); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrCorrupt, s.File, err)
		}
	}
	return nil
}

func (s *Stream) verify(dir string) error {
	f, err := openRegular(filepath.Join(dir, s.File))
	if err != nil {
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil {
		return err
	} else if fi.Size() != s.Bytes {
		return fmt.Errorf("%d bytes, the manifest says %d", fi.Size(), s.Bytes)
	}
	// The snapshot is decoded as it is hashed: its checksum says it is
	// the file the backup wrote, the decoding that the server will take it
	// (a backup taken before the backup decoded its snapshots may hold one
	// that lost its last chunks on the way, which its checksum vouches
	// for), and both are known before anything is deleted.
	h := sha256.New()
	check := newArchiveCheck()
	defer check.abort()
	decode := &untilError{w: check}
	n, err := io.Copy(io.MultiWriter(h, decode), io.LimitReader(f, s.Bytes+1))
	if err != nil {
		return err
	}
	if n != s.Bytes {
		return fmt.Errorf("%d bytes, the manifest says %d", n, s.Bytes)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return fmt.Errorf("SHA-256 %s, the manifest says %s", got, s.SHA256)
	}
	if err := decode.err; err != nil {
		return err
	}
	return check.finish()
}

// untilError writes to w until a write fails, and from then on keeps the
// error and takes every write: the hash beside it goes on to the end.
type untilError struct {
	w   io.Writer
	err error
}

func (u *untilError) Write(p []byte) (int, error) {
	if u.err == nil {
		_, u.err = u.w.Write(p)
	}
	return len(p), nil
}

// write writes the manifest to dir, atomically and durably.
func (m *Manifest) write(dir string) error {
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ManifestFile+".partial")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, ManifestFile)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
