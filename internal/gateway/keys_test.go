package gateway

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/view"
)

// A retired key verifies only the tokens it signed before it was retired,
// and nothing once all of those have expired; the current key, anything.
func TestRetiredKeysVerifyOnlyTheirOwnTokensUntilTheyExpire(t *testing.T) {
	ttl := 30 * 24 * time.Hour
	retired := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	old := view.SigningKey{ID: "k1", Created: retired.Add(-90 * 24 * time.Hour), Retired: retired}
	cur := view.SigningKey{ID: "k2", Created: retired}
	issued := func(at time.Time) claims { return claims{Issued: at.UnixNano()} }
	cases := []struct {
		name string
		key  view.SigningKey
		c    claims
		now  time.Time
		want bool
	}{
		{"current key", cur, issued(retired.Add(time.Hour)), retired.Add(2 * time.Hour), true},
		{"old key, token from before its retirement", old, issued(retired.Add(-time.Hour)), retired.Add(time.Hour), true},
		{"old key, token from a site that had not applied the rotation yet", old, issued(retired.Add(30 * time.Second)),
			retired.Add(time.Hour), true},
		{"old key, token minted after its retirement (a stolen key)", old, issued(retired.Add(time.Hour)), retired.Add(2 * time.Hour), false},
		{"old key, every token it signed has expired", old, issued(retired.Add(-time.Hour)), retired.Add(ttl + 2*time.Minute), false},
	}
	for _, tc := range cases {
		if got := keyTrusted(tc.key, tc.c, tc.now, ttl); got != tc.want {
			t.Errorf("%s: trusted %v, want %v", tc.name, got, tc.want)
		}
	}
}
