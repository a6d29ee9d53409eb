package client

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// A site ends every session of the account when it applies a password
// change, before the change's answer (the new session) reaches the client:
// the Subscription's socket is closed (1008) and its reconnection with
// the old session refused (401), and so is any request made with it
// meanwhile. None of that ends the Subscription or fails the request:
// they wait for the change and go again with the new session, which the
// client keeps, with the new device token.
func TestChangePasswordKeepsTheClientSignedIn(t *testing.T) {
	var mu sync.Mutex
	changing := make(chan struct{}) // closed when the change arrives
	refused := make(chan struct{})  // closed when a socket's old session was refused
	var refuseOnce, changeOnce sync.Once
	refuse := func(w http.ResponseWriter) {
		writeJSON(w, http.StatusUnauthorized, salamander.Errorf(salamander.CodeUnauthorized, "revoked token"))
	}
	var newSockets int
	s := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		tok := r.Header.Get("Authorization")
		switch r.URL.Path {
		case "/v1/me/password":
			var req salamander.ChangePasswordRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.CurrentPassword != "old password" ||
				req.NewPassword != "new password" || tok != "Bearer old" {
				t.Errorf("change: %+v, %v, %q", req, err, tok)
			}
			changeOnce.Do(func() { close(changing) })
			// The site applied the change (closing the socket) before
			// it answers: answer once the socket's reconnection with
			// the old session was refused.
			select {
			case <-refused:
			case <-time.After(5 * time.Second):
				t.Error("the socket never reconnected with the old session")
			}
			writeJSON(w, http.StatusOK, salamander.Session{Token: "new", User: salamander.User{Name: "mina"}, Device: "dev-new"})
		case "/v1/me":
			select {
			case <-changing:
				if tok != "Bearer new" {
					refuse(w)
					return
				}
			default:
			}
			writeJSON(w, http.StatusOK, salamander.User{Name: "mina"})
		case "/v1/ws":
			select {
			case <-changing:
				if tok != "Bearer new" {
					refuseOnce.Do(func() { close(refused) })
					refuse(w)
					return
				}
				mu.Lock()
				newSockets++
				mu.Unlock()
			default:
			}
			conn, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			b, _ := json.Marshal(salamander.Event{Type: salamander.EventReady, Cursor: ""})
			if err := conn.Write(r.Context(), websocket.MessageText, b); err != nil {
				return
			}
			if tok == "Bearer old" {
				<-changing
				conn.Close(websocket.StatusPolicyViolation, "session revoked or expired")
				return
			}
			_, _, _ = conn.Read(r.Context())
		default:
			http.NotFound(w, r)
		}
	})
	cl := newTestClient(t, s)
	cl.timeout = 10 * time.Second
	cl.SetToken("old")
	cl.SetDeviceToken("mina", "dev-old")
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	readies := 0
	waitReady := func() {
		t.Helper()
		for {
			select {
			case ev := <-sub.Events():
				if ev.Type == salamander.EventReady {
					readies++
					return
				}
			case <-sub.Done():
				t.Fatalf("the subscription ended: %v", sub.Err())
			case <-time.After(10 * time.Second):
				t.Fatal("no ready event")
			}
		}
	}
	waitReady()
	// A request made with the old session while the change is in flight.
	me := make(chan error, 1)
	go func() {
		<-changing
		_, err := cl.Me(t.Context())
		me <- err
	}()
	sess, err := cl.ChangePassword(t.Context(), "old password", "new password")
	if err != nil {
		t.Fatal(err)
	}
	if sess.Token != "new" || cl.Token() != "new" || cl.DeviceToken("mina") != "dev-new" {
		t.Fatalf("after the change: session %+v, client token %q, device token %q", sess, cl.Token(), cl.DeviceToken("mina"))
	}
	if err := <-me; err != nil {
		t.Errorf("a request made with the old session during the change: %v", err)
	}
	waitReady() // connected again, with the new session
	mu.Lock()
	defer mu.Unlock()
	if newSockets == 0 {
		t.Error("no socket with the new session")
	}
}
