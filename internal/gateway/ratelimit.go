package gateway

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// loginLimiter slows password guessing: each account name gets a small
// budget of failed logins per site. It is per site and in memory, so an
// attacker spreading guesses over three sites gets three budgets; that is
// still a few guesses a minute, and no site depends on another to enforce it.
type loginLimiter struct {
	mu    sync.Mutex
	every time.Duration
	burst int
	byKey map[string]*rate.Limiter
}

func newLoginLimiter(every time.Duration, burst int) *loginLimiter {
	return &loginLimiter{every: every, burst: burst, byKey: map[string]*rate.Limiter{}}
}

// allow reports whether a login for key may be checked now: its budget of
// failures is not spent.
func (l *loginLimiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[key]
	return !ok || lim.Tokens() >= 1
}

// failed spends one unit of key's budget.
func (l *loginLimiter) failed(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.byKey[key]
	if !ok {
		if len(l.byKey) >= 100000 {
			l.forgetFull()
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.byKey[key] = lim
	}
	lim.Allow()
}

// forgetFull drops limiters whose budget has refilled: they carry no state.
func (l *loginLimiter) forgetFull() {
	for k, lim := range l.byKey {
		if lim.Tokens() >= float64(l.burst) {
			delete(l.byKey, k)
		}
	}
}
