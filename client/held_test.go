package client

import (
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// heldSite is a fake site whose room partition is electing a leader: it
// acknowledges every send held (HTTP 202, or an ack whose message is
// held, seq 0), and places messages when the test sends them on place:
// each message event twice (a replay, as after a reconnection), then a
// typing event that marks the end.
type heldSite struct {
	*site
	place     chan []salamander.Message
	httpSends atomic.Int64
}

func newHeldSite(t *testing.T) *heldSite {
	hs := &heldSite{place: make(chan []salamander.Message)}
	held := func(clientID, text string) *salamander.Message {
		return &salamander.Message{Room: room, Sender: "mina", ClientID: clientID, Text: text, Held: true}
	}
	hs.site = newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			hs.httpSends.Add(1)
			var req salamander.SendRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			writeJSON(w, http.StatusAccepted, salamander.SendResult{Message: *held(req.ClientID, req.Text)})
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		var wmu sync.Mutex
		write := func(ev salamander.Event) {
			b, _ := json.Marshal(ev)
			wmu.Lock()
			defer wmu.Unlock()
			_ = conn.Write(ctx, websocket.MessageText, b)
		}
		write(salamander.Event{Type: salamander.EventReady})
		go func() { // ends when the connection does
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					return
				}
				var f salamander.ClientFrame
				_ = json.Unmarshal(data, &f)
				write(salamander.Event{Type: salamander.EventAck, RoomID: f.RoomID, ClientID: f.ClientID, Message: held(f.ClientID, f.Text)})
			}
		}()
		select {
		case msgs := <-hs.place:
			for i, m := range msgs {
				ev := salamander.Event{Type: salamander.EventMessage, RoomID: m.Room, Message: &m,
					Pos: &salamander.Position{Stream: "p0", Seq: uint64(i + 1)}}
				write(ev)
				write(ev)
			}
			write(salamander.Event{Type: salamander.EventTyping, RoomID: room, User: "joon"})
		case <-ctx.Done():
		}
		<-ctx.Done()
	})
	return hs
}

// A send acknowledged held, over HTTP (202) or over the WebSocket, is a
// success: Send returns the message with Held set and no seq, and it
// leaves the outbox. When the site places it, its message event (same
// client id, with its seq) is delivered once.
func TestHeldSend(t *testing.T) {
	hs := newHeldSite(t)
	cl := newTestClient(t, hs.site)
	cl.SetToken("tok")

	var sent []salamander.Message
	res, err := cl.SendWithID(t.Context(), room, "held-http", "over HTTP")
	if err != nil || !res.Message.Held || res.Message.Seq != 0 || res.Duplicate {
		t.Fatalf("Send over HTTP = %+v, %v; want held, seq 0", res, err)
	}
	sent = append(sent, res.Message)
	if p := cl.Pending(); len(p) != 0 {
		t.Fatalf("Pending() = %+v after a held ack", p)
	}

	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			break
		}
	}
	res, err = cl.SendWithID(t.Context(), room, "held-ws", "over the WebSocket")
	if err != nil || !res.Message.Held || res.Message.Seq != 0 {
		t.Fatalf("Send over the WebSocket = %+v, %v; want held, seq 0", res, err)
	}
	sent = append(sent, res.Message)
	if p := cl.Pending(); len(p) != 0 {
		t.Fatalf("Pending() = %+v after a held ack", p)
	}
	if got := hs.httpSends.Load(); got != 1 {
		t.Errorf("%d sends over HTTP, want only the one before the Subscription", got)
	}

	placed := make([]salamander.Message, len(sent))
	for i, m := range sent {
		m.Held, m.Seq = false, uint64(7+i)
		placed[i] = m
	}
	hs.place <- placed
	var got []salamander.Message
	timeout := time.After(5 * time.Second)
	for done := false; !done; {
		select {
		case ev := <-sub.Events():
			switch ev.Type {
			case salamander.EventMessage:
				got = append(got, *ev.Message)
			case salamander.EventTyping:
				done = true // after every placement and its replay
			}
		case <-timeout:
			t.Fatalf("placed messages delivered: %+v, and no end", got)
		}
	}
	if len(got) != len(placed) {
		t.Fatalf("delivered %+v, want each of the %d placed messages once", got, len(placed))
	}
	for i, m := range got {
		if m.ClientID != sent[i].ClientID || m.Seq != placed[i].Seq || m.Held {
			t.Errorf("message %d delivered as %+v, want client id %s at seq %d", i, m, sent[i].ClientID, placed[i].Seq)
		}
	}
}
