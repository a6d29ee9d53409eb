package gateway

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// Every answer says it varies by Origin, also one to an origin that is
// not allowed (no CORS headers) or to none: a shared cache must not hand
// that answer to an allowed origin, whose browser would then refuse it.
func TestEveryAnswerVariesByOrigin(t *testing.T) {
	o := newOrigins([]SiteInfo{{Name: "a", URL: "https://a.chat.example"}}, nil)
	for _, origin := range []string{"https://a.chat.example", "https://elsewhere.example", ""} {
		for _, method := range []string{http.MethodGet, http.MethodOptions} {
			r := httptest.NewRequest(method, "/v1/me", nil)
			if origin != "" {
				r.Header.Set("Origin", origin)
			}
			if method == http.MethodOptions {
				r.Header.Set("Access-Control-Request-Method", "GET")
			}
			w := httptest.NewRecorder()
			o.cors(w, r)
			if got := w.Header().Values("Vary"); len(got) != 1 || got[0] != "Origin" {
				t.Errorf("%s from %q: Vary %q, want Origin once", method, origin, got)
			}
			allowed := w.Header().Get("Access-Control-Allow-Origin")
			if (allowed != "") != (origin == "https://a.chat.example") {
				t.Errorf("%s from %q: Access-Control-Allow-Origin %q", method, origin, allowed)
			}
		}
	}
}
