package integration

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// chatProc is a running `salamander chat` with its stdin and a line reader.
type chatProc struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string
}

func startChat(t *testing.T, site int, user string, signup bool) *chatProc {
	t.Helper()
	sites := []string{cluster.URL(site)}
	for i := 0; i < 3; i++ {
		if i != site {
			sites = append(sites, cluster.URL(i))
		}
	}
	args := []string{"chat", "--sites", strings.Join(sites, ","), "--user", user}
	if signup {
		args = append(args, "--signup")
	}
	cmd := exec.Command(salamanderBin, args...)
	cmd.Env = append(cmd.Environ(), "SALAMANDER_PASSWORD=correct horse battery")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &chatProc{cmd: cmd, in: in, lines: make(chan string, 1000)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func (p *chatProc) say(t *testing.T, line string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.in, line); err != nil {
		t.Fatal(err)
	}
}

// expect waits for an output line containing want.
func (p *chatProc) expect(t *testing.T, want string, d time.Duration) string {
	t.Helper()
	timeout := time.After(d)
	var seen []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("chat exited before printing %q; printed:\n%s", want, strings.Join(seen, "\n"))
			}
			seen = append(seen, l)
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no line with %q within %s; printed:\n%s", want, d, strings.Join(seen, "\n"))
		}
	}
}

// Two people chat through `salamander chat` at different sites.
func TestChatCLI(t *testing.T) {
	alice, bob := uniqueName("clia"), uniqueName("clib")
	a := startChat(t, 0, alice, true)
	b := startChat(t, 2, bob, true)
	// Both live streams are up before anyone speaks: a message committed
	// before alice's socket is ready is an earlier message (counted, not
	// printed), not a live one.
	a.expect(t, "(live at", 30*time.Second)
	b.expect(t, "(live at", 30*time.Second)
	b.say(t, "/dm "+alice)
	b.say(t, "hello from the terminal")
	line := a.expect(t, "hello from the terminal", 30*time.Second)
	if !strings.Contains(line, bob) {
		t.Fatalf("line lacks the sender: %q", line)
	}
	a.say(t, "/dm "+bob)
	a.say(t, "hi back")
	b.expect(t, "hi back", 30*time.Second)
	b.say(t, "/site")
	b.expect(t, cluster.URL(2), 10*time.Second)
	a.say(t, "/quit")
}

// An operator revokes a user through any site's NATS server; every site
// then rejects all of that user's tokens, and the user can log in again.
func TestAdminRevokeUser(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c, name := signedUp(t, 0, "adm")
	tok := c.Token()
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.Site(1).Node().ClientURL(),
		"--creds", cluster.AdminFile(), "revoke-user", name).CombinedOutput()
	if err != nil {
		t.Fatalf("admin revoke-user: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "revoked every session of "+name) {
		t.Fatalf("admin said: %s", out)
	}
	for i := 0; i < 3; i++ {
		checkFor(t, 10*time.Second, 20*time.Millisecond, func() error {
			if r := raw(t, i, "GET", "/v1/me", tok, "", nil); r.status != 401 {
				return fmt.Errorf("site %d still accepts the revoked token: %d", i, r.status)
			}
			return nil
		})
	}
	if _, err := c.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.Site(2).Node().ClientURL(),
		"--creds", cluster.AdminFile(), "leaders").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "acct") {
		t.Fatalf("admin leaders: %v\n%s", err, out)
	}
}
