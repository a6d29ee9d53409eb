package gateway

import (
	"testing"

	"github.com/salamander-chat/salamander"
)

// A drain keeps a majority of the sites in service, never drains a site
// twice nor undrains one that is not drained, and knows only the sites.
func TestCheckDrain(t *testing.T) {
	three := []string{"a", "b", "c"}
	five := []string{"a", "b", "c", "d", "e"}
	for _, tc := range []struct {
		site    string
		sites   []string
		drained []string
		drain   bool
		want    salamander.Code // "" when allowed
	}{
		{"a", three, nil, true, ""},
		{"b", three, []string{"a"}, true, salamander.CodeConflict}, // two of three drained: no majority serving
		{"a", three, []string{"a"}, true, salamander.CodeConflict}, // twice
		{"a", three, []string{"a"}, false, ""},
		{"b", three, []string{"a"}, false, salamander.CodeConflict}, // not drained
		{"x", three, nil, true, salamander.CodeNotFound},
		{"b", five, []string{"a"}, true, ""},
		{"c", five, []string{"a", "b"}, true, salamander.CodeConflict},
		{"c", five, []string{"a", "b"}, false, salamander.CodeConflict},
		{"a", []string{"a"}, nil, true, salamander.CodeConflict}, // a lone site is never drained
	} {
		err := CheckDrain(tc.site, tc.sites, tc.drained, tc.drain)
		if got := salamander.ErrorCode(err); err == nil && tc.want != "" || err != nil && got != tc.want {
			t.Errorf("CheckDrain(%s, %v, drained %v, drain %v) = %v, want %q", tc.site, tc.sites, tc.drained, tc.drain, err, tc.want)
		}
	}
}
