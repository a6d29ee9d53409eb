// Package balancer owns the load balancer in front of one site's gateways:
// an HTTP reverse proxy that spreads requests and WebSockets round-robin
// over the `salamander serve` processes of a site that answer /readyz with
// 200, so that a site with several gateways has one public URL (the one
// `--sites` lists). `salamander lb` runs it; the fire drill puts one in
// front of each site of its external topology.
//
// It balances per request, not per connection, and adds X-Forwarded-For
// (give the gateways `--trusted-proxies`). It reads a request's body
// before it picks a gateway, at most the API's (salamander.MaxBodyBytes):
// a larger one is answered 413, as a gateway would, and reaches none. A
// request that could not reach its gateway at all (connection refused:
// nothing was sent) is retried on the next ready one, and so is a GET that
// failed in any way; any other failure answers 502. A gateway that failed a request is taken out until
// its /readyz answers 200 again. With no ready gateway the balancer answers
// 503. Both 502 and 503 tell Salamander's clients to fail over to another
// site.
package balancer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander"
)

// Config configures a Balancer. Start from DefaultConfig.
type Config struct {
	// Backends are the base URLs of the site's gateways
	// (http://10.0.0.5:8080).
	Backends []string
	// Interval is how often every backend's /readyz is checked.
	Interval time.Duration
	// Timeout bounds one health check.
	Timeout time.Duration
	// TLS, when set, is the client TLS configuration for https backends
	// (e.g. trusting the deployment's CA).
	TLS *tls.Config
	// Logger receives backends going in and out of service.
	Logger *slog.Logger
}

// DefaultConfig returns a Config checking every backend each second.
func DefaultConfig(backends ...string) Config {
	return Config{Backends: backends, Interval: time.Second, Timeout: 2 * time.Second}
}

// maxBody is the largest request body the balancer takes: the API's, so
// that a gateway would refuse anything larger anyway. Every body is kept
// in memory, so that a request refused by one gateway can be sent to the
// next.
const maxBody = salamander.MaxBodyBytes

// Balancer is an http.Handler spreading requests over a site's ready
// gateways. Run checks their health; until its first round every backend
// counts as out of service.
type Balancer struct {
	cfg      Config
	log      *slog.Logger
	backends []*backend
	next     atomic.Uint64
	hc       *http.Client
}

// backend is one gateway.
type backend struct {
	url   *url.URL
	proxy *httputil.ReverseProxy
	ready atomic.Bool
}

// errKey carries, per proxied request, where the proxy's ErrorHandler
// leaves the transport error.
type errKey struct{}

// New returns a Balancer for cfg's backends.
func New(cfg Config) (*Balancer, error) {
	if len(cfg.Backends) == 0 {
		return nil, errors.New("balancer: no backends")
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil // the gateways are reached directly, whatever HTTP_PROXY says
	tr.TLSClientConfig = cfg.TLS
	tr.DialContext = (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	b := &Balancer{
		cfg: cfg,
		log: cfg.Logger.With("system", "balancer"),
		hc:  &http.Client{Transport: tr, Timeout: cfg.Timeout},
	}
	for _, raw := range cfg.Backends {
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("balancer: backend %q: want http://host:port or https://host:port", raw)
		}
		be := &backend{url: u}
		be.proxy = &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
				pr.Out.Host = pr.In.Host // the gateway checks origins against its public name
			},
			Transport:     tr,
			FlushInterval: -1, // stream every write (sync pages, long polls)
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if p, ok := r.Context().Value(errKey{}).(*error); ok {
					*p = err
				}
			},
		}
		b.backends = append(b.backends, be)
	}
	return b, nil
}

// Run checks every backend's /readyz now and then every Interval until
// ctx ends.
func (b *Balancer) Run(ctx context.Context) {
	t := time.NewTicker(b.cfg.Interval)
	defer t.Stop()
	for {
		b.check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check probes every backend at once and updates their state. A probe cut
// short by the end of ctx (the balancer stopping) says nothing of the
// backend, and changes nothing.
func (b *Balancer) check(ctx context.Context) {
	var wg sync.WaitGroup
	for _, be := range b.backends {
		wg.Go(func() {
			ready := b.probe(ctx, be)
			if ctx.Err() == nil {
				b.setReady(be, ready)
			}
		})
	}
	wg.Wait()
}

// probe reports whether be answers /readyz with 200.
func (b *Balancer) probe(ctx context.Context, be *backend) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, be.url.JoinPath("/readyz").String(), nil)
	if err != nil {
		return false
	}
	res, err := b.hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// setReady puts be in or out of service, logging a change.
func (b *Balancer) setReady(be *backend, ready bool) {
	if be.ready.Swap(ready) != ready {
		if ready {
			b.log.Info("gateway in service", "backend", be.url.String())
		} else {
			b.log.Warn("gateway out of service", "backend", be.url.String())
		}
	}
}

// Backends returns the base URLs of every backend.
func (b *Balancer) Backends() []string {
	out := make([]string, len(b.backends))
	for i, be := range b.backends {
		out[i] = be.url.String()
	}
	return out
}

// Ready returns the base URLs of the backends in service.
func (b *Balancer) Ready() []string {
	var out []string
	for _, be := range b.backends {
		if be.ready.Load() {
			out = append(out, be.url.String())
		}
	}
	return out
}

// ServeHTTP reads r's body (up to maxBody), then sends r to the next
// ready backend, and on to the following ones while a backend cannot be
// reached at all.
func (b *Balancer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := readBody(w, r)
	if err != nil {
		if errors.Is(err, errTooLarge) {
			tooLarge(w)
			return
		}
		// The client's body broke off or stalled: no gateway is asked.
		b.log.Debug("a client's request body failed", "path", r.URL.Path, "err", err)
		http.Error(w, "reading the request body failed", http.StatusBadRequest)
		return
	}
	start := int(b.next.Add(1))
	for k := range b.backends {
		be := b.backends[(start+k)%len(b.backends)]
		if !be.ready.Load() {
			continue
		}
		var perr error
		out := r.WithContext(context.WithValue(r.Context(), errKey{}, &perr))
		if body != nil {
			// Sent with its length, however the client sent it.
			out.Body, out.ContentLength, out.TransferEncoding = io.NopCloser(bytes.NewReader(body)), int64(len(body)), nil
		}
		be.proxy.ServeHTTP(w, out)
		if perr == nil {
			return
		}
		if errors.Is(perr, context.Canceled) && r.Context().Err() != nil {
			return // the client went away: nobody to answer
		}
		b.setReady(be, false) // back in service once its /readyz answers 200
		if !(refused(perr) || safe(r.Method)) {
			// The error names the gateway's address: it stays in the log.
			b.log.Warn("gateway failed a request", "backend", be.url.String(), "path", r.URL.Path, "err", perr)
			http.Error(w, "the gateway failed", http.StatusBadGateway)
			return
		}
	}
	w.Header().Set("Retry-After", "1")
	http.Error(w, "no gateway of this site is ready", http.StatusServiceUnavailable)
}

// bodyTimeout is how long a client has for its whole request body: one
// that sends it slowly, or never, holds a connection and a goroutine.
const bodyTimeout = 30 * time.Second

// errTooLarge is readBody's answer to a body over maxBody.
var errTooLarge = errors.New("request body over the API's limit")

// readBody reads r's body whole (nil when it has none), within
// bodyTimeout: errTooLarge for one that says, or turns out, to be over
// maxBody, read no further than that.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > maxBody {
		return nil, errTooLarge
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	defer func() { _ = rc.SetReadDeadline(time.Time{}) }()
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxBody {
		return nil, errTooLarge
	}
	return body, nil
}

// tooLarge answers a body over maxBody as the gateways do.
func tooLarge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	// The rest of the body is not read: the connection is not kept.
	w.Header().Set("Connection", "close")
	w.WriteHeader(http.StatusRequestEntityTooLarge)
	_ = json.NewEncoder(w).Encode(&salamander.Error{Code: salamander.CodeTooLarge,
		Message: fmt.Sprintf("request body is over %d bytes", maxBody)})
}

// safe reports whether a request with this method may be sent again
// whatever became of it (a GET, also a WebSocket's upgrade).
func safe(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// refused reports whether err means the request never reached the backend
// (its connection could not be made), so another may safely take it.
func refused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
