package view

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// keyEntries numbers signing-key records as entries of the accounts
// stream, from 1, one a minute from a fixed time (or at the time given).
type keyEntries struct {
	seq uint64
	at  time.Time
}

func newKeyEntries() *keyEntries {
	return &keyEntries{at: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
}

func (l *keyEntries) rec(id, key string, rotate bool) jsstore.Entry {
	l.at = l.at.Add(time.Minute)
	return l.recAt(l.at, id, key, rotate)
}

func (l *keyEntries) recAt(at time.Time, id, key string, rotate bool) jsstore.Entry {
	l.seq++
	r := salamander.Record{Type: salamander.RecSigningKey, At: at, KeyID: id, Rotate: rotate}
	if key != "" {
		r.Key = []byte(key)
	}
	return jsstore.Entry{Pos: salamander.Position{Stream: "acct", Seq: l.seq}, Record: r}
}

func applyKeys(t *testing.T, v *View, entries ...jsstore.Entry) {
	t.Helper()
	if err := v.applyBatch(entries); err != nil {
		t.Fatal(err)
	}
}

func currentKeyID(t *testing.T, v *View) string {
	t.Helper()
	k, ok := v.CurrentKey()
	if !ok {
		t.Fatal("no current key")
	}
	return k.ID
}

// Once the log holds a sealed key, a record of a key without an id (not
// sealed) changes nothing, rotation or not: a credential that may append
// to the log but cannot seal cannot install a key it knows.
func TestUnsealedKeyRecordsAfterASealedKeyChangeNothing(t *testing.T) {
	v := openTemp(t)
	l := newKeyEntries()
	applyKeys(t, v, l.rec("k1", "sealed k1", false))
	applyKeys(t, v, l.rec("", "a key the appender knows", true), l.rec("", "another", false))
	if id := currentKeyID(t, v); id != "k1" {
		t.Fatalf("current key %q after unsealed key records, want k1", id)
	}
	if k, ok := v.KeyByID(""); ok {
		t.Fatalf("an unsealed key was taken: %+v", k)
	}
	if k, _ := v.KeyByID("k1"); !k.Retired.IsZero() {
		t.Fatalf("k1 retired by an unsealed key: %+v", k)
	}
}

// A deployment from before keys were sealed keeps its plain first key
// current until a rotation to a sealed one; no rotation goes back to a
// plain key.
func TestAPlainFirstKeyRotatesOnlyToASealedOne(t *testing.T) {
	v := openTemp(t)
	l := newKeyEntries()
	applyKeys(t, v, l.rec("", "plain", false))
	if id := currentKeyID(t, v); id != "" {
		t.Fatalf("current key %q, want the plain first key", id)
	}
	applyKeys(t, v, l.rec("k2", "sealed k2", true))
	applyKeys(t, v, l.rec("", "plain again", true))
	if id := currentKeyID(t, v); id != "k2" {
		t.Fatalf("current key %q, want k2", id)
	}
	if k, ok := v.KeyByID(""); !ok || string(k.Sealed) != "plain" || k.Retired.IsZero() || k.Revoked() {
		t.Fatalf("the plain first key %+v, want it retired (not revoked)", k)
	}
}

// rotate-key --revoke-previous appends a rotation, then a record naming
// the new key with no key material: every key made current before it is
// revoked, at every site alike and across a restart. Another rotation may
// land between the two records (a second operator's rotate-key, or a
// stolen gateway credential that watches the log's commits and appends a
// key of its own): the keys before the named one are revoked all the same,
// and the later ones are not — the command says every earlier key is
// revoked, and after a leak the leaked key must be.
func TestRevokePreviousRevokesEveryOtherKeyAndSurvivesARestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	l := newKeyEntries()
	entries := []jsstore.Entry{
		l.rec("k1", "sealed k1", false),
		l.rec("k2", "sealed k2", true),
		l.rec("k3", "sealed k3", true),
		l.rec("k2", "", true), // names a key retired by a rotation that landed first: k1 is revoked, k3 is not
	}
	applyKeys(t, v, entries...)
	if k, _ := v.KeyByID("k1"); !k.Revoked() {
		t.Fatalf("k1 %+v not revoked by a revocation naming k2, made current after it", k)
	}
	if k, _ := v.KeyByID("k2"); k.Revoked() || k.Retired.IsZero() {
		t.Fatalf("k2 %+v, want retired by k3, not revoked", k)
	}
	if cur, _ := v.CurrentKey(); cur.ID != "k3" || cur.Revoked() {
		t.Fatalf("current key %+v, want k3", cur)
	}
	revoke := l.rec("k3", "", true)
	applyKeys(t, v, revoke)
	check := func(v *View, when string) {
		t.Helper()
		for _, id := range []string{"k1", "k2"} {
			if k, ok := v.KeyByID(id); !ok || !k.Revoked() {
				t.Errorf("%s: key %s %+v, want revoked", when, id, k)
			}
		}
		if cur, _ := v.CurrentKey(); cur.ID != "k3" || !cur.Retired.IsZero() || cur.Revoked() {
			t.Errorf("%s: current key %+v, want k3", when, cur)
		}
	}
	check(v, "applied")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v = openAt(t, path)
	defer v.Close()
	check(v, "after a restart")

	// The same log applied record by record, with redeliveries, at another
	// site: the same keys.
	other := openTemp(t)
	all := append(entries, revoke)
	for i := range all {
		applyKeys(t, other, all[:i+1]...)
	}
	check(other, "at another site")
}

// A key is retired at its successor's record time, never before its own
// creation (a rotation dated by a clock behind); a key record without a
// time changes nothing.
func TestKeyRetirementIsDatedByTheLog(t *testing.T) {
	v := openTemp(t)
	l := newKeyEntries()
	first := l.rec("k1", "sealed k1", false)
	applyKeys(t, v, first)
	applyKeys(t, v, l.recAt(time.Time{}, "k2", "sealed k2", true))
	if id := currentKeyID(t, v); id != "k1" {
		t.Fatalf("a rotation without a time made %q current", id)
	}
	applyKeys(t, v, l.recAt(first.Record.At.Add(-time.Hour), "k3", "sealed k3", true))
	if k, _ := v.KeyByID("k1"); !k.Retired.Equal(first.Record.At) {
		t.Fatalf("k1 retired at %v, want its creation %v", k.Retired, first.Record.At)
	}
}
