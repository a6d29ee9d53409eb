package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// ServerProbe is what Probe learned of one NATS server.
type ServerProbe struct {
	// Name is the server's name (server_name).
	Name string
	// Version is its nats-server version ("2.15.2").
	Version string
}

// Probe connects to the server at rawURL alone, with this store's
// credentials and TLS, and asks it for JetStream's account info: a server
// that answers is up, admits this site and has JetStream running in the
// cluster. The probe's connection is closed before Probe returns; the
// store's own connection is not touched.
func (s *Store) Probe(ctx context.Context, rawURL string) (ServerProbe, error) {
	opts := []nats.Option{
		nats.Name(s.cfg.Name + " (probe)"),
		nats.Timeout(probeTimeout),
		nats.NoReconnect(),
		nats.IgnoreDiscoveredServers(),
	}
	if s.cfg.User != "" {
		opts = append(opts, nats.UserInfo(s.cfg.User, s.cfg.Password), nats.CustomInboxPrefix(InboxPrefix(s.cfg.User)))
	}
	if s.cfg.TLS != nil {
		opts = append(opts, nats.Secure(s.cfg.TLS))
	}
	nc, err := nats.Connect(rawURL, opts...)
	if err != nil {
		return ServerProbe{}, fmt.Errorf("jsstore: probe %s: %w", RedactURL(rawURL), err)
	}
	defer nc.Close()
	p := ServerProbe{Name: nc.ConnectedServerName(), Version: nc.ConnectedServerVersion()}
	cctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(cctx, "$JS.API.INFO", nil)
	if err != nil {
		return p, fmt.Errorf("jsstore: probe %s (%s): JetStream does not answer: %w", RedactURL(rawURL), p.Name, err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return p, fmt.Errorf("jsstore: probe %s (%s): %w", RedactURL(rawURL), p.Name, err)
	}
	if resp.Error != nil {
		return p, fmt.Errorf("jsstore: probe %s (%s): %s", RedactURL(rawURL), p.Name, resp.Error.Description)
	}
	return p, nil
}

// probeTimeout bounds a probe's connection and its JetStream request.
const probeTimeout = 2 * time.Second

// ReconnectTo moves the store's connection to the server at rawURL (one
// of Config.URLs): the connection drops and reconnects there at once,
// falling back to its usual order if that server cannot be reached.
// Nothing in flight is lost: appends are retried (with their message ids,
// so one that did land is not stored twice), tails resubscribe and fill
// what they missed from the log, and requests waiting for a reply get an
// error their callers retry.
func (s *Store) ReconnectTo(rawURL string) error {
	u, err := url.Parse(rawURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("jsstore: reconnect to %s: not a URL", RedactURL(rawURL))
	}
	s.preferHost.Store(&u.Host)
	if err := s.nc.ForceReconnect(); err != nil {
		s.preferHost.Store(nil)
		return fmt.Errorf("jsstore: reconnect to %s: %w", RedactURL(rawURL), err)
	}
	return nil
}

// pickServer is the connection's reconnect choice: the server ReconnectTo
// asked for, once; otherwise nil, for the usual order.
func (s *Store) pickServer(servers []nats.Server, _ nats.ServerInfo) (*nats.Server, time.Duration) {
	host := s.preferHost.Swap(nil)
	if host == nil {
		return nil, 0
	}
	for i := range servers {
		if servers[i].URL != nil && servers[i].URL.Host == *host {
			return &servers[i], 0
		}
	}
	return nil, 0
}

// URLs are the NATS URLs the store was configured with, in order.
func (s *Store) URLs() []string { return s.cfg.URLs }

// RedactURL drops any user:password from a URL, for errors and logs
// (credentials belong in the site file, but a URL may still carry some).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		if err != nil && strings.Contains(raw, "@") {
			return "(unparsable URL with credentials)"
		}
		return raw
	}
	u.User = url.User("REDACTED")
	return u.String()
}

// RedactURLs is RedactURL for each of urls.
func RedactURLs(urls []string) []string {
	out := make([]string, len(urls))
	for i, raw := range urls {
		out[i] = RedactURL(raw)
	}
	return out
}

// errBadVersion is wrapped by CheckVersion's error.
var errBadVersion = errors.New("jsstore: NATS server too old")

// MinServerVersion is the oldest nats-server Salamander runs on: moving a
// stream's leader to a chosen server (step-down with a preferred
// placement), which draining and leader balancing rely on, came in 2.11.
const MinServerVersion = "2.11.0"

// CheckVersion returns an error when version (as a server reports it:
// "2.9.25", "2.12.0-beta.1") is older than MinServerVersion or cannot be
// read.
func CheckVersion(server, version string) error {
	got, ok := parseVersion(version)
	want, _ := parseVersion(MinServerVersion)
	if !ok {
		return fmt.Errorf("%w: NATS server %s reports version %q, which cannot be read; Salamander needs %s or later",
			errBadVersion, server, version, MinServerVersion)
	}
	for i := range got {
		if got[i] != want[i] {
			if got[i] < want[i] {
				return fmt.Errorf("%w: NATS server %s runs nats-server %s; Salamander needs %s or later "+
					"(leader moves to a chosen server, used by draining and balancing, came in 2.11)",
					errBadVersion, server, version, MinServerVersion)
			}
			return nil
		}
	}
	return nil
}

// parseVersion reads major.minor.patch, ignoring a pre-release suffix.
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return out, false
	}
	for i, p := range parts {
		n := 0
		if p == "" {
			return out, false
		}
		for _, c := range p {
			if c < '0' || c > '9' {
				return out, false
			}
			n = n*10 + int(c-'0')
		}
		out[i] = n
	}
	return out, true
}
