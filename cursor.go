package salamander

import (
	"sort"
	"strconv"
	"strings"
)

// Cursor is a client's place in the log: for every stream, the sequence of
// the last event the client has seen. Because stream sequences are the same
// at every site, a cursor taken at one site resumes exactly at another.
//
// On the wire a cursor is the string "stream:seq,stream:seq,…" (streams
// sorted); clients should treat it as opaque and hand back what they got.
type Cursor map[string]uint64

// maxCursorStreams bounds a parsed cursor; a deployment has far fewer streams.
const maxCursorStreams = 1024

// ParseCursor parses a cursor string. The empty string is the empty cursor
// (the start of everything).
func ParseCursor(s string) (Cursor, error) {
	c := Cursor{}
	if s == "" {
		return c, nil
	}
	if len(s) > 64<<10 {
		return nil, Errorf(CodeTooLarge, "cursor is too long")
	}
	for _, part := range strings.Split(s, ",") {
		stream, seqText, ok := strings.Cut(part, ":")
		if !ok || stream == "" || len(stream) > 64 {
			return nil, Errorf(CodeInvalid, "malformed cursor")
		}
		seq, err := strconv.ParseUint(seqText, 10, 63) // positions fit an SQL integer
		if err != nil {
			return nil, Errorf(CodeInvalid, "malformed cursor")
		}
		c[stream] = seq
		if len(c) > maxCursorStreams {
			return nil, Errorf(CodeTooLarge, "cursor names too many streams")
		}
	}
	return c, nil
}

// String encodes the cursor with streams in sorted order.
func (c Cursor) String() string {
	streams := make([]string, 0, len(c))
	for s := range c {
		streams = append(streams, s)
	}
	sort.Strings(streams)
	var b strings.Builder
	for i, s := range streams {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		b.WriteByte(':')
		b.WriteString(strconv.FormatUint(c[s], 10))
	}
	return b.String()
}

// Seen reports whether the event at p is at or behind the cursor.
func (c Cursor) Seen(p Position) bool { return p.Seq <= c[p.Stream] }

// Advance moves the cursor forward to p; it never moves backwards.
func (c Cursor) Advance(p Position) {
	if p.Seq > c[p.Stream] {
		c[p.Stream] = p.Seq
	}
}

// Clone returns an independent copy.
func (c Cursor) Clone() Cursor {
	d := make(Cursor, len(c))
	for k, v := range c {
		d[k] = v
	}
	return d
}
