package gateway

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/salamander-chat/salamander/web"
)

// The service worker is served at the root (its scope is the whole
// origin) as JavaScript, revalidated on each use, naming the release's
// shell version; the page's policy lets it run.
func TestServiceWorkerServed(t *testing.T) {
	shell := web.AppShell()
	g := &Gateway{webAppCSP: webAppCSP([]SiteInfo{{Name: "b", URL: "http://b.example:8082"}}),
		serviceWorker: web.ServiceWorker(shell)}
	rec := httptest.NewRecorder()
	g.handleServiceWorker(rec, httptest.NewRequest(http.MethodGet, "/sw.js", nil))
	res := rec.Result()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("GET /sw.js: %d", res.StatusCode)
	}
	for h, want := range map[string]string{
		"Content-Type":            "text/javascript",
		"Cache-Control":           "no-cache",
		"Content-Security-Policy": "worker-src 'self'",
	} {
		if got := res.Header.Get(h); !strings.Contains(got, want) {
			t.Errorf("%s: %q, want it to hold %q", h, got, want)
		}
	}
	if body := rec.Body.String(); !strings.Contains(body, `"version":"`+shell.Version+`"`) {
		t.Errorf("the script does not name version %s: %.100s", shell.Version, body)
	}
}
