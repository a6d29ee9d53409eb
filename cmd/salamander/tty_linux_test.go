//go:build linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal pair, or skips the test where there is
// none.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// A Ctrl-C at a hidden prompt (admin set-password's) ends the process with
// the terminal's echo back on: it was left off, its user typing blind.
func TestAnInterruptedHiddenPromptGivesTheEchoBack(t *testing.T) {
	if os.Getenv("SALAMANDER_TEST_READ_HIDDEN") == "1" {
		_, err := readHidden(os.Stdin)
		fmt.Fprintln(os.Stderr, "readHidden returned:", err)
		os.Exit(3)
	}
	_, slave := openPTY(t)
	echo := func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag&unix.ECHO != 0
	}
	if !echo() {
		t.Fatal("the new terminal does not echo")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestAnInterruptedHiddenPromptGivesTheEchoBack$")
	cmd.Env = append(os.Environ(), "SALAMANDER_TEST_READ_HIDDEN=1")
	cmd.Stdin = slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for echo() { // the prompt turned it off
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("the prompt never turned the echo off")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 128+int(syscall.SIGINT) {
		t.Fatalf("the prompt's process ended with %v, want exit status %d", err, 128+int(syscall.SIGINT))
	}
	if !echo() {
		t.Fatal("the terminal was left without echo")
	}
}
