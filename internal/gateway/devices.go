package gateway

import (
	"context"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Device tokens keep a person signing in while someone else guesses their
// password. Failed logins are limited per account (LoginFailuresPerUser),
// or guessing would be free; but that budget is anyone's to spend, so an
// attacker failing a login every few seconds would keep the owner's right
// password refused for as long as they kept at it. So every session comes
// with a device token (Session.Device): a signed note that this device
// signed in to this account. A login that brings one back is counted
// against that device's own budget of failures (LoginFailuresPerDevice),
// not the account's: the owner's devices sign in whatever strangers spend,
// and a stranger cannot make a device token without the password. (This is
// OWASP's "device cookie" defence against lock-out.)
//
// A device token is signed like a session (with the current signing key,
// trusted as keyTrusted says) over a payload of its own domain, so that no
// session verifies as a device token or the other way round. It is valid
// for deviceTokenTTL and renewed by every login that brings it; logging
// out of every device (a user revocation) makes every device a stranger
// again, as does a key revocation.

// deviceClaims are what a device token says.
type deviceClaims struct {
	User   string `json:"u"`
	Device string `json:"dev"`
	// Expires is in unix seconds.
	Expires int64 `json:"exp"`
	// AcctSeq is how far the issuing site had applied the accounts stream
	// (as in claims): a user revocation at a later position ends it.
	AcctSeq uint64 `json:"as"`
	KeyID   string `json:"k,omitempty"`
}

// deviceTokenTTL is how long a device stays known without signing in
// again: several session lifetimes, since a device signs in again when its
// session expires.
const deviceTokenTTL = 180 * 24 * time.Hour

// deviceDomain is signed before a device token's payload.
const deviceDomain = "salamander device token\x00"

// issueDeviceToken returns a device token for user's device (a new device
// when device is "").
func (g *Gateway) issueDeviceToken(user, device string) (string, error) {
	s, err := g.currentSigner()
	if err != nil {
		return "", err
	}
	return deviceToken(s, user, device)
}

// deviceToken is a device token for user's device (a new device when
// device is ""), signed by s.
func deviceToken(s signer, user, device string) (string, error) {
	if device == "" {
		device = randomHex(16)
	}
	c := deviceClaims{User: user, Device: device, Expires: time.Now().Add(deviceTokenTTL).Unix(),
		AcctSeq: s.acct, KeyID: s.kid}
	return signClaims(s.key, deviceDomain, c)
}

// knownDevice returns the device a login for user brings back a valid
// device token of, or "" when it brings none, or one that is not user's,
// expired, forged, signed with a key no longer trusted, or from before the
// user revoked every session. Such a token is not an error: the login is
// judged as a stranger's, and a successful one gets a new device token.
func (g *Gateway) knownDevice(ctx context.Context, token, user string) string {
	if token == "" || len(token) > maxTokenBytes || !g.cfg.View.HasSigningKey() {
		return ""
	}
	var c deviceClaims
	payload, sig, ok := decodeToken(token, &c)
	if !ok || c.User != user || c.Device == "" || len(c.Device) > 64 || time.Now().Unix() >= c.Expires {
		return ""
	}
	// A key retired by a rotation stays trusted for device tokens as long
	// as one it signed may live: a device that signs in again only after
	// a month or two is still known.
	if g.verifySignature(c.KeyID, c.AcctSeq, deviceTokenTTL, deviceDomain+payload, sig) != nil {
		return ""
	}
	_, revokedSeq, err := g.cfg.View.Credentials(ctx, user)
	if err != nil || c.AcctSeq < revokedSeq {
		return ""
	}
	if revokedSeq > 0 && c.AcctSeq > g.cfg.View.AppliedOf(jsstore.AccountsStream) {
		// Signed naming a position this site has not applied, past a
		// revocation: it may be forged (see checkAcctSeq). A stranger's
		// budget is the safe side; no round trip to the log for it.
		return ""
	}
	return c.Device
}

var errDeviceTooLong = salamander.Errorf(salamander.CodeInvalid, "device must be at most %d bytes", maxTokenBytes)
