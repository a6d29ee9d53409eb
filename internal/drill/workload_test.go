package drill

import (
	"testing"
	"time"
)

// TestConnLogLiveAgain checks how a device's readies answer "was it
// connected to the struck site, and how soon was it live again".
func TestConnLogLiveAgain(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	l := &connLog{readies: []readyAt{{at(0), "a"}, {at(5), "b"}, {at(9), "c"}}}
	for _, c := range []struct {
		site      string
		t         float64
		was, back bool
		after     time.Duration
	}{
		{"a", -1, false, false, 0},            // not connected yet
		{"a", 2, true, true, 3 * time.Second}, // at a, live at b 3 s later
		{"b", 2, false, false, 0},             // at a then, not b
		{"b", 5, false, false, 0},             // a ready at the very instant is after it: still a
		{"b", 6, true, true, 3 * time.Second},
		{"c", 10, true, false, 0}, // at c, not live again (yet)
	} {
		was, after, back := l.liveAgain(c.site, at(c.t))
		if was != c.was || back != c.back || after != c.after {
			t.Errorf("site %s at %gs: was %v, back %v after %s; want %v, %v after %s", c.site, c.t, was, back, after,
				c.was, c.back, c.after)
		}
	}
}
