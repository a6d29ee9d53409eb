package gateway

import (
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// A password change ends every session and device token issued before it
// (they name an earlier accounts position), at whichever site applies it,
// and those issued after it live: the device that changed it is answered
// with new ones.
func TestPasswordChangeEndsEarlierSessionsAndDeviceTokens(t *testing.T) {
	log := newKeyLog(time.Now().Add(-time.Hour))
	log.key("k1", false)
	log.user("mina")
	g := log.gateway(t)
	before, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	beforeDevice, err := g.issueDeviceToken("mina", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.authenticate(t.Context(), before); err != nil {
		t.Fatalf("a session before the change: %v", err)
	}
	if g.knownDevice(t.Context(), beforeDevice, "mina") == "" {
		t.Fatal("a device token before the change is not known")
	}

	hash, err := bcrypt.GenerateFromPassword([]byte("a new password"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecPasswordSet, At: log.next(), User: "mina", By: "mina",
		PasswordHash: string(hash)})
	g = log.gateway(t)
	if c, err := g.authenticate(t.Context(), before); salamander.ErrorCode(err) != salamander.CodeUnauthorized {
		t.Errorf("a session from before the change: %+v, %v; want unauthorized", c, err)
	}
	if dev := g.knownDevice(t.Context(), beforeDevice, "mina"); dev != "" {
		t.Errorf("a device token from before the change is still known (device %s)", dev)
	}
	if bcrypt.CompareHashAndPassword([]byte(mustHash(t, g)), []byte("a new password")) != nil {
		t.Error("the new password does not match the account's hash")
	}
	after, _, err := g.issueToken("mina")
	if err != nil {
		t.Fatal(err)
	}
	afterDevice, err := g.issueDeviceToken("mina", "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.authenticate(t.Context(), after); err != nil {
		t.Errorf("a session issued after the change: %v", err)
	}
	if g.knownDevice(t.Context(), afterDevice, "mina") == "" {
		t.Error("a device token issued after the change is not known")
	}
}

// mustHash is mina's password hash as g's view holds it.
func mustHash(t *testing.T, g *Gateway) string {
	t.Helper()
	hash, _, err := g.cfg.View.Credentials(t.Context(), "mina")
	if err != nil {
		t.Fatal(err)
	}
	return hash
}
