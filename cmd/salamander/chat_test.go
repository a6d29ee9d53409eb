package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// A message sent while its room's site fails over is acknowledged held:
// the chat says at once that it is sent and waiting for its place, lists
// it so in /history, and prints it once, as any message, when it arrives
// with its place. It is not pending meanwhile, and it is sent once.
func TestChatShowsHeldSendAsSent(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site := fakesite.New(fakesite.Config{
		User:  salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
		Hold:  true,
	})
	srv := httptest.NewServer(site)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	chat := startTestChat(t, ctx, "--sites", srv.URL, "--user", "mina", "--password", "correct horse")
	chat.expect("(live at")
	chat.say("/join " + roomID)
	chat.expect("now in [joon]")

	const text = "is the fire out?"
	const note = "[joon] ✓ sent — waiting for its place (the room's site is failing over): " + text
	chat.say(text)
	chat.expect(note)
	if held := site.Held(); len(held) != 1 || held[0].Text != text {
		t.Fatalf("the site holds %+v, want the one message", held)
	}
	chat.say("/pending")
	chat.expect("nothing pending")
	chat.say("/history")
	chat.expect("[joon] mina: " + text + " (sent — waiting for its place)")

	placed := site.Place()
	const line = "[joon] mina: " + text + " (unread 1)"
	chat.expect(line)
	chat.say("/quit")
	out := chat.wait()
	for _, want := range []string{note, line} {
		if n := strings.Count(out, want+"\n"); n != 1 {
			t.Errorf("%q printed %d times, want once; the chat printed:\n%s", want, n, out)
		}
	}
	if len(placed) != 1 || placed[0].Seq != 1 || site.Sends() != 1 {
		t.Errorf("placed %+v after %d sends; want seq 1 after one send", placed, site.Sends())
	}
}

// testChat is `salamander chat` run in-process, its input and output
// piped to the test.
type testChat struct {
	t     *testing.T
	ctx   context.Context
	in    *io.PipeWriter
	lines chan string
	out   strings.Builder // every line printed, with the lines before it
	err   chan error
}

func startTestChat(t *testing.T, ctx context.Context, args ...string) *testChat {
	t.Helper()
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	c := &testChat{t: t, ctx: ctx, in: inW, lines: make(chan string, 100), err: make(chan error, 1)}
	var stderr bytes.Buffer
	go func() {
		err := runChat(ctx, args, inR, outW, &stderr)
		if err != nil {
			err = fmt.Errorf("%w; stderr:\n%s", err, stderr.String())
		}
		outW.Close()
		c.err <- err
	}()
	go func() {
		defer close(c.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { inW.Close() }) // ends the chat's reader of its input
	return c
}

func (c *testChat) say(line string) {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatal(err)
	}
}

// expect waits for a line containing want.
func (c *testChat) expect(want string) {
	c.t.Helper()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("chat ended before printing %q; printed:\n%s", want, c.out.String())
			}
			c.out.WriteString(l + "\n")
			if strings.Contains(l, want) {
				return
			}
		case <-c.ctx.Done():
			c.t.Fatalf("no line with %q; printed:\n%s", want, c.out.String())
		}
	}
}

// wait waits for the chat to end and returns all it printed.
func (c *testChat) wait() string {
	c.t.Helper()
	for l := range c.lines {
		c.out.WriteString(l + "\n")
	}
	if err := <-c.err; err != nil {
		c.t.Fatalf("chat: %v", err)
	}
	return c.out.String()
}
