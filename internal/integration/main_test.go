// Package integration tests Salamander end to end: one three-site cluster
// (real embedded NATS servers, real read models, real HTTP and WebSocket)
// shared by every test in the package, driven through the public Go SDK and
// raw HTTP. Tests isolate themselves with unique user names.
package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/testbin"

	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/testcluster"
)

var (
	cluster *testcluster.Cluster
	// salamanderBin is the salamander binary, built once for CLI tests.
	salamanderBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "salamander-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	level := slog.LevelError
	if os.Getenv("SALAMANDER_TEST_LOG") != "" {
		level = slog.LevelInfo
	}
	bins, remove, err := testbin.Build("it", testbin.Salamander)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	salamanderBin = bins[0]
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	cluster, err = testcluster.Start(ctx, dir, logger)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start test cluster:", err)
		return 1
	}
	code := m.Run()
	// go test's -timeout does not cover TestMain after m.Run: a hung stop
	// would stall CI silently. Crash with every goroutine's stack instead.
	stopped := make(chan struct{})
	go func() {
		select {
		case <-stopped:
		case <-time.After(2 * time.Minute):
			panic("test cluster did not stop within 2 minutes")
		}
	}()
	cluster.Close()
	close(stopped)
	return code
}

var userSeq atomic.Int64

// uniqueName returns a user name no other test uses.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, time.Now().UnixNano()%1000000, userSeq.Add(1))
}

// newClient returns an SDK client that prefers site i.
func newClient(t *testing.T, i int) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Sites: cluster.URLs(), Prefer: i, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signedUp returns a client at site i logged in as a new user.
func signedUp(t *testing.T, i int, prefix string) (*client.Client, string) {
	t.Helper()
	return signUp(t, newClient(t, i), prefix, fmt.Sprintf("site %d", i))
}

// signedUpAt returns a client that talks to urls only (the first while it
// answers), logged in as a new user: for a user of an extra gateway.
func signedUpAt(t *testing.T, prefix string, urls ...string) (*client.Client, string) {
	t.Helper()
	c, err := client.New(client.Config{Sites: urls, MinBackoff: 50 * time.Millisecond,
		MaxBackoff: 500 * time.Millisecond, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return signUp(t, c, prefix, strings.Join(urls, ", "))
}

// signUp signs c up as a new user named after prefix, at where.
func signUp(t *testing.T, c *client.Client, prefix, where string) (*client.Client, string) {
	t.Helper()
	name := uniqueName(prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.SignUp(ctx, name, "User "+name, "correct horse battery"); err != nil {
		t.Fatalf("sign up %s at %s: %v", name, where, err)
	}
	return c, name
}

// befriend has c add each of users as a friend, to be told their presence.
func befriend(t *testing.T, ctx context.Context, c *client.Client, users ...string) {
	t.Helper()
	for _, u := range users {
		if _, err := c.AddFriend(ctx, u); err != nil {
			t.Fatal(err)
		}
	}
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// checkFor polls cond until it returns nil or d passes.
func checkFor(t *testing.T, d, every time.Duration, cond func() error) {
	t.Helper()
	if err := waitFor(d, every, cond); err != nil {
		t.Fatal(err)
	}
}

// waitFor polls cond until it returns nil or d passes, and then returns
// cond's last error.
func waitFor(d, every time.Duration, cond func() error) error {
	deadline := time.Now().Add(d)
	var err error
	for time.Now().Before(deadline) {
		if err = cond(); err == nil {
			return nil
		}
		time.Sleep(every)
	}
	return fmt.Errorf("condition not met within %s: %w", d, err)
}

// lineStarting is the first line of a command's output that starts with
// prefix ("" if none): the CLI may print a note on stderr first (a stream
// still electing a leader).
func lineStarting(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

// adminCLI runs `salamander admin ARGS` with the admin credential through
// site i's NATS server and returns what it printed (stdout and stderr).
func adminCLI(ctx context.Context, i int, args ...string) (string, error) {
	full := append([]string{"admin", "--nats", cluster.NATSURL(i), "--creds", cluster.AdminFile()}, args...)
	out, err := exec.CommandContext(ctx, salamanderBin, full...).CombinedOutput()
	return string(out), err
}
