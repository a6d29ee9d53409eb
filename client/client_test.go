package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// site is a fake site: an httptest server whose handler a test sets.
type site struct {
	*httptest.Server
	calls atomic.Int64
}

func newSite(t *testing.T, h http.HandlerFunc) *site {
	t.Helper()
	s := &site{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.calls.Add(1)
		h(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

func newTestClient(t *testing.T, sites ...*site) *Client {
	t.Helper()
	urls := make([]string, len(sites))
	for i, s := range sites {
		urls[i] = s.URL
	}
	c, err := New(Config{
		Sites:          urls,
		RequestTimeout: 500 * time.Millisecond,
		MinBackoff:     time.Millisecond,
		MaxBackoff:     5 * time.Millisecond,
		Rand:           rand.NewPCG(1, 2),
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// answerMe serves GET /v1/me, as a site would for the fake sites' user,
// mina (a Subscription of a session set with SetToken asks it); it
// reports whether the request was that.
func answerMe(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Path != "/v1/me" {
		return false
	}
	writeJSON(w, http.StatusOK, salamander.User{Name: "mina"})
	return true
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func unavailable(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusServiceUnavailable, salamander.Errorf(salamander.CodeUnavailable, "no quorum"))
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Sites: []string{"ftp://x"}},
		{Sites: []string{"http://a"}, Prefer: 1},
		{Sites: []string{"http://a"}, Prefer: -1},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

func TestBackoffBounds(t *testing.T) {
	c, err := New(Config{Sites: []string{"http://a"}, MinBackoff: 100 * time.Millisecond, MaxBackoff: 3 * time.Second, Rand: rand.NewPCG(3, 4)})
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 70; n++ {
		ceil := min(3*time.Second, 100*time.Millisecond<<min(n-1, 20))
		var top time.Duration
		for range 500 {
			d := c.backoff(n)
			if d < 0 || d >= ceil {
				t.Fatalf("backoff(%d) = %v, want in [0, %v)", n, d, ceil)
			}
			top = max(top, d)
		}
		if top < ceil/2 {
			t.Errorf("backoff(%d): largest of 500 draws %v, want jitter over [0, %v)", n, top, ceil)
		}
	}
}

func TestDecodeError(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		code   salamander.Code
		msg    string
	}{
		{409, `{"code":"conflict","message":"name taken"}`, salamander.CodeConflict, "name taken"},
		{404, `<html>nope</html>`, salamander.CodeNotFound, "<html>nope</html>"},
		{418, ``, salamander.CodeInvalid, "I'm a teapot"},
		{503, `{"code":"unavailable"}`, salamander.CodeUnavailable, "Service Unavailable"},
		{502, `bad gateway`, salamander.CodeInternal, "bad gateway"},
	} {
		e := decodeError(tc.status, nil, []byte(tc.body))
		if e.Code != tc.code || e.Message != tc.msg {
			t.Errorf("decodeError(%d, %q) = %q %q, want %q %q", tc.status, tc.body, e.Code, e.Message, tc.code, tc.msg)
		}
	}
}

// How long to wait comes from the body's retry_after, else from a
// Retry-After header (a proxy's answer), at most maxRetryAfter.
func TestDecodeErrorRetryAfter(t *testing.T) {
	h := http.Header{}
	h.Set("Retry-After", "3")
	for _, tc := range []struct {
		h    http.Header
		body string
		want int
	}{
		{nil, `{"code":"too_many_requests","message":"m","retry_after":5}`, 5},
		{h, `{"code":"too_many_requests","message":"m","retry_after":5}`, 5},
		{h, `{"code":"too_many_requests","message":"m"}`, 3},
		{h, `slow down`, 3},
		{nil, `{"code":"too_many_requests","message":"m","retry_after":86400}`, int(maxRetryAfter / time.Second)},
		{nil, `{"code":"too_many_requests","message":"m","retry_after":-4}`, 0},
	} {
		if got := decodeError(429, tc.h, []byte(tc.body)).RetryAfter; got != tc.want {
			t.Errorf("decodeError(429, %v, %s).RetryAfter = %d, want %d", tc.h, tc.body, got, tc.want)
		}
	}
}

func TestFailoverToNextSite(t *testing.T) {
	a := newSite(t, unavailable)
	b := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/signup" || r.Method != http.MethodPost {
			t.Errorf("got %s %s", r.Method, r.URL.Path)
		}
		writeJSON(w, http.StatusCreated, salamander.Session{Token: "tok", User: salamander.User{Name: "ann"}})
	})
	c := newSite(t, unavailable)
	cl := newTestClient(t, a, b, c)

	s, err := cl.SignUp(t.Context(), "ann", "Ann", "password1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Token != "tok" || cl.Token() != "tok" || cl.UserName() != "ann" {
		t.Errorf("session %+v, Token() %q", s, cl.Token())
	}
	if a.calls.Load() != 1 || b.calls.Load() != 1 || c.calls.Load() != 0 {
		t.Errorf("calls a=%d b=%d c=%d, want 1 1 0", a.calls.Load(), b.calls.Load(), c.calls.Load())
	}
	if cl.Site() != b.URL {
		t.Errorf("Site() = %s, want %s", cl.Site(), b.URL)
	}
}

func TestFailoverOnTimeoutAndRefusedConnection(t *testing.T) {
	hang := newSite(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	dead := newSite(t, unavailable)
	dead.Close() // connection refused from now on
	ok := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, salamander.User{Name: "ann"})
	})
	cl := newTestClient(t, hang, dead, ok)
	u, err := cl.Me(t.Context())
	if err != nil || u.Name != "ann" {
		t.Fatalf("Me = %+v, %v", u, err)
	}
}

func TestFinalErrorIsNotRetried(t *testing.T) {
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusConflict, salamander.Errorf(salamander.CodeConflict, "name taken"))
	})
	b := newSite(t, unavailable)
	cl := newTestClient(t, a, b)
	_, err := cl.SignUp(t.Context(), "ann", "Ann", "password1")
	var e *salamander.Error
	if !errors.As(err, &e) || e.Code != salamander.CodeConflict {
		t.Fatalf("err = %v, want conflict", err)
	}
	if b.calls.Load() != 0 {
		t.Errorf("second site called %d times", b.calls.Load())
	}
}

func TestSignUpConflictAfterFailoverLogsIn(t *testing.T) {
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusBadGateway, nil)
	})
	var logins atomic.Int64
	b := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/signup":
			writeJSON(w, http.StatusConflict, salamander.Errorf(salamander.CodeConflict, "name taken"))
		case "/v1/login":
			logins.Add(1)
			var req salamander.LoginRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			if req.Password != "password1" {
				writeJSON(w, http.StatusUnauthorized, salamander.Errorf(salamander.CodeUnauthorized, "bad password"))
				return
			}
			writeJSON(w, http.StatusOK, salamander.Session{Token: "tok2", User: salamander.User{Name: req.Name}})
		}
	})
	cl := newTestClient(t, a, b)
	s, err := cl.SignUp(t.Context(), "ann", "Ann", "password1")
	if err != nil || s.Token != "tok2" {
		t.Fatalf("SignUp = %+v, %v", s, err)
	}
	// Someone else's account: the login fails and the conflict stands.
	cl2 := newTestClient(t, a, b)
	if _, err := cl2.SignUp(t.Context(), "ann", "Ann", "password2"); salamander.ErrorCode(err) != salamander.CodeConflict {
		t.Fatalf("err = %v, want conflict", err)
	}
	if logins.Load() != 2 {
		t.Errorf("logins = %d, want 2", logins.Load())
	}
}

func TestSendKeepsClientIDAcrossFailover(t *testing.T) {
	var mu sync.Mutex
	var ids []string
	record := func(r *http.Request) {
		var req salamander.SendRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		ids = append(ids, req.ClientID)
		mu.Unlock()
	}
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		record(r)
		unavailable(w, r)
	})
	b := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		record(r)
		if r.URL.Path != "/v1/rooms/g_0123456789abcdef/messages" {
			t.Errorf("path %s", r.URL.Path)
		}
		writeJSON(w, http.StatusCreated, salamander.SendResult{Message: salamander.Message{Seq: 7, Text: "hi"}})
	})
	cl := newTestClient(t, a, b)
	res, err := cl.Send(t.Context(), "g_0123456789abcdef", "hi")
	if err != nil || res.Message.Seq != 7 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	if len(ids) != 2 || ids[0] != ids[1] || len(ids[0]) != 32 {
		t.Errorf("client ids %q, want the same 32-hex id twice", ids)
	}
	if p := cl.Pending(); len(p) != 0 {
		t.Errorf("Pending() = %+v after ack", p)
	}
}

func TestUnacknowledgedSendStaysPending(t *testing.T) {
	a := newSite(t, unavailable)
	b := newSite(t, unavailable)
	cl := newTestClient(t, a, b)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := cl.SendWithID(ctx, "g_0123456789abcdef", "id-1", "hello")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	p := cl.Pending()
	if len(p) != 1 || p[0].ClientID != "id-1" || p[0].Text != "hello" {
		t.Fatalf("Pending() = %+v", p)
	}
	cl.Forget("id-1")
	if len(cl.Pending()) != 0 {
		t.Error("Forget left the message pending")
	}
	// A refused message leaves the outbox.
	c := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, salamander.Errorf(salamander.CodeForbidden, "not a member"))
	})
	cl = newTestClient(t, c)
	if _, err := cl.Send(t.Context(), "g_0123456789abcdef", "x"); salamander.ErrorCode(err) != salamander.CodeForbidden {
		t.Fatalf("err = %v", err)
	}
	if len(cl.Pending()) != 0 {
		t.Error("refused message still pending")
	}
}

func TestEventDedupe(t *testing.T) {
	s := newEventState()
	msg := func(stream string, pos uint64, room string, seq uint64) *salamander.Event {
		return &salamander.Event{Type: salamander.EventMessage, Pos: &salamander.Position{Stream: stream, Seq: pos},
			Message: &salamander.Message{Room: room, Seq: seq}}
	}
	steps := []struct {
		ev    *salamander.Event
		fresh bool
	}{
		{msg("p0", 1, "r1", 1), true},
		{msg("p0", 1, "r1", 1), false}, // same position again
		{msg("p1", 1, "r2", 1), true},  // other stream
		{msg("p0", 2, "r1", 2), true},
		{msg("p0", 9, "r1", 2), false}, // same (room, seq) at a new position
		{&salamander.Event{Type: salamander.EventTyping}, true},
		{&salamander.Event{Type: salamander.EventTyping}, true},
	}
	for i, st := range steps {
		if got := s.fresh(st.ev); got != st.fresh {
			t.Fatalf("step %d: fresh = %v, want %v", i, got, st.fresh)
		}
		if st.fresh {
			s.delivered(st.ev)
		}
	}
	if got := s.cursor.String(); got != "p0:2,p1:1" {
		t.Errorf("cursor %q", got)
	}
}

func TestUnread(t *testing.T) {
	cl := newTestClient(t, newSite(t, unavailable))
	cl.observeRoom(&salamander.Room{ID: "r", Members: []string{"a", "b", "c"}, ReadMarkers: map[string]uint64{"a": 5, "b": 2}})
	cl.observe(&salamander.Event{Type: salamander.EventMessage, Message: &salamander.Message{Room: "r", Seq: 6, Sender: "c"}})
	if n := cl.Unread("r", 6, 3); n != 2 {
		t.Errorf("unread of 6 = %d, want 2", n)
	}
	if n := cl.Unread("r", 3, 3); n != 1 {
		t.Errorf("unread of 3 = %d, want 1", n)
	}
	cl.observe(&salamander.Event{Type: salamander.EventRead, RoomID: "r", User: "b", Seq: 6})
	cl.observe(&salamander.Event{Type: salamander.EventRead, RoomID: "r", User: "b", Seq: 1}) // never backwards
	if n := cl.Unread("r", 6, 3); n != 1 {
		t.Errorf("unread of 6 after b read = %d, want 1", n)
	}
}

// wsSite serves /v1/ws: it checks the cursor the client resumes from and
// sends frames.
func wsSite(t *testing.T, wantCursor string, frames []salamander.Event, thenClose bool) *site {
	return newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			unavailable(w, r)
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer tok" {
			t.Errorf("Authorization %q", got)
		}
		if got := r.URL.Query().Get("cursor"); got != wantCursor {
			t.Errorf("resumed from cursor %q, want %q", got, wantCursor)
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		for _, f := range frames {
			b, _ := json.Marshal(f)
			if err := conn.Write(r.Context(), websocket.MessageText, b); err != nil {
				return
			}
		}
		if thenClose {
			conn.Close(websocket.StatusGoingAway, "bye")
			return
		}
		_, _, _ = conn.Read(r.Context()) // until the client goes away
	})
}

func TestSubscriptionResumesAtNextSiteWithoutDuplicates(t *testing.T) {
	m := func(pos, seq uint64, text string) salamander.Event {
		return salamander.Event{Type: salamander.EventMessage, Pos: &salamander.Position{Stream: "p0", Seq: pos},
			Message: &salamander.Message{Room: "r", Seq: seq, Text: text}}
	}
	ready := func(cur string) salamander.Event { return salamander.Event{Type: salamander.EventReady, Cursor: cur} }
	a := wsSite(t, "", []salamander.Event{m(1, 1, "one"), m(2, 2, "two"), ready("p0:2")}, true)
	b := wsSite(t, "p0:2", []salamander.Event{m(2, 2, "two"), m(3, 3, "three"), ready("p0:3"), m(3, 3, "three"), m(4, 4, "four")}, false)
	cl := newTestClient(t, a, b)
	cl.SetToken("tok")

	sub := cl.Subscribe(t.Context())
	var got []string
	for ev := range sub.Events() {
		switch ev.Type {
		case salamander.EventMessage:
			got = append(got, ev.Message.Text)
		case salamander.EventReady:
			got = append(got, "ready")
		}
		if len(got) == 6 {
			break
		}
	}
	if want := "one two ready three ready four"; strings.Join(got, " ") != want {
		t.Errorf("events %q, want %q", strings.Join(got, " "), want)
	}
	if sub.Site() != b.URL {
		t.Errorf("Site() = %q, want %q", sub.Site(), b.URL)
	}
	if err := sub.Close(); err != nil || sub.Err() != nil {
		t.Errorf("Close = %v, Err = %v", err, sub.Err())
	}
	if _, ok := <-sub.Events(); ok {
		t.Error("Events still open after Close")
	}
	if cl.Cursor() != "p0:4" {
		t.Errorf("Cursor() = %q", cl.Cursor())
	}
}

func TestSubscriptionStopsOnFinalError(t *testing.T) {
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusUnauthorized, salamander.Errorf(salamander.CodeUnauthorized, "token revoked"))
	})
	cl := newTestClient(t, a)
	sub := cl.Subscribe(t.Context())
	for range sub.Events() {
	}
	if salamander.ErrorCode(sub.Err()) != salamander.CodeUnauthorized {
		t.Errorf("Err() = %v, want unauthorized", sub.Err())
	}
	sub.Close()
}

// A site that refuses the WebSocket handshake with 429 (the account's
// connections are over budget) is asked again later: the Subscription
// does not end, and reaches the site once it lets it in.
func TestSubscriptionOutlastsTooManyRequests(t *testing.T) {
	var refusals atomic.Int64
	inner := wsSite(t, "", []salamander.Event{{Type: salamander.EventReady}}, false)
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/ws" && refusals.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			writeJSON(w, http.StatusTooManyRequests, salamander.Errorf(salamander.CodeTooManyRequests, "too many connections"))
			return
		}
		inner.Config.Handler.ServeHTTP(w, r)
	})
	cl := newTestClient(t, a)
	cl.SetToken("tok")
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	select {
	case ev, ok := <-sub.Events():
		if !ok || ev.Type != salamander.EventReady {
			t.Fatalf("first event %+v (open %v); the Subscription ended: %v", ev, ok, sub.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no ready within 10 s")
	}
	if n := refusals.Load(); n < 3 {
		t.Fatalf("%d handshakes, want the two refused and one more", n)
	}
}

func TestRetryAfter(t *testing.T) {
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, " 7 ": 7 * time.Second, "-1": 0,
		"soon": 0, "Wed, 21 Oct 2026 07:28:00 GMT": 0, "86400": maxRetryAfter} {
		h := http.Header{}
		h.Set("Retry-After", v)
		if got := retryAfter(h); got != want {
			t.Errorf("Retry-After %q: %s, want %s", v, got, want)
		}
	}
}

// A refusal after a failover counts as "my earlier attempt did it" only if
// that attempt may have reached its site: behind a refused connection,
// leaving a room one is not in is the error it is.
func TestRefusedConnectionHidesNoAnswer(t *testing.T) {
	dead := newSite(t, unavailable)
	dead.Close() // connection refused: the attempt never reached a site
	notIn := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, salamander.Errorf(salamander.CodeForbidden, "you are not a member"))
	})
	cl := newTestClient(t, dead, notIn)
	if err := cl.Leave(t.Context(), "g_0123456789abcdef"); salamander.ErrorCode(err) != salamander.CodeForbidden {
		t.Fatalf("Leave of a room one is not in, behind a refused connection: %v, want forbidden", err)
	}
	// Behind a site that answered 503 (the first attempt may have left the
	// room), the same answer means it did.
	busy := newSite(t, unavailable)
	cl = newTestClient(t, busy, notIn)
	if err := cl.Leave(t.Context(), "g_0123456789abcdef"); err != nil {
		t.Fatalf("Leave behind a 503: %v, want success", err)
	}
}

// Login brings the device token the client holds for the user, and keeps
// the one the site answers; a site of a version before device tokens
// refuses the unknown field, and Login then signs in without it.
func TestLoginBringsTheDeviceToken(t *testing.T) {
	var mu sync.Mutex
	var brought []string
	old := false // the site refuses the device field, as versions before it did
	s := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		var req salamander.LoginRequest
		if old {
			dec.DisallowUnknownFields()
			var legacy struct{ Name, Password string }
			if err := dec.Decode(&legacy); err != nil {
				writeJSON(w, http.StatusBadRequest, salamander.Errorf(salamander.CodeInvalid, "unknown field \"device\""))
				return
			}
			req.Name = legacy.Name
		} else if err := dec.Decode(&req); err != nil {
			t.Error(err)
		}
		mu.Lock()
		brought = append(brought, req.Device)
		n := len(brought)
		mu.Unlock()
		writeJSON(w, http.StatusOK, salamander.Session{Token: "tok", User: salamander.User{Name: req.Name},
			Device: "device-" + string(rune('0'+n))})
	})
	c := newTestClient(t, s)
	ctx := t.Context()
	for range 2 {
		if _, err := c.Login(ctx, "mina", "correct horse battery"); err != nil {
			t.Fatal(err)
		}
	}
	if got := c.DeviceToken("mina"); got != "device-2" {
		t.Fatalf("kept device token %q, want the last one answered", got)
	}
	old = true
	if _, err := c.Login(ctx, "mina", "correct horse battery"); err != nil {
		t.Fatalf("at a site before device tokens: %v", err)
	}
	if want := []string{"", "device-1", ""}; !slices.Equal(brought, want) {
		t.Fatalf("the logins brought %q, want %q", brought, want)
	}
	c.SetDeviceToken("mina", "")
	if c.DeviceToken("mina") != "" {
		t.Fatal("SetDeviceToken(user, \"\") did not forget it")
	}
}

// Presence asks about any number of users, MaxPresenceQuery at a time.
func TestPresenceAsksInPages(t *testing.T) {
	var queries atomic.Int64
	s := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		queries.Add(1)
		names := strings.Split(r.URL.Query().Get("users"), ",")
		if len(names) > salamander.MaxPresenceQuery {
			writeJSON(w, http.StatusRequestEntityTooLarge, salamander.Errorf(salamander.CodeTooLarge, "too many"))
			return
		}
		var out []salamander.Presence
		for _, n := range names {
			out = append(out, salamander.Presence{User: n, Online: true})
		}
		writeJSON(w, http.StatusOK, map[string]any{"presence": out})
	})
	c := newTestClient(t, s)
	var users []string
	for i := range 250 {
		users = append(users, fmt.Sprintf("user%03d", i))
	}
	ps, err := c.Presence(t.Context(), users...)
	if err != nil || len(ps) != 250 || ps[249].User != "user249" || queries.Load() != 3 {
		t.Fatalf("%d answers, %d queries, %v", len(ps), queries.Load(), err)
	}
}

// A socket the site closes for what the client did (1008: it read too
// slowly, say) is reconnected at that site: the site is not failing, so
// neither the Subscription nor the Client's requests move to another.
func TestSubscriptionReconnectsWhereItWasClosedForPolicy(t *testing.T) {
	var connects atomic.Int64
	a := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		if answerMe(w, r) {
			return
		}
		if r.URL.Path != "/v1/ws" {
			unavailable(w, r)
			return
		}
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		n := connects.Add(1) // counted before its ready: the test reads it once the ready is in
		b, _ := json.Marshal(salamander.Event{Type: salamander.EventReady})
		if err := conn.Write(r.Context(), websocket.MessageText, b); err != nil {
			return
		}
		if n == 1 {
			conn.Close(websocket.StatusPolicyViolation, "reading too slowly; reconnect and resume from your cursor")
			return
		}
		_, _, _ = conn.Read(r.Context())
	})
	var otherAsked atomic.Int64
	b := newSite(t, func(w http.ResponseWriter, r *http.Request) {
		otherAsked.Add(1)
		unavailable(w, r)
	})
	cl := newTestClient(t, a, b)
	cl.SetToken("tok")
	sub := cl.Subscribe(t.Context())
	defer sub.Close()
	readies := 0
	for ev := range sub.Events() {
		if ev.Type == salamander.EventReady {
			if readies++; readies == 2 {
				break
			}
		}
	}
	if readies != 2 || connects.Load() != 2 || otherAsked.Load() != 0 || sub.Site() != a.URL {
		t.Fatalf("%d readies, %d connects at a, %d requests at b, on %q: want 2, 2, 0 and a", readies, connects.Load(), otherAsked.Load(), sub.Site())
	}
}
