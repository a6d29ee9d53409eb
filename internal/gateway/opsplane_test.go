package gateway

import (
	"net/http/httptest"
	"net/url"
	"testing"
)

// A time in a query (the audit trail's ?before=) is an RFC 3339 time
// within what Unix nanoseconds hold: one beyond would wrap around and
// select the wrong page, so it is refused.
func TestQueryTimeRefusesTimesOutOfRange(t *testing.T) {
	for s, ok := range map[string]bool{
		"":                               true,
		"2026-12-02T05:00:00Z":           true,
		"2026-12-02T05:00:00.123+09:00":  true,
		"2300-01-01T00:00:00Z":           false,
		"1600-01-01T00:00:00Z":           false,
		"0001-01-01T00:00:00Z":           false,
		"yesterday":                      false,
		"2026-12-02":                     false,
		"9999-12-31T23:59:59.999999999Z": false,
	} {
		r := httptest.NewRequest("GET", "/v1/ops/audit?before="+url.QueryEscape(s), nil)
		got, err := queryTime(r, "before")
		if (err == nil) != ok {
			t.Errorf("before=%q: %v, %v; want accepted %v", s, got, err, ok)
		}
	}
}
