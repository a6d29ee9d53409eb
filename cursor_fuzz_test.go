package salamander

import (
	"maps"
	"strings"
	"testing"
)

// FuzzCursorRoundTrip: a cursor comes back from clients as an opaque string.
// Whatever ParseCursor accepts it must encode again to a string that
// parses to the same cursor (so a client that hands back what it got
// resumes at the same place), within the documented bounds; whatever it
// refuses, it refuses with a coded error a client can be shown.
func FuzzCursorRoundTrip(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			if code := ErrorCode(err); code != CodeInvalid && code != CodeTooLarge {
				t.Fatalf("ParseCursor(%q): error %v has code %s, want invalid_request or too_large", s, err, code)
			}
			if c != nil {
				t.Fatalf("ParseCursor(%q) returned a cursor with its error", s)
			}
			return
		}
		if len(c) > maxCursorStreams {
			t.Fatalf("ParseCursor(%q): %d streams, limit %d", s, len(c), maxCursorStreams)
		}
		for stream, seq := range c {
			if stream == "" || len(stream) > 64 || strings.ContainsAny(stream, ",:") {
				t.Fatalf("ParseCursor(%q): stream name %q cannot be encoded", s, stream)
			}
			if seq >= 1<<63 {
				t.Fatalf("ParseCursor(%q): %s:%d does not fit an SQL integer", s, stream, seq)
			}
		}
		enc := c.String()
		d, err := ParseCursor(enc)
		if err != nil {
			t.Fatalf("ParseCursor(%q) = %v, but its encoding %q does not parse: %v", s, c, enc, err)
		}
		if !maps.Equal(c, d) {
			t.Fatalf("round trip of %q: %v -> %q -> %v", s, c, enc, d)
		}
		if d.String() != enc {
			t.Fatalf("encoding is not canonical: %q then %q", enc, d.String())
		}
		// Advancing to a position the cursor has seen changes nothing.
		for stream, seq := range c {
			e := c.Clone()
			e.Advance(Position{Stream: stream, Seq: seq})
			if !e.Seen(Position{Stream: stream, Seq: seq}) || !maps.Equal(e, c) {
				t.Fatalf("advancing %v to %s:%d gave %v", c, stream, seq, e)
			}
		}
	})
}
