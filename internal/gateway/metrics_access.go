package gateway

import (
	"net/http"
	"net/netip"

	"github.com/salamander-chat/salamander"
)

// DefaultMetricsFrom are the addresses that may read /metrics without a
// token by default: loopback and the private networks (RFC 1918 and
// unique local IPv6), where Prometheus and the load balancers' health
// checks run, and never a client on the Internet.
func DefaultMetricsFrom() []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []string{"127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"} {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

// handleMetrics serves the metrics to the monitoring networks
// (Config.MetricsFrom) and, from anywhere, to an operator's or admin's
// bearer token (so that the ops console's link works from outside them).
// Anyone else is refused, and told how to get them.
func (g *Gateway) handleMetrics(metrics http.Handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if g.metricsFrom(g.clientAddr(r)) {
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

func (g *Gateway) metricsFrom(addr netip.Addr) bool {
	for _, p := range g.cfg.MetricsFrom {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

var errMetricsRefused = salamander.Errorf(salamander.CodeForbidden,
	"the metrics are served to the monitoring networks (serve --metrics-from) and with an operator's token")
