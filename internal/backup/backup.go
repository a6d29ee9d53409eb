// Package backup owns Salamander's backups: an online, consistent copy of
// every stream of the replicated log (SAL_ACCT, SAL_P0 … SAL_P{N-1}) and of
// the cluster bucket SAL_CLUSTER, written to a directory with a manifest,
// and the restore of those streams into a cluster where they are absent.
//
// Replication protects the log against the loss of a site; it copies an
// operator's mistake, a stolen admin credential's work or a bug that writes
// garbage to all three sites just as faithfully. A backup is what undoes
// those.
//
// # Snapshots, not a logical copy
//
// A backup is a set of JetStream stream snapshots
// ($JS.API.STREAM.SNAPSHOT.<stream>), one file per stream, and a restore
// sends each back through $JS.API.STREAM.RESTORE.<stream>. The alternative,
// reading every record and publishing it again, was rejected:
//
//   - Salamander's positions and client cursors are stream sequence numbers.
//     A snapshot is the stream's own store, so a restored stream has the
//     same sequence for every record by construction, holes included, which
//     re-publishing cannot reproduce; and the same subjects, headers, times
//     and message-id dedupe state.
//   - The stream's configuration travels with it, exactly as the server
//     reports it: R3, placement by site tag, RePublish, AllowDirect, the
//     duplicate window, the record size limit.
//   - A snapshot is taken by the stream's leader from its store at one
//     instant while the stream keeps taking writes, and the server reports
//     the state it covers (first and last sequence, record count): the copy
//     is consistent up to that last sequence. A restore writes the store at
//     disk speed, not one replicated publish per record.
//
// The price is that the files are in nats-server's own store format (an
// s2-compressed archive): they can be read only by restoring them into a
// nats-server of the same or a later version. Rehearse a restore.
//
// A snapshot arrives in chunks over core NATS, at most once, and its
// checksum is taken of what arrived: a snapshot is taken only if its
// chunks arrive in order, none missing, and it decodes whole up to its
// archive's end marker (see snapshot and archive.go); one that does not
// is taken again, and after a few attempts the backup fails.
//
// Streams are taken one after another, so the backup as a whole is not one
// instant: the bucket first, then the partitions, then the accounts stream
// last, so that every user a room's records name is in the backup.
//
// # Files
//
// Backup creates the directory (mode 0700) and writes STREAM.snap per stream
// and manifest.json last (files 0600): a directory without a manifest is
// not a backup. The manifest records the time, the cluster's id and
// partition count, and per stream its file's size and SHA-256, its first and last
// sequence, record count and the configuration and state the server
// reported. Restore reads the manifest (at most 1 MiB) and checks every file
// it will use against it, and that it decodes whole, before it touches the
// cluster.
//
// # Restore
//
// Restore puts back every stream of the backup that is absent from the
// cluster (or the ones it is told to), with the sequences, records and
// configuration of the backup. It refuses to overwrite a stream that holds
// records; a stream that exists but has never held one (e.g. created again
// by a gateway's start) is replaced. What could refuse the restore — a
// server older than the backup's, settings the cluster refuses — is asked
// before anything is deleted (see preflight.go). A backup restored into
// another cluster than its own (their buckets' ids differ) that would keep
// records of its own beside it is refused unless allowed. Records acknowledged after the backup
// was taken are lost. Sites' gateways must be stopped while it runs: a site
// that has applied records past the backup would otherwise skip the
// restored stream's new records (see the README, "Backups").
package backup

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The names Salamander's log uses in NATS (see internal/jsstore).
const (
	clusterBucket  = "SAL_CLUSTER"
	clusterIDKey   = "cluster-id"
	partitionsKey  = "partitions"
	standbysKey    = "standbys"
	accountsStream = "SAL_ACCT"
	maxPartitions  = 1024
)

// Backup takes a snapshot of every Salamander stream and of the cluster
// bucket through nc, which must be connected with the admin credential (a
// gateway's may not snapshot), into dir. dir must not exist; it is created
// with mode 0700 and removed again if the backup fails. The cluster keeps
// serving while the backup runs. It returns the manifest it wrote.
func Backup(ctx context.Context, nc *nats.Conn, dir string, logger *slog.Logger) (*Manifest, error) {
	log := loggerOrDiscard(logger).With("system", "backup")
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	kv, err := clusterKV(ctx, js)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	n, err := partitions(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	id, err := clusterID(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("backup: create the backup directory (it must not exist): %w", err)
	}
	// Mkdir's mode is filtered by the umask; a backup holds every account.
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("backup: %w", err)
	}
	// The standbys (from this version on) are taken after the partitions:
	// every merge record a partition's snapshot holds names standby records
	// that existed before it, so the standbys' later snapshots hold them.
	// Whether the cluster has standbys is what its bucket says (the sites
	// mark it once every standby exists), not whether one of them is
	// there: a standby deleted by mistake must fail the backup like any
	// missing stream, not leave every standby out of it.
	standbys, err := standbysSetUp(ctx, kv)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	m := &Manifest{Format: manifestFormat, Created: time.Now().UTC(), ServerVersion: nc.ConnectedServerVersion(), ClusterID: id, Partitions: n}
	for _, name := range streamNames(n, standbys) {
		s, err := backupStream(ctx, nc, dir, name, log)
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("backup: stream %s: %w", name, err)
		}
		log.Info("stream backed up", "stream", name, "last_seq", s.LastSeq, "records", s.Records, "bytes", s.Bytes)
		m.Streams = append(m.Streams, s)
	}
	if err := m.write(dir); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("backup: %w", err)
	}
	return m, nil
}

// clusterKV opens the cluster's bucket of settings fixed at creation.
func clusterKV(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, clusterBucket)
	if err != nil {
		return nil, fmt.Errorf("the cluster bucket %s (is this a Salamander cluster, and the admin credential?): %w", clusterBucket, err)
	}
	return kv, nil
}

// partitions reads the cluster's partition count from its bucket.
func partitions(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	e, err := kv.Get(ctx, partitionsKey)
	if err != nil {
		return 0, fmt.Errorf("read the partition count: %w", err)
	}
	n, err := strconv.Atoi(string(e.Value()))
	if err != nil || n < 1 || n > maxPartitions {
		return 0, fmt.Errorf("bad partition count %q in %s", e.Value(), clusterBucket)
	}
	return n, nil
}

// clusterID reads the cluster's id from its bucket ("" if it has none).
func clusterID(ctx context.Context, kv jetstream.KeyValue) (string, error) {
	e, err := kv.Get(ctx, clusterIDKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read the cluster id: %w", err)
	}
	return string(e.Value()), nil
}

// standbysSetUp reads the cluster bucket's mark that every partition's
// standby stream exists (clusters made before standbys have none).
func standbysSetUp(ctx context.Context, kv jetstream.KeyValue) (bool, error) {
	_, err := kv.Get(ctx, standbysKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read the standbys mark: %w", err)
	}
	return true, nil
}

// streamNames lists the NATS streams of a cluster with n partitions, in the
// order a backup takes them: the bucket, the partitions, their standbys
// (clusters made before standbys have none), the accounts.
func streamNames(n int, standbys bool) []string {
	out := []string{"KV_" + clusterBucket}
	for i := range n {
		out = append(out, "SAL_P"+strconv.Itoa(i))
	}
	for i := 0; standbys && i < n; i++ {
		out = append(out, "SAL_S"+strconv.Itoa(i))
	}
	return append(out, accountsStream)
}

// snapshotAttempts bounds how often a stream's snapshot is asked for when
// no leader answers (an election takes seconds) or it arrives with a chunk
// lost.
const snapshotAttempts = 6

// backupStream writes one stream's snapshot to dir/NAME.snap. A request that
// no leader answers, and a snapshot that arrives not whole (a chunk lost on
// the way), are tried again, from scratch; after snapshotAttempts the
// backup fails, saying why.
func backupStream(ctx context.Context, nc *nats.Conn, dir, name string, log *slog.Logger) (Stream, error) {
	for attempt := 1; ; attempt++ {
		s, err := backupStreamOnce(ctx, nc, dir, name)
		retry := errors.Is(err, errNoAnswer) || errors.Is(err, errNotWhole)
		if !retry || attempt == snapshotAttempts || ctx.Err() != nil {
			if retry {
				err = fmt.Errorf("%w (%d attempts)", err, attempt)
			}
			return s, err
		}
		log.Warn("snapshot not taken; trying again", "stream", name, "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			return Stream{}, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func backupStreamOnce(ctx context.Context, nc *nats.Conn, dir, name string) (Stream, error) {
	file := name + snapshotExt
	partial := filepath.Join(dir, file+".partial")
	f, err := os.OpenFile(partial, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return Stream{}, err
	}
	defer f.Close()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(f, h), 256<<10)
	cw := &countingWriter{w: bw}
	resp, err := snapshot(ctx, nc, name, cw)
	if err != nil {
		return Stream{}, err
	}
	if err := bw.Flush(); err != nil {
		return Stream{}, err
	}
	if err := f.Sync(); err != nil {
		return Stream{}, err
	}
	if err := f.Close(); err != nil {
		return Stream{}, err
	}
	if err := os.Rename(partial, filepath.Join(dir, file)); err != nil {
		return Stream{}, err
	}
	s := Stream{Name: name, File: file, Bytes: cw.n, SHA256: hex.EncodeToString(h.Sum(nil)),
		Config: resp.Config, State: resp.State}
	st, err := s.decodeState()
	if err != nil {
		return Stream{}, fmt.Errorf("the server's snapshot state: %w", err)
	}
	s.FirstSeq, s.LastSeq, s.Records, s.Deleted = st.FirstSeq, st.LastSeq, st.Msgs, st.NumDeleted
	return s, nil
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func loggerOrDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
