package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// What a key is trusted for is decided from the log and the clock, never
// from the claims its holder signed: a key retired by a rotation verifies
// tokens until every token it signed before has expired, whatever issue
// time they claim, but none naming an accounts position this site has not
// applied; a revoked key, or a retired plain one, verifies nothing.
func TestKeyTrustedDecidesFromTheLogNotTheClaims(t *testing.T) {
	ttl := 30 * 24 * time.Hour
	retired := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	old := view.SigningKey{ID: "k1", Created: retired.Add(-90 * 24 * time.Hour), Retired: retired}
	cur := view.SigningKey{ID: "k2", Created: retired}
	plain := view.SigningKey{Created: old.Created, Retired: retired}
	revoked := revokedKey(t, "k1")
	const acct = 100
	issued := func(at time.Time, as uint64) claims { return claims{Issued: at.UnixNano(), AcctSeq: as} }
	cases := []struct {
		name string
		key  view.SigningKey
		c    claims
		now  time.Time
		want bool
	}{
		{"current key", cur, issued(retired.Add(time.Hour), math.MaxUint64), retired.Add(2 * time.Hour), true},
		{"old key, token from before its retirement", old, issued(retired.Add(-time.Hour), 90), retired.Add(time.Hour), true},
		{"old key, token from a site that had not applied the rotation yet", old, issued(retired.Add(30*time.Second), 99),
			retired.Add(time.Hour), true},
		{"old key, any claimed issue time (claims are the signer's)", old, issued(retired.Add(time.Hour), 90),
			retired.Add(2 * time.Hour), true},
		{"old key, token naming a position this site has not applied", old, issued(retired.Add(-time.Hour), acct+1),
			retired.Add(time.Hour), false},
		{"old key, token naming the largest position", old, issued(retired.Add(-time.Hour), math.MaxUint64),
			retired.Add(time.Hour), false},
		{"old key, every token it signed has expired", old, issued(retired.Add(-time.Hour), 90), retired.Add(ttl + 2*time.Minute), false},
		{"revoked key, backdated token", revoked, issued(retired.Add(-time.Hour), 1), retired.Add(time.Minute), false},
		{"retired plain key (readable in the log)", plain, issued(retired.Add(-time.Hour), 1), retired.Add(time.Minute), false},
	}
	for _, tc := range cases {
		if got := keyTrusted(tc.key, tc.c.AcctSeq, tc.now, ttl, acct); got != tc.want {
			t.Errorf("%s: trusted %v, want %v", tc.name, got, tc.want)
		}
	}
}

// revokedKey is the key id as a view holds it after a rotation with
// --revoke-previous.
func revokedKey(t *testing.T, id string) view.SigningKey {
	t.Helper()
	log := newKeyLog(time.Now())
	log.key(id, false)
	log.key("next", true)
	log.revokeAllBut("next")
	k, ok := applyLog(t, log.fuzzLog).KeyByID(id)
	if !ok || !k.Revoked() {
		t.Fatalf("key %s after --revoke-previous: %+v", id, k)
	}
	return k
}

// After a leak, `rotate-key --revoke-previous`: a token forged with the
// leaked key, claiming to be issued long before the rotation, verified
// after the plain rotation (its sessions live on) and verifies no more
// after the revocation; sessions of the new key do.
func TestRevokePreviousEndsEverySessionOfTheLeakedKey(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	log.key("k2", true)
	forged := forgeToken("k1", claims{User: "mina", Session: "00112233445566778899aabbccddeeff",
		Issued: time.Now().Add(-2 * time.Hour).UnixNano(), Expires: time.Now().Add(time.Hour).Unix(), AcctSeq: 1})
	g := log.gateway(t)
	if _, err := g.authenticate(t.Context(), forged); err != nil {
		t.Fatalf("after a plain rotation, a session of the previous key: %v", err)
	}

	log.revokeAllBut("k2")
	g = log.gateway(t)
	if c, err := g.authenticate(t.Context(), forged); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("after --revoke-previous, the leaked key's token: %+v, %v; want unauthorized", c, err)
	}
	tok, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := g.authenticate(t.Context(), tok); err != nil || c.KeyID != "k2" {
		t.Fatalf("a session of the new key: %+v, %v", c, err)
	}
}

// revoke-user holds against a retired key's holder: a token it signs
// naming an accounts position beyond the log (as: MaxUint64, which passes
// every revocation) is refused.
func TestRetiredKeyCannotOutrunRevokeUser(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	log.key("k2", true)
	log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecUserRevoked, At: log.next(), User: "mina"})
	g := log.gateway(t)
	c := claims{User: "mina", Session: "00112233445566778899aabbccddeeff", Issued: time.Now().Add(-2 * time.Hour).UnixNano(),
		Expires: time.Now().Add(time.Hour).Unix()}
	for _, as := range []uint64{1, math.MaxUint64} {
		c.AcctSeq = as
		if got, err := g.authenticate(t.Context(), forgeToken("k1", c)); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
			t.Errorf("revoked user's token of the retired key naming position %d: %+v, %v; want unauthorized", as, got, err)
		}
	}
}

// A token of the current key naming an accounts position beyond the
// stream's head (which passes every revoke-user) is refused once the site
// has caught up; one naming the head is not.
func TestTokenNamingAPositionBeyondTheLogIsRefused(t *testing.T) {
	ctx := t.Context()
	cfg := jsstore.DefaultConfig(presenceNATS(t))
	cfg.Replicas, cfg.Partitions = 1, 1
	store, err := jsstore.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(store.Close)
	if err := store.EnsureStreams(ctx); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC()
	var revokedAt salamander.Position
	for i, r := range []salamander.Record{
		{Type: salamander.RecSigningKey, At: at, KeyID: "k1", Key: []byte("sealed:" + keyOf("k1"))},
		{Type: salamander.RecUserCreated, At: at, User: "mina", PasswordHash: "x"},
		{Type: salamander.RecUserRevoked, At: at, User: "mina"},
	} {
		pos, _, err := store.Append(ctx, jsstore.AccountsStream, string(r.Type), r,
			jsstore.AppendOptions{MsgID: fmt.Sprintf("beyond-%d", i)})
		if err != nil {
			t.Fatal(err)
		}
		revokedAt = pos
	}
	v := runView(t, store)
	checkFor(t, 10*time.Second, 10*time.Millisecond, func() error {
		if _, revokedSeq, err := v.Credentials(ctx, "mina"); err != nil || revokedSeq != revokedAt.Seq {
			return fmt.Errorf("mina revoked at %d (%v), want %d", revokedSeq, err, revokedAt.Seq)
		}
		return nil
	})
	g := &Gateway{cfg: Config{View: v, Store: store, TokenTTL: time.Hour, Keys: fuzzKeyOpener{}, WriteTimeout: 5 * time.Second},
		log: slog.New(slog.DiscardHandler), life: ctx}
	tok, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.authenticate(ctx, tok); err != nil {
		t.Fatalf("a token naming the head: %v", err)
	}
	c := claims{User: "mina", Session: "00112233445566778899aabbccddeeff", Issued: time.Now().UnixNano(),
		Expires: time.Now().Add(time.Hour).Unix(), AcctSeq: math.MaxUint64}
	if got, err := g.authenticate(ctx, forgeToken("k1", c)); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("a token naming a position beyond the log: %+v, %v; want unauthorized", got, err)
	}
}

// keyLog builds the accounts stream of a log held in memory, one record a
// second from its start, with keys "sealed" as fuzzKeyOpener opens them.
type keyLog struct {
	*fuzzLog
	at time.Time
}

func newKeyLog(start time.Time) *keyLog {
	return &keyLog{fuzzLog: &fuzzLog{entries: map[string][]jsstore.Entry{}}, at: start.UTC()}
}

func (l *keyLog) next() time.Time {
	l.at = l.at.Add(time.Second)
	return l.at
}

// key appends key id: the log's first key, or with rotate the next one.
func (l *keyLog) key(id string, rotate bool) {
	l.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecSigningKey, At: l.next(), KeyID: id,
		Key: []byte("sealed:" + keyOf(id)), Rotate: rotate})
}

// revokeAllBut appends what rotate-key --revoke-previous appends after
// its rotation to id.
func (l *keyLog) revokeAllBut(id string) {
	l.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecSigningKey, At: l.next(), KeyID: id, Rotate: true})
}

func (l *keyLog) user(name string) {
	l.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecUserCreated, At: l.next(), User: name, PasswordHash: "x"})
}

// gateway returns a gateway reading a view that has applied the log so far.
func (l *keyLog) gateway(t *testing.T) *Gateway {
	t.Helper()
	return &Gateway{cfg: Config{View: applyLog(t, l.fuzzLog), TokenTTL: 30 * 24 * time.Hour, Keys: fuzzKeyOpener{}},
		log: slog.New(slog.DiscardHandler)}
}

// forgeToken signs c with key id's material, as whoever holds that key can.
func forgeToken(id string, c claims) string {
	c.KeyID = id
	body, _ := json.Marshal(c)
	payload := base64.RawURLEncoding.EncodeToString(body)
	return payload + "." + sign([]byte(keyOf(id)), payload)
}

// keyOf is the key material of the test key id.
func keyOf(id string) string { return "key material of " + id }

// A session already let in — an open WebSocket, which checks its session
// (checkSession) for every frame and every few seconds but verifies its
// token only at the handshake — ends when its key is revoked: a thief of
// the leaked key who forged a session and opened a socket before
// `rotate-key --revoke-previous` kept reading and sending as its user for
// as long as the socket lived, up to the expiry the thief wrote. So does
// one of a retired key once the key's trust has run out.
func TestAnOpenSessionEndsWithItsKey(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	log.key("k2", true)
	forged := forgeToken("k1", claims{User: "mina", Session: "00112233445566778899aabbccddeeff",
		Issued: time.Now().UnixNano(), Expires: time.Now().Add(10 * 365 * 24 * time.Hour).Unix(), AcctSeq: 1})
	g := log.gateway(t)
	c, err := g.authenticate(t.Context(), forged)
	if err != nil {
		t.Fatalf("after a plain rotation, a session of the previous key: %v", err)
	}
	log.revokeAllBut("k2")
	g = log.gateway(t)
	if err := g.checkSession(t.Context(), c); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("an open session of the revoked key, checked again: %v; want unauthorized", err)
	}

	// A retired key's session, checked after every token the key signed
	// before its retirement has expired.
	old := newKeyLog(time.Now().Add(-40 * 24 * time.Hour))
	old.key("k1", false)
	old.user("mina")
	old.key("k2", true)
	g = old.gateway(t)
	if err := g.checkSession(t.Context(), c); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("an open session of a key retired over 30 days ago, checked again: %v; want unauthorized", err)
	}
}

// A token signed with a key this site has not applied yet — rotate-key's
// new key, used at once by a site that applied the rotation — is answered
// unavailable, as one of a user this site has not applied yet is: the
// client tries another site, or again, instead of being signed out (the
// web client and the SDK take unauthorized as the session's end). A
// token naming a key unknown at a position this site has applied is
// refused.
func TestATokenOfAKeyNotAppliedYetIsUnavailable(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	g := log.gateway(t)
	applied := g.cfg.View.AppliedOf(jsstore.AccountsStream)
	c := claims{User: "mina", Session: "00112233445566778899aabbccddeeff", Issued: time.Now().UnixNano(),
		Expires: time.Now().Add(time.Hour).Unix(), AcctSeq: applied + 1} // signed where the rotation was applied
	if _, err := g.authenticate(t.Context(), forgeToken("k2", c)); salamander.ErrorCode(err) != salamander.CodeUnavailable {
		t.Fatalf("a token of a key rotated in at a position this site has not applied: %v; want unavailable", err)
	}
	c.AcctSeq = applied
	if _, err := g.authenticate(t.Context(), forgeToken("k2", c)); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("a token of a key unknown at a position this site has applied: %v; want unauthorized", err)
	}
}
