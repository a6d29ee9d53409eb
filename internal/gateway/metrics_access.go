package gateway

import (
	"net/http"
	"net/netip"

	"github.com/salamander-chat/salamander"
)

// DefaultMetricsFrom are the addresses that may read /metrics without a
// token by default: loopback (a Prometheus or agent on the gateway's host).
// A monitoring network elsewhere is the operator's to name (serve
// --metrics-from): the private ranges are no safe guess, since a balancer
// in them that is not named in --trusted-proxies would make every client
// look like one of them.
func DefaultMetricsFrom() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// handleMetrics serves the metrics to the monitoring networks
// (Config.MetricsFrom) and, from anywhere, to an operator's or admin's
// bearer token (so that the ops console's link works from outside them).
// Anyone else is refused, and told how to get them.
func (g *Gateway) handleMetrics(metrics http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		// Only a client's own address counts: a proxy that names no client
		// (no X-Forwarded-For, or one that cannot be read) stands for
		// whoever is behind it.
		if addr, known := g.clientAddrKnown(r); known && inPrefixes(g.cfg.MetricsFrom, addr) {
			metrics.ServeHTTP(w, r)
			return
		}
		token := bearerToken(r.Header.Get("Authorization"))
		if token == "" {
			writeError(w, g.log, r, errMetricsRefused)
			return
		}
		c, err := g.authenticate(r.Context(), token)
		if err != nil {
			writeError(w, g.log, r, err)
			return
		}
		g.withRole(salamander.RoleOperator, func(w http.ResponseWriter, r *http.Request, _ claims) {
			metrics.ServeHTTP(w, r)
		})(w, r, c)
	}
}

var errMetricsRefused = salamander.Errorf(salamander.CodeForbidden,
	"the metrics are served to the monitoring networks (serve --metrics-from) and with an operator's token")
