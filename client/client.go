// Package client is the Go SDK for Salamander, a messenger served by several
// sites (data centers) at once.
//
// A Client knows the base URL of every site. It promises:
//
//   - Failover. A request that a site cannot serve (HTTP 500, 502, 503,
//     504, a refused or broken connection, a timeout) is retried at the next
//     site, round after round with exponential backoff and full jitter,
//     until it succeeds or its context ends. Any other error answer (4xx)
//     is final and is returned as a *salamander.Error whose Code the caller
//     can switch on.
//   - No lost and no duplicated messages. Send gives each message a random
//     client id and retries it with the same id at every site until a quorum
//     of sites holds it; the server returns the original message for a
//     repeated id. Messages not yet acknowledged are listed by Pending.
//     While a Subscription is connected, sends travel over its WebSocket,
//     many at once; otherwise over HTTP.
//   - Each room's sends in order, across failures. A room's messages are
//     committed in the order the Client hands their sends over: on the
//     WebSocket, the order their frames are written (a site carries out
//     one socket's sends to a room in that order); over HTTP, one at a
//     time, each once the previous one was answered. When an attempt fails
//     (the socket closes, a site refuses it for now or leaves it
//     unanswered), that send and every later send to the room whose
//     attempt failed with it go again one at a time, in their original
//     order, each under its own client id (a resent message that was
//     stored is answered as the original), at the next socket or over
//     HTTP at whichever site serves; a send to the room made meanwhile
//     waits behind them. A send that returns an error (a refusal, or its
//     ctx ended) gives up its place, and the sends behind it go on. The
//     order among concurrent calls is the order in which they are handed
//     over; a goroutine's sends, each made after the previous one
//     returned, are in its order. Rooms are independent of one another.
//   - Sent at once, placed when it can be. While the log partition of a
//     message's room elects a leader (a site was lost), the message is
//     acknowledged held: Send succeeds with Message.Held set and Seq 0,
//     the message leaves the outbox, and moments later it arrives on the
//     Subscription as an ordinary message event with the same client id
//     and its Seq, once. Show it as sent; give it its place then.
//   - Ordered, exactly-once live events. A Subscription keeps one WebSocket
//     open to some site, resumes from the Client's cursor at another site when
//     that one breaks, and drops every stored event it has already delivered.
//     A socket the site closes for what the client did (1008: it read too
//     slowly, or its session ended) is reconnected at that same site; one it
//     closes because the account has too many sockets there ends the
//     Subscription (ErrTooManySockets).
//     Typing and presence events are not stored and not replayed: a
//     presence change while the Subscription had no socket never comes, so
//     an application that shows presence reads it again (Presence) after
//     each ready event.
//
// A Client is safe for concurrent use by many goroutines. Every goroutine it
// starts belongs to a Subscription and ends when the Subscription is closed
// (the HTTP transport's idle connections close after 90 s unused, or with
// CloseIdleConnections).
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander"
)

// Defaults for the zero fields of Config.
const (
	DefaultRequestTimeout = 10 * time.Second
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 3 * time.Second
	// DefaultMaxIdleConnsPerHost is how many idle HTTP connections to each
	// site the default transport keeps for reuse (Go's default is 2, which
	// makes concurrent requests open and close connections all the time).
	DefaultMaxIdleConnsPerHost = 128
)

// Config configures a Client. Only Sites is required.
type Config struct {
	// Sites are the base URLs of every site, e.g. "http://127.0.0.1:8081".
	// Every site serves the whole API; the order only decides which one is
	// tried after which.
	Sites []string
	// Prefer is the index in Sites of the site to try first (default 0).
	Prefer int
	// HTTPClient makes the requests and WebSocket handshakes. Its Timeout
	// should be zero; RequestTimeout bounds each attempt instead. Default: a
	// client of its own with a clone of http.DefaultTransport that keeps up
	// to DefaultMaxIdleConnsPerHost idle connections per site. A program
	// that runs many Clients (a load generator) should give them one shared
	// client, so that they share one pool of connections.
	HTTPClient *http.Client
	// RequestTimeout bounds one attempt at one site (default 10s). When it
	// expires the site counts as unusable and the request moves on. A send
	// on a Subscription's WebSocket counts it from when the sends ahead of
	// it to its room on that socket have been answered (the site carries
	// them out one at a time), not from when its frame was written.
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the pause between rounds through all
	// sites (defaults 100ms and 3s). The first round has no pause; the pause
	// before round n+1 is drawn uniformly from [0, min(MaxBackoff,
	// MinBackoff·2ⁿ⁻¹)).
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// Logger receives failovers and reconnects (default: discarded).
	Logger *slog.Logger
	// Rand is the source of backoff jitter (default: the runtime's
	// generator). Client ids always come from crypto/rand.
	Rand rand.Source
}

// Client talks to a Salamander deployment on behalf of one user. Its
// cursor, outbox, read markers and Subscription are that user's: to act as
// another user, use another Client (a Subscription keeps the identity it
// connected with until it reconnects, and its cursor is the first user's).
type Client struct {
	sites      []string
	httpClient *http.Client
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	log        *slog.Logger

	randMu sync.Mutex
	rand   *rand.Rand // nil: use the global generator

	order sendOrder // each room's sends in flight, in order

	mu      sync.Mutex
	cur     int           // index of the site requests start at
	badAt   []time.Time   // when each site last failed
	badCh   chan struct{} // closed and replaced whenever a site fails
	token   string
	user    string
	devices map[string]string // user -> the device token its last session gave
	outbox  map[string]*PendingMessage
	outSeq  uint64
	state   *eventState
	markers map[string]map[string]uint64 // room -> member -> read marker
	sock    *sendSocket                  // a Subscription's open WebSocket, for sends
	// renewing is closed when the password change in flight is over
	// (nil: none is): see tokenReplaced.
	renewing chan struct{}
}

// New returns a Client for the sites in cfg. It does not contact any site.
func New(cfg Config) (*Client, error) {
	if len(cfg.Sites) == 0 {
		return nil, errors.New("client: no sites configured")
	}
	sites := make([]string, len(cfg.Sites))
	for i, s := range cfg.Sites {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("client: site %q is not an http(s) base URL", s)
		}
		sites[i] = strings.TrimRight(u.String(), "/")
	}
	if cfg.Prefer < 0 || cfg.Prefer >= len(sites) {
		return nil, fmt.Errorf("client: Prefer %d is not an index into %d sites", cfg.Prefer, len(sites))
	}
	c := &Client{
		sites:      sites,
		httpClient: cfg.HTTPClient,
		timeout:    cfg.RequestTimeout,
		minBackoff: cfg.MinBackoff,
		maxBackoff: cfg.MaxBackoff,
		log:        cfg.Logger,
		cur:        cfg.Prefer,
		badAt:      make([]time.Time, len(sites)),
		badCh:      make(chan struct{}),
		outbox:     map[string]*PendingMessage{},
		state:      newEventState(),
		markers:    map[string]map[string]uint64{},
	}
	if c.httpClient == nil {
		c.httpClient = newHTTPClient(len(sites))
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRequestTimeout
	}
	if c.minBackoff <= 0 {
		c.minBackoff = DefaultMinBackoff
	}
	if c.maxBackoff <= 0 {
		c.maxBackoff = DefaultMaxBackoff
	}
	if c.maxBackoff < c.minBackoff {
		c.maxBackoff = c.minBackoff
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("system", "client")
	if cfg.Rand != nil {
		c.rand = rand.New(cfg.Rand)
	}
	return c, nil
}

// newHTTPClient returns the default HTTP client for n sites.
func newHTTPClient(n int) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	t.MaxIdleConns = n * DefaultMaxIdleConnsPerHost
	return &http.Client{Transport: t}
}

// CloseIdleConnections closes the idle connections of the Client's HTTP
// transport.
func (c *Client) CloseIdleConnections() { c.httpClient.CloseIdleConnections() }

// Sites returns the base URLs of every site, in configured order.
func (c *Client) Sites() []string { return append([]string(nil), c.sites...) }

// Site returns the base URL of the site requests currently start at: the
// last one that answered, or the next one after the last that failed.
func (c *Client) Site() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sites[c.cur]
}

// Token returns the bearer token in use ("" before SignUp, Login or SetToken).
func (c *Client) Token() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.token
}

// SetToken sets the bearer token sent with every request, e.g. one saved
// from an earlier session. It forgets the user name until Me is called.
func (c *Client) SetToken(token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = token
	c.user = ""
}

// UserName returns the name of the signed-in user, as learned from SignUp,
// Login or Me ("" when unknown).
func (c *Client) UserName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}

// DeviceToken returns the device token the last sign-up or login of user
// through this client gave ("" if none): Login brings it back, so that
// others' failed logins for the account do not lock this device out (see
// salamander.Session.Device). An application that keeps its sessions
// across restarts keeps this too (SetDeviceToken), also after a logout.
func (c *Client) DeviceToken(user string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.devices[user]
}

// SetDeviceToken sets the device token Login brings for user, e.g. one
// saved from an earlier run; "" forgets it.
func (c *Client) SetDeviceToken(user, token string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if token == "" {
		delete(c.devices, user)
		return
	}
	c.setDeviceLocked(user, token)
}

func (c *Client) setDeviceLocked(user, token string) {
	if c.devices == nil {
		c.devices = map[string]string{}
	}
	c.devices[user] = token
}

func (c *Client) setSession(s salamander.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.token = s.Token
	c.user = s.User.Name
	if s.Device != "" {
		c.setDeviceLocked(s.User.Name, s.Device)
	}
}

// renewalKey marks the context of ChangePassword's own request, which
// must not wait for itself (tokenReplaced).
type renewalKey struct{}

// beginRenewal marks a change of the client's session in flight
// (ChangePassword); the returned func ends it.
func (c *Client) beginRenewal() (end func()) {
	ch := make(chan struct{})
	c.mu.Lock()
	c.renewing = ch
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.renewing == ch {
			c.renewing = nil
		}
		c.mu.Unlock()
		close(ch)
	}
}

// tokenReplaced says whether an unauthorized answer to a request made
// with token tok is about a session the client no longer uses, so that
// the request (or a Subscription's connection) goes again with the new one
// rather than failing. A password change ends every session of the
// account when a site applies it, which is before its answer (the new
// session) arrives: a request or a socket of this client may be refused
// in that moment. So it first waits for a change in flight to be over.
func (c *Client) tokenReplaced(ctx context.Context, tok string) bool {
	c.mu.Lock()
	ch := c.renewing
	c.mu.Unlock()
	if ch != nil && ctx.Value(renewalKey{}) == nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	now := c.Token()
	return now != "" && now != tok
}

// startSite returns the index requests start at.
func (c *Client) startSite() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// siteOK records that site i answered, so later requests start there.
func (c *Client) siteOK(i int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cur = i
}

// siteBad records that site i is unusable: requests move to the next site
// and a Subscription connected to it reconnects elsewhere.
func (c *Client) siteBad(i int, err error) {
	c.mu.Lock()
	c.badAt[i] = time.Now()
	moved := c.cur == i
	if moved {
		c.cur = (i + 1) % len(c.sites)
	}
	close(c.badCh)
	c.badCh = make(chan struct{})
	next := c.sites[c.cur]
	c.mu.Unlock()
	c.log.Warn("site unusable", "site", c.sites[i], "next", next, "error", err)
}

// badSince reports whether site i has failed after t, and a channel closed
// the next time any site fails.
func (c *Client) badSince(i int, t time.Time) (bool, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.badAt[i].After(t), c.badCh
}
