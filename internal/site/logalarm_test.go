package site_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/testcluster"
)

// readyz returns a site's readiness answer, which is public: the verdict
// and the site's name, never why (that is GET /v1/ops/site's).
func readyz(url string) (int, map[string]any, error) {
	res, err := http.Get(url + "/readyz")
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var body map[string]any
	if err = json.NewDecoder(res.Body).Decode(&body); err == nil && len(body) != 2 {
		err = fmt.Errorf("/readyz answered more than ready and site: %v", body)
	}
	return res.StatusCode, body, err
}

// refusal returns how a site answers a user's request (the room list,
// without a token): a site that cannot serve refuses every one with 503
// before anything else, saying what is wrong but naming nothing inside it.
func refusal(url string) (int, string, error) {
	res, err := http.Get(url + "/v1/rooms")
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	var e salamander.Error
	err = json.NewDecoder(res.Body).Decode(&e)
	return res.StatusCode, e.Message, err
}

func waitFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A log that loses a stream is an alarm, not a reset: every running site
// stops serving and says why; a site that starts never re-creates the
// stream empty; a stream re-created empty is recognized as another log.
func TestALogThatChangesUnderTheSitesIsAnAlarm(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	c, err := testcluster.Start(ctx, t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	alice, err := client.New(client.Config{Sites: c.URLs()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SignUp(ctx, "alice", "Alice", "password one"); err != nil {
		t.Fatal(err)
	}
	// The disaster: a stream is deleted (an operator's mistake, a stolen
	// admin credential).
	nc, err := c.AdminNATS(0)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "SAL_P1")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	if err := js.DeleteStream(ctx, "SAL_P1"); err != nil {
		t.Fatal(err)
	}
	alarmed := func(i int, what string) func() error {
		return func() error {
			code, body, err := readyz(c.URL(i))
			if err != nil {
				return err
			}
			if code != http.StatusServiceUnavailable {
				return fmt.Errorf("site %d: readyz %d %v", i, code, body)
			}
			// Users are told the log is damaged, not how: that is for
			// operators (GET /v1/ops/site).
			code, why, err := refusal(c.URL(i))
			if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(why, "log is damaged") || strings.Contains(why, what) {
				return fmt.Errorf("site %d: a request answered %d %q (%v)", i, code, why, err)
			}
			if alarm := c.Site(i).Gateway().LogAlarm(); !strings.Contains(alarm, what) {
				return fmt.Errorf("site %d: log alarm %q", i, alarm)
			}
			return nil
		}
	}
	for i := range testcluster.Names {
		waitFor(t, 15*time.Second, alarmed(i, "p1"))
	}
	// Every request is refused at once, saying why.
	res, err := http.Get(c.URL(1) + "/v1/rooms")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a request to an alarmed site answered %d", res.StatusCode)
	}

	// A site that starts does not re-create the stream.
	c.Kill(2)
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	err = c.Restart(short, 2)
	cancelShort()
	if err == nil {
		t.Fatal("a site became ready on a log missing a stream")
	}
	if _, err := js.Stream(ctx, "SAL_P1"); err == nil {
		t.Fatal("a starting site re-created the deleted stream")
	}

	// Re-created empty (as the stream's name would be by anyone), it is
	// another log: the restarted site recognizes it as such.
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, alarmed(2, "re-created"))
}
