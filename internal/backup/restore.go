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
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander/internal/jsstore"
)

// ErrStreamHoldsRecords is returned (wrapped) when a stream named for
// restore exists in the cluster and holds records: a restore never
// overwrites one.
var ErrStreamHoldsRecords = errors.New("backup: refusing to overwrite a stream that holds records")

// ErrOtherCluster is returned (wrapped) when the cluster is not the one the
// backup was taken from and would keep records of its own beside the
// restored streams, unless RestoreOptions.OtherCluster allows it.
var ErrOtherCluster = errors.New("backup: the cluster is not the one the backup was taken from")

// ErrNothingToRestore is returned when every stream of the backup is present
// in the cluster and none was named.
var ErrNothingToRestore = errors.New("backup: nothing to restore: every stream of the backup is present in the cluster")

// RestoreOptions modify a restore.
type RestoreOptions struct {
	// Streams names the streams to restore, by NATS name (SAL_P0, SAL_ACCT,
	// KV_SAL_CLUSTER) or by Salamander's (p0, acct, SAL_CLUSTER). Each must
	// be absent from the cluster or never written (sequence 0; a purged
	// stream keeps its sequence). Empty: every stream of the backup that is
	// absent, or never written while the backup has records; the others
	// are left alone.
	Streams []string
	// Replace names streams (as Streams does) to delete and restore even
	// though they hold records: those records are lost. It is how a
	// stream made again after the backup (a cluster set up afresh writes
	// its accounts stream and bucket at once) is replaced, and how a
	// stream is rolled back.
	Replace []string
	// MergedTo says how far a partition's merge records (by its NATS
	// name, SAL_P3) place its standby's records: a standby is restored
	// alone only if the backup's holds every one of them. Nil: a standby
	// is restored only with its partition.
	MergedTo func(ctx context.Context, partition string) (uint64, error)
	// OtherCluster allows a restore into a cluster that is not the one the
	// backup was taken from (its bucket names another cluster id) and that
	// would keep records of its own beside the backup's streams.
	OtherCluster bool
	Logger       *slog.Logger
}

// Outcome is what a restore did with one stream of the backup.
type Outcome struct {
	Stream string
	// Restored is set when the stream was restored; LastSeq and Records are
	// then the restored stream's, equal to the backup's.
	Restored bool
	// Replaced is set when a stream in its place was deleted first;
	// ReplacedRecords is how many records it held (lost: 0 for a stream
	// never written).
	Replaced        bool
	ReplacedRecords uint64
	LastSeq         uint64
	Records         uint64
	// Kept is set when the stream was left alone because it holds records.
	Kept bool
}

// Restore restores streams from the backup in dir through nc, which must be
// connected with the admin credential. It first checks the manifest and
// every file it will use, and that the cluster's partition count (when its
// bucket exists) is the backup's; it refuses, before touching anything, a
// corrupted backup (ErrCorrupt), a named stream that holds records
// (ErrStreamHoldsRecords), a nats-server older than the backup's
// (ErrServerTooOld), settings the cluster refuses (ErrRefused) or another
// cluster than the backup's that would keep records of its own
// (ErrOtherCluster, unless opts.OtherCluster). Each
// restored stream has the backup's
// configuration, sequences and records; records acknowledged after the
// backup are lost. No site may serve users while it runs (README, Backups).
func Restore(ctx context.Context, nc *nats.Conn, dir string, opts RestoreOptions) ([]Outcome, error) {
	log := loggerOrDiscard(opts.Logger).With("system", "backup")
	m, err := ReadManifest(dir)
	if err != nil {
		return nil, err
	}
	named, err := m.lookupAll(opts.Streams)
	if err != nil {
		return nil, err
	}
	replace, err := m.lookupAll(opts.Replace)
	if err != nil {
		return nil, err
	}
	if len(named) > 0 {
		for _, r := range replace {
			if !slices.Contains(named, r) {
				named = append(named, r)
			}
		}
	}
	if err := m.Verify(dir, named...); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	target, err := readCluster(ctx, js)
	if err != nil {
		return nil, err
	}
	if target.partitions != "" && target.partitions != strconv.Itoa(m.Partitions) {
		// Its rooms would be looked for in other streams.
		return nil, fmt.Errorf("backup: the cluster has %s partitions and the backup %d: refusing to restore into it",
			target.partitions, m.Partitions)
	}

	// Decide for every stream before touching any.
	type plan struct {
		s       Stream
		replace bool
		held    uint64 // records the stream replaced holds
	}
	var plans []plan
	var out []Outcome
	// The servers' versions, as far as the restore learns them: the one it
	// is connected to, and each stream's leader (its answer names its
	// version), which the leaders' balancing spreads over every server.
	servers := map[string]string{nc.ConnectedServerName(): nc.ConnectedServerVersion()}
	for _, s := range m.Streams {
		if len(named) > 0 && !slices.Contains(named, s.Name) {
			continue
		}
		info, err := streamInfo(ctx, js, s.Name)
		if info != nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Config.Metadata["_nats.ver"] != "" {
			servers[info.Cluster.Leader] = info.Config.Metadata["_nats.ver"]
		}
		switch {
		case err != nil:
			return nil, fmt.Errorf("backup: stream %s: %w", s.Name, err)
		case info == nil:
			plans = append(plans, plan{s: s})
		case info.State.LastSeq == 0 && info.State.Msgs == 0 && s.LastSeq > 0:
			plans = append(plans, plan{s: s, replace: true})
		case info.State.LastSeq == 0 && info.State.Msgs == 0:
			// Present and as empty as in the backup: nothing to do.
			out = append(out, Outcome{Stream: s.Name, Kept: true})
		case slices.Contains(replace, s.Name):
			plans = append(plans, plan{s: s, replace: true, held: info.State.Msgs})
		case holdsTheBackup(ctx, js, s, info, m.Created):
			// Restored from this backup before (a restore run again, or one
			// that stopped part way): nothing to do. Its creation is after
			// the backup's, as every restored stream's is.
			out = append(out, Outcome{Stream: s.Name, Kept: true, LastSeq: info.State.LastSeq, Records: info.State.Msgs})
		case len(named) > 0:
			return nil, fmt.Errorf("%w: %s holds %d records (last sequence %d); name it with --replace to replace it (they are lost)",
				ErrStreamHoldsRecords, s.Name, info.State.Msgs, info.State.LastSeq)
		case info.Created.After(m.Created):
			// Not the stream the backup was taken of, but one made again
			// since (a cluster set up afresh writes its bucket and accounts
			// at once): kept, the restored streams would name accounts,
			// keys and rooms it does not hold.
			return nil, fmt.Errorf("%w: %s holds %d records but was created %s, after the backup (%s): it is not the "+
				"stream backed up; name it with --replace to replace it with the backup's (its records are lost)",
				ErrStreamHoldsRecords, s.Name, info.State.Msgs, info.Created.UTC().Format(time.RFC3339), m.Created.Format(time.RFC3339))
		default:
			out = append(out, Outcome{Stream: s.Name, Kept: true, LastSeq: info.State.LastSeq, Records: info.State.Msgs})
		}
	}
	if len(plans) == 0 {
		return out, ErrNothingToRestore
	}
	restoring := make([]Stream, len(plans))
	for i, p := range plans {
		restoring[i] = p.s
	}
	if err := standbysWithPartitions(ctx, restoring, opts.MergedTo); err != nil {
		return nil, err
	}
	if err := checkIdentity(ctx, js, m, target.id, restoring, opts.OtherCluster, log); err != nil {
		return nil, err
	}
	// Whatever can refuse the restore is asked now, before anything is
	// deleted or restored (see preflight.go).
	if err := checkServerVersions(m.ServerVersion, servers, log); err != nil {
		return nil, err
	}
	for _, s := range restoring {
		if err := trialCreate(ctx, nc, s, log); err != nil {
			return nil, err
		}
	}
	for _, p := range plans {
		o, err := restoreStream(ctx, nc, js, dir, p.s, p.replace, p.held)
		if err != nil {
			return out, fmt.Errorf("backup: restore %s: %w", p.s.Name, err)
		}
		if err := awaitServing(ctx, js, o.Stream); err != nil {
			log.Warn("stream restored but not serving yet", "stream", o.Stream, "err", err)
		}
		log.Info("stream restored", "stream", o.Stream, "last_seq", o.LastSeq, "records", o.Records, "replaced", o.Replaced, "replaced_records", o.ReplacedRecords)
		out = append(out, o)
		if o.Stream == "KV_"+clusterBucket {
			writeOnce(ctx, js, log)
		}
	}
	return out, nil
}

// writeOnce makes a restored cluster bucket keep the first value of each
// key, as the admin CLI makes one an older version created: a backup
// taken before 2026-12-02 holds a plain key-value bucket's settings, which
// are restored as written and let any gateway credential overwrite the
// partition count or the cluster id, or wipe them with a rollup. Only
// warned if it fails: the records are restored, and every site's start
// says what to run.
func writeOnce(ctx context.Context, js jetstream.JetStream, log *slog.Logger) {
	st, err := js.Stream(ctx, "KV_"+clusterBucket)
	if err == nil {
		if cfg, changed := jsstore.ClusterBucketWrittenOnce(st.CachedInfo().Config); changed {
			_, err = js.UpdateStream(ctx, cfg)
		}
	}
	if err != nil {
		log.Warn("the restored cluster bucket still lets any gateway credential rewrite its values; run any "+
			"`salamander admin` command to fix that", "err", err)
	}
}

// holdsTheBackup reports whether the stream holds exactly what the backup
// holds of it: the same sequences and count, and its newest record as old
// as the backup or older (a restore keeps the records' times; a stream
// made again since writes new ones).
func holdsTheBackup(ctx context.Context, js jetstream.JetStream, s Stream, info *jetstream.StreamInfo, taken time.Time) bool {
	st := info.State
	if s.LastSeq == 0 || st.FirstSeq != s.FirstSeq || st.LastSeq != s.LastSeq || st.Msgs != s.Records {
		return false
	}
	stream, err := js.Stream(ctx, s.Name)
	if err != nil {
		return false
	}
	last, err := stream.GetMsg(ctx, st.LastSeq)
	if err != nil {
		return false
	}
	return !last.Time.IsZero() && !last.Time.After(taken)
}

// servingWait bounds the wait for a restored stream to serve reads.
const servingWait = 15 * time.Second

// awaitServing waits until a restored stream has a leader and every
// replica is current: the server answers a restore once the stream's
// files are in place, and its group then elects a leader and catches its
// replicas up (seconds), during which reads of it find no responder. A
// restore is done when the stream can be read at every site.
func awaitServing(ctx context.Context, js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(ctx, servingWait)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		info, err := streamInfo(rctx, js, name)
		rcancel()
		if err == nil && info != nil && serving(info) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no leader with every replica current within %s", servingWait)
		case <-tick.C:
		}
	}
}

// serving says whether a stream has a leader and every replica is current.
func serving(info *jetstream.StreamInfo) bool {
	c := info.Cluster
	if c == nil {
		return true // not clustered
	}
	if c.Leader == "" {
		return false
	}
	for _, r := range c.Replicas {
		if !r.Current {
			return false
		}
	}
	return true
}

// restoreStream restores one stream, first deleting the one in its place
// if replace is set (held: the records it was found with, 0 for one never
// written), and checks the result against the manifest.
func restoreStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, dir string, s Stream, replace bool, held uint64) (Outcome, error) {
	var deleted bool
	if replace {
		// Check again right before: a record may have arrived since.
		info, err := streamInfo(ctx, js, s.Name)
		if err != nil {
			return Outcome{}, err
		}
		if info != nil && info.State.Msgs != held {
			return Outcome{}, fmt.Errorf("%w: %s received records during the restore (is a gateway running?)", ErrStreamHoldsRecords, s.Name)
		}
		if info != nil {
			if err := js.DeleteStream(ctx, s.Name); err != nil {
				return Outcome{}, fmt.Errorf("delete the stream in its place: %w", err)
			}
			deleted = true
		}
	}
	// The file was checked before anything was touched, and is read again
	// here: what is sent is hashed as it goes, and the upload is finished
	// only if it is what the manifest says (the file may have changed in
	// between — a sync job still writing the directory, another hand).
	f, err := openRegular(filepath.Join(dir, s.File))
	if err != nil {
		return Outcome{}, fmt.Errorf("%w: %s: %v", ErrCorrupt, s.File, err)
	}
	defer f.Close()
	h := sha256.New()
	cr := &countingReader{r: io.TeeReader(io.LimitReader(f, s.Bytes), h)}
	sent := func() error {
		if got := hex.EncodeToString(h.Sum(nil)); cr.n != s.Bytes || got != s.SHA256 {
			return fmt.Errorf("%w: %s changed since it was checked: the %d bytes sent have SHA-256 %s, the manifest says %d bytes, %s",
				ErrCorrupt, s.File, cr.n, got, s.Bytes, s.SHA256)
		}
		return nil
	}
	var st streamState
	subject, err := startRestore(ctx, nc, s)
	if err == nil {
		st, err = upload(ctx, nc, subject, bufio.NewReaderSize(cr, chunkSize), sent)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			// Refused part way: say whether the file had changed since its
			// check (the likelier cause then), reading the rest of it.
			if _, rerr := io.Copy(io.Discard, cr); rerr == nil {
				if serr := sent(); serr != nil {
					err = fmt.Errorf("%w; the server refused it: %v", serr, err)
				}
			}
		}
		if err != nil {
			// The stream the failed upload was making is the restore's to
			// delete: the server keeps its name taken until then.
			if derr := dropFailedRestore(ctx, js, s.Name); derr != nil {
				err = fmt.Errorf("%w; and the stream it was making is still there: %v", err, derr)
			}
		}
	}
	if err != nil && deleted {
		// Everything that could be asked before was (preflight.go); what
		// only the upload finds comes after the delete.
		return Outcome{}, fmt.Errorf("%w; the stream in its place (%d records) was deleted before, so %s is absent now: "+
			"fix the cause and run restore again without --replace for it (the backup still holds it)", err, held, s.Name)
	}
	if err != nil {
		return Outcome{}, err
	}
	// An empty stream's first sequence is the next one it will store (1),
	// whatever the snapshot's state said.
	if st.LastSeq != s.LastSeq || st.Msgs != s.Records || st.Msgs > 0 && st.FirstSeq != s.FirstSeq {
		return Outcome{}, fmt.Errorf("the restored stream does not match the backup: %d records, sequences %d–%d; "+
			"the backup has %d, %d–%d", st.Msgs, st.FirstSeq, st.LastSeq, s.Records, s.FirstSeq, s.LastSeq)
	}
	return Outcome{Stream: s.Name, Restored: true, Replaced: replace, ReplacedRecords: held, LastSeq: st.LastSeq, Records: st.Msgs}, nil
}

// absentWait bounds the wait for a deleted stream to leave the cluster's
// list.
const absentWait = 20 * time.Second

// dropFailedRestore deletes the stream a failed upload was making and waits
// until the cluster no longer lists it. Its info is no guide: a stream
// being restored is not found by it, and its name is taken all the same.
func dropFailedRestore(ctx context.Context, js jetstream.JetStream, name string) error {
	ctx, cancel := context.WithTimeout(ctx, absentWait)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := js.DeleteStream(rctx, name)
		if err == nil || errors.Is(err, jetstream.ErrStreamNotFound) {
			names := js.StreamNames(rctx)
			listed := false
			for n := range names.Name() {
				listed = listed || n == name
			}
			err = names.Err()
			if err == nil && listed {
				err = errors.New("still listed")
			}
		}
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not deleted within %s: %v", absentWait, err)
		case <-tick.C:
		}
	}
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// cluster is what a cluster's bucket says of it; empty where it says
// nothing (no bucket: every stream deleted, the bucket too).
type cluster struct {
	partitions string
	id         string
}

// readCluster reads the cluster's partition count and id from its bucket.
func readCluster(ctx context.Context, js jetstream.JetStream) (cluster, error) {
	var c cluster
	kv, err := js.KeyValue(ctx, clusterBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("backup: the cluster bucket %s: %w", clusterBucket, err)
	}
	for key, v := range map[string]*string{partitionsKey: &c.partitions, clusterIDKey: &c.id} {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return c, fmt.Errorf("backup: read the cluster's %s: %w", key, err)
		}
		*v = string(e.Value())
	}
	return c, nil
}

// checkIdentity refuses a restore into a cluster other than the backup's
// (the ids in their buckets differ) that would keep records of its own:
// restored beside them, the backup's streams would name accounts, keys and
// rooms they do not hold — a backup restored into the wrong cluster (a
// staging backup into production, --nats pointed at the other region).
// One whose every stream that holds records is replaced is restored: a
// cluster set up afresh to take the backup (its sites write its bucket
// and accounts at once, --replace acct,SAL_CLUSTER), the recovery from a
// lost cluster. A backup taken before ids were recorded is not compared.
func checkIdentity(ctx context.Context, js jetstream.JetStream, m *Manifest, id string, restoring []Stream, allow bool, log *slog.Logger) error {
	if m.ClusterID == "" || id == "" || id == m.ClusterID {
		if m.ClusterID == "" && id != "" {
			log.Warn("the backup does not record the cluster it was taken from (taken by an older version): not compared with this one's",
				"cluster_id", id)
		}
		return nil
	}
	var kept []string
	for _, s := range m.Streams {
		if slices.ContainsFunc(restoring, func(r Stream) bool { return r.Name == s.Name }) {
			continue
		}
		info, err := streamInfo(ctx, js, s.Name)
		if err != nil {
			return fmt.Errorf("backup: stream %s: %w", s.Name, err)
		}
		if info != nil && info.State.Msgs > 0 {
			kept = append(kept, fmt.Sprintf("%s (%d records)", s.Name, info.State.Msgs))
		}
	}
	switch {
	case len(kept) == 0:
		log.Warn("restoring into another cluster than the backup's; every stream of it that holds records is replaced",
			"backup_cluster_id", m.ClusterID, "cluster_id", id)
		return nil
	case allow:
		log.Warn("restoring into another cluster than the backup's, beside records of its own (allowed)",
			"backup_cluster_id", m.ClusterID, "cluster_id", id, "kept", strings.Join(kept, ", "))
		return nil
	}
	return fmt.Errorf("%w: it was taken from cluster %s and this is cluster %s, whose %s would be kept beside the "+
		"restored streams, which name accounts, keys and rooms they do not hold; restore into the cluster the backup "+
		"was taken from, replace those streams too (--replace), or allow it (--other-cluster) if it is meant "+
		"(nothing was deleted or restored)", ErrOtherCluster, m.ClusterID, id, strings.Join(kept, ", "))
}

// streamInfo returns a stream's info, or nil if it does not exist.
func streamInfo(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	for {
		// A stream electing a leader does not answer (the request waits
		// for its whole context): each ask gets streamInfoAttempt, and a
		// silent one is asked again while ctx lasts.
		actx, cancel := context.WithTimeout(ctx, streamInfoAttempt)
		st, err := js.Stream(actx, name)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, nil
		case err == nil:
			return st.CachedInfo(), nil
		case ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
			errors.Is(err, nats.ErrNoResponders)):
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		default:
			return nil, err
		}
	}
}

// streamInfoAttempt bounds one ask for a stream's state (an election takes
// 4-9 s; a stream with a leader answers in milliseconds).
const streamInfoAttempt = 2 * time.Second

// lookupAll finds each of names in the backup (lookup), once each.
func (m *Manifest) lookupAll(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		s, ok := m.lookup(n)
		if !ok {
			return nil, fmt.Errorf("backup: the backup has no stream %q (it has %s)", n, strings.Join(m.names(), ", "))
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

// lookup finds a stream of the backup by its NATS or Salamander name.
func (m *Manifest) lookup(name string) (string, bool) {
	for _, s := range m.Streams {
		for _, candidate := range []string{name, "SAL_" + name, "KV_" + name} {
			if strings.EqualFold(candidate, s.Name) {
				return s.Name, true
			}
		}
	}
	return "", false
}

func (m *Manifest) names() []string {
	var out []string
	for _, s := range m.Streams {
		out = append(out, s.Name)
	}
	return out
}

// standbysWithPartitions refuses to restore a standby without its
// partition when the partition, kept, places more of the standby's records
// (its merge records) than the backup's standby holds: every site would
// then stop at the first merge it cannot read, for good.
func standbysWithPartitions(ctx context.Context, restoring []Stream, mergedTo func(context.Context, string) (uint64, error)) error {
	for _, s := range restoring {
		name, backedUp := s.Name, s.LastSeq
		k, ok := strings.CutPrefix(name, "SAL_S")
		if !ok {
			continue
		}
		partition := "SAL_P" + k
		if slices.ContainsFunc(restoring, func(r Stream) bool { return r.Name == partition }) {
			continue
		}
		if mergedTo == nil {
			return fmt.Errorf("backup: %s would be restored without its partition %s; restore both", name, partition)
		}
		to, err := mergedTo(ctx, partition)
		if err != nil {
			return fmt.Errorf("backup: how far %s places %s's records: %w", partition, name, err)
		}
		if to > backedUp {
			return fmt.Errorf("backup: %s places %s's records up to %d, and the backup's %s ends at %d: restored alone, "+
				"the partition could not be read; restore %s with it (--replace)", partition, name, to, name, backedUp, partition)
		}
	}
	return nil
}
