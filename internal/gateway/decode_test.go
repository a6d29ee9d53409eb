package gateway

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander"
)

// A lone surrogate escape names no character: encoding/json would store
// U+FFFD in its place, so it is refused in every body and frame, while
// a real U+FFFD, a proper pair and escaped backslashes pass.
func TestLoneSurrogatesAreRefused(t *testing.T) {
	bad := []string{
		`{"client_id":"a","text":"\ud800"}`,
		`{"client_id":"a","text":"x\udbffy"}`,
		`{"client_id":"a","text":"\udc00"}`,
		`{"client_id":"a","text":"\ud800\u0041"}`,
		`{"client_id":"a","text":"\ud800\ud800"}`,
		`{"client_id":"a","text":"\\\ud800"}`,
		`{"client_id":"a","text":"ok\ud83d"}`,
	}
	good := []string{
		`{"client_id":"a","text":"\ud83e\udd8e"}`, // 🦎
		`{"client_id":"a","text":"\ufffd"}`,
		`{"client_id":"a","text":"\\ud800"}`, // a backslash, then plain text
		`{"client_id":"a","text":"\u00e9\n\"\\"}`,
		`{"client_id":"a","text":"` + "\uFFFD" + `"}`,
	}
	for _, body := range bad {
		var req salamander.SendRequest
		if err := decode(body, "application/json", &req); salamander.ErrorCode(err) != salamander.CodeInvalid {
			t.Errorf("body %s: got %v (text %q), want invalid_request", body, err, req.Text)
		}
		var f salamander.ClientFrame
		if err := decodeFrame([]byte(body), false, &f); salamander.ErrorCode(err) != salamander.CodeInvalid {
			t.Errorf("frame %s: got %v, want invalid_request", body, err)
		}
	}
	for _, body := range good {
		var req salamander.SendRequest
		if err := decode(body, "application/json", &req); err != nil {
			t.Errorf("body %s: %v", body, err)
		}
		var f salamander.ClientFrame
		if err := decodeFrame([]byte(body), false, &f); err != nil {
			t.Errorf("frame %s: %v", body, err)
		}
	}
}

// A body without Content-Type is refused like one of the wrong type; an
// empty body without one is just an empty body.
func TestBodyNeedsJSONContentType(t *testing.T) {
	body := `{"client_id":"a","text":"b"}`
	for ct, want := range map[string]salamander.Code{
		"":                                  "unsupported_media",
		"text/plain":                        "unsupported_media",
		"application/x-www-form-urlencoded": "unsupported_media",
		"application/json":                  "",
		"application/json; charset=utf-8":   "",
	} {
		var req salamander.SendRequest
		var got salamander.Code
		if err := decode(body, ct, &req); err != nil {
			got = salamander.ErrorCode(err)
		}
		if got != want {
			t.Errorf("Content-Type %q: got %q, want %q", ct, got, want)
		}
	}
	var req salamander.SendRequest
	if err := decode("", "", &req); salamander.ErrorCode(err) != salamander.CodeInvalid {
		t.Errorf("empty body without Content-Type: %v, want invalid_request", err)
	}
}

func decode(body, ct string, dst any) error {
	r := httptest.NewRequest("POST", "/", strings.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	return decodeJSON(httptest.NewRecorder(), r, dst)
}
