//go:build linux

package jsstore_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// fileLimitChild names the environment variable that makes
// TestOwnCopyResumesAfterWriteErrors the child process holding the copy
// (its value: the URL of the parent's NATS server).
const fileLimitChild = "JSSTORE_TEST_FILE_LIMIT_NATS"

// A disk that refuses writes (full, or a file past the process's size
// limit) stops the site's own copy of the log from growing; once writes
// succeed again, the copy resumes by itself: it drops what it could not
// write, and the records it missed are read into it from the log, with no
// hole and without the tail delivering anything twice. The refusal is
// real: the kernel's file-size limit (RLIMIT_FSIZE) answers EFBIG past
// 64 KiB, in a child process (the limit counts for every file of a
// process, and the NATS server, in this one, writes files too).
func TestOwnCopyResumesAfterWriteErrors(t *testing.T) {
	if url := os.Getenv(fileLimitChild); url != "" {
		ownCopyUnderAFileSizeLimit(t, url)
		return
	}
	_, url := openStoreOn(t, "", "")
	cmd := exec.Command(os.Args[0], "-test.run=^TestOwnCopyResumesAfterWriteErrors$", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), fileLimitChild+"="+url)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("the child holding the copy: %v\n%s", err, out)
	}
	t.Logf("the child holding the copy:\n%s", out)
}

func ownCopyUnderAFileSizeLimit(t *testing.T, url string) {
	const limit = 64 << 10
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.Cur < 1<<30 {
		t.Skipf("file size limit already %d", saved.Cur)
	}
	var logs syncBuffer
	copyDir := t.TempDir()
	s, _ := openStoreWith(t, url, func(c *jsstore.Config) {
		c.CopyDir = copyDir
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	room := s.RoomStream("d_full")
	var delivered []uint64
	got := make(chan uint64, 4096)
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() {
		defer close(tailDone)
		s.Tail(tctx, room, 0, func(e jsstore.Entry) bool {
			got <- e.Pos.Seq
			return true
		})
	}()
	defer func() { stopTail(); <-tailDone }()
	sent := 0
	// send appends n records of ~200 bytes and waits until the tail has
	// delivered them.
	send := func(n int) {
		t.Helper()
		for range n {
			sent++
			rec := salamander.Record{Type: salamander.RecMessageSent, Room: "d_full", Text: textOf(sent)}
			if _, _, err := s.Append(ctx, room, "d_full", rec, jsstore.AppendOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		for len(delivered) < sent {
			select {
			case p := <-got:
				delivered = append(delivered, p)
			case <-ctx.Done():
				t.Fatalf("the tail delivered %d of %d records", len(delivered), sent)
			}
		}
	}
	// fetch reads every record sent and returns how many came from the
	// copy and how many from the replicas.
	fetch := func(s *jsstore.Store) (own, replicas int64) {
		t.Helper()
		own0, rep0 := s.Reads()
		recs, err := s.Fetch(ctx, room, delivered)
		if err != nil {
			t.Fatal(err)
		}
		for i, p := range delivered {
			if want := textOf(i + 1); recs[p].Text != want {
				t.Fatalf("position %d reads %q, want %q", p, recs[p].Text, want)
			}
		}
		own1, rep1 := s.Reads()
		return own1 - own0, rep1 - rep0
	}

	send(100) // ~20 KB
	if own, replicas := fetch(s); own != 100 || replicas != 0 {
		t.Fatalf("before the limit: %d records from the copy, %d from the replicas", own, replicas)
	}
	lowered := saved
	lowered.Cur = limit
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lowered); err != nil {
		t.Fatal(err)
	}
	send(400) // ~80 KB more: the copy cannot hold them
	own, replicas := fetch(s)
	if replicas == 0 {
		t.Fatalf("the copy grew past the file size limit: %d records from it", own)
	}
	t.Logf("under the limit: %d records from the copy, %d from the replicas", own, replicas)
	// Retries while the disk still refuses fail, quietly.
	for start := time.Now(); !strings.Contains(logs.String(), "cannot grow yet"); {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("no retry within 10 s under the limit:\n%s", logs.String())
		}
		send(5)
		time.Sleep(50 * time.Millisecond)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &saved); err != nil {
		t.Fatal(err)
	}
	// Writes succeed again: the copy catches up by itself, while records
	// keep coming (and while none do).
	send(20)
	deadline := time.Now().Add(20 * time.Second)
	for {
		own, replicas := fetch(s)
		if replicas == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("20 s after writes succeed again, %d records still come from the replicas (%d from the copy)\nlog:\n%s",
				replicas, own, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, p := range delivered {
		if p != jsstore.PositionOf(room, uint64(i+1), 0).Seq {
			t.Fatalf("the tail delivered %d as entry %d: a record twice, or one left out", p, i)
		}
	}
	if n := strings.Count(logs.String(), "stopped growing"); n != 1 {
		t.Errorf("the copy's stop logged %d times, want once:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "growing again"); n != 1 {
		t.Errorf("the copy's resumption logged %d times, want once:\n%s", n, logs.String())
	}
	// What the copy holds on disk is whole: a restart reads every record
	// from it.
	stopTail()
	<-tailDone
	s.Close()
	restarted, _ := openStoreOn(t, url, copyDir)
	if own, replicas := fetch(restarted); own != int64(sent) || replicas != 0 {
		t.Fatalf("after a restart: %d records from the copy, %d from the replicas; want %d and 0", own, replicas, sent)
	}
}

func textOf(i int) string { return fmt.Sprintf("text %d %s", i, strings.Repeat("x", 190)) }
