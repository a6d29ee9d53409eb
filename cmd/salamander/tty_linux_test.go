//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
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

// The chat's /password reads its three answers at a terminal without
// echoing them (what is typed before it, "/password" itself, is echoed as
// ever), and gives the echo back afterwards.
func TestChatPasswordPromptsDoNotEcho(t *testing.T) {
	master, slave := openPTY(t)
	echo := func() bool {
		tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
		if err != nil {
			t.Fatal(err)
		}
		return tio.Lflag&unix.ECHO != 0
	}
	var shown syncBuffer // what the terminal shows of what is typed
	go func() { _, _ = io.Copy(&shown, master) }()

	site := fakesite.New(fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"}, Password: "correct horse"})
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- runChat(ctx, []string{"--sites", srv.URL, "--user", "mina", "--password", "correct horse"}, slave, &out, io.Discard)
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("%s: never; the chat printed:\n%s\nthe terminal showed:\n%s", what, out.String(), shown.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("live", func() bool { return strings.Contains(out.String(), "(live at") })
	type_ := func(line string) {
		if _, err := master.WriteString(line + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	type_("/password")
	waitFor("the first prompt, the echo off", func() bool { return strings.Contains(out.String(), "current password: ") && !echo() })
	type_("correct horse")
	type_("a brand new password")
	type_("a brand new password")
	waitFor("the change", func() bool { return strings.Contains(out.String(), "password changed") })
	if !echo() {
		t.Error("the terminal was left without echo")
	}
	type_("/quit")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := shown.String(); !strings.Contains(s, "/password") || strings.Contains(s, "correct horse") || strings.Contains(s, "brand new") {
		t.Errorf("the terminal showed %q: want /password, and no password", s)
	}
	if n := site.Changes(); n != 1 {
		t.Errorf("%d changes reached the site, want 1", n)
	}
}

// Without --password or SALAMANDER_PASSWORD, chat at a terminal asks for
// the password at a prompt that does not echo (twice for --signup, and
// two that differ make no account); it refused to start instead, and a
// password on the command line is in every user's process list.
func TestChatAsksForThePasswordAtATerminal(t *testing.T) {
	t.Setenv("SALAMANDER_PASSWORD", "")
	site := fakesite.New(fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"}, Password: "correct horse"})
	var mu sync.Mutex
	var sent []string // the passwords the site was given, by path
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/login" || r.URL.Path == "/v1/signup" {
			body, _ := io.ReadAll(r.Body)
			var req struct{ Password string }
			_ = json.Unmarshal(body, &req)
			mu.Lock()
			sent = append(sent, r.URL.Path+" "+req.Password)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		site.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	// run runs chat with args, types each of typed after a prompt of its
	// own, and, if live (the chat signs in), quits once it is live.
	run := func(t *testing.T, args []string, live bool, typed ...string) (out, prompts, shown string, err error) {
		master, slave := openPTY(t)
		var shownBuf syncBuffer // what the terminal shows of what is typed
		go func() { _, _ = io.Copy(&shownBuf, master) }()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		var outBuf, errBuf syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- runChat(ctx, append([]string{"--sites", srv.URL, "--user", "mina"}, args...), slave, &outBuf, &errBuf)
		}()
		promptsShown := func() int {
			return strings.Count(errBuf.String(), "password for mina: ") + strings.Count(errBuf.String(), "again: ")
		}
		for i, line := range typed {
			for promptsShown() <= i {
				if ctx.Err() != nil {
					t.Fatalf("no prompt for %q; stderr: %q", line, errBuf.String())
				}
				time.Sleep(10 * time.Millisecond)
			}
			if _, err := master.WriteString(line + "\n"); err != nil {
				t.Fatal(err)
			}
		}
		if live {
			for !strings.Contains(outBuf.String(), "(live at") {
				if ctx.Err() != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			_, _ = master.WriteString("/quit\n")
		}
		err = <-done
		return outBuf.String(), errBuf.String(), shownBuf.String(), err
	}

	out, prompts, shown, err := run(t, nil, true, "correct horse")
	if err != nil || !strings.Contains(out, "signed in as mina") {
		t.Fatalf("signing in at the prompt: %v\n%s", err, out)
	}
	if !strings.Contains(prompts, "password for mina: ") || strings.Contains(shown, "correct horse") {
		t.Errorf("prompts %q; the terminal showed %q: want the prompt, and no password", prompts, shown)
	}

	if _, prompts, _, err = run(t, []string{"--signup"}, false, "a new one", "a typo"); err == nil ||
		!strings.Contains(err.Error(), "differ") || !strings.Contains(prompts, "again: ") {
		t.Errorf("two different passwords at --signup: %v (prompts %q)", err, prompts)
	}
	if _, _, _, err = run(t, []string{"--signup"}, true, "a new one", "a new one"); err != nil {
		t.Errorf("the same password twice at --signup: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"/v1/login correct horse", "/v1/signup a new one"}; !slices.Equal(sent, want) {
		t.Errorf("the site was given %q, want %q", sent, want)
	}
}
