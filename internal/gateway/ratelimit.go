package gateway

import (
	"cmp"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/salamander-chat/salamander"
)

// Rate limits. Every limit is a token bucket per account or per client
// address, and every budget in Limits is cluster-wide: each site enforces
// its share, the budget divided by the number of sites (Config.Sites), with
// a burst of Burst/N and one unit per Every·N. A client that spreads its
// requests over every site gets at most the cluster budget, and no site
// asks another before answering, so a site cut off from the rest still
// limits alone. A normal client talks to one site and so has a third of
// each budget (for three sites): the defaults are set with that in mind.

// Rate is a token bucket: Burst units at once, then one more every Every.
// A zero Burst or Every turns the limit off.
type Rate struct {
	Burst int
	Every time.Duration
}

func (r Rate) off() bool { return r.Burst <= 0 || r.Every <= 0 }

// share is one of n sites' part of the cluster-wide budget r.
func (r Rate) share(n int) Rate {
	if n <= 1 || r.off() {
		return r
	}
	return Rate{Burst: max(1, r.Burst/n), Every: r.Every * time.Duration(n)}
}

// Limits are the gateway's rate limits, cluster-wide (see above). Per
// address means per IPv4 address or per IPv6 /64 (one host's usual share).
type Limits struct {
	// LoginFailuresPerUser slows password guessing against one account:
	// failed logins per account name, known or not, from devices that do
	// not bring a device token of the account (see devices.go). A
	// successful login costs nothing. Exempt addresses are held to it too.
	LoginFailuresPerUser Rate
	// LoginFailuresPerDevice is the budget of failed logins of a device
	// that brings a valid device token of the account, instead of
	// LoginFailuresPerUser: strangers spending the account's budget do not
	// lock its owner's devices out. Exempt addresses are held to it too.
	LoginFailuresPerDevice Rate
	// LoginFailuresPerAddr slows guessing across many names from one address.
	LoginFailuresPerAddr Rate
	// LoginsPer{User,Addr}: successful logins. Each costs a bcrypt
	// comparison however it ends, so correct passwords must not be free
	// either: a loop of them would take the site's cores.
	LoginsPerUser Rate
	LoginsPerAddr Rate
	// SignUpsPerAddr: new accounts per address.
	SignUpsPerAddr Rate
	// SendsPer{User,Addr}: messages sent (a resend of a message already
	// stored costs nothing).
	SendsPerUser Rate
	SendsPerAddr Rate
	// InvitesPer{User,Addr}: members added to group rooms, by invitation
	// or at creation. One request costs at most a whole burst, so a room
	// of up to MaxGroupMembers can always be made when the budget is full.
	InvitesPerUser Rate
	InvitesPerAddr Rate
	// ConnectsPer{User,Addr}: WebSocket connections opened.
	ConnectsPerUser Rate
	ConnectsPerAddr Rate
	// ChangesPer{User,Addr}: other writes a user makes — rooms created or
	// renamed, friends added, profile changes, reports filed or added to.
	// Each is a record every site keeps. (Logging out and leaving a room
	// are never refused.)
	ChangesPerUser Rate
	ChangesPerAddr Rate
	// Exempt lists client addresses that no limit applies to except
	// LoginFailuresPerUser. The default, loopback, is never a client's own
	// address: it is a proxy on the same host (whose clients would all
	// share its one address) or a local tool such as salamander bench.
	Exempt []netip.Prefix
	// TrustedProxies are the addresses of reverse proxies and load
	// balancers in front of the site: a request from one of them is
	// counted against the client address it names in X-Forwarded-For (the
	// nearest address that is not itself a trusted proxy), not against
	// the proxy's own. Nothing else's X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// DefaultLimits returns the default cluster-wide budgets: what a person
// on a few devices, or a household or office behind one address, never
// reaches, and a script reaches within seconds.
func DefaultLimits() Limits {
	return Limits{
		LoginFailuresPerUser:   Rate{Burst: 10, Every: 6 * time.Second},
		LoginFailuresPerDevice: Rate{Burst: 10, Every: 6 * time.Second},
		LoginFailuresPerAddr:   Rate{Burst: 100, Every: 2 * time.Second},
		LoginsPerUser:          Rate{Burst: 30, Every: 10 * time.Second},
		LoginsPerAddr:          Rate{Burst: 300, Every: 200 * time.Millisecond},
		SignUpsPerAddr:         Rate{Burst: 20, Every: 3 * time.Minute},
		SendsPerUser:           Rate{Burst: 60, Every: 100 * time.Millisecond},
		SendsPerAddr:           Rate{Burst: 600, Every: 10 * time.Millisecond},
		InvitesPerUser:         Rate{Burst: 300, Every: 10 * time.Second},
		InvitesPerAddr:         Rate{Burst: 1000, Every: 2 * time.Second},
		ConnectsPerUser:        Rate{Burst: 30, Every: 10 * time.Second},
		ConnectsPerAddr:        Rate{Burst: 300, Every: 200 * time.Millisecond},
		ChangesPerUser:         Rate{Burst: 60, Every: 2 * time.Second},
		ChangesPerAddr:         Rate{Burst: 600, Every: 200 * time.Millisecond},
		Exempt:                 []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
}

// budget is one kind of request's limits at this site.
type budget struct {
	what       string // for the message: "sends", "sign-ups"
	per        string // what the user limit is per, for the message ("account" when "")
	user, addr *limiter
	// userAlways holds exempt addresses to the per-account limit too.
	userAlways bool
}

// budgets are this site's shares of every limit.
type budgets struct {
	login, logins, signUp, send, invite, connect, changes budget
	// deviceLogin is login's for a known device: its own failures, the
	// same address budget.
	deviceLogin budget
	exempt      []netip.Prefix
	// proxiesHere are the trusted proxies and the exempt loopback
	// addresses: the hops believed in a request that an exempt loopback
	// peer forwards (clientAddr).
	proxiesHere []netip.Prefix
}

func newBudgets(l Limits, sites int) *budgets {
	n := max(sites, 1)
	mk := func(r Rate) *limiter { return newLimiter(r.share(n)) }
	loginAddr := mk(l.LoginFailuresPerAddr)
	return &budgets{
		login:       budget{what: "failed logins", user: mk(l.LoginFailuresPerUser), addr: loginAddr, userAlways: true},
		deviceLogin: budget{what: "failed logins", per: "device", user: mk(l.LoginFailuresPerDevice), addr: loginAddr, userAlways: true},
		logins:      budget{what: "logins", user: mk(l.LoginsPerUser), addr: mk(l.LoginsPerAddr)},
		signUp:      budget{what: "sign-ups", addr: mk(l.SignUpsPerAddr)},
		send:        budget{what: "messages sent", user: mk(l.SendsPerUser), addr: mk(l.SendsPerAddr)},
		invite:      budget{what: "members added", user: mk(l.InvitesPerUser), addr: mk(l.InvitesPerAddr)},
		connect:     budget{what: "WebSocket connections", user: mk(l.ConnectsPerUser), addr: mk(l.ConnectsPerAddr)},
		changes:     budget{what: "changes (rooms, friends, profile, reports)", user: mk(l.ChangesPerUser), addr: mk(l.ChangesPerAddr)},
		exempt:      l.Exempt,
		proxiesHere: append(slices.Clip(l.TrustedProxies), loopbackParts(l.Exempt)...),
	}
}

// loopbackParts is the loopback addresses among ps (127.0.0.0/8, ::1),
// as prefixes: an exempt network wider than loopback (a carrier's NAT,
// everyone for a load test) is its clients' own address, not a proxy on
// this host, and its X-Forwarded-For is not believed.
func loopbackParts(ps []netip.Prefix) []netip.Prefix {
	v4, v6 := netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")
	var out []netip.Prefix
	for _, p := range ps {
		p = p.Masked()
		switch {
		case p.Addr().Is4() && p.Bits() >= v4.Bits() && v4.Contains(p.Addr()):
			out = append(out, p) // within loopback
		case p.Addr().Is4() && p.Bits() < v4.Bits() && p.Contains(v4.Addr()):
			out = append(out, v4) // wider: its loopback part
		case p.Addr().Is6() && p.Contains(v6.Addr()):
			out = append(out, v6)
		}
	}
	return out
}

// spend takes n units of b for user (if not ""; a key of b's user
// limiter, such as an account's device) and the client address,
// both or neither. The returned refund gives them back (a login that
// succeeded). A refused request costs nothing and gets a *rateLimitError.
func (bs *budgets) spend(b *budget, user string, addr netip.Addr, n int) (refund func(), err error) {
	exempt := bs.exempted(addr)
	var refunds []func()
	refundAll := func() {
		for _, f := range refunds {
			f()
		}
	}
	if user != "" && (b.userAlways || !exempt) {
		r, wait := b.user.take(user, n)
		if wait > 0 {
			return nil, newRateLimitError(fmt.Sprintf("too many %s for this %s", b.what, cmp.Or(b.per, "account")), wait)
		}
		refunds = append(refunds, r)
	}
	if !exempt {
		r, wait := b.addr.take(addrKey(addr), n)
		if wait > 0 {
			refundAll()
			return nil, newRateLimitError(fmt.Sprintf("too many %s from this address", b.what), wait)
		}
		refunds = append(refunds, r)
	}
	return refundAll, nil
}

func (bs *budgets) exempted(addr netip.Addr) bool { return inPrefixes(bs.exempt, addr) }

// inPrefixes reports whether addr is in any of ps.
func inPrefixes(ps []netip.Prefix, addr netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// clientAddr is the address of the client that sent r: its peer, or the
// client a trusted proxy names (forwardedFor). A loopback peer exempt from
// the limits (as loopback is by default) that forwards a request is a
// proxy on this host, and is believed like a trusted one (as are the
// exempt loopback hops before it): otherwise every client of a same-host
// proxy not named in --trusted-proxies would be exempt from every limit
// with it. An exempt peer elsewhere (a carrier's NAT) is not believed: its
// header would let any of its clients spend anyone's budget or pass for a
// monitoring network.
func (g *Gateway) clientAddr(r *http.Request) netip.Addr {
	addr, _ := g.clientAddrKnown(r)
	return addr
}

// clientAddrKnown is clientAddr, and whether that is the client's own
// address rather than a proxy's: false when a proxy's X-Forwarded-For
// names no client it could be read from (none, or an unparsable entry),
// so that the proxy's address stands in. Rate limits count such requests
// against the proxy; an allow-list must not let them in as the proxy.
func (g *Gateway) clientAddrKnown(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	peer := ap.Addr().Unmap()
	xff := r.Header.Values("X-Forwarded-For")
	trusted := g.cfg.Limits.TrustedProxies
	if len(xff) > 0 && inPrefixes(g.budgets.proxiesHere, peer) {
		trusted = g.budgets.proxiesHere
	}
	if len(xff) > 0 && !inPrefixes(trusted, peer) {
		// A peer that forwards a request but is no proxy this gateway
		// trusts: its header is not believed, and its own address may be
		// a proxy's left out of --trusted-proxies, standing for everyone
		// behind it — counted as the peer, never let in as it by an
		// allow-list.
		if g.budgets.exempted(peer) {
			g.warnExemptForwarder(peer)
		}
		return peer, false
	}
	addr := forwardedFor(peer, xff, trusted)
	return addr, !inPrefixes(trusted, addr)
}

// warnExemptForwarder says, at most once a minute, that an exempt peer
// elsewhere than on loopback forwards requests: if it is a proxy, every
// client behind it is exempt from every limit with it, which naming it in
// --trusted-proxies would end (the README's set-up before 2026-12-02
// believed such a peer's header).
func (g *Gateway) warnExemptForwarder(peer netip.Addr) {
	now := time.Now().UnixNano()
	last := g.forwarderWarned.Load()
	if now-last < int64(time.Minute) || !g.forwarderWarned.CompareAndSwap(last, now) {
		return
	}
	g.log.Warn("an exempt peer forwards requests (X-Forwarded-For) but is not in --trusted-proxies: its header is not believed, "+
		"so if it is a proxy every client behind it is exempt from the rate limits with it; name it in --trusted-proxies",
		"peer", peer.String())
}

// forwardedFor is the client address of a request from peer: peer itself,
// unless peer is a trusted proxy, in which case the X-Forwarded-For list
// is read from its end (what the nearest proxy appended) back to the first
// address that is not a trusted proxy. An unparsable entry stops the walk
// at the last trusted hop: a client cannot make itself someone else.
func forwardedFor(peer netip.Addr, xff []string, trusted []netip.Prefix) netip.Addr {
	if !inPrefixes(trusted, peer) {
		return peer
	}
	var hops []string
	for _, h := range xff {
		hops = append(hops, strings.Split(h, ",")...)
	}
	addr := peer
	for i := len(hops) - 1; i >= 0 && inPrefixes(trusted, addr); i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		addr = a.Unmap()
	}
	return addr
}

// addrKey is the key of addr's per-address budget: the address for IPv4,
// its /64 for IPv6, where one host usually holds a whole /64.
func addrKey(addr netip.Addr) string {
	if addr.Is6() {
		p, _ := addr.Prefix(64)
		return p.String()
	}
	return addr.String()
}

// rateLimitError is a too_many_requests error and how long to wait; the
// answer carries the wait in retry_after, and over HTTP in Retry-After too
// (see errorBody).
type rateLimitError struct {
	err  *salamander.Error
	wait time.Duration
}

func newRateLimitError(msg string, wait time.Duration) *rateLimitError {
	secs := retryAfterSeconds(wait)
	return &rateLimitError{err: salamander.Errorf(salamander.CodeTooManyRequests, "%s; try again in %d s", msg, secs), wait: wait}
}

func (e *rateLimitError) Error() string { return e.err.Error() }
func (e *rateLimitError) Unwrap() error { return e.err }

// retryAfterSeconds rounds a wait up to whole seconds, at least one.
func retryAfterSeconds(wait time.Duration) int {
	return max(1, int((wait+time.Second-1)/time.Second))
}

// maxLimiterKeys is how many keys a limiter tracks before it forgets
// those whose budget is full again (they carry no state); keys that all
// carry state may make it hold more (see limiter.scanAt).
const maxLimiterKeys = 100000

// limiter is one token bucket per key, in memory.
type limiter struct {
	rate  Rate
	mu    sync.Mutex
	byKey map[string]*bucket
	// scanAt is the key count at which the next new key has the full
	// buckets forgotten: twice what the last sweep left, so that keys all
	// spent (many names failing logins at once) cost one sweep per as many
	// new keys, not one per key. The map holds at most twice the keys with
	// state at the last sweep, and the sweep after an attack, once their
	// buckets are full again, brings it back to maxLimiterKeys.
	scanAt int
	sweeps int // how many sweeps ran (tests)
}

// bucket is one key's budget: tokens as of last.
type bucket struct {
	tokens float64
	last   time.Time
}

func newLimiter(r Rate) *limiter {
	return &limiter{rate: r, byKey: map[string]*bucket{}}
}

// take spends n units of key's budget now, or nothing if it is short; the
// check and the spending are one step, so concurrent requests cannot all
// pass a check that none has paid for yet. It returns a refund, or how long
// until n units are there (wait > 0 means refused). n is capped at the
// burst, so that no request is refused forever.
func (l *limiter) take(key string, n int) (refund func(), wait time.Duration) {
	if l == nil || l.rate.off() {
		return func() {}, 0
	}
	now := time.Now()
	need := float64(min(max(n, 1), l.rate.Burst))
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.byKey[key]
	if !ok {
		if len(l.byKey) >= max(maxLimiterKeys, l.scanAt) {
			l.forgetFull(now)
			l.scanAt = 2 * len(l.byKey)
		}
		b = &bucket{tokens: float64(l.rate.Burst), last: now}
		l.byKey[key] = b
	}
	l.refill(b, now)
	if b.tokens < need {
		return nil, max(time.Duration((need-b.tokens)*float64(l.rate.Every)), 1)
	}
	b.tokens -= need
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		b.tokens = min(b.tokens+need, float64(l.rate.Burst))
	}, 0
}

// refill adds the units earned since b.last.
func (l *limiter) refill(b *bucket, now time.Time) {
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(b.tokens+float64(d)/float64(l.rate.Every), float64(l.rate.Burst))
		b.last = now
	}
}

// forgetFull drops buckets that have refilled: they carry no state.
func (l *limiter) forgetFull(now time.Time) {
	l.sweeps++
	for k, b := range l.byKey {
		if l.refill(b, now); b.tokens >= float64(l.rate.Burst) {
			delete(l.byKey, k)
		}
	}
}
