package backup_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
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
