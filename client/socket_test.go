package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// frameSite is a fake site whose WebSocket says "ready" and answers every
// send frame with answer(frame); nil closes the socket. Its HTTP send
// endpoint acks with seq 1000 and records the client ids it got.
type frameSite struct {
	*site
	mu        sync.Mutex
	httpSends []string
}

func newFrameSite(t *testing.T, answer func(f salamander.ClientFrame) *salamander.Event) *frameSite {
	return newSocketSite(t, func(_ int64, f salamander.ClientFrame) *salamander.Event { return answer(f) })
}

// newSocketSite is newFrameSite whose answer also learns which of the
// site's sockets (1, 2, …, in the order accepted) the frame came on.
func newSocketSite(t *testing.T, answer func(socket int64, f salamander.ClientFrame) *salamander.Event) *frameSite {
	fs := &frameSite{}
	var sockets atomic.Int64
	fs.site = newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			fs.sendOverHTTP(w, r)
			return
		}
		socket := sockets.Add(1)
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		var wmu sync.Mutex
		write := func(ev salamander.Event) error {
			b, _ := json.Marshal(ev)
			wmu.Lock()
			defer wmu.Unlock()
			return conn.Write(ctx, websocket.MessageText, b)
		}
		if write(salamander.Event{Type: salamander.EventReady}) != nil {
			return
		}
		var wg sync.WaitGroup
		defer wg.Wait()
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var f salamander.ClientFrame
			if err := json.Unmarshal(data, &f); err != nil {
				t.Errorf("undecodable frame %q", data)
				return
			}
			wg.Add(1)
			go func() { // answered concurrently, like the real site
				defer wg.Done()
				if ev := answer(socket, f); ev != nil {
					_ = write(*ev)
				} else {
					conn.CloseNow()
				}
			}()
		}
	})
	return fs
}

// sendOverHTTP is the site's HTTP send endpoint: it acks with seq 1000
// and records the client id.
func (fs *frameSite) sendOverHTTP(w http.ResponseWriter, r *http.Request) {
	var req salamander.SendRequest
	_ = json.NewDecoder(r.Body).Decode(&req)
	fs.mu.Lock()
	fs.httpSends = append(fs.httpSends, req.ClientID)
	fs.mu.Unlock()
	writeJSON(w, http.StatusCreated, salamander.SendResult{Message: salamander.Message{Seq: 1000, ClientID: req.ClientID}})
}

func (fs *frameSite) sentOverHTTP() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return append([]string(nil), fs.httpSends...)
}

func ack(f salamander.ClientFrame, seq uint64) *salamander.Event {
	return &salamander.Event{Type: salamander.EventAck, RoomID: f.RoomID, ClientID: f.ClientID,
		Message: &salamander.Message{Room: f.RoomID, Seq: seq, ClientID: f.ClientID, Text: f.Text}}
}

func nackWith(f salamander.ClientFrame, code salamander.Code) *salamander.Event {
	return &salamander.Event{Type: salamander.EventNack, RoomID: f.RoomID, ClientID: f.ClientID,
		Error: salamander.Errorf(code, "refused")}
}

// subscribed returns a client of the sites with a Subscription connected
// to the first, and the Subscription's events drained.
func subscribed(t *testing.T, sites ...*site) *Client {
	t.Helper()
	cl := newTestClient(t, sites...)
	subscribeDrained(t, cl)
	return cl
}

// subscribeDrained signs cl in (token "tok"), connects a Subscription, waits
// for its ready and drains its events until the test ends.
func subscribeDrained(t *testing.T, cl *Client) {
	t.Helper()
	cl.SetToken("tok")
	sub := cl.Subscribe(t.Context())
	t.Cleanup(func() { sub.Close() })
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			break
		}
	}
	go func() {
		for range sub.Events() {
		}
	}()
}

const room = "g_0123456789abcdef"

// Sends go over the open socket, many at once, each matched to its answer.
func TestSendOverWebSocket(t *testing.T) {
	var seq atomic.Uint64
	a := newFrameSite(t, func(f salamander.ClientFrame) *salamander.Event {
		if f.Type != salamander.FrameSend || f.RoomID != room || len(f.ClientID) != 32 {
			t.Errorf("frame %+v", f)
		}
		time.Sleep(time.Millisecond) // answers overtake each other
		return ack(f, seq.Add(1))
	})
	cl := subscribed(t, a.site)
	var wg sync.WaitGroup
	seen := make([]bool, 51)
	var mu sync.Mutex
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			text := fmt.Sprint("m", i)
			res, err := cl.Send(t.Context(), room, text)
			if err != nil || res.Message.Text != text {
				t.Errorf("Send %s = %+v, %v", text, res.Message, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if seen[res.Message.Seq] {
				t.Errorf("seq %d acked twice", res.Message.Seq)
			}
			seen[res.Message.Seq] = true
		}()
	}
	wg.Wait()
	if got := a.sentOverHTTP(); len(got) != 0 {
		t.Errorf("%d sends over HTTP", len(got))
	}
	if p := cl.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %+v", p)
	}
}

// A final nack is the send's error and takes it out of the outbox; a nack
// saying "unavailable" and a socket that dies both move the send, under the
// same client id, to HTTP at the next site.
func TestSendOverWebSocketNacksAndFailover(t *testing.T) {
	a := newFrameSite(t, func(f salamander.ClientFrame) *salamander.Event {
		switch f.Text {
		case "forbidden":
			return nackWith(f, salamander.CodeForbidden)
		case "unavailable":
			return nackWith(f, salamander.CodeUnavailable)
		}
		return nil // the site dies with the send in flight
	})
	var overSocket sync.Map // client ids site b got over its WebSocket
	b := newFrameSite(t, func(f salamander.ClientFrame) *salamander.Event {
		overSocket.Store(f.ClientID, true)
		return ack(f, 1)
	})
	cl := subscribed(t, a.site, b.site)

	_, err := cl.SendWithID(t.Context(), room, "id-f", "forbidden")
	if salamander.ErrorCode(err) != salamander.CodeForbidden || len(cl.Pending()) != 0 {
		t.Fatalf("err = %v, pending %+v", err, cl.Pending())
	}
	// Site b gets it under the same id: over HTTP, or over its WebSocket
	// if the Subscription, leaving site a, got there first (a CI run saw
	// both).
	res, err := cl.SendWithID(t.Context(), room, "id-u", "unavailable")
	_, viaSocket := overSocket.Load("id-u")
	viaHTTP := b.sentOverHTTP()
	switch {
	case err != nil || res.Message.ClientID != "id-u":
		t.Fatalf("after nack unavailable: %+v, %v", res, err)
	case viaSocket && res.Message.Seq == 1 && len(viaHTTP) == 0:
	case !viaSocket && res.Message.Seq == 1000 && len(viaHTTP) == 1 && viaHTTP[0] == "id-u":
	default:
		t.Fatalf("after nack unavailable: %+v; site b got it over its WebSocket %v, over HTTP %q", res, viaSocket, viaHTTP)
	}

	// The subscription left site a (marked unusable); reconnect it there.
	cl2 := subscribed(t, a.site, b.site)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	res, err = cl2.SendWithID(ctx, room, "id-d", "dies")
	if err != nil || res.Message.ClientID != "id-d" {
		t.Fatalf("after the socket died: %+v, %v", res, err)
	}
	if len(cl2.Pending()) != 0 {
		t.Errorf("Pending() = %+v", cl2.Pending())
	}
}

// stallingSite is a fake site whose WebSocket says "ready" and then, when
// a send frame comes (or at once, if early), writes more events than a
// Subscription reads ahead of its application before it acks; its HTTP
// send endpoint acks with seq 1000.
func stallingSite(t *testing.T, early bool) *frameSite {
	fs := &frameSite{}
	fs.site = newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			fs.sendOverHTTP(w, r)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		write := func(ev salamander.Event) error {
			b, _ := json.Marshal(ev)
			return conn.Write(ctx, websocket.MessageText, b)
		}
		flood := func() error {
			for range eventBuffer + 50 {
				if err := write(salamander.Event{Type: salamander.EventTyping, RoomID: room, User: "someone"}); err != nil {
					return err
				}
			}
			return nil
		}
		if write(salamander.Event{Type: salamander.EventReady}) != nil || early && flood() != nil {
			return
		}
		for {
			_, data, err := conn.Read(ctx)
			if err != nil {
				return
			}
			var f salamander.ClientFrame
			_ = json.Unmarshal(data, &f)
			if flood() != nil || write(*ack(f, 1)) != nil {
				return
			}
		}
	})
	return fs
}

// A Subscription whose application does not take its events cannot read
// the answers to sends on its socket: a send then goes over HTTP at once,
// or, if its frame is out when the reader begins to wait, after a moment —
// not after the whole request timeout.
func TestSendDoesNotWaitOnAStalledSocket(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprintf("stalled before the send: %v", early), func(t *testing.T) {
			a := stallingSite(t, early)
			cl, err := New(Config{Sites: []string{a.URL}, RequestTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			cl.SetToken("tok")
			sub := cl.Subscribe(t.Context())
			defer sub.Close()
			for ev := range sub.Events() { // then the application looks away
				if ev.Type == salamander.EventReady {
					break
				}
			}
			if early {
				deadline := time.Now().Add(5 * time.Second)
				for s := cl.socket(); s == nil || !s.stalled.Load(); s = cl.socket() {
					if time.Now().After(deadline) {
						t.Fatal("the reader never waited for the application")
					}
					time.Sleep(time.Millisecond)
				}
			}
			began := time.Now()
			res, err := cl.SendWithID(t.Context(), room, "stalled-1", "hello")
			took := time.Since(began)
			if err != nil || res.Message.Seq != 1000 {
				t.Fatalf("Send = %+v, %v; want the HTTP answer (seq 1000)", res, err)
			}
			if took > 2*time.Second {
				t.Fatalf("Send took %s (the request timeout is 5 s)", took.Round(time.Millisecond))
			}
			if got := a.sentOverHTTP(); len(got) != 1 || got[0] != "stalled-1" {
				t.Fatalf("over HTTP: %q", got)
			}
		})
	}
}
