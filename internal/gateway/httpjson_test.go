package gateway

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// An answer that its client does not read is given up after the answer
// timeout, and its handler returns; the next request on a connection that
// does read is not cut by that deadline. Answers are not HTML-escaped.
func TestUnreadAnswerIsGivenUp(t *testing.T) {
	defer func(d time.Duration) { answerWriteTimeout = d }(answerWriteTimeout)
	answerWriteTimeout = 300 * time.Millisecond
	// More than the kernel's buffers hold for a reader that never reads
	// (a send buffer of at most 4 MiB here, a receive window that does not
	// grow), with room to spare; encoding it takes seconds under -race.
	big := strings.Repeat("<", 32<<20)
	returned := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			writeJSON(w, http.StatusOK, map[string]string{"text": big})
			returned <- struct{}{}
			return
		}
		time.Sleep(2 * answerWriteTimeout) // a slow answer, read at once
		writeJSON(w, http.StatusOK, map[string]string{"text": "<small>"})
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	select {
	case <-returned:
	case <-time.After(60 * time.Second):
		t.Fatal("the handler still writes to a client that does not read")
	}

	res, err := srv.Client().Get(srv.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res, err = srv.Client().Get(srv.URL + "/b") // the same connection, kept alive
	if err != nil {
		t.Fatalf("the second request on a connection: %v", err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if string(body) != `{"text":"<small>"}`+"\n" || res.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("answer %q, headers %v", body, res.Header)
	}
}

// decodeJSON never panics and answers every bad body with a coded 4xx.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"client_id":"a","text":"b"}`, `{`, `{} {}`, `{"x":1}`, "\xff", `[]`, `null`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/", strings.NewReader(body))
		w := httptest.NewRecorder()
		var req salamander.SendRequest
		err := decodeJSON(w, r, &req)
		if err != nil && salamander.ErrorCode(err).HTTPStatus() >= 500 {
			t.Fatalf("body %q: uncoded error %v", body, err)
		}
	})
}

func TestDirectRoomIDIsSymmetricAndWellFormed(t *testing.T) {
	a, b := directRoomID("alice", "bob"), directRoomID("bob", "alice")
	if a != b || !salamander.ValidRoomID(a) {
		t.Fatalf("%s %s", a, b)
	}
	if directRoomID("alice", "carol") == a {
		t.Fatal("different pairs share a room id")
	}
}

// A body that trickles in has bodyReadTimeout to arrive: the handler is
// not held for as long as a client keeps the connection open.
func TestSlowBodyIsCutOff(t *testing.T) {
	defer func(d time.Duration) { bodyReadTimeout = d }(bodyReadTimeout)
	bodyReadTimeout = 200 * time.Millisecond
	done := make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req salamander.SendRequest
		done <- decodeJSON(w, r, &req)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Headers promise 100 bytes; 10 come, then nothing.
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"text\":\"a")
	select {
	case err := <-done:
		if salamander.ErrorCode(err) != salamander.CodeInvalid {
			t.Fatalf("a body that stopped coming: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still waits for the body")
	}
}
