package integration

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// natsAs connects to site i's NATS server with opts (and nothing else;
// opts come last, so that they may replace the quiet error handler).
func natsAs(t *testing.T, i int, opts ...nats.Option) (*nats.Conn, error) {
	t.Helper()
	opts = append([]nats.Option{nats.Timeout(5 * time.Second), nats.MaxReconnects(0),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})}, opts...)
	return nats.Connect(cluster.NATSURL(i), opts...)
}

// siteCreds returns the options a site's gateway connects with.
func siteCreds(t *testing.T, i int) []nats.Option {
	t.Helper()
	sec, err := secrets.LoadSite(cluster.SiteFile(i))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := sec.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	return []nats.Option{nats.UserInfo(sec.NATSUser, sec.NATSPassword), nats.Secure(tc),
		nats.CustomInboxPrefix(jsstore.InboxPrefix(sec.NATSUser))}
}

// Whoever reaches a NATS client port without a credential gets nothing,
// and no one gets anything over a plain connection.
func TestNATSRefusesClientsWithoutCredentials(t *testing.T) {
	sec, err := secrets.LoadSite(cluster.SiteFile(0))
	if err != nil {
		t.Fatal(err)
	}
	tc, err := sec.ClientTLS()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := natsAs(t, 0, nats.Secure(tc)); err == nil {
		nc.Close()
		t.Fatal("a client without credentials was admitted")
	} else if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("refused, but not for its credentials: %v", err)
	}
	if nc, err := natsAs(t, 0, nats.Secure(tc), nats.UserInfo(sec.NATSUser, "guess")); err == nil {
		nc.Close()
		t.Fatal("a wrong password was admitted")
	}
	plain := "nats://" + strings.TrimPrefix(cluster.NATSURL(0), "tls://")
	if nc, err := nats.Connect(plain, nats.UserInfo(sec.NATSUser, sec.NATSPassword), nats.Timeout(5*time.Second),
		nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a plain (unencrypted) connection was admitted")
	}
}

// A gateway's credential appends and reads, but cannot destroy or
// reconfigure the log.
func TestGatewayCredentialCannotDestroyTheLog(t *testing.T) {
	nc, err := natsAs(t, 1, siteCreds(t, 1)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := jetStream(t, nc)
	ctx := testCtx(t, 30*time.Second)
	st, err := js.Stream(ctx, "SAL_P0")
	if err != nil {
		t.Fatalf("a gateway cannot read stream info: %v", err)
	}
	before := st.CachedInfo().State.Msgs
	try := func(what string, fn func(context.Context) error) {
		// A refused request is not answered: it ends at its deadline.
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := fn(c); err == nil {
			t.Errorf("a gateway credential could %s", what)
		}
	}
	try("delete a stream", func(c context.Context) error { return js.DeleteStream(c, "SAL_P0") })
	try("purge a stream", func(c context.Context) error { return st.Purge(c) })
	try("delete a record", func(c context.Context) error { return st.DeleteMsg(c, 1) })
	try("update a stream", func(c context.Context) error {
		cfg := st.CachedInfo().Config
		cfg.MaxMsgs = 1
		_, err := js.UpdateStream(c, cfg)
		return err
	})
	// The log is intact: the admin credential sees every record.
	anc, err := cluster.AdminNATS(1)
	if err != nil {
		t.Fatalf("the admin credential was refused: %v", err)
	}
	defer anc.Close()
	ast, err := jetStream(t, anc).Stream(ctx, "SAL_P0")
	if err != nil {
		t.Fatalf("stream gone: %v", err)
	}
	if got := ast.CachedInfo().State.Msgs; got < before {
		t.Fatalf("stream holds %d records, held %d", got, before)
	}
	// Nor may it read or answer the replies of another site's gateway
	// (whose connection to this server routes them here).
	refused := make(chan error, 4)
	spy, err := natsAs(t, 1, append(siteCreds(t, 1),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err }))...)
	if err != nil {
		t.Fatal(err)
	}
	defer spy.Close()
	for _, subj := range []string{"_INBOX.>", jsstore.InboxPrefix(secrets.GatewayUser("a")) + ".>"} {
		if _, err := spy.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-refused:
			if !strings.Contains(err.Error(), "Permissions Violation") {
				t.Fatalf("a subscription to %s failed otherwise: %v", subj, err)
			}
		case <-ctx.Done():
			t.Fatalf("a gateway credential may subscribe to %s", subj)
		}
	}
	if err := spy.Publish(jsstore.InboxPrefix(secrets.GatewayUser("a"))+".x.1", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-refused:
		if !strings.Contains(err.Error(), "Permissions Violation") {
			t.Fatalf("a publish to another gateway's inbox failed otherwise: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("a gateway credential may publish to another gateway's inbox")
	}
}

// Routes take only a peer with a certificate from the deployment's CA:
// a server without one cannot join the cluster and read the log.
func TestRoutesRequireACertificate(t *testing.T) {
	addr := cluster.Site(2).Node().ClusterAddr()
	sec, err := secrets.LoadSite(cluster.SiteFile(0))
	if err != nil {
		t.Fatal(err)
	}
	own, err := sec.RouteTLS()
	if err != nil {
		t.Fatal(err)
	}
	// hello opens a TLS connection to the route port and reads the
	// server's first words.
	hello := func(certs []tls.Certificate) error {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		tc := tls.Client(conn, &tls.Config{RootCAs: own.RootCAs, Certificates: certs, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			return err
		}
		_, err = bufio.NewReader(tc).ReadString('\n')
		return err
	}
	if err := hello(own.Certificates); err != nil {
		t.Fatalf("a site's own certificate was refused: %v", err)
	}
	if err := hello(nil); err == nil {
		t.Fatal("a route without a certificate was answered")
	}
}

// The admin command works with the admin credential and is refused
// without it.
func TestAdminCommandNeedsItsCredential(t *testing.T) {
	urls := cluster.NATSURL(0) + "," + cluster.NATSURL(1)
	out, err := exec.Command(salamanderBin, "admin", "--nats", urls, "--creds", cluster.AdminFile(), "leaders").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SAL_ACCT") && !strings.Contains(string(out), "acct") {
		t.Fatalf("admin leaders with the admin credential: %v\n%s", err, out)
	}
	out, err = exec.Command(salamanderBin, "admin", "--nats", urls, "--creds", cluster.SiteFile(0), "--timeout", "5s",
		"leaders").CombinedOutput()
	if err == nil {
		t.Fatalf("admin ran with a site file instead of the admin credential:\n%s", out)
	}
}

// jetStream is nc's JetStream API.
func jetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// tokenClaim reads one string claim (e.g. "sid", "k") from a token's
// payload, without checking its signature.
func tokenClaim(t *testing.T, token, claim string) string {
	t.Helper()
	payload, _, _ := strings.Cut(token, ".")
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	if err := json.Unmarshal(body, &c); err != nil {
		t.Fatal(err)
	}
	s, _ := c[claim].(string)
	return s
}

// Keys rotate: after `admin rotate-key` every site signs new sessions with
// the new key, and sessions signed with the old one keep working. The key
// as the log holds it is sealed: a credential that can read the log cannot
// sign with it.
func TestSigningKeyRotates(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c, name := signedUp(t, 0, "rot")
	before := c.Token()
	oldID := tokenClaim(t, before, "k")
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(1), "--creds", cluster.AdminFile(),
		"rotate-key").CombinedOutput()
	if err != nil {
		t.Fatalf("admin rotate-key: %v\n%s", err, out)
	}
	var newID string
	if _, err := fmt.Sscanf(lineStarting(string(out), "signing key "), "signing key %s is current", &newID); err != nil || newID == oldID {
		t.Fatalf("admin said %q (old key %s)", out, oldID)
	}
	for i := range 3 {
		at := pinned(t, i, "")
		checkFor(t, 15*time.Second, 50*time.Millisecond, func() error {
			if _, err := at.Login(ctx, name, "correct horse battery"); err != nil {
				return err
			}
			if got := tokenClaim(t, at.Token(), "k"); got != newID {
				return fmt.Errorf("site %d signs with key %q, want %q", i, got, newID)
			}
			return nil
		})
		if _, err := pinned(t, i, before).Rooms(ctx); err != nil {
			t.Fatalf("site %d refuses a session signed with the previous key: %v", i, err)
		}
	}
	// The rotation's record, read with a gateway's credential, does not
	// sign what the new key signs.
	nc, err := natsAs(t, 2, siteCreds(t, 2)...)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	st, err := jetStream(t, nc).Stream(ctx, "SAL_ACCT")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "sal.acct.key."+newID)
	if err != nil {
		t.Fatal(err)
	}
	var rec salamander.Record
	if err := json.Unmarshal(msg.Data, &rec); err != nil {
		t.Fatal(err)
	}
	fresh := pinned(t, 0, "")
	if _, err := fresh.Login(ctx, name, "correct horse battery"); err != nil {
		t.Fatal(err)
	}
	payload, sig, _ := strings.Cut(fresh.Token(), ".")
	m := hmac.New(sha256.New, rec.Key)
	m.Write([]byte(payload))
	if base64.RawURLEncoding.EncodeToString(m.Sum(nil)) == sig || len(rec.Key) == 32 {
		t.Fatal("the log holds the signing key in the clear")
	}
	// The rotation is in the audit trail, as the admin credential's.
	op, _ := withRole(t, ctx, 2, "rotaudit", salamander.RoleOperator)
	checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
		code, body := opsCall(t, 2, "GET", "/v1/ops/audit?limit=1000", op.Token(), nil)
		if code != http.StatusOK || !strings.Contains(string(body), `"action":"rotate-key"`) || !strings.Contains(string(body), newID) {
			return fmt.Errorf("no rotate-key of %s in the audit: %d %.300s", newID, code, body)
		}
		return nil
	})
}
