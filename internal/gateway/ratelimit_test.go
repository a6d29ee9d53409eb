package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// Concurrent requests cannot all pass a budget none has paid for yet:
// exactly a burst's worth get through, however many arrive at once.
func TestLimiterReservesAtomically(t *testing.T) {
	l := newLimiter(Rate{Burst: 10, Every: time.Hour})
	var passed atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if _, wait := l.take("mina", 1); wait == 0 {
				passed.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if passed.Load() != 10 {
		t.Fatalf("%d of 200 concurrent attempts passed a burst of 10", passed.Load())
	}
	if _, wait := l.take("joon", 1); wait != 0 {
		t.Fatal("another key was limited too")
	}
}

// A refund gives the unit back; a refused request costs nothing; a
// request for more than a burst costs a burst.
func TestLimiterRefundAndCap(t *testing.T) {
	l := newLimiter(Rate{Burst: 2, Every: time.Hour})
	refund, _ := l.take("k", 1)
	refund()
	for i := range 2 {
		if _, wait := l.take("k", 1); wait != 0 {
			t.Fatalf("take %d after a refund refused", i)
		}
	}
	_, wait := l.take("k", 1)
	if wait <= 0 || wait > time.Hour {
		t.Fatalf("empty budget: wait %v, want (0, 1h]", wait)
	}
	l2 := newLimiter(Rate{Burst: 5, Every: time.Hour})
	if _, wait := l2.take("k", 255); wait != 0 {
		t.Fatal("a request over the burst was refused with a full budget")
	}
	if _, wait := l2.take("k", 1); wait == 0 {
		t.Fatal("the capped request cost less than the burst")
	}
	if _, wait := newLimiter(Rate{}).take("k", 1000); wait != 0 {
		t.Fatal("a zero rate limits")
	}
}

// Each site enforces its share of a cluster-wide budget, so one client
// spreading over every site gets no more than the budget.
func TestBudgetsAreSharedBySites(t *testing.T) {
	r := Rate{Burst: 60, Every: 100 * time.Millisecond}
	if got := r.share(3); got != (Rate{Burst: 20, Every: 300 * time.Millisecond}) {
		t.Fatalf("share of 3: %+v", got)
	}
	if got := (Rate{Burst: 2, Every: time.Second}).share(3); got.Burst != 1 {
		t.Fatalf("a small burst shared: %+v", got)
	}
	if got := r.share(0); got != r {
		t.Fatalf("no sites listed: %+v", got)
	}
	l := Limits{SendsPerUser: Rate{Burst: 9, Every: time.Hour}}
	sites := []*budgets{newBudgets(l, 3), newBudgets(l, 3), newBudgets(l, 3)}
	addr := netip.MustParseAddr("192.0.2.7")
	passed := 0
	for i := range 30 {
		if _, err := sites[i%3].spend(&sites[i%3].send, "mina", addr, 1); err == nil {
			passed++
		}
	}
	if passed != 9 {
		t.Fatalf("%d sends passed three sites, want the cluster budget of 9", passed)
	}
}

// Per-address budgets key IPv6 clients by /64; exempt addresses skip every
// budget but failed logins per account; a refused request spends nothing
// from the other budget.
func TestBudgetsByAddress(t *testing.T) {
	l := Limits{
		SendsPerUser:         Rate{Burst: 100, Every: time.Hour},
		SendsPerAddr:         Rate{Burst: 2, Every: time.Hour},
		LoginFailuresPerUser: Rate{Burst: 1, Every: time.Hour},
		LoginFailuresPerAddr: Rate{Burst: 1, Every: time.Hour},
		Exempt:               []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	}
	bs := newBudgets(l, 1)
	a1, a2 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8::2")
	for i, a := range []netip.Addr{a1, a2} {
		if _, err := bs.spend(&bs.send, "u"+strconv.Itoa(i), a, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := bs.spend(&bs.send, "u3", netip.MustParseAddr("2001:db8::3"), 1); salamander.ErrorCode(err) != salamander.CodeTooManyRequests {
		t.Fatalf("third send from one /64: %v", err)
	}
	if _, err := bs.spend(&bs.send, "u3", netip.MustParseAddr("2001:db8:0:1::3"), 1); err != nil {
		t.Fatalf("another /64 limited: %v", err)
	}
	// u3's refused send above cost u3 nothing: 100 minus the one that passed.
	for i := range 99 {
		if _, err := bs.spend(&bs.send, "u3", netip.MustParseAddr("10.1.2."+strconv.Itoa(i%250)), 1); err != nil {
			t.Fatalf("exempt send %d: %v", i, err)
		}
	}
	exempt := netip.MustParseAddr("10.0.0.1")
	for i := range 50 {
		if _, err := bs.spend(&bs.send, "u4", exempt, 1); err != nil {
			t.Fatalf("exempt address limited at %d: %v", i, err)
		}
	}
	if _, err := bs.spend(&bs.login, "mina", exempt, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.spend(&bs.login, "mina", exempt, 1); salamander.ErrorCode(err) != salamander.CodeTooManyRequests {
		t.Fatalf("failed logins from an exempt address not limited per account: %v", err)
	}
}

// A rate-limited answer is 429 with the API's JSON error and Retry-After
// in whole seconds, rounded up, also in the body's retry_after.
func TestRateLimitAnswer(t *testing.T) {
	bs := newBudgets(Limits{SignUpsPerAddr: Rate{Burst: 1, Every: 90 * time.Second}}, 1)
	addr := netip.MustParseAddr("198.51.100.1")
	if _, err := bs.spend(&bs.signUp, "", addr, 1); err != nil {
		t.Fatal(err)
	}
	_, err := bs.spend(&bs.signUp, "", addr, 1)
	w := httptest.NewRecorder()
	writeError(w, nil, httptest.NewRequest("POST", "/v1/signup", nil), err)
	if w.Code != 429 {
		t.Fatalf("status %d", w.Code)
	}
	ra, perr := strconv.Atoi(w.Header().Get("Retry-After"))
	if perr != nil || ra < 89 || ra > 90 {
		t.Fatalf("Retry-After %q, want 89-90", w.Header().Get("Retry-After"))
	}
	var e salamander.Error
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code != salamander.CodeTooManyRequests || e.Message == "" ||
		e.RetryAfter != ra {
		t.Fatalf("body %s (retry_after, want %d): %v", w.Body, ra, err)
	}
	// A WebSocket nack says it too; other refusals do not.
	if n := nack("r", "c", err); n.Error == nil || n.Error.RetryAfter != ra {
		t.Fatalf("nack %+v, want retry_after %d", n.Error, ra)
	}
	if n := nack("r", "c", salamander.Errorf(salamander.CodeForbidden, "no")); n.Error.RetryAfter != 0 {
		t.Fatalf("a forbidden nack says retry_after %d", n.Error.RetryAfter)
	}
	if retryAfterSeconds(1500*time.Millisecond) != 2 || retryAfterSeconds(time.Millisecond) != 1 {
		t.Fatal("Retry-After must round up to at least 1 s")
	}
}

// Behind trusted proxies a request counts against the client the nearest
// untrusted X-Forwarded-For hop names; nobody else's header is believed.
func TestClientAddressBehindTrustedProxies(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	a := netip.MustParseAddr
	cases := []struct {
		name string
		peer netip.Addr
		xff  []string
		want netip.Addr
	}{
		{"direct client, header ignored", a("203.0.113.7"), []string{"198.51.100.1"}, a("203.0.113.7")},
		{"one trusted proxy", a("127.0.0.1"), []string{"203.0.113.7"}, a("203.0.113.7")},
		{"two trusted proxies", a("10.1.2.3"), []string{"203.0.113.7, 127.0.0.1"}, a("203.0.113.7")},
		{"a client's forged hop stays behind its own address", a("127.0.0.1"), []string{"198.51.100.1, 203.0.113.7"}, a("203.0.113.7")},
		{"headers on several lines", a("127.0.0.1"), []string{"198.51.100.1", "203.0.113.7"}, a("203.0.113.7")},
		{"garbage stops at the proxy", a("127.0.0.1"), []string{"not-an-address"}, a("127.0.0.1")},
		{"no header: the proxy itself", a("127.0.0.1"), nil, a("127.0.0.1")},
	}
	for _, tc := range cases {
		if got := forwardedFor(tc.peer, tc.xff, trusted); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if got := forwardedFor(a("127.0.0.1"), []string{"203.0.113.7"}, nil); got != a("127.0.0.1") {
		t.Errorf("without trusted proxies the header was believed: %v", got)
	}
}

// Password hashing waits for one of the process's slots: with every slot
// busy, a check runs only once one is free, and gives up when its request
// does.
func TestHashingWaitsForASlot(t *testing.T) {
	g := &Gateway{hashSlots: make(chan struct{}, 1)}
	g.hashSlots <- struct{}{} // the only slot, busy
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ran := false
	if err := g.hashing(ctx, func() { ran = true }); !errors.Is(err, context.DeadlineExceeded) || ran {
		t.Fatalf("with every slot busy: %v, ran %v", err, ran)
	}
	done := make(chan error, 1)
	go func() { done <- g.hashing(context.Background(), func() { ran = true }) }()
	<-g.hashSlots // the busy slot is given back: the waiting check takes it
	if err := <-done; err != nil || !ran {
		t.Fatalf("once a slot is free: %v, ran %v", err, ran)
	}
	if len(g.hashSlots) != 0 {
		t.Fatal("the slot was not given back")
	}
}

// A same-host proxy (a loopback peer, exempt from the limits) that names
// its client in X-Forwarded-For is believed without --trusted-proxies, so
// its clients are not exempt with it; without the header the peer stays
// itself, exempt, and a remote peer's header is never believed.
func TestSameHostProxyClientsAreNotExempt(t *testing.T) {
	l := DefaultLimits()
	g := &Gateway{cfg: Config{Limits: l}, budgets: newBudgets(l, 3)}
	a := netip.MustParseAddr
	req := func(peer string, xff ...string) *http.Request {
		r := httptest.NewRequest("GET", "/v1/me", nil)
		r.RemoteAddr = peer
		for _, h := range xff {
			r.Header.Add("X-Forwarded-For", h)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want netip.Addr
	}{
		{"a client of a proxy on this host", req("127.0.0.1:5000", "203.0.113.7"), a("203.0.113.7")},
		{"through two proxies on this host", req("127.0.0.1:5000", "203.0.113.7, 127.0.0.2"), a("203.0.113.7")},
		{"over IPv6 loopback", req("[::1]:5000", "2001:db8::1"), a("2001:db8::1")},
		{"a local tool", req("127.0.0.1:5000"), a("127.0.0.1")},
		{"a remote client's header", req("198.51.100.9:5000", "203.0.113.7"), a("198.51.100.9")},
	} {
		got := g.clientAddr(tc.r)
		if got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if g.budgets.exempted(g.clientAddr(req("127.0.0.1:5000", "203.0.113.7"))) {
		t.Error("a same-host proxy's client is exempt")
	}

	// A carrier's NAT exempted besides loopback is its clients' address,
	// not a proxy: a phone behind it cannot name another address (and
	// spend its budgets, or pass for a monitoring network).
	l.Exempt = append(l.Exempt, netip.MustParsePrefix("100.64.0.0/10"))
	g = &Gateway{cfg: Config{Limits: l, MetricsFrom: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}, budgets: newBudgets(l, 3),
		log: slog.New(slog.DiscardHandler)}
	for _, tc := range []struct {
		name string
		r    *http.Request
		want netip.Addr
	}{
		{"a client behind an exempt carrier NAT", req("100.64.1.2:5000", "198.51.100.77"), a("100.64.1.2")},
		{"still a client of a proxy on this host", req("127.0.0.1:5000", "203.0.113.7"), a("203.0.113.7")},
		{"a carrier NAT's client through a proxy on this host", req("127.0.0.1:5000", "198.51.100.77, 100.64.1.2"), a("100.64.1.2")},
	} {
		if got := g.clientAddr(tc.r); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, known := g.clientAddrKnown(req("100.64.1.2:5000", "198.51.100.77")); known {
		t.Error("an exempt peer elsewhere that forwards was taken for its clients' own address")
	}
	w := httptest.NewRecorder()
	g.handleMetrics(http.NotFoundHandler())(w, req("100.64.1.2:5000", "10.9.9.9"))
	if w.Code != http.StatusForbidden {
		t.Errorf("/metrics from an exempt carrier NAT naming a monitoring address: %d, want 403", w.Code)
	}
	l.Exempt = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")} // everyone, for a load test
	g = &Gateway{cfg: Config{Limits: l}, budgets: newBudgets(l, 3), log: slog.New(slog.DiscardHandler)}
	if got := g.clientAddr(req("198.51.100.9:5000", "203.0.113.7")); got != a("198.51.100.9") {
		t.Errorf("with everyone exempt, a remote client's header was believed: %v", got)
	}
	if got := g.clientAddr(req("127.0.0.1:5000", "203.0.113.7")); got != a("203.0.113.7") {
		t.Errorf("with everyone exempt, a proxy on this host was not believed: %v", got)
	}
}

// Keys that all carry state (every one's budget spent: many names failing
// logins at once) make a limiter sweep once per as many new keys as it
// holds, not once per new key; keys whose budget is full again are
// forgotten by the sweep.
func TestLimiterSweepsOncePerDoubling(t *testing.T) {
	l := newLimiter(Rate{Burst: 1, Every: time.Hour})
	for i := range maxLimiterKeys {
		l.take(strconv.Itoa(i), 1) // spent: state to keep
	}
	for i := range 1000 {
		if _, wait := l.take("more-"+strconv.Itoa(i), 1); wait > 0 {
			t.Fatal("a new key's first unit refused")
		}
	}
	if l.sweeps != 1 || len(l.byKey) != maxLimiterKeys+1000 {
		t.Fatalf("%d sweeps, %d keys after %d more keys; want 1 sweep, every key kept", l.sweeps, len(l.byKey), 1000)
	}
	if _, wait := l.take("0", 1); wait <= 0 {
		t.Fatal("a spent key's budget was forgotten")
	}

	full := newLimiter(Rate{Burst: 2, Every: time.Hour})
	for i := range maxLimiterKeys {
		full.take(strconv.Itoa(i), 1) // a unit left: state too
	}
	for k := range full.byKey {
		full.byKey[k].tokens = 2 // as if refilled
	}
	full.take("new", 1)
	if full.sweeps != 1 || len(full.byKey) != 1 {
		t.Fatalf("%d sweeps, %d keys: the full buckets were not forgotten", full.sweeps, len(full.byKey))
	}
}
