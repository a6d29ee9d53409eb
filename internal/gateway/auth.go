package gateway

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// Sessions are stateless signed tokens: base64url(claims) "." base64url(HMAC-SHA256).
// The keys are in the replicated log, sealed with the deployment's log key
// (only the sites' secret files hold it), so every site verifies every
// token locally; revocations are log records every site applies. Keys
// rotate: a token names the key that signed it and new tokens are signed
// with the current key. A token's claims are whatever its signer wrote, so
// what a key is trusted for is decided from the log and this site's clock
// alone (keyTrusted): a key retired by a rotation is trusted for the
// lifetime of the tokens it signed before (routine key hygiene: nobody is
// logged out), a revoked key (rotate-key --revoke-previous, after a leak)
// for nothing.

// KeyOpener opens a sealed session-signing key (secrets.Site does).
type KeyOpener interface {
	OpenKey(id string, sealed []byte) ([]byte, error)
}

// keyRetireGrace is how much longer than a token's lifetime after its
// retirement a key is trusted: a site that had not yet applied the
// rotation signs with the old key a little longer.
const keyRetireGrace = time.Minute

type claims struct {
	User    string `json:"u"`
	Session string `json:"sid"`
	Issued  int64  `json:"iat"` // unix nanoseconds
	Expires int64  `json:"exp"` // unix seconds
	// AcctSeq is how far the issuing site had applied the accounts stream
	// before it chose the key: "revoke every session" at a later position
	// revokes this one. A position the log does not hold yet is forged
	// (see keyTrusted and checkSession).
	AcctSeq uint64 `json:"as"`
	// KeyID names the signing key ("" for the plain key of before).
	KeyID string `json:"k,omitempty"`
}

const maxTokenBytes = 1024

func (g *Gateway) issueToken(user string) (string, time.Time, error) {
	s, err := g.currentSigner()
	if err != nil {
		return "", time.Time{}, err
	}
	return g.sessionToken(s, user)
}

// sessionToken is a new session of user, signed by s.
func (g *Gateway) sessionToken(s signer, user string) (string, time.Time, error) {
	return g.sessionTokenFor(s, user, g.cfg.TokenTTL)
}

// sessionTokenFor is a new session of user, signed by s, valid for ttl
// (at most the gateways' TokenTTL, which every site checks too).
func (g *Gateway) sessionTokenFor(s signer, user string, ttl time.Duration) (string, time.Time, error) {
	now := time.Now()
	exp := now.Add(min(ttl, g.cfg.TokenTTL))
	c := claims{User: user, Session: randomHex(16), Issued: now.UnixNano(), Expires: exp.Unix(),
		AcctSeq: s.acct, KeyID: s.kid}
	token, err := signClaims(s.key, "", c)
	if err != nil {
		return "", time.Time{}, err
	}
	return token, exp.UTC().Truncate(time.Second), nil
}

// signer is the current signing key, opened, and how far this site had
// applied the accounts stream when it was chosen (every token names it).
type signer struct {
	acct uint64
	kid  string
	key  []byte
}

// currentSigner returns the current signing key. The position is read
// before the key: a token signed with a key that is being retired names a
// position before the rotation's.
func (g *Gateway) currentSigner() (signer, error) {
	acct := g.cfg.View.AppliedOf(jsstore.AccountsStream)
	cur, ok := g.cfg.View.CurrentKey()
	if !ok {
		return signer{}, errNoKey
	}
	key, err := g.openKey(cur)
	return signer{acct: acct, kid: cur.ID, key: key}, err
}

// signClaims encodes c as a token signed with key. domain tells the kinds
// of token apart: a signature over one kind's payload never verifies as
// another's (sessions sign the payload alone, as they always have).
func signClaims(key []byte, domain string, c any) (string, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + sign(key, domain+payload), nil
}

// verifySignature checks a token's signature sig over signed (its domain
// and payload) with the key named kid, if that key may verify a token of
// lifetime ttl naming accounts position acctSeq (keyTrusted).
func (g *Gateway) verifySignature(kid string, acctSeq uint64, ttl time.Duration, signed, sig string) error {
	k, ok := g.trustedKey(kid, acctSeq, ttl)
	if !ok {
		if _, known := g.cfg.View.KeyByID(kid); !known && acctSeq > g.cfg.View.AppliedOf(jsstore.AccountsStream) {
			// A key this site does not have, named by a token signed where
			// the log was further on: rotate-key's new key, perhaps, which
			// this site has not applied yet. Unauthorized would sign the
			// user out (the SDK and the web client take it as the
			// session's end); another site, or this one a moment later,
			// judges it.
			return errKeyNotYet
		}
		return errBadToken
	}
	key, err := g.openKey(k)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(sig), []byte(sign(key, signed))) {
		return errBadToken
	}
	return nil
}

// trustedKey returns the key named kid if this site has it and it may
// verify a token of lifetime ttl naming accounts position acctSeq now
// (keyTrusted).
func (g *Gateway) trustedKey(kid string, acctSeq uint64, ttl time.Duration) (view.SigningKey, bool) {
	k, ok := g.cfg.View.KeyByID(kid)
	if !ok {
		return k, false
	}
	var acct uint64 // how far this site has applied the accounts, for a retired key's tokens
	if !k.Retired.IsZero() {
		acct = g.cfg.View.AppliedOf(jsstore.AccountsStream)
	}
	return k, keyTrusted(k, acctSeq, time.Now(), ttl, acct)
}

// authenticate checks a bearer token and returns its claims. Errors are
// coded: CodeUnauthorized for anything wrong with the token, CodeUnavailable
// when this site cannot judge it yet (no key, user not yet applied).
func (g *Gateway) authenticate(ctx context.Context, token string) (claims, error) {
	c, err := g.parseToken(token)
	if err != nil {
		return c, err
	}
	return c, g.checkSession(ctx, c)
}

var errBadToken = salamander.Errorf(salamander.CodeUnauthorized, "missing, malformed, expired or revoked token")

var errSuspended = salamander.Errorf(salamander.CodeForbidden, "this account is suspended")

var errKeyNotYet = salamander.Errorf(salamander.CodeUnavailable, "this site has not applied this token's signing key yet; try again")

var errNoKey = salamander.Errorf(salamander.CodeUnavailable, "this site has not loaded its signing key yet")

// parseToken checks a token's signature and returns its claims. The claims
// are read before the signature is checked only to learn which key to
// check it with; nothing else of them is trusted until it holds.
func (g *Gateway) parseToken(token string) (claims, error) {
	var c claims
	if token == "" || len(token) > maxTokenBytes {
		return c, errBadToken
	}
	if !g.cfg.View.HasSigningKey() {
		return c, errNoKey
	}
	payload, sig, ok := decodeToken(token, &c)
	if !ok || c.User == "" || c.Session == "" {
		return claims{}, errBadToken
	}
	if err := g.verifySignature(c.KeyID, c.AcctSeq, g.cfg.TokenTTL, payload, sig); err != nil {
		return claims{}, err
	}
	return c, nil
}

// decodeToken splits a signed token into its payload and signature and
// decodes the payload's claims into c, unverified.
func decodeToken(token string, c any) (payload, sig string, ok bool) {
	payload, sig, ok = strings.Cut(token, ".")
	if !ok {
		return "", "", false
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, c) != nil {
		return "", "", false
	}
	return payload, sig, true
}

// keyTrusted says whether k may verify a token of lifetime ttl naming
// accounts position acctSeq (claims.AcctSeq) at now, at a site that has
// applied the accounts stream up to acct. Whoever holds a key writes the
// claims it signs, so they decide nothing but what the log can refute:
//   - the current key verifies any token (its claims are checked later, by
//     checkSession);
//   - a revoked key (rotate-key --revoke-previous) verifies none;
//   - a plain key of before keys were sealed verifies none once retired:
//     anyone who could read the log holds it;
//   - a sealed key retired by a rotation verifies tokens until every token
//     it signed before the rotation has expired (its retirement, at the
//     rotation record's time, plus keyRetireGrace plus ttl), whatever time
//     they claim to be issued at, but none that names an accounts position
//     this site has not applied: the key signed only before the rotation,
//     which this site has applied, so such a token is forged.
func keyTrusted(k view.SigningKey, acctSeq uint64, now time.Time, ttl time.Duration, acct uint64) bool {
	switch {
	case k.Retired.IsZero():
		return true
	case k.Revoked(), k.ID == "":
		return false
	}
	return now.Before(k.Retired.Add(keyRetireGrace+ttl)) && acctSeq <= acct
}

// openKey returns k's key material: opened with the site's secrets (and
// kept), or as is for the plain key of before keys were sealed, which is
// only ever the current key (keyTrusted): its first use warns.
func (g *Gateway) openKey(k view.SigningKey) ([]byte, error) {
	g.keyMu.Lock()
	defer g.keyMu.Unlock()
	if key, ok := g.keys[k.ID]; ok {
		return key, nil
	}
	key := k.Sealed
	switch {
	case k.ID == "":
		g.log.Warn("the session-signing key is not sealed: anyone who can read the log can sign sessions; " +
			"make a sealed one current with `salamander admin rotate-key` (its sessions then end)")
	case g.cfg.Keys == nil:
		return nil, salamander.Errorf(salamander.CodeUnavailable, "this site cannot open the signing keys (no secrets)")
	default:
		var err error
		if key, err = g.cfg.Keys.OpenKey(k.ID, k.Sealed); err != nil {
			g.log.Error("signing key does not open with this site's log key: is its site file from this deployment?",
				"key", k.ID, "err", err)
			return nil, salamander.Errorf(salamander.CodeUnavailable, "this site cannot open the signing key")
		}
	}
	if g.keys == nil {
		g.keys = map[string][]byte{}
	}
	g.keys[k.ID] = key
	return key, nil
}

// recheckSessions is the view's OnSessionsEnded listener: the open
// sockets of users whose sessions the log just ended (a logout at another
// device or site, a revocation, a suspension) check theirs at once, rather
// than at the next periodic check (Config.SessionRecheck).
func (g *Gateway) recheckSessions(users []string) {
	if conns := g.hub.audience(users, nil); len(conns) > 0 {
		g.recheck(g.life, conns, nil)
	}
}

// recheck closes those of conns whose session has ended, on a goroutine
// of its own: checkSession may wait for the log's head (a session of a
// user this site has not applied yet), and neither the applier nor the
// sockets' pings may wait with it. done, if set, runs when it is through
// (not at all once the gateway closes).
func (g *Gateway) recheck(ctx context.Context, conns []*wsConn, done func()) {
	g.background(func() {
		if done != nil {
			defer done()
		}
		for _, c := range conns {
			if ctx.Err() != nil {
				return
			}
			c.kickIfSessionEnded(g.checkSession(ctx, c.session))
		}
	})
}

// checkSession says whether a session whose token was verified is still
// valid: not expired, its key still trusted, not logged out, not revoked. It reads only the
// in-memory model, so a WebSocket can ask it for every frame; only when
// the answer depends on log this site has not applied yet (a user it does
// not know, or a token of a revoked user naming a later accounts position)
// does it first catch up with the stream's head.
func (g *Gateway) checkSession(ctx context.Context, c claims) error {
	if time.Now().Unix() >= c.Expires {
		return errBadToken
	}
	// The signature was verified once, when the token was presented, but
	// its key must still be trusted now: a WebSocket checks its session
	// here, for every frame and every SessionRecheck, and lives as long as
	// it is used; without this, a socket opened with a session forged with
	// a leaked key outlived rotate-key --revoke-previous, up to whatever
	// expiry the forger wrote.
	if _, ok := g.trustedKey(c.KeyID, c.AcctSeq, g.cfg.TokenTTL); !ok {
		return errBadToken
	}
	_, revokedSeq, err := g.cfg.View.Credentials(ctx, c.User)
	if salamander.ErrorCode(err) == salamander.CodeNotFound {
		if err := g.confirmNegative(ctx, jsstore.AccountsStream); err != nil {
			return err
		}
		_, revokedSeq, err = g.cfg.View.Credentials(ctx, c.User)
	}
	if salamander.ErrorCode(err) == salamander.CodeNotFound {
		// Signed by us, so the user exists in the log; this site has not
		// applied the sign-up yet.
		return salamander.Errorf(salamander.CodeUnavailable, "this site is catching up with the log; try again")
	}
	if err != nil {
		return err
	}
	if c.AcctSeq < revokedSeq {
		if g.cfg.View.Suspended(c.User) {
			// Ended by the suspension (for good: a restoration does not
			// bring it back), and said so while it lasts, so that the
			// device tells its user why.
			return errSuspended
		}
		return errBadToken
	}
	if revokedSeq > 0 {
		// The signer chose AcctSeq: a position beyond the log's head would
		// pass every revocation, so it must be one the log holds.
		if err := g.checkAcctSeq(ctx, c); err != nil {
			return err
		}
	}
	revoked, err := g.cfg.View.SessionRevoked(ctx, c.Session)
	if err != nil {
		return err
	}
	if revoked {
		return errBadToken
	}
	// Last, so that errSuspended here means a session valid in every
	// other way (logging out takes one); one the suspension itself ended
	// is answered errSuspended above, and logging it out changes nothing.
	if g.cfg.View.Suspended(c.User) {
		return errSuspended
	}
	return nil
}

// checkAcctSeq refuses a token that names an accounts position beyond the
// stream's head: no site could have applied it, so the token is forged.
func (g *Gateway) checkAcctSeq(ctx context.Context, c claims) error {
	if c.AcctSeq <= g.cfg.View.AppliedOf(jsstore.AccountsStream) {
		return nil
	}
	if err := g.confirmNegative(ctx, jsstore.AccountsStream); err != nil {
		return err
	}
	if c.AcctSeq > g.cfg.View.AppliedOf(jsstore.AccountsStream) {
		return errBadToken
	}
	return nil
}

func bearerToken(authHeader string) string {
	const prefix = "Bearer "
	if len(authHeader) > len(prefix) && strings.EqualFold(authHeader[:len(prefix)], prefix) {
		return strings.TrimSpace(authHeader[len(prefix):])
	}
	return ""
}

func sign(key []byte, payload string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// hashWait is how long a password's hashing or check waits for one of the
// process's hashing slots before the request is answered unavailable.
const hashWait = 2 * time.Second

var errHashBusy = salamander.Errorf(salamander.CodeUnavailable, "this site is checking too many passwords at once; try again or another site")

// hashing runs fn, a bcrypt hashing or comparison (tens of milliseconds of
// CPU each at the default cost), in one of the process's hashing slots,
// one per core: logins and sign-ups arriving faster than the cores hash
// wait for a slot (at most hashWait) instead of taking every core from
// the site's sends and deliveries.
func (g *Gateway) hashing(ctx context.Context, fn func()) error {
	t := time.NewTimer(hashWait)
	defer t.Stop()
	select {
	case g.hashSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return errHashBusy
	}
	defer func() { <-g.hashSlots }()
	fn()
	return nil
}

func (g *Gateway) hashPassword(ctx context.Context, pw string) (string, error) {
	var h []byte
	var err error
	if werr := g.hashing(ctx, func() { h, err = bcrypt.GenerateFromPassword([]byte(pw), g.cfg.BcryptCost) }); werr != nil {
		return "", werr
	}
	return string(h), err
}

// checkPassword compares pw with hash. For an unknown user (hash "") it
// compares against a dummy hash anyway, of the cost most accounts' hashes
// have (view.HashCost: a hash keeps the cost it was made with, so after
// --bcrypt-cost changes the configured one would tell the names made
// before from names nobody has), so that a login for a name that does not
// exist takes as long as one with a wrong password and timing does not
// tell which names exist.
func (g *Gateway) checkPassword(ctx context.Context, hash, pw string) (bool, error) {
	dummy := []byte(nil)
	if hash == "" {
		dummy = g.dummyHash(cmp.Or(g.cfg.View.HashCost(), g.cfg.BcryptCost))
	}
	var ok bool
	err := g.hashing(ctx, func() {
		if hash == "" {
			_ = bcrypt.CompareHashAndPassword(dummy, []byte(pw))
			return
		}
		ok = bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
	})
	return ok, err
}

// dummyHash is a hash of cost of a password nobody knows, made once per
// cost (outside the hashing slots: only the first unknown name at a cost
// pays for it, and it is not a comparison to be timed against).
func (g *Gateway) dummyHash(cost int) []byte {
	g.dummyMu.Lock()
	defer g.dummyMu.Unlock()
	if h, ok := g.dummies[cost]; ok {
		return h
	}
	h, err := bcrypt.GenerateFromPassword([]byte(randomHex(16)), cost)
	if err != nil { // a cost out of bcrypt's range: the configured one
		h, _ = bcrypt.GenerateFromPassword([]byte(randomHex(16)), g.cfg.BcryptCost)
	}
	if g.dummies == nil {
		g.dummies = map[int][]byte{}
	}
	g.dummies[cost] = h
	return h
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewKeyID returns a fresh signing-key id.
func NewKeyID() string { return randomHex(6) }

// NewSigningKey returns fresh key material for RecSigningKey.
func NewSigningKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}
