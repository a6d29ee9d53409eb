package main

// chat.go is the `salamander chat` subcommand: a line-oriented terminal
// client built on package client. It reads commands and messages from stdin
// (a terminal or a pipe) and prints live events to stdout.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
)

const (
	defaultChatSites = "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083"
	// chatLoginTimeout bounds sign-up and login (failover included).
	chatLoginTimeout = 30 * time.Second
	// chatLookupTimeout bounds the lookups and read receipts made while
	// printing live events.
	chatLookupTimeout = 10 * time.Second
	chatHistoryLines  = 20
)

const chatHelp = `commands:
  /rooms                 list rooms with unread counts and last message
  /dm USER               open the 1:1 room with USER and make it current
  /group NAME USER...    create a group room and make it current
  /join ROOMID           make a room current
  /invite USER...        invite users into the current room
  /leave                 leave the current room
  /rename NAME           rename the current room
  /history [N]           show the last N messages of the current room
  /friends               list friends        /friend USER   add a friend
  /status TEXT           set your status     /who [USER...] presence
  /pending               messages not yet acknowledged
  /site                  which site is in use
  /password              change your password (asked at a prompt, not shown)
  /help                  this help           /quit          leave
anything else is sent to the current room (start a message with // to send a leading /)
`

// promptChatPassword asks for the password to sign in with (twice for a
// new account) at a prompt on stderr that does not echo, when stdin is a
// terminal; a password given on the command line is in every user's
// process list, so a person at a terminal is better asked.
func promptChatPassword(stdin io.Reader, stderr io.Writer, user string, signup bool) (string, error) {
	f, ok := stdin.(*os.File)
	if !ok || !isTerminal(f) {
		return "", errors.New("chat: a password is required (--password or SALAMANDER_PASSWORD, or run it at a terminal to be asked)")
	}
	fmt.Fprintf(stderr, "password for %s: ", user)
	pw, err := readHidden(f)
	fmt.Fprintln(stderr)
	if err != nil {
		return "", fmt.Errorf("chat: reading the password: %w", err)
	}
	if signup {
		fmt.Fprint(stderr, "again: ")
		again, err := readHidden(f)
		fmt.Fprintln(stderr)
		if err != nil {
			return "", fmt.Errorf("chat: reading the password: %w", err)
		}
		if pw != again {
			return "", errors.New("chat: the two passwords differ; no account made")
		}
	}
	if pw == "" {
		return "", errors.New("chat: a password is required")
	}
	return pw, nil
}

// runChat runs `salamander chat`: it signs in (or up), subscribes to live
// events and runs commands read from stdin until /quit, end of input, or ctx
// ends.
func runChat(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("chat", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sites := fs.String("sites", defaultChatSites, "comma-separated base URLs of every site")
	user := fs.String("user", "", "user name (required)")
	password := fs.String("password", "", "password (default: $SALAMANDER_PASSWORD; else asked for, not echoed, when stdin is a terminal)")
	signup := fs.Bool("signup", false, "create the account first")
	displayName := fs.String("display-name", "", "display name for --signup (default: the user name)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: salamander chat --user NAME [flags]\n\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\n%s", chatHelp)
	}
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("chat: unexpected arguments: %q", fs.Args())
	}
	if *user == "" {
		return errors.New("chat: --user is required")
	}
	pw := *password
	if pw == "" {
		pw = os.Getenv("SALAMANDER_PASSWORD")
	}
	if pw == "" {
		var err error
		if pw, err = promptChatPassword(stdin, stderr, *user, *signup); err != nil {
			return err
		}
	}

	cl, err := client.New(client.Config{
		Sites: chatSplitList(*sites, ","),
		// Errors only: a site failing over is said in the chat itself
		// ("reconnected to …", /pending), not by a warning per retry.
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		return fmt.Errorf("chat: %w", err)
	}
	loginCtx, cancel := context.WithTimeout(ctx, chatLoginTimeout)
	var session salamander.Session
	if *signup {
		name := *displayName
		if name == "" {
			name = *user
		}
		session, err = cl.SignUp(loginCtx, *user, name, pw)
	} else {
		session, err = cl.Login(loginCtx, *user, pw)
	}
	cancel()
	if err != nil {
		return fmt.Errorf("chat: signing in as %s: %s", *user, chatErrText(err))
	}

	ch := &chatSession{cl: cl, me: session.User.Name, out: stdout, rooms: map[string]salamander.Room{}, sending: map[string]bool{},
		wake: make(chan struct{}, 1)}
	ch.printf("signed in as %s (%s) at %s\n", session.User.Name, session.User.DisplayName, cl.Site())
	ch.printOwn(chatHelp)
	if _, err := ch.refreshRooms(ctx); err != nil {
		ch.printErr(err)
	}

	sub := cl.Subscribe(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ch.printEvents(ctx, sub)
	}()
	ch.sub = sub
	// Sends go out one at a time, in the order typed, from a goroutine of
	// their own: while no site answers, the input stays live (/pending,
	// /quit) and what is typed waits its turn.
	sendCtx, stopSending := context.WithCancel(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ch.runSender(sendCtx)
	}()
	defer func() {
		stopSending()
		sub.Close()
		wg.Wait()
		ch.warnUnsent()
	}()

	// Reading stdin cannot be interrupted; on /quit or when ctx ends this
	// goroutine is left blocked in Read and ends with the input or the
	// process. It never blocks on lines once stop is closed.
	lines := make(chan inputLine)
	readErr := make(chan error, 1)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		err := readInputLines(stdin, salamander.MaxBodyBytes, func(l inputLine) bool {
			select {
			case lines <- l:
				return true
			case <-stop:
				return false
			}
		})
		readErr <- err
		close(lines)
	}()

	// ask reads a line typed after each prompt, for a command that asks
	// (the passwords of /password): not echoed when the input is a
	// terminal.
	ch.ask = func(prompts ...string) ([]string, error) {
		if f, ok := stdin.(*os.File); ok && isTerminal(f) {
			// Off before the first prompt and until the last answer, so
			// that nothing typed or pasted ahead is shown. The reader is
			// blocked in a read of the terminal already: the lines typed
			// from now on are not echoed, and are its next lines.
			restore, err := echoOff(f)
			if err != nil {
				return nil, err
			}
			defer restore()
		}
		var answers []string
		for _, prompt := range prompts {
			ch.printOwn(prompt)
			select {
			case <-ctx.Done():
				ch.printOwn("\n")
				return nil, ctx.Err()
			case line, ok := <-lines:
				ch.printOwn("\n")
				switch {
				case !ok:
					return nil, io.ErrUnexpectedEOF
				case line.tooLong:
					return nil, fmt.Errorf("that line is over %d bytes", salamander.MaxBodyBytes)
				}
				answers = append(answers, line.text)
			}
		}
		return answers, nil
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				if err := <-readErr; err != nil {
					return fmt.Errorf("chat: reading input: %w", err)
				}
				return nil
			}
			if line.tooLong {
				ch.printf("error: that line is over %d bytes and was not sent (a message is at most %d bytes)\n",
					salamander.MaxBodyBytes, salamander.MaxMessageBytes)
				continue
			}
			if ch.command(ctx, line.text) {
				return nil
			}
		}
	}
}

// chatSession is the state of one chat session.
type chatSession struct {
	cl  *client.Client
	sub *client.Subscription
	me  string

	outMu sync.Mutex
	out   io.Writer

	mu      sync.Mutex
	current string                     // id of the current room ("" for none)
	rooms   map[string]salamander.Room // rooms seen, by id
	// sending holds the client ids of the sends not answered yet, each
	// true once its message has been printed from the live events.
	sending map[string]bool
	// queue holds the lines typed to be sent, oldest first, behind the
	// one being sent (runSender); wake tells the sender of a new one.
	queue []chatSend
	wake  chan struct{}
	// inFlight is the line being sent, until its send returns.
	inFlight *chatSend
	// incidents are the open incidents printed, by id: their state and
	// number of updates as printed.
	incidents map[string]string
	// ask prints each prompt and reads the next line typed after it, not
	// echoed on a terminal (runChat's).
	ask func(prompts ...string) ([]string, error)
}

// chatSend is a line typed to be sent to a room.
type chatSend struct {
	room, clientID, text string
	typed                time.Time
}

// inputLine is a line read from the input, or one that was too long (its
// text dropped).
type inputLine struct {
	text    string
	tooLong bool
}

// readInputLines reads lines from r and gives each to emit until emit
// returns false or the input ends (nil at its end). A line longer than max
// bytes is read to its end and given as tooLong, without its text: a
// pasted screenful must not end the session.
func readInputLines(r io.Reader, max int, emit func(inputLine) bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		var line []byte
		tooLong := false
		for {
			part, isPrefix, err := br.ReadLine()
			if err != nil {
				if err == io.EOF {
					if len(line) > 0 || tooLong {
						emit(inputLine{text: string(line), tooLong: tooLong})
					}
					return nil
				}
				return err
			}
			if !tooLong {
				if len(line)+len(part) > max {
					tooLong, line = true, nil
				} else {
					line = append(line, part...)
				}
			}
			if !isPrefix {
				break
			}
		}
		if !emit(inputLine{text: string(line), tooLong: tooLong}) {
			return nil
		}
	}
}

// command runs one input line and reports whether the session should end.
func (ch *chatSession) command(ctx context.Context, line string) (quit bool) {
	if strings.TrimSpace(line) == "" {
		return false
	}
	// A command may follow spaces (" /quit" is no message); a message
	// starting with "/" is typed "//".
	if trimmed := strings.TrimLeft(line, " \t"); !strings.HasPrefix(trimmed, "/") || strings.HasPrefix(trimmed, "//") {
		if strings.HasPrefix(trimmed, "//") {
			line = trimmed[1:]
		}
		ch.send(line)
		return false
	}
	cmd, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
	rest = strings.TrimSpace(rest)
	args := strings.Fields(rest)
	var err error
	switch cmd {
	case "/quit", "/exit":
		return true
	case "/help":
		ch.printOwn(chatHelp)
	case "/rooms":
		err = ch.listRooms(ctx)
	case "/dm":
		if len(args) != 1 {
			err = errors.New("usage: /dm USER")
			break
		}
		var r salamander.Room
		if r, err = ch.cl.DirectRoom(ctx, args[0]); err == nil {
			ch.enter(r)
		}
	case "/group":
		if len(args) < 1 {
			err = errors.New("usage: /group NAME USER...")
			break
		}
		var r salamander.Room
		if r, err = ch.cl.CreateGroup(ctx, args[0], args[1:]); err == nil {
			ch.enter(r)
		}
	case "/join":
		if len(args) != 1 {
			err = errors.New("usage: /join ROOMID")
			break
		}
		var r salamander.Room
		if r, err = ch.cl.Room(ctx, args[0]); err == nil {
			ch.enter(r)
		}
	case "/invite":
		err = ch.withRoom(func(id string) error {
			if len(args) == 0 {
				return errors.New("usage: /invite USER...")
			}
			r, err := ch.cl.Invite(ctx, id, args...)
			if err == nil {
				ch.remember(r)
				ch.printf("invited %s to [%s]\n", strings.Join(args, ", "), ch.label(r))
			}
			return err
		})
	case "/leave":
		err = ch.withRoom(func(id string) error {
			if err := ch.cl.Leave(ctx, id); err != nil {
				return err
			}
			ch.printf("left [%s]\n", ch.labelOf(id))
			ch.forget(id)
			return nil
		})
	case "/rename":
		err = ch.withRoom(func(id string) error {
			if rest == "" {
				return errors.New("usage: /rename NAME")
			}
			r, err := ch.cl.Rename(ctx, id, rest)
			if err == nil {
				ch.remember(r)
				ch.printf("renamed to [%s]\n", ch.label(r))
			}
			return err
		})
	case "/history":
		n := chatHistoryLines
		if len(args) > 0 {
			if n, err = strconv.Atoi(args[0]); err != nil || n < 1 {
				err = errors.New("usage: /history [N]")
				break
			}
		}
		err = ch.withRoom(func(id string) error { return ch.history(ctx, id, min(n, salamander.MaxPageSize)) })
	case "/friends":
		var fs []salamander.User
		if fs, err = ch.cl.Friends(ctx); err == nil {
			if len(fs) == 0 {
				ch.printf("no friends yet; add one with /friend USER\n")
			}
			for _, f := range fs {
				ch.printf("  %s (%s)%s\n", f.Name, f.DisplayName, chatStatusSuffix(f.Status))
			}
		}
	case "/friend":
		if len(args) != 1 {
			err = errors.New("usage: /friend USER")
			break
		}
		var u salamander.User
		if u, err = ch.cl.AddFriend(ctx, args[0]); err == nil {
			ch.printf("added friend %s (%s)\n", u.Name, u.DisplayName)
		}
	case "/status":
		status := rest
		if _, err = ch.cl.UpdateProfile(ctx, salamander.ProfileRequest{Status: &status}); err == nil {
			ch.printf("status set to %q\n", status)
		}
	case "/who":
		err = ch.who(ctx, args)
	case "/pending":
		p := ch.unsent()
		if len(p) == 0 {
			ch.printf("nothing pending\n")
		}
		for _, m := range p {
			ch.printf("  [%s] %s (since %s)\n", ch.labelOf(m.room), m.text, m.typed.Format(time.TimeOnly))
		}
	case "/site":
		live := ch.sub.Site()
		if live == "" {
			live = "(reconnecting)"
		}
		ch.printf("requests: %s; live events: %s\n", ch.cl.Site(), live)
	case "/password":
		err = ch.changePassword(ctx)
	default:
		err = fmt.Errorf("unknown command %s (try /help)", cmd)
	}
	if err != nil {
		ch.printErr(err)
	}
	return false
}

// changePassword changes the user's password: the current one and the
// new one twice, read at prompts that do not echo them. Every other
// session of the account ends; this one goes on with the new session the
// site answers (the SDK keeps it, and its device token).
func (ch *chatSession) changePassword(ctx context.Context) error {
	pw, err := ch.ask("current password: ", "new password: ", "new password again: ")
	if err != nil {
		return err
	}
	current, next, again := pw[0], pw[1], pw[2]
	if next != again {
		return errors.New("the two new passwords differ; nothing changed")
	}
	if _, err := ch.cl.ChangePassword(ctx, current, next); err != nil {
		return err
	}
	ch.printf("password changed: every other session of yours is signed out\n")
	return nil
}

// send sends a line to the current room. It returns once a quorum of sites
// holds the message (retrying across sites), so lines are sent in order; the
// message itself is printed when it arrives on the live event stream. A
// message acknowledged held (its room's site is failing over) is sent but
// has no place yet: that is said at once, unless it has already arrived,
// and it is printed when it arrives with its place.
func (ch *chatSession) send(text string) {
	err := ch.withRoom(func(id string) error {
		if err := salamander.ValidateMessageText(text); err != nil {
			return err
		}
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if len(ch.queue) >= chatMaxQueued {
			return fmt.Errorf("%d messages are waiting to be sent already; wait for a site to answer (/pending)", len(ch.queue))
		}
		ch.queue = append(ch.queue, chatSend{room: id, clientID: client.NewClientID(), text: text, typed: time.Now()})
		select {
		case ch.wake <- struct{}{}:
		default:
		}
		return nil
	})
	if err != nil {
		ch.printErr(err)
	}
}

// chatMaxQueued bounds the lines waiting to be sent.
const chatMaxQueued = 1000

// runSender sends the queued lines one at a time, in the order typed, each
// until a quorum of sites holds it or ctx ends (the session ends).
func (ch *chatSession) runSender(ctx context.Context) {
	for {
		if ctx.Err() != nil {
			return // what is queued stays queued: warnUnsent lists it
		}
		ch.mu.Lock()
		if len(ch.queue) == 0 {
			ch.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-ch.wake:
			}
			continue
		}
		m := ch.queue[0]
		ch.queue = ch.queue[1:]
		ch.sending[m.clientID] = false
		ch.inFlight = &m // listed as unsent until SendWithID has it in the SDK's outbox
		ch.mu.Unlock()
		res, err := ch.cl.SendWithID(ctx, m.room, m.clientID, m.text)
		ch.mu.Lock()
		arrived := ch.sending[m.clientID]
		delete(ch.sending, m.clientID)
		ch.inFlight = nil
		ch.mu.Unlock()
		switch {
		case err == nil && res.Message.Held && !arrived:
			ch.printf("[%s] ✓ sent — waiting for its place (the room's site is failing over): %s\n", ch.labelOf(m.room), chatOneLine(m.text))
		case errors.Is(err, client.ErrMaybeSent) && ctx.Err() == nil:
			// An earlier attempt may have been committed: the same client
			// id again, first in line, answers the original if it was.
			wait := chatRetryWait(err)
			ch.printf("[%s] %s: may have been sent (%s); asking again in %s\n", ch.labelOf(m.room), chatOneLine(m.text),
				chatErrText(err), wait)
			ch.mu.Lock()
			ch.queue = append([]chatSend{m}, ch.queue...)
			ch.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		case err != nil && ctx.Err() == nil:
			ch.printf("error: [%s] %s: not sent: %s\n", ch.labelOf(m.room), chatOneLine(m.text), chatErrText(err))
			ch.cl.Forget(m.clientID) // refused for good: not pending
		}
	}
}

// chatRetryWait is how long to wait before asking a site again after
// err: what a rate limit says, else 2 s.
func chatRetryWait(err error) time.Duration {
	if e, ok := errors.AsType[*salamander.Error](err); ok && e.RetryAfter > 0 {
		return time.Duration(e.RetryAfter) * time.Second
	}
	return 2 * time.Second
}

// unsent lists what was typed and no site has acknowledged: the SDK's
// outbox (being sent, or cut short) and the lines queued behind it.
func (ch *chatSession) unsent() []chatSend {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	// Under ch.mu, so the line being sent is listed once: by the outbox
	// once SendWithID has put it there, else as the current one.
	var out []chatSend
	for _, p := range ch.cl.Pending() {
		out = append(out, chatSend{room: p.RoomID, clientID: p.ClientID, text: p.Text, typed: p.Queued})
	}
	listed := func(m *chatSend) bool {
		return slices.ContainsFunc(out, func(s chatSend) bool { return s.clientID == m.clientID })
	}
	if m := ch.inFlight; m != nil && !listed(m) {
		out = append(out, *m)
	}
	for i := range ch.queue { // (one put back to be asked again is in the outbox too)
		if !listed(&ch.queue[i]) {
			out = append(out, ch.queue[i])
		}
	}
	return out
}

// warnUnsent says, as the session ends, which messages no site took.
func (ch *chatSession) warnUnsent() {
	left := ch.unsent()
	if len(left) == 0 {
		return
	}
	ch.printf("%d message(s) not sent (no site acknowledged them):\n", len(left))
	for _, m := range left {
		ch.printf("  [%s] %s (typed %s)\n", ch.labelOf(m.room), chatOneLine(m.text), m.typed.Format(time.TimeOnly))
	}
}

func (ch *chatSession) listRooms(ctx context.Context) error {
	rooms, err := ch.refreshRooms(ctx)
	if err != nil {
		return err
	}
	if len(rooms) == 0 {
		ch.printf("no rooms yet; start one with /dm USER or /group NAME USER...\n")
	}
	cur := ch.currentRoom()
	for _, r := range rooms {
		mark := " "
		if r.ID == cur {
			mark = "*"
		}
		last := ""
		if m := r.LastMessage; m != nil {
			last = fmt.Sprintf("  last: %s: %s", m.Sender, chatOneLine(m.Text))
		}
		ch.printf("%s %s  [%s]  %d members  unread %d%s\n", mark, r.ID, ch.label(r), len(r.Members), r.Unread, last)
	}
	return nil
}

func (ch *chatSession) history(ctx context.Context, id string, n int) error {
	page, err := ch.cl.History(ctx, id, client.HistoryQuery{Limit: n})
	if err != nil {
		return err
	}
	if len(page.Messages) == 0 && len(page.Held) == 0 {
		ch.printf("no messages in [%s] yet\n", ch.labelOf(id))
		return nil
	}
	if n := len(page.Messages); n > 0 {
		if err := ch.cl.MarkRead(ctx, id, page.Messages[n-1].Seq); err != nil {
			ch.printErr(err)
		}
	}
	for _, m := range page.Messages {
		ch.printMessage(ctx, &m)
	}
	for _, m := range page.Held {
		ch.printf("[%s] %s: %s (sent — waiting for its place)\n", ch.labelOf(m.Room), m.Sender, m.Text)
	}
	return nil
}

func (ch *chatSession) who(ctx context.Context, users []string) error {
	if len(users) == 0 {
		fs, err := ch.cl.Friends(ctx)
		if err != nil {
			return err
		}
		for _, f := range fs {
			users = append(users, f.Name)
		}
		if len(users) == 0 {
			return errors.New("usage: /who USER... (or add friends)")
		}
	}
	ps, err := ch.cl.Presence(ctx, users...)
	if err != nil {
		return err
	}
	for _, p := range ps {
		switch {
		case p.Hidden:
			ch.printf("  %s: not shown (neither a friend you added nor in a room with you)\n", p.User)
		case p.Online:
			ch.printf("  %s online\n", p.User)
		case !p.LastSeen.IsZero():
			ch.printf("  %s offline (last seen %s)\n", p.User, p.LastSeen.Local().Format(time.DateTime))
		default:
			ch.printf("  %s offline\n", p.User)
		}
	}
	return nil
}

// printEvents prints live events until the subscription ends. The backlog
// replayed at the first connection is applied quietly (it is what /rooms
// summarizes); backlogs replayed after a reconnection are what was missed,
// and are printed.
func (ch *chatSession) printEvents(ctx context.Context, sub *client.Subscription) {
	live := false
	quiet := 0
	for ev := range sub.Events() {
		switch ev.Type {
		case salamander.EventReady:
			if !live {
				live = true
				ch.printf("(live at %s; %d earlier messages - see /rooms)\n", sub.Site(), quiet)
			} else {
				ch.printf("(reconnected to %s)\n", sub.Site())
			}
			ch.readyIncidents(ev.Incidents)
		case salamander.EventIncident:
			if ev.Incident != nil {
				ch.printIncident(ev.Incident)
			}
		case salamander.EventMove:
			ch.printf("(site %s is drained; moving to another site)\n", ev.Site)
		case salamander.EventMessage:
			if ev.Message == nil {
				continue
			}
			if !live {
				quiet++
				continue
			}
			ch.onMessage(ctx, ev.Message)
		case salamander.EventRoom:
			if ev.Room != nil {
				ch.onRoom(&ev, live)
			}
		case salamander.EventFriend:
			if live {
				ch.printf("* friend added: %s\n", ev.User)
			}
		case salamander.EventTyping:
			// A stop prints nothing. (Online: what sites before the typing
			// field sent, during a rolling upgrade.)
			if live && (ev.Typing || ev.Online) && ev.User != ch.me {
				ch.printf("[%s] %s is typing...\n", ch.labelOf(ev.RoomID), ev.User)
			}
		case salamander.EventPresence:
			if ev.User != ch.me {
				state := "offline"
				if ev.Online {
					state = "online"
				}
				ch.printf("* %s is %s\n", ev.User, state)
			}
		}
	}
	if err := sub.Err(); err != nil && ctx.Err() == nil {
		ch.printf("error: live events stopped: %s\n", chatErrText(err))
	}
}

// printIncident shows an incident as the banner a chat client shows:
// its state, title and latest word, in the language of the terminal's
// locale (Korean when LANG starts with ko).
// An incident already printed as it is now (same state, same updates) is
// not printed again: every reconnect's ready event lists the open ones.
func (ch *chatSession) printIncident(inc *salamander.Incident) {
	seen := fmt.Sprintf("%s/%d", inc.State, len(inc.Updates))
	ch.mu.Lock()
	if ch.incidents == nil {
		ch.incidents = map[string]string{}
	}
	again := ch.incidents[inc.ID] == seen
	ch.incidents[inc.ID] = seen
	if !inc.Open() {
		delete(ch.incidents, inc.ID)
	}
	ch.mu.Unlock()
	if again {
		return
	}
	lang := "en"
	if strings.HasPrefix(os.Getenv("LANG"), "ko") {
		lang = "ko"
	}
	msg := ""
	if n := len(inc.Updates); n > 0 {
		msg = " — " + inc.Updates[n-1].Message.In(lang)
	}
	ch.printf("!! incident %s [%s, %s]: %s%s\n", inc.ID, inc.State, inc.Impact, inc.Title.In(lang), msg)
}

// readyIncidents prints the open incidents a ready event lists that are
// new or changed, and says which of those printed before were resolved
// while the socket was away (they are no longer listed).
func (ch *chatSession) readyIncidents(open []salamander.Incident) {
	listed := map[string]bool{}
	for i := range open {
		listed[open[i].ID] = true
		ch.printIncident(&open[i])
	}
	ch.mu.Lock()
	var gone []string
	for id := range ch.incidents {
		if !listed[id] {
			gone = append(gone, id)
			delete(ch.incidents, id)
		}
	}
	ch.mu.Unlock()
	slices.Sort(gone)
	for _, id := range gone {
		ch.printf("!! incident %s resolved\n", id)
	}
}

// onMessage prints an arriving message, first marking it read when its room
// is the current one (a sender has read their own message).
func (ch *chatSession) onMessage(ctx context.Context, m *salamander.Message) {
	if m.Sender == ch.me {
		ch.mu.Lock()
		if _, ok := ch.sending[m.ClientID]; ok {
			ch.sending[m.ClientID] = true
		}
		ch.mu.Unlock()
	}
	if m.Room == ch.currentRoom() && m.Sender != ch.me {
		rctx, cancel := context.WithTimeout(ctx, chatLookupTimeout)
		if err := ch.cl.MarkRead(rctx, m.Room, m.Seq); err != nil && ctx.Err() == nil {
			ch.printErr(err)
		}
		cancel()
	}
	ch.printMessage(ctx, m)
}

// printMessage prints `[room] sender: text (unread N)`.
func (ch *chatSession) printMessage(ctx context.Context, m *salamander.Message) {
	r, ok := ch.lookup(ctx, m.Room)
	unread := m.Unread
	if ok && len(r.Members) > 0 {
		unread = ch.cl.Unread(m.Room, m.Seq, len(r.Members))
	}
	ch.printf("[%s] %s: %s (unread %d)\n", ch.labelOf(m.Room), m.Sender, m.Text, unread)
}

func (ch *chatSession) onRoom(ev *salamander.Event, live bool) {
	r := *ev.Room
	if ev.Action == salamander.ActionLeft && ev.User == ch.me {
		ch.forget(r.ID)
	} else {
		ch.remember(r)
	}
	if !live {
		return
	}
	who := ev.User
	if who == "" {
		who = "someone"
	}
	switch ev.Action {
	case salamander.ActionCreated:
		ch.printf("* [%s] created (%s)\n", ch.label(r), r.ID)
	case salamander.ActionJoined:
		ch.printf("* [%s] %s joined\n", ch.label(r), who)
	case salamander.ActionLeft:
		ch.printf("* [%s] %s left\n", ch.label(r), who)
	case salamander.ActionRenamed:
		ch.printf("* [%s] renamed by %s\n", ch.label(r), who)
	}
}

// enter makes r the current room.
func (ch *chatSession) enter(r salamander.Room) {
	ch.remember(r)
	ch.mu.Lock()
	ch.current = r.ID
	ch.mu.Unlock()
	ch.printf("now in [%s] (%s), %d members, %d unread; /history to read\n", ch.label(r), r.ID, len(r.Members), r.Unread)
}

func (ch *chatSession) withRoom(f func(id string) error) error {
	id := ch.currentRoom()
	if id == "" {
		return errors.New("no current room; use /dm, /group or /join first")
	}
	return f(id)
}

func (ch *chatSession) currentRoom() string {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.current
}

func (ch *chatSession) refreshRooms(ctx context.Context) ([]salamander.Room, error) {
	rooms, err := ch.cl.Rooms(ctx)
	if err != nil {
		return nil, err
	}
	for _, r := range rooms {
		ch.remember(r)
	}
	return rooms, nil
}

func (ch *chatSession) remember(r salamander.Room) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	ch.rooms[r.ID] = r
}

func (ch *chatSession) forget(id string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	delete(ch.rooms, id)
	if ch.current == id {
		ch.current = ""
	}
}

// lookup returns a room from the cache, fetching it if it is not there.
func (ch *chatSession) lookup(ctx context.Context, id string) (salamander.Room, bool) {
	ch.mu.Lock()
	r, ok := ch.rooms[id]
	ch.mu.Unlock()
	if ok {
		return r, true
	}
	ctx, cancel := context.WithTimeout(ctx, chatLookupTimeout)
	defer cancel()
	r, err := ch.cl.Room(ctx, id)
	if err != nil {
		return salamander.Room{}, false
	}
	ch.remember(r)
	return r, true
}

// labelOf names a room for display, from the cache (its id if unknown).
func (ch *chatSession) labelOf(id string) string {
	ch.mu.Lock()
	r, ok := ch.rooms[id]
	ch.mu.Unlock()
	if !ok {
		return id
	}
	return ch.label(r)
}

// label names a room for display: a group's name, or the other member of a
// direct room.
func (ch *chatSession) label(r salamander.Room) string {
	if r.Kind == salamander.RoomDirect || r.Name == "" {
		others := slices.DeleteFunc(slices.Clone(r.Members), func(m string) bool { return m == ch.me })
		if len(others) > 0 {
			return strings.Join(others, ", ")
		}
	}
	if r.Name != "" {
		return r.Name
	}
	return r.ID
}

// printf prints to the terminal. Every string argument is text someone
// else may have written (a message, a name, a status, a room's name, an
// incident), so it is made safe for a terminal first (termSafe).
func (ch *chatSession) printf(format string, args ...any) {
	for i, a := range args {
		if s, ok := a.(string); ok {
			args[i] = termSafe(s)
		}
	}
	ch.outMu.Lock()
	defer ch.outMu.Unlock()
	fmt.Fprintf(ch.out, format, args...)
}

// printOwn prints text of this program's own (help), as it is.
func (ch *chatSession) printOwn(text string) {
	ch.outMu.Lock()
	defer ch.outMu.Unlock()
	fmt.Fprint(ch.out, text)
}

// termSafe makes text printable in a terminal as what it says and nothing
// else: a message's further lines are indented under it ("  | "), so that
// no line passes for another message or a banner; control characters
// (escape sequences, C1 controls such as CSI) and the Unicode bidi
// controls (which reorder what follows: "gnp.exe" shown as "exe.png") are
// shown as \u escapes, never sent to the terminal.
func termSafe(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return r == '\n' || termEscaped(r) }) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range strings.ReplaceAll(s, "\r\n", "\n") {
		switch {
		case r == '\n':
			b.WriteString("\n  | ")
		case termEscaped(r):
			fmt.Fprintf(&b, "\\u%04X", r)
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// termEscaped reports whether termSafe shows r as an escape.
func termEscaped(r rune) bool {
	switch {
	case r == '\t':
		return false
	case unicode.IsControl(r), r == utf8.RuneError:
		return true
	case r == 0x061C, r == 0x200E, r == 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true // bidi marks, embeddings, overrides and isolates
	}
	return false
}

func (ch *chatSession) printErr(err error) { ch.printf("error: %s\n", chatErrText(err)) }

// chatErrText is what a user is shown for err: the message of a coded API error,
// or the error itself (a network failure, a timeout, a usage mistake).
func chatErrText(err error) string {
	var e *salamander.Error
	if errors.As(err, &e) && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return e.Message
	}
	return err.Error()
}

func chatStatusSuffix(s string) string {
	if s == "" {
		return ""
	}
	return " - " + s
}

func chatOneLine(s string) string {
	r := []rune(strings.ReplaceAll(s, "\n", " "))
	if len(r) > 60 {
		return string(r[:57]) + "..."
	}
	return string(r)
}

func chatSplitList(s, sep string) []string {
	var out []string
	for _, p := range strings.Split(s, sep) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
