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
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
)

// decodeJSON reads exactly one JSON object of at most MaxBodyBytes into dst,
// rejecting unknown fields and trailing data.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return salamander.Errorf(salamander.CodeUnsupportedMT, "request body must be application/json")
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, salamander.MaxBodyBytes))
	if err != nil {
		var maxErr *http.MaxBytesError
		if errors.As(err, &maxErr) {
			return salamander.Errorf(salamander.CodeTooLarge, "request body is over %d bytes", salamander.MaxBodyBytes)
		}
		return salamander.Errorf(salamander.CodeInvalid, "could not read the request body")
	}
	// encoding/json would silently replace invalid UTF-8 with U+FFFD.
	if !utf8.Valid(body) {
		return salamander.Errorf(salamander.CodeInvalid, "request body must be valid UTF-8")
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
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers with the JSON form of err: its code and message for a
// coded error; "internal" (and a log line with the details) for anything else.
func writeError(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	code := salamander.ErrorCode(err)
	if code == salamander.CodeInternal {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if code == salamander.CodeUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, code.HTTPStatus(), &salamander.Error{Code: code, Message: salamander.ErrorMessage(err)})
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
