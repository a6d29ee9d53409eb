package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// A send whose first site failed with it in flight (it may have committed
// it) and whose retry the next site refused before acting — over the send
// budget, which a site that has not applied the first attempt spends on
// the retry — may have been sent: the error says so beside the refusal's
// code, and the message stays in the outbox. Refused at once, it leaves.
func TestSendRefusedAfterAnUnansweredAttemptMayHaveBeenSent(t *testing.T) {
	const room = "g_0123456789abcdef"
	died := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler) // the connection is cut, unanswered
	})
	budget := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "3")
		writeJSON(w, http.StatusTooManyRequests, salamander.Errorf(salamander.CodeTooManyRequests, "over the send budget; try again in 3 s"))
	})

	cl := newTestClient(t, died, budget)
	_, err := cl.SendWithID(t.Context(), room, "id-1", "hi")
	if !errors.Is(err, ErrMaybeSent) || salamander.ErrorCode(err) != salamander.CodeTooManyRequests {
		t.Fatalf("err = %v, want ErrMaybeSent and too_many_requests", err)
	}
	if p := cl.Pending(); len(p) != 1 || p[0].ClientID != "id-1" {
		t.Fatalf("Pending() = %+v, want the message kept", p)
	}

	cl = newTestClient(t, budget)
	_, err = cl.SendWithID(t.Context(), room, "id-2", "hi")
	if errors.Is(err, ErrMaybeSent) || salamander.ErrorCode(err) != salamander.CodeTooManyRequests {
		t.Fatalf("err = %v, want too_many_requests alone", err)
	}
	if p := cl.Pending(); len(p) != 0 {
		t.Fatalf("Pending() = %+v after a plain refusal", p)
	}
}

// A request every site answers with 500 is what fails them: the call ends
// after one round with the error, instead of going round until ctx ends.
func TestEverySiteFailingARequestEndsIt(t *testing.T) {
	broken := func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusInternalServerError, salamander.Errorf(salamander.CodeInternal, "boom"))
	}
	a, b, c := newSite(t, broken), newSite(t, broken), newSite(t, broken)
	cl := newTestClient(t, a, b, c)
	cl.SetToken("tok")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := cl.Me(ctx)
	if ctx.Err() != nil || salamander.ErrorCode(err) != salamander.CodeInternal || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("err = %v (ctx %v), want the sites' internal error before ctx ended", err, ctx.Err())
	}
	if n := a.calls.Load() + b.calls.Load() + c.calls.Load(); n != 3 {
		t.Errorf("%d attempts, want one per site", n)
	}

	// One failing site is left for the next.
	ok := newSite(t, func(w http.ResponseWriter, r *http.Request) { answerMe(w, r) })
	cl = newTestClient(t, newSite(t, broken), ok)
	cl.SetToken("tok")
	if u, err := cl.Me(t.Context()); err != nil || u.Name != "mina" {
		t.Fatalf("Me = %+v, %v", u, err)
	}
}

// When ctx ends while no site answers, the error is ctx's and keeps the
// last site's code.
func TestNoSiteAnsweredKeepsTheLastCode(t *testing.T) {
	cl := newTestClient(t, newSite(t, unavailable), newSite(t, unavailable))
	cl.SetToken("tok")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := cl.Me(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("err = %v (code %s), want deadline exceeded with the code unavailable", err, salamander.ErrorCode(err))
	}
}

// The outbox keeps a message per room and client id, as the server
// deduplicates them: an id an application numbers per room, acknowledged
// in one room, leaves the other room's message pending.
func TestOutboxIsPerRoom(t *testing.T) {
	const x, y = "g_000000000000000x", "g_000000000000000y"
	s := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, x) {
			unavailable(w, r)
			return
		}
		writeJSON(w, http.StatusCreated, salamander.SendResult{Message: salamander.Message{Room: y, Seq: 1, ClientID: "1"}})
	})
	cl := newTestClient(t, s)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := cl.SendWithID(ctx, x, "1", "to x"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send to x: %v", err)
	}
	if _, err := cl.SendWithID(t.Context(), y, "1", "to y"); err != nil {
		t.Fatalf("send to y: %v", err)
	}
	if p := cl.Pending(); len(p) != 1 || p[0].RoomID != x || p[0].Text != "to x" {
		t.Fatalf("Pending() = %+v, want the message to x", p)
	}
	cl.Forget("1")
	if p := cl.Pending(); len(p) != 0 {
		t.Fatalf("Pending() = %+v after Forget", p)
	}
}

// A session restored with SetToken (its user's name unknown) learns whose
// it is when it subscribes, so its own message arriving on the stream
// takes it out of the outbox; another member's message with the same
// client id does not.
func TestRestoredSessionClearsItsOutboxFromTheStream(t *testing.T) {
	const room = "g_0123456789abcdef"
	msg := func(sender, clientID string, seq uint64) salamander.Event {
		return salamander.Event{Type: salamander.EventMessage, Pos: &salamander.Position{Stream: "p0", Seq: seq},
			Message: &salamander.Message{Room: room, Seq: seq, Sender: sender, ClientID: clientID, Text: "hi"}}
	}
	s := wsSite(t, "", []salamander.Event{msg("joon", "mine", 1), msg("joon", "theirs", 2), msg("mina", "mine", 3),
		{Type: salamander.EventReady, Cursor: "p0:3"}}, false)
	cl := newTestClient(t, s)
	cl.SetToken("tok")
	for _, id := range []string{"mine", "theirs"} {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		_, err := cl.SendWithID(ctx, room, id, "hi") // the site is unavailable for sends
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("send %s: %v", id, err)
		}
	}
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			break
		}
	}
	if p := cl.Pending(); len(p) != 1 || p[0].ClientID != "theirs" {
		t.Fatalf("Pending() = %+v, want only the message joon's same id did not answer", p)
	}
}

// A restored session that could not learn its user before connecting
// (no site answered /v1/me) asks again once a site serves it, so its own
// messages on the stream still clear the outbox.
func TestRestoredSessionLearnsItsUserOnceASiteServes(t *testing.T) {
	const room = "g_0123456789abcdef"
	var meOK atomic.Bool
	learned := make(chan struct{}) // the test saw the client learn its user
	s := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/me":
			if !meOK.Load() {
				unavailable(w, r)
				return
			}
			answerMe(w, r)
		case "/v1/ws":
			conn, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			write := func(ev salamander.Event) error {
				b, _ := json.Marshal(ev)
				return conn.Write(r.Context(), websocket.MessageText, b)
			}
			if write(salamander.Event{Type: salamander.EventReady}) != nil {
				return
			}
			meOK.Store(true)
			select {
			case <-learned:
			case <-r.Context().Done():
				return
			}
			_ = write(salamander.Event{Type: salamander.EventMessage, Pos: &salamander.Position{Stream: "p0", Seq: 1},
				Message: &salamander.Message{Room: room, Seq: 1, Sender: "mina", ClientID: "mine", Text: "hi"}})
			_, _, _ = conn.Read(r.Context())
		default:
			unavailable(w, r)
		}
	})
	cl := newTestClient(t, s)
	cl.SetToken("tok")
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	_, err := cl.SendWithID(ctx, room, "mine", "hi")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send: %v", err)
	}
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	go func() {
		for range sub.Events() { // the application takes them
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for cl.UserName() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the client never learned its user once a site served it")
		}
		time.Sleep(10 * time.Millisecond) // polling the client
	}
	close(learned)
	for len(cl.Pending()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("Pending() = %+v after the user's own message arrived", cl.Pending())
		}
		time.Sleep(10 * time.Millisecond) // polling the outbox
	}
}
