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
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// A message sent while its room's site fails over is acknowledged held:
// the chat says at once that it is sent and waiting for its place, lists
// it so in /history, and prints it once, as any message, when it arrives
// with its place. It is not pending meanwhile, and it is sent once.
func TestChatShowsHeldSendAsSent(t *testing.T) {
	site, chat := chatWithJoon(t, true)

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

// chatWithJoon starts a chat as mina at a fake site (holding every send
// when hold) and joins her room with joon.
func chatWithJoon(t *testing.T, hold bool) (*fakesite.Site, *testChat) {
	t.Helper()
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site := fakesite.New(fakesite.Config{
		User:  salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
		Hold:  hold,
	})
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	chat := startTestChat(t, ctx, "--sites", srv.URL, "--user", "mina", "--password", "correct horse")
	chat.expect("(live at")
	chat.say("/join " + roomID)
	chat.expect("now in [joon]")
	return site, chat
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

// What others write reaches the terminal as text only: a message's further
// lines are indented under it (no line passes for another message or an
// incident), control characters (an escape sequence, C1's CSI) and bidi
// overrides are shown escaped; emoji joiners, tabs and Korean pass.
func TestChatPrintsOthersTextSafely(t *testing.T) {
	for in, want := range map[string]string{
		"plain 안녕 👩‍👩‍👧\tok":                   "plain 안녕 👩‍👩‍👧\tok",
		"see you\n[bob] alice: wire the money": "see you\n  | [bob] alice: wire the money",
		"a\r\nb":                               "a\n  | b",
		"\x1b[31mred\x1b[0m":                   `\u001B[31mred\u001B[0m`,
		"\u009b2J csi":                         `\u009B2J csi`,
		"photo\u202egnp.exe":                   `photo\u202Egnp.exe`,
		"\u2066isolate\u2069 \u200fmark":       `\u2066isolate\u2069 \u200Fmark`,
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
	var out strings.Builder
	ch := &chatSession{out: &out}
	ch.printf("[%s] %s: %s\n", "room", "bob", "hi\n!! incident i_1 [resolved]: fine")
	if got := out.String(); got != "[room] bob: hi\n  | !! incident i_1 [resolved]: fine\n" {
		t.Fatalf("printed %q", got)
	}
}

// A line longer than a request can carry is reported and skipped; the
// lines around it are read as usual, and the input goes on.
func TestChatInputSkipsAnOverlongLine(t *testing.T) {
	in := "first\n" + strings.Repeat("x", 200<<10) + "\nlast"
	var got []inputLine
	if err := readInputLines(strings.NewReader(in), 64<<10, func(l inputLine) bool {
		got = append(got, l)
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].text != "first" || got[0].tooLong || !got[1].tooLong || got[1].text != "" ||
		got[2].text != "last" || got[2].tooLong {
		t.Fatalf("lines: %d, %+v %v %+v", len(got), got[0], got[1].tooLong, got[len(got)-1])
	}
}

// While no site takes a send, the chat stays live: what is typed waits its
// turn (/pending lists it), other commands answer, and /quit ends the
// session at once, saying which messages were not sent.
func TestChatStaysLiveWhileNoSiteTakesASend(t *testing.T) {
	site, chat := chatWithJoon(t, false)

	site.RefuseSends(true)
	chat.say("is anyone there?")
	chat.say("second, in order")
	chat.say("/pending")
	chat.expect("[joon] is anyone there? (since")
	chat.expect("[joon] second, in order (since")
	chat.say("/site")
	chat.expect("requests: ")
	chat.say("  /quit") // a command after spaces is still a command
	out := chat.wait()
	for _, want := range []string{"2 message(s) not sent", "  [joon] is anyone there? (typed", "  [joon] second, in order (typed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the chat did not say %q; it printed:\n%s", want, out)
		}
	}
	// Its one site refusing sends, the live socket stays: there is no
	// other site to move to.
	if strings.Contains(out, "(reconnected") {
		t.Errorf("the chat's socket was dropped and reconnected to its only site; it printed:\n%s", out)
	}
}

// Every reconnect's ready event lists the open incidents: the chat prints
// one again only when it changed, and says when one printed before was
// resolved while it was away.
func TestChatPrintsEachIncidentOnce(t *testing.T) {
	var out strings.Builder
	ch := &chatSession{out: &out}
	inc := salamander.Incident{ID: "inc-0123456789abcdef", State: salamander.IncidentInvestigating, Impact: salamander.ImpactMajor,
		Title: salamander.Localized{EN: "Messages delayed"}, Updates: []salamander.IncidentUpdate{{Message: salamander.Localized{EN: "Looking."}}}}
	ch.readyIncidents([]salamander.Incident{inc})
	ch.readyIncidents([]salamander.Incident{inc}) // a reconnect
	inc.State = salamander.IncidentIdentified
	inc.Updates = append(inc.Updates, salamander.IncidentUpdate{Message: salamander.Localized{EN: "Found it."}})
	ch.printIncident(&inc)
	ch.readyIncidents(nil) // resolved while away
	ch.readyIncidents(nil)
	want := "!! incident inc-0123456789abcdef [investigating, major]: Messages delayed — Looking.\n" +
		"!! incident inc-0123456789abcdef [identified, major]: Messages delayed — Found it.\n" +
		"!! incident inc-0123456789abcdef resolved\n"
	if out.String() != want {
		t.Fatalf("printed:\n%s\nwant:\n%s", out.String(), want)
	}
}

// Someone typing is printed once; their stop prints nothing.
func TestChatPrintsTypingButNotItsStop(t *testing.T) {
	site, chat := chatWithJoon(t, false)
	site.Typing("d_0123456789abcdef0123456789abcdef", "joon", true)
	chat.expect("[joon] joon is typing...")
	site.Typing("d_0123456789abcdef0123456789abcdef", "joon", false)
	chat.say("a message after the stop")
	chat.expect("[joon] mina: a message after the stop")
	chat.say("/quit")
	if out := chat.wait(); strings.Count(out, "is typing") != 1 {
		t.Fatalf("typing printed %d times, want once (the stop prints nothing):\n%s", strings.Count(out, "is typing"), out)
	}
}

// The line the sender has taken from the queue is unsent until the SDK's
// outbox holds it: it is listed then too, and once only when both do.
func TestChatListsTheLineBeingSent(t *testing.T) {
	cl, err := client.New(client.Config{Sites: []string{"http://127.0.0.1:9"}})
	if err != nil {
		t.Fatal(err)
	}
	const room = "d_0123456789abcdef0123456789abcdef"
	ch := &chatSession{cl: cl, out: io.Discard}
	ch.inFlight = &chatSend{room: room, clientID: "c-1", text: "taken from the queue"}
	ch.queue = []chatSend{{room: room, clientID: "c-2", text: "behind it"}}
	if got := ch.unsent(); len(got) != 2 || got[0].clientID != "c-1" || got[1].clientID != "c-2" {
		t.Fatalf("unsent %+v, want the line being sent, then the queue", got)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the send ends at once, its message left in the outbox
	if _, err := cl.SendWithID(ctx, room, "c-1", "taken from the queue"); err == nil {
		t.Fatal("a send with an ended context succeeded")
	}
	if got := ch.unsent(); len(got) != 2 || got[0].clientID != "c-1" || got[1].clientID != "c-2" {
		t.Fatalf("unsent %+v, want each line once", got)
	}
}

// A send whose site failed with it in flight and whose retry a site
// refused may have been sent: the chat says so and asks again with the
// same client id, first in line, instead of dropping it as not sent.
func TestChatAsksAgainForAMessageThatMayHaveBeenSent(t *testing.T) {
	site, chat := chatWithJoon(t, false)
	site.CutSends(1) // the WebSocket's send: cut off
	site.RefuseSendsAs(salamander.CodeTooManyRequests)
	chat.say("did this go?")
	chat.expect("[joon] did this go?: may have been sent")
	site.RefuseSendsAs("")
	chat.expect("[joon] mina: did this go?")
	chat.say("/quit")
	out := chat.wait()
	if strings.Contains(out, "not sent") || strings.Count(out, "[joon] mina: did this go?") != 1 {
		t.Fatalf("the chat printed:\n%s", out)
	}
}

// /password changes the password: the current one and the new one twice,
// each at a prompt of its own (a terminal does not echo them: see
// echoOff); two new ones that differ, or a wrong current one, change
// nothing. The chat goes on with the new session, live again.
func TestChatChangesThePassword(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site := fakesite.New(fakesite.Config{
		User:     salamander.User{Name: "mina", DisplayName: "Mina"},
		Password: "correct horse",
		Rooms:    []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
	})
	srv := httptest.NewServer(site)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	chat := startTestChat(t, ctx, "--sites", srv.URL, "--user", "mina", "--password", "correct horse")
	chat.expect("(live at")
	chat.say("/join " + roomID)
	chat.expect("now in [joon]")
	chat.say("/help")
	chat.expect("/password")

	// A prompt's line ends once its answer is read.
	chat.say("/password")
	chat.say("correct horse")
	chat.expect("current password: ")
	chat.say("a brand new password")
	chat.expect("new password: ")
	chat.say("a brand new passwore")
	chat.expect("new password again: ")
	chat.expect("error: the two new passwords differ; nothing changed")

	chat.say("/password")
	chat.say("not the password")
	chat.say("a brand new password")
	chat.say("a brand new password")
	chat.expect("error: the current password is wrong")
	if n := site.Changes(); n != 0 {
		t.Fatalf("%d changes reached the site, want none", n)
	}

	chat.say("/password")
	chat.say("correct horse")
	chat.say("a brand new password")
	chat.say("a brand new password")
	chat.expect("password changed: every other session of yours is signed out")
	if n := site.Changes(); n != 1 {
		t.Fatalf("%d changes reached the site, want 1", n)
	}
	// The site ended the old session and closed the socket: the chat is
	// live again with the new one.
	chat.expect("(reconnected to")
	chat.say("still here")
	chat.expect("[joon] mina: still here")
	chat.say("/quit")
	if out := chat.wait(); strings.Contains(out, "brand new") || strings.Contains(out, "correct horse") {
		t.Errorf("a password was printed:\n%s", out)
	}
}
