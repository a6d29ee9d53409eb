package gateway

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/view"
)

// FuzzParseToken: session tokens come from anyone in the Authorization
// header (and the WebSocket's first request). Verified against real keys
// (a plain key of before sealing, retired, and a sealed current one): an
// arbitrary string never verifies unless it is a token this test issued,
// and then as the user it was issued to; every refusal is a coded
// unauthorized (or unavailable, for claims naming a key the log does not
// hold at a position beyond the site's); a token issued for any valid name verifies as that name;
// the same token with any one byte changed never verifies; and the same
// claims signed with the retired key, or naming a key the log does not
// hold, or the retired key's id with the current key's signature, never
// verify.
func FuzzParseToken(f *testing.F) {
	fx := newFuzzView(f)
	g := &Gateway{cfg: Config{View: fx.v, TokenTTL: time.Hour, Keys: fuzzKeyOpener{}},
		log: slog.New(slog.DiscardHandler)}
	issued := map[string]string{} // token -> user
	for _, u := range fuzzUsers {
		tok, _, err := g.issueToken(u)
		if err != nil {
			f.Fatal(err)
		}
		issued[tok] = u
	}
	f.Fuzz(func(t *testing.T, token, user string, flip uint16, xor byte) {
		c, err := g.parseToken(token)
		if err == nil {
			if u, ok := issued[token]; !ok || c.User != u {
				t.Fatalf("token %q forged: verifies as %+v", token, c)
			}
		} else if code := salamander.ErrorCode(err); code != salamander.CodeUnauthorized &&
			!(code == salamander.CodeUnavailable && namesAKeyNotYetApplied(g, token)) {
			t.Fatalf("token %q refused with %v, want unauthorized", token, err)
		}

		name := fuzzUserName(user)
		tok, exp, err := g.issueToken(name)
		if err != nil {
			t.Fatalf("issue a token for %q: %v", name, err)
		}
		if bearerToken("Bearer "+tok) != tok || bearerToken("bearer  "+tok+" ") != tok {
			t.Fatalf("token %q does not survive the Authorization header", tok)
		}
		c, err = g.parseToken(tok)
		if err != nil || c.User != name || len(c.Session) != 32 || c.Expires != exp.Unix() || c.KeyID != fuzzKeyID {
			t.Fatalf("token for %q: %+v, %v (expires %v)", name, c, err, exp)
		}
		b := []byte(tok)
		i := int(flip) % len(b)
		if xor == 0 {
			xor = 1
		}
		b[i] ^= xor
		refused := func(what, tok string) {
			t.Helper()
			if c, err := g.parseToken(tok); err == nil {
				t.Fatalf("%s (%q) verifies as %+v", what, tok, c)
			} else if salamander.ErrorCode(err) != salamander.CodeUnauthorized {
				t.Fatalf("%s refused with %v, want unauthorized", what, err)
			}
		}
		refused(fmt.Sprintf("token for %q with byte %d changed", name, i), string(b))
		for _, k := range []struct {
			what string
			id   string
			key  []byte
		}{
			{"claims signed with the retired key", "", fuzzPlainKey},
			{"claims naming the retired key, signed with the current one", "", fuzzCurrentKey},
			{"claims naming a key the log does not hold", "k404", fuzzCurrentKey},
			{"claims naming the current key, signed with the retired one", fuzzKeyID, fuzzPlainKey},
		} {
			c := claims{User: name, Session: "00112233445566778899aabbccddeeff", Issued: time.Now().UnixNano(),
				Expires: exp.Unix(), KeyID: k.id}
			body, _ := json.Marshal(c)
			payload := base64.RawURLEncoding.EncodeToString(body)
			refused(k.what, payload+"."+sign(k.key, payload))
		}
	})
}

// namesAKeyNotYetApplied says whether token's claims name a key the log
// does not hold at an accounts position beyond what g has applied: such a
// token may be signed with a key rotated in since, and is answered
// unavailable rather than unauthorized.
func namesAKeyNotYetApplied(g *Gateway, token string) bool {
	var c claims
	if _, _, ok := decodeToken(token, &c); !ok {
		return false
	}
	_, known := g.cfg.View.KeyByID(c.KeyID)
	return !known && c.AcctSeq > g.cfg.View.AppliedOf(jsstore.AccountsStream)
}

// The fuzz log's signing keys: a plain one of before keys were sealed,
// retired long ago by a sealed one, the current key.
var (
	fuzzPlainKey   = []byte("plain key of before sealing, 32B")
	fuzzCurrentKey = []byte("the current key, sealed in logs.")
	fuzzKeyID      = "k2"
)

// fuzzKeyOpener "opens" a key sealed as "sealed:" + key.
type fuzzKeyOpener struct{}

func (fuzzKeyOpener) OpenKey(id string, sealed []byte) ([]byte, error) {
	key, ok := bytes.CutPrefix(sealed, []byte("sealed:"))
	if !ok {
		return nil, errors.New("not sealed")
	}
	return key, nil
}

// fuzzUserName maps any string onto a valid user name.
func fuzzUserName(s string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
	b := make([]byte, 0, 32)
	for i := 0; i < len(s) && len(b) < 32; i++ {
		b = append(b, alphabet[int(s[i])%len(alphabet)])
	}
	for len(b) < 3 {
		b = append(b, 'x')
	}
	if b[0] == '_' || b[0] == '.' || b[0] == '-' {
		b[0] = 'u'
	}
	return string(b)
}

// The read model the fuzz targets of this package run against: a real
// view.View that has applied two signing keys (see fuzzPlainKey), three
// users and one group room of the three, from a log held in memory.
var (
	fuzzUsers = []string{"alice", "bob", "carol"}
	fuzzRoom  = "g_0123456789abcdef"
)

type fuzzView struct {
	v *view.View
}

func newFuzzView(f *testing.F) fuzzView {
	f.Helper()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	log := &fuzzLog{entries: map[string][]jsstore.Entry{}}
	log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecSigningKey, At: at, Key: fuzzPlainKey})
	log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecSigningKey, At: at.Add(time.Second),
		KeyID: fuzzKeyID, Key: append([]byte("sealed:"), fuzzCurrentKey...), Rotate: true})
	for _, u := range fuzzUsers {
		log.add(jsstore.AccountsStream, salamander.Record{Type: salamander.RecUserCreated, At: at, User: u, PasswordHash: "x"})
	}
	log.add("p0", salamander.Record{Type: salamander.RecRoomCreated, At: at, Room: fuzzRoom, Kind: salamander.RoomGroup,
		Name: "fuzz", Members: fuzzUsers, By: fuzzUsers[0]})
	return fuzzView{v: applyLog(f, log)}
}

// applyLog returns a real view.View that has applied log, closed when the
// test ends.
func applyLog(tb testing.TB, log *fuzzLog) *view.View {
	tb.Helper()
	v, err := view.Open(filepath.Join(tb.TempDir(), "view.db"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.Run(ctx, log)
	}()
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
		_ = v.Close()
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		applied, done := v.Applied(), true
		for stream, entries := range log.entries {
			done = done && applied[stream] >= entries[len(entries)-1].Pos.Seq
		}
		if done {
			return v
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the view did not apply the log: applied %v", applied)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fuzzLog is a log held in memory: each stream's records, delivered by
// Tail and then nothing more.
type fuzzLog struct {
	entries map[string][]jsstore.Entry
	streams []string
}

func (l *fuzzLog) add(stream string, r salamander.Record) {
	if _, ok := l.entries[stream]; !ok {
		l.streams = append(l.streams, stream)
	}
	seq := uint64(len(l.entries[stream]) + 1)
	l.entries[stream] = append(l.entries[stream], jsstore.Entry{Pos: jsstore.PositionOf(stream, seq, 0), Record: r, Last: true})
}

func (l *fuzzLog) Streams() []string  { return l.streams }
func (l *fuzzLog) Standbys() []string { return nil }

func (l *fuzzLog) Tail(ctx context.Context, stream string, from uint64, deliver func(jsstore.Entry) bool) {
	for _, e := range l.entries[stream] {
		if e.Pos.Seq >= from && !deliver(e) {
			return
		}
	}
	<-ctx.Done()
}

func (l *fuzzLog) Fetch(context.Context, string, []uint64) (map[uint64]salamander.Record, error) {
	return nil, errors.New("fuzzLog holds no message texts")
}

var _ view.Source = (*fuzzLog)(nil)

// fuzzDevices stands in for the hub: every user is connected, and what is
// sent to them is kept.
type fuzzDevices struct {
	sent []fuzzSent
}

type fuzzSent struct {
	to []string
	ev salamander.Event
}

func (d *fuzzDevices) connected(string) bool { return true }

func (d *fuzzDevices) sendTo(users []string, ev salamander.Event) {
	d.sent = append(d.sent, fuzzSent{to: append([]string(nil), users...), ev: ev})
}
