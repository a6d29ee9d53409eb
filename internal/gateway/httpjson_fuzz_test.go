package gateway

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
)

// FuzzHTTPBody decodes a request body, with a Content-Type, into one of
// the API's request types (which picks it) as every handler does. pad
// appends spaces, which JSON ignores, to reach the size limit. Refusals
// are coded 4xx (too_large for every body over MaxBodyBytes); an accepted
// body is application/json, valid UTF-8, exactly one JSON object (or
// null) with no key the type does not have, and says what was decoded:
// no U+FFFD appears in a decoded string that the body did not send.
func FuzzHTTPBody(f *testing.F) {
	f.Fuzz(func(t *testing.T, body []byte, contentType string, which uint8, pad uint32) {
		body = append(bytes.Clone(body), bytes.Repeat([]byte{' '}, int(pad%(2*salamander.MaxBodyBytes)))...)
		dst := fuzzRequestTypes[int(which)%len(fuzzRequestTypes)]()
		r := httptest.NewRequest("POST", "/v1/x", bytes.NewReader(body))
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		err := decodeJSON(httptest.NewRecorder(), r, dst)
		if err != nil {
			switch code := salamander.ErrorCode(err); {
			case code != salamander.CodeInvalid && code != salamander.CodeTooLarge && code != salamander.CodeUnsupportedMT:
				t.Fatalf("body %.200q refused with %v, want a coded 4xx", body, err)
			case len(body) > salamander.MaxBodyBytes && code != salamander.CodeTooLarge && code != salamander.CodeUnsupportedMT:
				t.Fatalf("body of %d bytes refused with %v, want too_large", len(body), err)
			}
			return
		}
		if len(body) > salamander.MaxBodyBytes {
			t.Fatalf("body of %d bytes accepted", len(body))
		}
		if mt, _, err := mime.ParseMediaType(contentType); err != nil || mt != "application/json" {
			t.Fatalf("body accepted with Content-Type %q", contentType)
		}
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("body %q accepted", body)
		}
		var top map[string]json.RawMessage
		if err := json.Unmarshal(body, &top); err != nil {
			t.Fatalf("body %q accepted but is not an object: %v", body, err)
		}
		for k := range top {
			if !fuzzHasField(dst, k) {
				t.Fatalf("body %q accepted with key %q, unknown to %T", body, k, dst)
			}
		}
		if fuzzInventedFFFD(body, fuzzStrings(reflect.ValueOf(dst))) {
			t.Fatalf("body %q decoded as %+v: U+FFFD the client did not send", body, dst)
		}
	})
}

var fuzzRequestTypes = []func() any{
	func() any { return new(salamander.SendRequest) },
	func() any { return new(salamander.GroupRoomRequest) },
	func() any { return new(salamander.ProfileRequest) },
	func() any { return new(salamander.ReadRequest) },
	func() any { return new(salamander.SignUpRequest) },
	func() any { return new(salamander.InviteRequest) },
}

// fuzzHasField reports whether the struct dst points to has a field that
// encoding/json matches with key (case-insensitively).
func fuzzHasField(dst any, key string) bool {
	rt := reflect.TypeOf(dst).Elem()
	for i := 0; i < rt.NumField(); i++ {
		name, _, _ := strings.Cut(rt.Field(i).Tag.Get("json"), ",")
		if strings.EqualFold(name, key) {
			return true
		}
	}
	return false
}

// fuzzStrings lists every string in v.
func fuzzStrings(v reflect.Value) []string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return fuzzStrings(v.Elem())
	case reflect.String:
		return []string{v.String()}
	case reflect.Slice:
		var out []string
		for i := 0; i < v.Len(); i++ {
			out = append(out, fuzzStrings(v.Index(i))...)
		}
		return out
	case reflect.Struct:
		var out []string
		for i := 0; i < v.NumField(); i++ {
			out = append(out, fuzzStrings(v.Field(i))...)
		}
		return out
	}
	return nil
}

// fuzzInventedFFFD reports whether a decoded string holds U+FFFD that the
// JSON text neither holds nor escapes: encoding/json's stand-in for what
// it could not decode (a lone surrogate escape, invalid UTF-8).
func fuzzInventedFFFD(text []byte, decoded []string) bool {
	sent := bytes.ContainsRune(text, utf8.RuneError) || bytes.Contains(bytes.ToLower(text), []byte(`\ufffd`))
	if sent {
		return false
	}
	for _, s := range decoded {
		if strings.ContainsRune(s, utf8.RuneError) {
			return true
		}
	}
	return false
}
