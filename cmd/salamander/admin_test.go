package main

import (
	"bytes"
	"strings"
	"testing"
)

// set-password reads the new password from stdin when it is not a
// terminal: its first line, without the line ending (LF or CRLF), the
// rest left unread; no input at all is an error, not an empty password.
func TestReadNewPasswordFromStdin(t *testing.T) {
	for in, want := range map[string]string{
		"a new password\n":        "a new password",
		"a new password\r\n":      "a new password",
		"no line end":             "no line end",
		" spaced \nsecond line\n": " spaced ",
		"\n":                      "",
	} {
		got, err := readNewPassword(strings.NewReader(in), &bytes.Buffer{}, "mina")
		if err != nil || got != want {
			t.Errorf("from %q: %q, %v; want %q", in, got, err, want)
		}
	}
	if got, err := readNewPassword(strings.NewReader(""), &bytes.Buffer{}, "mina"); err == nil {
		t.Errorf("from no input: %q, want an error", got)
	}
}
