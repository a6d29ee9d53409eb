package salamander

import (
	"errors"
	"fmt"
	"net/http"
)

// Code is a stable, machine-readable error code. Clients switch on codes,
// never on messages. Codes are only ever added, never renamed.
type Code string

// The error code registry. Every coded error the API returns is one of these;
// HTTPStatus maps each to its status.
const (
	CodeInvalid         Code = "invalid_request"    // malformed JSON or a field fails validation
	CodeTooLarge        Code = "too_large"          // body or field over its documented limit
	CodeUnauthorized    Code = "unauthorized"       // missing, bad, expired or revoked token; bad password
	CodeForbidden       Code = "forbidden"          // authenticated but not allowed (e.g. not a member)
	CodeNotFound        Code = "not_found"          // unknown user, room or route
	CodeConflict        Code = "conflict"           // e.g. user name taken
	CodeUnavailable     Code = "unavailable"        // this site cannot reach a quorum; try another site
	CodeInternal        Code = "internal"           // a bug or an unexpected failure; logged
	CodeMethod          Code = "method_not_allowed" // wrong HTTP method for a route
	CodeUnsupportedMT   Code = "unsupported_media"  // body is not application/json
	CodeTooManyRequests Code = "too_many_requests"  // slow down (e.g. repeated failed logins); see Retry-After
)

var codeStatus = map[Code]int{
	CodeInvalid:         http.StatusBadRequest,
	CodeTooLarge:        http.StatusRequestEntityTooLarge,
	CodeUnauthorized:    http.StatusUnauthorized,
	CodeForbidden:       http.StatusForbidden,
	CodeNotFound:        http.StatusNotFound,
	CodeConflict:        http.StatusConflict,
	CodeUnavailable:     http.StatusServiceUnavailable,
	CodeInternal:        http.StatusInternalServerError,
	CodeMethod:          http.StatusMethodNotAllowed,
	CodeUnsupportedMT:   http.StatusUnsupportedMediaType,
	CodeTooManyRequests: http.StatusTooManyRequests,
}

// Codes lists every registered code, for documentation and tests.
func Codes() []Code {
	return []Code{CodeInvalid, CodeTooLarge, CodeUnauthorized, CodeForbidden, CodeNotFound,
		CodeConflict, CodeUnavailable, CodeInternal, CodeMethod, CodeUnsupportedMT, CodeTooManyRequests}
}

// HTTPStatus is the HTTP status the API answers with for code.
func (c Code) HTTPStatus() int {
	if s, ok := codeStatus[c]; ok {
		return s
	}
	return http.StatusInternalServerError
}

// Error is an error a user may see: a code from the registry and a message
// written for people. It is also the JSON body of every API error.
type Error struct {
	Code    Code   `json:"code"`
	Message string `json:"message"`
	// RetryAfter, on a rate limit's too_many_requests, is how many whole
	// seconds to wait before the budget allows the request (the HTTP
	// answer's Retry-After header too); 0 when the answer does not say.
	RetryAfter int `json:"retry_after,omitempty"`
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }

// Errorf returns a coded error with a formatted message.
func Errorf(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of err if it is (or wraps) an *Error, and
// CodeInternal otherwise. (errors.AsType, not errors.As: every WebSocket
// frame asks, mostly of a nil error, and errors.As checks its target by
// reflection first.)
func ErrorCode(err error) Code {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Code
	}
	return CodeInternal
}

// ErrorMessage returns the user-facing message of err: its own for a coded
// error, "internal error" for anything else (whose details are only logged).
func ErrorMessage(err error) string {
	if e, ok := errors.AsType[*Error](err); ok {
		return e.Message
	}
	return "internal error"
}
