package gateway

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Browsers and other sites: the web client is served by every site, and a
// page loaded from one site must be able to call another's API and open a
// WebSocket there when its own site fails. So every site accepts
// cross-origin requests from the origins of every site in the deployment
// (Config.Sites) and from the origins an operator adds
// (Config.AllowedOrigins, e.g. a load balancer's name), and no others.
// Sessions are bearer tokens, never cookies, so allowing an origin lends
// it no credential.

// origins is the set of browser origins allowed to call this site, and
// the host patterns the WebSocket accept check takes.
type origins struct {
	allowed map[string]bool // "scheme://host[:port]"
	wsHosts []string        // "host[:port]"
}

func newOrigins(sites []SiteInfo, extra []string) origins {
	o := origins{allowed: map[string]bool{}}
	add := func(raw string) {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme == "" || u.Host == "" {
			return
		}
		o.allowed[strings.ToLower(u.Scheme+"://"+u.Host)] = true
		if h := strings.ToLower(u.Host); !slices.Contains(o.wsHosts, h) {
			o.wsHosts = append(o.wsHosts, h)
		}
	}
	for _, s := range sites {
		add(s.URL)
	}
	for _, e := range extra {
		add(e)
	}
	return o
}

// corsMaxAge is how long a browser may reuse a preflight answer (seconds).
const corsMaxAge = "600"

// cors adds the cross-origin headers for an allowed Origin and answers a
// preflight request itself; it reports whether the request is answered.
func (o origins) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	// Every answer depends on the Origin, also one without CORS headers:
	// a cache must not hand that one to an allowed origin.
	w.Header().Add("Vary", "Origin")
	if origin == "" || !o.allowed[strings.ToLower(origin)] {
		if preflight {
			// Not an origin of this deployment: no CORS headers, so the
			// browser refuses the request it asked about.
			w.WriteHeader(http.StatusNoContent)
			return true
		}
		return false
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	if !preflight {
		h.Set("Access-Control-Expose-Headers", "Retry-After")
		return false
	}
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type")
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
