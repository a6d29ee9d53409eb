package faultlink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"
)

// echoServer accepts connections on loopback and echoes every line back;
// it is closed by t.Cleanup.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { _, _ = io.Copy(c, c) })
		}
	})
	return ln.Addr().String()
}

// roundTrip writes line to c and reads the echo, waiting at most d.
func roundTrip(c net.Conn, r *bufio.Reader, line string, d time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(d))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	got, err := r.ReadString('\n')
	if len(got) > 0 {
		got = got[:len(got)-1]
	}
	return got, err
}

// TestSilentCut checks what a silent cut looks like to both ends:
// the connection stays open but nothing arrives; a new connection is
// accepted and hangs; on heal the held bytes arrive on the same
// connection, the new one goes through, and a connection closed during the
// cut has its close delivered only then.
func TestSilentCut(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	dial := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", p.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	c, r := dial()
	if got, err := roundTrip(c, r, "before", 5*time.Second); err != nil || got != "before" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}

	p.CutSilently()
	// Nothing comes back, and the connection is not closed: the read times
	// out rather than failing.
	if _, err := roundTrip(c, r, "during", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("during a silent cut: %v, want a timeout", err)
	}
	late, lateR := dial() // accepted, then hangs
	if _, err := roundTrip(late, lateR, "late", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a connection made during a silent cut: %v, want a timeout", err)
	}
	gone, _ := dial()
	gone.Close() // gives up during the cut: it must never reach the target
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	tracked := func(n int) error {
		for {
			p.mu.Lock()
			got := len(p.conns)
			p.mu.Unlock()
			if got == n {
				return nil
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%d connections tracked, want %d", got, n)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
	// c and its upstream, and late (not dialed yet); gone was dropped.
	if err := tracked(3); err != nil {
		t.Fatalf("connections tracked during the cut: %v", err)
	}

	p.Heal()
	// The held line arrives on the same connection, then the new one.
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := r.ReadString('\n'); err != nil || got != "during\n" {
		t.Fatalf("after the heal, the held bytes: %q, %v", got, err)
	}
	if got, err := roundTrip(c, r, "after", 5*time.Second); err != nil || got != "after" {
		t.Fatalf("after the heal: %q, %v", got, err)
	}
	late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := lateR.ReadString('\n'); err != nil || got != "late\n" {
		t.Fatalf("after the heal, the connection made during the cut: %q, %v", got, err)
	}
	if err := tracked(4); err != nil {
		t.Fatalf("connections tracked after the heal (c, late and their upstreams): %v", err)
	}

	// Connections closed during a cut are closed through once it heals.
	p.CutSilently()
	late.Close()
	if _, err := io.WriteString(c, "held\n"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	p.Heal()
	if err := tracked(0); err != nil {
		t.Errorf("connections closed during the cut were not closed through after the heal: %v", err)
	}
}

// TestClosingCut checks the clean cut: connections closed at once,
// new ones refused until the heal.
func TestClosingCut(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	if got, err := roundTrip(c, r, "x", 5*time.Second); err != nil || got != "x" {
		t.Fatalf("before the cut: %q, %v", got, err)
	}
	p.CutClosing()
	if _, err := roundTrip(c, r, "y", 5*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after a close cut: %v, want the connection closed", err)
	}
	p.Heal()
	c2, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got, err := roundTrip(c2, bufio.NewReader(c2), "z", 5*time.Second); err != nil || got != "z" {
		t.Fatalf("after the heal: %q, %v", got, err)
	}
}
