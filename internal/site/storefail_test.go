package site_test

import (
	"context"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/testcluster"
)

// A site whose read model cannot be written — here another process holds
// its database's write lock; a full disk fails the writes alike — stops
// serving and fails /readyz within seconds, so that clients and
// balancers move on at once, and serves again, with nothing missing, once
// it can write. It stayed ready while every history and sync waited out
// its timeout for a store that did not move (and, once the writer was far
// behind, every send too).
func TestASiteThatCannotWriteItsReadModelIsNotReady(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	c, err := testcluster.Start(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	at := func(site int) *client.Client {
		cl, err := client.New(client.Config{Sites: []string{c.URL(site)}})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	alice, bob := at(0), at(0)
	if _, err := alice.SignUp(ctx, "alice", "Alice", "password one"); err != nil {
		t.Fatal(err)
	}
	if _, err := bob.SignUp(ctx, "bob", "Bob", "password two"); err != nil {
		t.Fatal(err)
	}
	room, err := alice.DirectRoom(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	const burdened = 2
	db, err := sql.Open("sqlite", "file:"+c.Site(burdened).View().Path()+"?_txlock=immediate")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.Begin() // BEGIN IMMEDIATE: the database's write lock, held
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	sent := 0
	send := func() {
		t.Helper()
		if _, err := alice.Send(ctx, room.ID, fmt.Sprint("m", sent)); err != nil {
			t.Fatal(err)
		}
		sent++
	}
	send()
	waitFor(t, 40*time.Second, func() error {
		send() // something for the site's writer to write
		code, body, err := readyz(c.URL(burdened))
		if err != nil {
			return err
		}
		if code != 503 {
			return fmt.Errorf("readyz %d %v while the read model cannot be written", code, body)
		}
		// Users are told that much, not the error (for operators: GET
		// /v1/ops/site).
		if code, why, err := refusal(c.URL(burdened)); err != nil || code != 503 || !strings.Contains(why, "cannot write its read model") ||
			strings.Contains(why, "since") {
			return fmt.Errorf("a request answered %d %q (%v) while the read model cannot be written", code, why, err)
		}
		return nil
	})
	req, err := http.NewRequestWithContext(ctx, "GET", c.URL(burdened)+"/v1/rooms", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+bob.Token())
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable || time.Since(start) > 5*time.Second {
		t.Fatalf("a request to the site answered %d after %s, want 503 at once", res.StatusCode, time.Since(start))
	}
	pinned := at(burdened)
	pinned.SetToken(bob.Token())

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() error {
		if code, body, err := readyz(c.URL(burdened)); err != nil || code != 200 {
			return fmt.Errorf("readyz %d %v %v once the lock is gone", code, body, err)
		}
		page, err := pinned.History(ctx, room.ID, client.HistoryQuery{Limit: 200})
		if err != nil {
			return err
		}
		if n := len(page.Messages); n == 0 || page.Messages[n-1].Seq != uint64(sent) || page.Messages[0].Seq != uint64(sent-n+1) {
			return fmt.Errorf("history's newest page is not messages ..%d of %d", sent, sent)
		}
		return nil
	})
}
