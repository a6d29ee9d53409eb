package gateway

import (
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
)

// Sessions are stateless signed tokens: base64url(claims) "." base64url(HMAC-SHA256).
// The key is in the replicated log, so every site verifies every token
// locally; revocations are log records every site applies.

type claims struct {
	User    string `json:"u"`
	Session string `json:"sid"`
	Issued  int64  `json:"iat"` // unix nanoseconds
	Expires int64  `json:"exp"` // unix seconds
	// AcctSeq is how far the issuing site had applied the accounts stream:
	// "revoke every session" at a later position revokes this one.
	AcctSeq uint64 `json:"as"`
}

const maxTokenBytes = 1024

func (g *Gateway) issueToken(user string) (string, time.Time, error) {
	key := g.cfg.View.SigningKey()
	if key == nil {
		return "", time.Time{}, salamander.Errorf(salamander.CodeUnavailable, "this site has not loaded its signing key yet")
	}
	now := time.Now()
	exp := now.Add(g.cfg.TokenTTL)
	c := claims{User: user, Session: randomHex(16), Issued: now.UnixNano(), Expires: exp.Unix(),
		AcctSeq: g.cfg.View.Applied()[jsstore.AccountsStream]}
	body, err := json.Marshal(c)
	if err != nil {
		return "", time.Time{}, err
	}
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + sign(key, payload), exp.UTC().Truncate(time.Second), nil
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

// parseToken checks a token's signature and returns its claims.
func (g *Gateway) parseToken(token string) (claims, error) {
	var c claims
	if token == "" || len(token) > maxTokenBytes {
		return c, errBadToken
	}
	key := g.cfg.View.SigningKey()
	if key == nil {
		return c, salamander.Errorf(salamander.CodeUnavailable, "this site has not loaded its signing key yet")
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || !hmac.Equal([]byte(sig), []byte(sign(key, payload))) {
		return c, errBadToken
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil || json.Unmarshal(body, &c) != nil || c.User == "" || c.Session == "" {
		return c, errBadToken
	}
	return c, nil
}

// checkSession says whether a session whose token was verified is still
// valid: not expired, not logged out, not revoked. It reads only the
// in-memory model, so a WebSocket can ask it for every frame.
func (g *Gateway) checkSession(ctx context.Context, c claims) error {
	if time.Now().Unix() >= c.Expires {
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
		return errBadToken
	}
	revoked, err := g.cfg.View.SessionRevoked(ctx, c.Session)
	if err != nil {
		return err
	}
	if revoked {
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

func (g *Gateway) hashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), g.cfg.BcryptCost)
	return string(h), err
}

// checkPassword compares pw with hash. For an unknown user (hash "") it
// compares against a hash of the same cost anyway, so that a login for a
// name that does not exist takes as long as one with a wrong password and
// timing does not tell which names exist.
func (g *Gateway) checkPassword(hash, pw string) bool {
	if hash == "" {
		g.dummyOnce.Do(func() {
			g.dummyHash, _ = bcrypt.GenerateFromPassword([]byte(randomHex(16)), g.cfg.BcryptCost)
		})
		_ = bcrypt.CompareHashAndPassword(g.dummyHash, []byte(pw))
		return false
	}
	return bcrypt.CompareHashAndPassword([]byte(hash), []byte(pw)) == nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NewSigningKey returns fresh key material for RecSigningKey.
func NewSigningKey() []byte {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return b
}
