//go:build unix

package view

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// A database that cannot be opened for a reason outside it (here no file
// descriptor left: EMFILE, as a full disk, a lock held elsewhere or a
// failing read are too) is left as it is, and Open fails: the next start
// finds the read model where it was. It was deleted as if it were
// corrupt, and a moment's shortage cost a rebuild from the whole log (and
// of the own copy with it: a read model that starts from scratch empties
// the copy), read from the other sites.
func TestOpenKeepsAModelItCannotOpenForNow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "view.db")
	v := openAt(t, path)
	log := &memLog{}
	apply(t, v, log, history())
	v.src = log
	before := state(t, v)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}

	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd to count open files by:", err)
	}
	low := lim
	low.Cur = uint64(len(fds)) // none left for the database's files
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path, nil)
	if rerr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		w.Close()
		t.Fatal("opened a database with no file descriptor left")
	}
	t.Logf("open without a file descriptor: %v", err)

	again := openAt(t, path)
	defer again.Close()
	again.src = log
	if after := state(t, again); after != before {
		t.Fatalf("the read model was lost to an open that failed for want of a file descriptor:\n%s\nwas\n%s", after, before)
	}
}

// A database of another schema version, or one that is not a read model
// (its tables clash with the schema), is deleted and rebuilt.
func TestOpenRebuildsAnotherSchema(t *testing.T) {
	for name, sql := range map[string]string{
		"older version": "PRAGMA user_version = 15",
		"foreign":       "PRAGMA user_version = 0; CREATE TABLE IF NOT EXISTS x(y)",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "view.db")
			v := openAt(t, path)
			apply(t, v, &memLog{}, history())
			if _, err := v.w.Exec(sql); err != nil {
				t.Fatal(err)
			}
			v.Close()
			w := openAt(t, path)
			defer w.Close()
			if len(w.Applied()) != 0 {
				t.Fatalf("a read model of %s was kept: applied %v", name, w.Applied())
			}
		})
	}
}
