package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
)

var errMediaType = salamander.Errorf(salamander.CodeUnsupportedMT, "request body must be application/json (set Content-Type)")

// bodyReadTimeout is how long a request's body may take to arrive (a
// variable for tests).
var bodyReadTimeout = 10 * time.Second

// decodeJSON reads exactly one JSON object of at most MaxBodyBytes into dst,
// rejecting unknown fields, trailing data and text that JSON can carry but
// Unicode cannot (see checkStrings). A body needs Content-Type
// application/json; a missing one is refused like a wrong one, so that a
// browser's form post (which sends no JSON type) cannot reach the API.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return errMediaType
		}
	}
	// A body that trickles in holds its handler (and a connection) for as
	// long as it trickles: it has bodyReadTimeout to arrive whole.
	// The deadline is the body's, not the handler's: lifted once it is in.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyReadTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, salamander.MaxBodyBytes))
	_ = rc.SetReadDeadline(time.Time{})
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return salamander.Errorf(salamander.CodeTooLarge, "request body is over %d bytes", salamander.MaxBodyBytes)
		}
		return salamander.Errorf(salamander.CodeInvalid, "could not read the request body")
	}
	if ct == "" && len(body) > 0 {
		return errMediaType
	}
	// encoding/json would silently replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		return salamander.Errorf(salamander.CodeInvalid, "request body must be valid UTF-8")
	}
	// encoding/json decodes null into a struct as "nothing": not an object.
	if t := bytes.TrimSpace(body); len(t) > 0 && t[0] != '{' {
		return salamander.Errorf(salamander.CodeInvalid, "request body must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		switch {
		case errors.Is(err, io.EOF):
			return salamander.Errorf(salamander.CodeInvalid, "request body is empty; a JSON object is required")
		default:
			return salamander.Errorf(salamander.CodeInvalid, "malformed JSON: %v", err)
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return salamander.Errorf(salamander.CodeInvalid, "malformed JSON: trailing data after the object")
	}
	return checkStrings(body)
}

// checkStrings refuses a JSON text (already decoded without error) whose
// strings hold a lone UTF-16 surrogate escape: a "\ud800" not followed by
// a low surrogate's escape, or a low one without its high one. Such an
// escape names no character; encoding/json silently decodes it as U+FFFD,
// so the stored text would differ from what the client sent. It scans the
// raw bytes because the decoded value no longer shows the difference from
// a real U+FFFD. Every JSON body and WebSocket frame passes through here.
func checkStrings(data []byte) error {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		// Outside strings a backslash is a syntax error the decoder has
		// already refused, so every one here starts an escape.
		if i+1 >= len(data) || data[i+1] != 'u' {
			i++ // a two-byte escape such as \\ or \"
			continue
		}
		r, ok := hex4(data, i+2)
		if !ok {
			continue // the decoder has refused it
		}
		i += 5
		switch {
		case r >= 0xdc00 && r <= 0xdfff:
			return errLoneSurrogate
		case r >= 0xd800 && r <= 0xdbff:
			if i+6 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' {
				if lo, ok := hex4(data, i+3); ok && lo >= 0xdc00 && lo <= 0xdfff {
					i += 6
					continue
				}
			}
			return errLoneSurrogate
		}
	}
	return nil
}

var errLoneSurrogate = salamander.Errorf(salamander.CodeInvalid,
	"text holds a lone UTF-16 surrogate escape (\\ud800-\\udfff without its pair); it is not a character")

// hex4 parses the four hex digits at data[i:], if there are four.
func hex4(data []byte, i int) (rune, bool) {
	if i+4 > len(data) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(data[i:i+4]), 16, 16)
	return rune(n), err == nil
}

// answerWriteTimeout bounds how long one JSON answer may take to be
// written: a client that asks and never reads would otherwise hold the
// handler and the whole encoded answer (a sync page can be megabytes) for
// as long as it keeps its connection open.
var answerWriteTimeout = 30 * time.Second

// answerBufs hold answers being encoded; one that grew past
// maxPooledAnswer (a long sync page) is left to the collector.
var answerBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

const maxPooledAnswer = 1 << 20

// writeJSON answers v as JSON. The answer is not HTML-escaped (the API is
// JSON only, sent with nosniff: an escaped '<' took six bytes). Its write,
// flushed to the connection, has a deadline, cleared again after it so
// that it does not reach the connection's next request.
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := answerBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			buf.Reset()
			answerBufs.Put(buf)
		}
	}()
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	rc := http.NewResponseController(w)
	if rc.SetWriteDeadline(time.Now().Add(answerWriteTimeout)) == nil {
		defer rc.SetWriteDeadline(time.Time{})
	}
	w.WriteHeader(status)
	if _, err := w.Write(buf.Bytes()); err == nil {
		_ = rc.Flush()
	}
}

// writeError answers with the JSON form of err: its code and message for a
// coded error; "internal" (and a log line with the details) for anything else.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	body := errorBody(err)
	code := body.Code
	if code == salamander.CodeInternal {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == salamander.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	if body.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(body.RetryAfter))
	}
	writeJSON(w, code.HTTPStatus(), body)
}

// errorBody is the coded error an answer carries, over HTTP or in a nack:
// its code, its message for people and, for a rate limit, how long to wait.
func errorBody(err error) *salamander.Error {
	e := &salamander.Error{Code: salamander.ErrorCode(err), Message: salamander.ErrorMessage(err)}
	var rl *rateLimitError
	if errors.As(err, &rl) {
		e.RetryAfter = retryAfterSeconds(rl.wait)
	}
	return e
}

// queryUint parses an optional non-negative integer query parameter.
func queryUint(r *http.Request, name string) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 63) // sequences fit an SQL integer
	if err != nil {
		return 0, salamander.Errorf(salamander.CodeInvalid, "%s must be a non-negative integer", name)
	}
	return n, nil
}

// queryLimit parses the limit parameter: default def, at most max.
func queryLimit(r *http.Request, def, max int) (int, error) {
	n, err := queryUint(r, "limit")
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return def, nil
	}
	if n > uint64(max) {
		return 0, salamander.Errorf(salamander.CodeInvalid, "limit must be at most %d", max)
	}
	return int(n), nil
}
