package backup_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander/internal/backup"
)

// editManifest replaces the first old after the stream's entry in the
// backup's manifest (the settings are not covered by the checksums), and
// returns a function that puts the manifest back.
func editManifest(t *testing.T, dir, stream, old, new string) (undo func()) {
	t.Helper()
	mf := filepath.Join(dir, backup.ManifestFile)
	orig, err := os.ReadFile(mf)
	if err != nil {
		t.Fatal(err)
	}
	at := 0
	if stream != "" {
		at = bytes.Index(orig, []byte(`"name": "`+stream+`"`))
		if at < 0 {
			t.Fatalf("no %s in the manifest", stream)
		}
	}
	edited := append(bytes.Clone(orig[:at]), bytes.Replace(orig[at:], []byte(old), []byte(new), 1)...)
	if bytes.Equal(edited, orig) {
		t.Fatalf("no %s in the manifest's %s", old, stream)
	}
	if err := os.WriteFile(mf, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := os.WriteFile(mf, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// writtenSince publishes a record to SAL_P1 after the backup, so that only
// --replace restores it, and returns the stream's state.
func writtenSince(t *testing.T, ctx context.Context, js jetstream.JetStream) jetstream.StreamState {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, "sal.p1.backup-test-since", []byte("written after the backup")); err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "SAL_P1")
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State
}

func unchanged(t *testing.T, ctx context.Context, js jetstream.JetStream, before jetstream.StreamState) {
	t.Helper()
	st, err := js.Stream(ctx, "SAL_P1")
	if err != nil {
		t.Fatalf("SAL_P1 after a refused restore: %v", err)
	}
	if after := st.CachedInfo().State; after.LastSeq != before.LastSeq || after.Msgs != before.Msgs {
		t.Fatalf("SAL_P1 changed by a refused restore: %+v, was %+v", after, before)
	}
}

// A restore that the cluster would refuse — its nats-server older than the
// backup's, or the backup's settings refused (more replicas than the
// cluster has servers, an API level above its own) — is refused before
// anything is deleted: --replace
// deleted the stream first, and a refused upload then left it gone. Once
// nothing refuses, --replace replaces it, and the streams made to try the
// settings are gone.
func TestRestoreAsksWhatCanRefuseItBeforeDeleting(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	js := newJS(t)
	dir, m := takeBackup(t, ctx)
	before := writtenSince(t, ctx, js)
	replace := backup.RestoreOptions{Replace: []string{"p1"}, MergedTo: mergedTo}

	undo := editManifest(t, dir, "", `"server_version": "`+m.ServerVersion+`"`, `"server_version": "99.0.0"`)
	_, err := backup.Restore(ctx, adminNC, dir, replace)
	if !errors.Is(err, backup.ErrServerTooOld) || !strings.Contains(err.Error(), "99.0.0") {
		t.Fatalf("restore of a backup from a newer nats-server: %v", err)
	}
	t.Log(err)
	unchanged(t, ctx, js, before)
	undo()

	undo = editManifest(t, dir, "SAL_P1", `"num_replicas": 3`, `"num_replicas": 5`)
	_, err = backup.Restore(ctx, adminNC, dir, replace)
	if !errors.Is(err, backup.ErrRefused) || !strings.Contains(err.Error(), "SAL_P1") {
		t.Fatalf("restore of settings the cluster refuses: %v", err)
	}
	t.Log(err)
	unchanged(t, ctx, js, before)
	undo()

	// A configuration that needs a JetStream API level above the server's
	// (one written by a newer server).
	undo = editManifest(t, dir, "SAL_P1", `"_nats.req.level": "0"`, `"_nats.req.level": "99"`)
	_, err = backup.Restore(ctx, adminNC, dir, replace)
	if !errors.Is(err, backup.ErrRefused) || !strings.Contains(err.Error(), "SAL_P1") {
		t.Fatalf("restore of settings that need a newer server: %v", err)
	}
	t.Log(err)
	unchanged(t, ctx, js, before)
	undo()

	out, err := backup.Restore(ctx, adminNC, dir, replace)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range out {
		if o.Stream == "SAL_P1" && (!o.Restored || !o.Replaced || o.LastSeq != manifestStream(t, m, "SAL_P1").LastSeq) {
			t.Fatalf("SAL_P1 not replaced: %+v", o)
		}
	}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, "SAL_RESTORE_CHECK") {
			t.Fatalf("a stream made to try settings is left: %s", name)
		}
	}
	if names.Err() != nil {
		t.Fatal(names.Err())
	}
}

// A backup taken before the backup decoded its snapshots may hold one cut
// short (its last chunks lost on the way) that its manifest's size and
// checksum vouch for: the restore decodes every snapshot it will use and
// refuses it before anything is deleted. The server refused its upload
// after --replace had deleted the stream.
func TestRestoreRefusesASnapshotCutShortBeforeDeleting(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	js := newJS(t)
	dir, m := takeBackup(t, ctx)
	before := writtenSince(t, ctx, js)
	p1 := manifestStream(t, m, "SAL_P1")
	file := filepath.Join(dir, p1.File)
	whole, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// Cut short, with the size and checksum of what is left, as the
	// backup wrote them of what arrived.
	cut := whole[:len(whole)*2/3]
	if err := os.WriteFile(file, cut, 0o600); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cut)
	undoSize := editManifest(t, dir, "SAL_P1", fmt.Sprintf(`"bytes": %d,`, p1.Bytes), fmt.Sprintf(`"bytes": %d,`, len(cut)))
	undoSum := editManifest(t, dir, "SAL_P1", p1.SHA256, hex.EncodeToString(sum[:]))
	_, err = backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{Replace: []string{"p1"}, MergedTo: mergedTo})
	if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "not whole") {
		t.Fatalf("restore of a snapshot cut short: %v", err)
	}
	t.Log(err)
	unchanged(t, ctx, js, before)
	undoSum()
	undoSize()
	if err := os.WriteFile(file, whole, 0o600); err != nil {
		t.Fatal(err)
	}
}

// onLog is a slog handler that hands every record's message and attributes
// to f: a test's hook into the restore's progress.
type onLog struct {
	f func(msg string, attrs map[string]string)
}

func (h onLog) Enabled(context.Context, slog.Level) bool { return true }
func (h onLog) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h onLog) WithGroup(string) slog.Handler            { return h }
func (h onLog) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]string{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
	h.f(r.Message, attrs)
	return nil
}

// A snapshot file changed after the restore checked it (here: replaced by
// another backup's snapshot of the same stream, once the stream before it
// is restored, or a bit of it flipped) is not restored: what is uploaded
// is hashed as it goes, the upload is not finished, and the stream it was
// making is deleted. It restored the other file, and the stream then held
// records the backup does not.
func TestRestoreUploadsOnlyTheBytesItChecked(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	js := newJS(t)
	dir, m := takeBackup(t, ctx)
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err := js.Publish(pctx, "sal.p2.backup-test-since", []byte("written after the first backup"))
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	later, _ := takeBackup(t, ctx)
	p2 := manifestStream(t, m, "SAL_P2")
	file := filepath.Join(dir, p2.File)
	checked, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(later, p2.File))
	if err != nil {
		t.Fatal(err)
	}
	deleteStream(t, ctx, js, "SAL_P2")

	// Another valid snapshot (which the server would take), and a bit
	// flipped (which it refuses part way).
	flipped := bytes.Clone(checked)
	flipped[len(flipped)/2] ^= 1
	for _, changed := range [][]byte{other, flipped} {
		var swapped atomic.Bool
		log := slog.New(onLog{func(msg string, attrs map[string]string) {
			if msg == "stream restored" && attrs["stream"] == "SAL_P0" {
				if err := os.WriteFile(file, changed, 0o600); err != nil {
					t.Error(err)
				}
				swapped.Store(true)
			}
		}})
		deleteStream(t, ctx, js, "SAL_P0")
		out, err := backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{Streams: []string{"p0", "p2"}, Logger: log})
		if !swapped.Load() {
			t.Fatalf("SAL_P0 was not restored first: %+v %v", out, err)
		}
		if !errors.Is(err, backup.ErrCorrupt) || !strings.Contains(err.Error(), "changed since it was checked") {
			t.Fatalf("restore from a file changed after its check: %v", err)
		}
		t.Log(err)
		if _, err := js.Stream(ctx, "SAL_P2"); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("SAL_P2 after an upload of bytes that were not checked: %v", err)
		}
		if err := os.WriteFile(file, checked, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	out, err := backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{Streams: []string{"p2"}})
	if err != nil || len(out) != 1 || !out[0].Restored || out[0].LastSeq != p2.LastSeq {
		t.Fatalf("restore of SAL_P2 with its file put back: %+v %v", out, err)
	}
}

// A backup restored into another cluster than the one it was taken from
// (their buckets' ids differ) that would keep records of its own beside
// the backup's streams is refused, changing nothing, unless allowed: those
// records would name accounts and rooms the backup's streams do not hold.
// Into a cluster set up afresh (its bucket with an id of its own, its
// accounts stream written, its partitions empty) everything is restored
// as before, with --replace acct,SAL_CLUSTER: nothing of it is kept.
// Runs last of the cluster's tests: it changes the cluster's id (each
// site raises its log alarm) and its streams.
func TestRestoreTellsAnotherCluster(t *testing.T) {
	ctx := testCtx(t, 3*time.Minute)
	js := newJS(t)
	kv, err := js.KeyValue(ctx, "SAL_CLUSTER")
	if err != nil {
		t.Fatal(err)
	}
	id, err := kv.Get(ctx, "cluster-id")
	if err != nil {
		t.Fatal(err)
	}
	dir, m := takeBackup(t, ctx)
	if m.ClusterID == "" || m.ClusterID != string(id.Value()) {
		t.Fatalf("the manifest's cluster id %q, the cluster's %q", m.ClusterID, id.Value())
	}

	// Another cluster, holding records, with SAL_P1 missing: the backup is
	// made to name another cluster than this one (SAL_CLUSTER keeps the
	// first value of each key, so this cluster's id stays).
	undoOther := editManifest(t, dir, "", `"cluster_id": "`+m.ClusterID+`",`, `"cluster_id": "another-cluster",`)
	deleteStream(t, ctx, js, "SAL_P1")
	_, err = backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{MergedTo: mergedTo})
	if !errors.Is(err, backup.ErrOtherCluster) || !strings.Contains(err.Error(), "SAL_ACCT (") {
		t.Fatalf("restore into another cluster that holds records: %v", err)
	}
	t.Log(err)
	if _, err := js.Stream(ctx, "SAL_P1"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("a refused restore created SAL_P1: %v", err)
	}
	out, err := backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{MergedTo: mergedTo, OtherCluster: true})
	if err != nil || len(out) != len(m.Streams) {
		t.Fatalf("restore into another cluster, allowed: %+v %v", out, err)
	}
	undoOther()
	// A backup taken before the manifest named its cluster restores as it
	// did: there is nothing to compare.
	deleteStream(t, ctx, js, "SAL_P1")
	undo := editManifest(t, dir, "", `"cluster_id": "`+m.ClusterID+`",`, "")
	out, err = backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{MergedTo: mergedTo})
	if err != nil || len(out) != len(m.Streams) {
		t.Fatalf("restore of a backup that does not name its cluster: %+v %v", out, err)
	}
	undo()

	// A cluster set up afresh: its own id, its accounts stream written,
	// every other stream empty.
	for _, s := range m.Streams {
		deleteStream(t, ctx, js, s.Name)
	}
	fresh, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "SAL_CLUSTER", Replicas: 3, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	for key, value := range map[string]string{"partitions": "3", "cluster-id": "a-fresh-cluster"} {
		if _, err := fresh.PutString(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range m.Streams[1:] {
		var cfg jetstream.StreamConfig
		if err := json.Unmarshal(s.Config, &cfg); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.Publish(ctx, "sal.acct.backup-test-set-up", []byte("written by the fresh cluster's set-up")); err != nil {
		t.Fatal(err)
	}
	out, err = backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{Replace: []string{"acct", "SAL_CLUSTER"}, MergedTo: mergedTo})
	if err != nil {
		t.Fatalf("restore into a cluster set up afresh: %v", err)
	}
	for _, o := range out {
		if want := manifestStream(t, m, o.Stream); want.Records > 0 && !o.Restored {
			t.Fatalf("restore into a cluster set up afresh: %+v", o)
		}
	}
	kv, err = js.KeyValue(ctx, "SAL_CLUSTER")
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "cluster-id"); err != nil || string(e.Value()) != m.ClusterID {
		t.Fatalf("the restored cluster's id: %v %v, want the backup's %s", e, err, m.ClusterID)
	}
}

// A backup taken before the cluster bucket kept the first value of each
// key (its settings, restored as written, let any gateway credential
// overwrite the partition count or the cluster id, or wipe them with a
// rollup) restores a bucket that keeps them, as the admin CLI makes an
// older one: restored as it was, it stayed open to the gateways until an
// operator thought of running an admin command.
func TestRestoreMakesAnOlderClusterBucketWrittenOnce(t *testing.T) {
	ctx := testCtx(t, 2*time.Minute)
	js := newJS(t)
	dir, _ := takeBackup(t, ctx)
	// The bucket's settings as an older version made them (a plain
	// key-value bucket).
	editManifest(t, dir, "KV_SAL_CLUSTER", `"deny_purge": true`, `"deny_purge": false`)
	editManifest(t, dir, "KV_SAL_CLUSTER", `"allow_rollup_hdrs": false`, `"allow_rollup_hdrs": true`)
	editManifest(t, dir, "KV_SAL_CLUSTER", `"discard_new_per_subject": true`, `"discard_new_per_subject": false`)
	out, err := backup.Restore(ctx, adminNC, dir, backup.RestoreOptions{Streams: []string{"SAL_CLUSTER"},
		Replace: []string{"SAL_CLUSTER"}, MergedTo: mergedTo})
	if err != nil || len(out) != 1 || !out[0].Restored {
		t.Fatalf("restore of the bucket: %+v %v", out, err)
	}
	st, err := js.Stream(ctx, "KV_SAL_CLUSTER")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := st.CachedInfo().Config; cfg.AllowRollup || !cfg.DenyPurge || !cfg.DenyDelete || !cfg.DiscardNewPerSubject ||
		cfg.MaxMsgsPerSubject != 1 || cfg.Discard != jetstream.DiscardNew {
		t.Fatalf("the restored bucket: rollups %v, deny purge %v, deny delete %v, discard new per subject %v, "+
			"max per subject %d, discard %v", cfg.AllowRollup, cfg.DenyPurge, cfg.DenyDelete, cfg.DiscardNewPerSubject,
			cfg.MaxMsgsPerSubject, cfg.Discard)
	}
	if _, err := js.Publish(ctx, "$KV.SAL_CLUSTER.partitions", []byte("1")); err == nil {
		t.Fatal("the restored bucket took a new partition count")
	}
}
