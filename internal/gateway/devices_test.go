package gateway

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
)

// A device token outlives the sessions of its key: a key retired by a
// rotation two months ago no longer verifies its sessions (30 days) but
// still its device tokens (180 days), until it is revoked. A token of one
// kind never passes for the other.
func TestDeviceTokenTrustOfARetiredKey(t *testing.T) {
	log := newKeyLog(time.Now().Add(-60 * 24 * time.Hour))
	log.key("k1", false)
	log.user("mina")
	log.key("k2", true)
	g := log.gateway(t)
	device, err := signClaims([]byte(keyOf("k1")), deviceDomain, deviceClaims{User: "mina", Device: "d1",
		Expires: time.Now().Add(100 * 24 * time.Hour).Unix(), AcctSeq: 2, KeyID: "k1"})
	if err != nil {
		t.Fatal(err)
	}
	session := forgeToken("k1", claims{User: "mina", Session: "00112233445566778899aabbccddeeff",
		Issued: time.Now().Add(-59 * 24 * time.Hour).UnixNano(), Expires: time.Now().Add(time.Hour).Unix(), AcctSeq: 2})
	if _, err := g.authenticate(t.Context(), session); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("a session of a key retired 60 days ago: %v, want unauthorized", err)
	}
	if got := g.knownDevice(t.Context(), device, "mina"); got != "d1" {
		t.Fatalf("a device token of a key retired 60 days ago: %q, want d1", got)
	}
	if got := g.knownDevice(t.Context(), device, "joon"); got != "" {
		t.Fatalf("mina's device token for joon: %q", got)
	}

	// Kinds apart: a current session is no device token, a device token no session.
	current, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	if got := g.knownDevice(t.Context(), current, "mina"); got != "" {
		t.Fatalf("a session token taken for a device token: %q", got)
	}
	fresh, err := g.issueDeviceToken("mina", "")
	if err != nil {
		t.Fatal(err)
	}
	if g.knownDevice(t.Context(), fresh, "mina") == "" {
		t.Fatal("a fresh device token is not known")
	}
	if _, err := g.authenticate(t.Context(), fresh); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Fatalf("a device token taken for a session: %v", err)
	}

	log.revokeAllBut("k2")
	g = log.gateway(t)
	if got := g.knownDevice(t.Context(), device, "mina"); got != "" {
		t.Fatalf("a device token of a revoked key: %q", got)
	}
}
