package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander"
)

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
