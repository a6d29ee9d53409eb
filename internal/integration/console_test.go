package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/client"
)

// setRole gives name the role with the admin credential, as the first
// admin is made (salamander admin set-role).
func setRole(t *testing.T, ctx context.Context, name, role string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, salamanderBin, "admin", "--nats", cluster.NATSURL(0), "--creds", cluster.AdminFile(),
		"set-role", name, role).CombinedOutput()
	if err != nil {
		t.Fatalf("admin set-role %s %s: %v\n%s", name, role, err, out)
	}
}

// operator signs up a new user at site i, makes it an operator and waits
// until every site lets it into the ops API.
func operator(t *testing.T, ctx context.Context, i int, prefix string) (*client.Client, string) {
	t.Helper()
	c, name := signedUp(t, i, prefix)
	setRole(t, ctx, name, "operator")
	for j := range 3 {
		checkFor(t, 10*time.Second, 50*time.Millisecond, func() error {
			if code, body := opsCall(t, j, "GET", "/v1/ops/site", c.Token(), nil); code != http.StatusOK {
				return fmt.Errorf("site %d: operator's /v1/ops/site: %d %s", j, code, body)
			}
			return nil
		})
	}
	return c, name
}

// consoleSite is the part of GET /v1/ops/site the tests read.
type consoleSite struct {
	Site  string `json:"site"`
	Ready bool   `json:"ready"`
	NATS  struct {
		Connected bool   `json:"connected"`
		Server    string `json:"server"`
	} `json:"nats"`
	Streams []struct {
		Stream string `json:"stream"`
		Leader string `json:"leader"`
		Peers  []struct {
			Server  string `json:"server"`
			Leader  bool   `json:"leader"`
			Current bool   `json:"current"`
			Lag     uint64 `json:"lag"`
		} `json:"peers"`
	} `json:"streams"`
	Standbys []struct {
		Stream    string `json:"stream"`
		Leader    string `json:"leader"`
		StandbyOf string `json:"standby_of"`
	} `json:"standbys"`
	Counters struct {
		HTTPRequests uint64 `json:"http_requests"`
	} `json:"counters"`
	Warnings     []string `json:"warnings"`
	RecentErrors []struct {
		Level   string            `json:"level"`
		Message string            `json:"message"`
		Attrs   map[string]string `json:"attrs"`
	} `json:"recent_errors"`
}

// opsSite asks site i for GET /v1/ops/site with token.
func opsSite(t *testing.T, i int, token string) (consoleSite, []byte, error) {
	t.Helper()
	var s consoleSite
	code, body := opsCall(t, i, "GET", "/v1/ops/site", token, nil)
	if code != http.StatusOK {
		return s, body, fmt.Errorf("%d %s", code, body)
	}
	return s, body, json.Unmarshal(body, &s)
}

type consoleOverview struct {
	Site  string `json:"site"`
	Sites []struct {
		Name      string      `json:"name"`
		Reachable bool        `json:"reachable"`
		Ready     bool        `json:"ready"`
		Error     string      `json:"error"`
		Status    consoleSite `json:"status"`
	} `json:"sites"`
}

// GET /v1/ops/site shows an operator one site in technical detail —
// every replica of every stream with its lag, the NATS server, counters,
// its warnings and the warnings it logged lately — and nobody else; the
// public status shows none of it.
func TestOpsSiteShowsReplicasAndRecentErrors(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	op, _ := operator(t, ctx, 0, "csop")
	user, _ := signedUp(t, 1, "csuser")
	for _, path := range []string{"/v1/ops/site", "/v1/ops/stream"} {
		if code, _ := opsCall(t, 1, "GET", path, "", nil); code != http.StatusUnauthorized {
			t.Fatalf("anonymous %s: %d", path, code)
		}
		if code, _ := opsCall(t, 1, "GET", path, user.Token(), nil); code != http.StatusForbidden {
			t.Fatalf("a user's %s: %d", path, code)
		}
	}
	warning := uniqueName("console test warning ")
	cluster.Site(2).Gateway().Warn(warning)
	checkFor(t, 10*time.Second, 100*time.Millisecond, func() error {
		s, body, err := opsSite(t, 2, op.Token())
		if err != nil {
			return err
		}
		if s.Site != "c" || !s.Ready || !s.NATS.Connected || s.NATS.Server == "" || s.Counters.HTTPRequests == 0 {
			return fmt.Errorf("site c: %s", body)
		}
		if len(s.Streams) == 0 {
			return fmt.Errorf("no streams: %s", body)
		}
		for _, st := range s.Streams {
			if len(st.Peers) != 3 || !st.Peers[0].Leader || st.Peers[0].Server != st.Leader {
				return fmt.Errorf("stream %s: peers %+v", st.Stream, st.Peers)
			}
		}
		if !slices.Contains(s.Warnings, warning) {
			return fmt.Errorf("the warning is not among site c's warnings: %q", s.Warnings)
		}
		for _, e := range s.RecentErrors {
			if e.Message == warning && e.Level == "WARN" && e.Attrs["site"] == "c" {
				return nil
			}
		}
		return fmt.Errorf("the warning is not among site c's recent errors: %+v", s.RecentErrors)
	})
	res, err := http.Get(cluster.URL(2) + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "recent_errors") || strings.Contains(string(body), warning) {
		t.Fatalf("public status: %s", body)
	}
}

// GET /v1/ops/site lists every partition's standby with its leader (the
// public GET /v1/status does not), which the sites keep at another site than the
// partition's leader: sends are held there while the partition elects, so
// one fire must not take both.
func TestOpsSiteShowsStandbysAwayFromTheirPartitions(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	op, _ := operator(t, ctx, 0, "cstandby")
	checkFor(t, 30*time.Second, 200*time.Millisecond, func() error {
		s, body, err := opsSite(t, 0, op.Token())
		if err != nil {
			return err
		}
		leaders := map[string]string{}
		for _, st := range s.Streams {
			leaders[st.Stream] = st.Leader
		}
		partitions := len(s.Streams) - 1 // all but the accounts stream
		if partitions < 1 || len(s.Standbys) != partitions {
			return fmt.Errorf("%d standbys for %d partitions: %s", len(s.Standbys), partitions, body)
		}
		for _, sb := range s.Standbys {
			want := "p" + strings.TrimPrefix(sb.Stream, "s")
			if sb.StandbyOf != want {
				return fmt.Errorf("standby %s: standby_of %q, want %q", sb.Stream, sb.StandbyOf, want)
			}
			p := leaders[sb.StandbyOf]
			if sb.Leader == "" || p == "" {
				return fmt.Errorf("standby %s led by %q, its partition by %q", sb.Stream, sb.Leader, p)
			}
			if sb.Leader == p { // one embedded server per site
				return fmt.Errorf("standby %s is led at its partition's site (%s)", sb.Stream, p)
			}
		}
		return nil
	})
	res, err := http.Get(cluster.URL(1) + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	var public consoleSite
	err = json.NewDecoder(res.Body).Decode(&public)
	res.Body.Close()
	if err != nil || len(public.Standbys) != 0 || len(public.Streams) != 0 {
		t.Fatalf("public status: %+v %+v %v", public.Streams, public.Standbys, err)
	}
}

// GET /v1/ops/stream sends an operator, from any site, an overview of
// every site at once and then every 2 s; it ends, saying why, when the
// operator loses the role.
func TestOpsStreamSendsEverySite(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	op, name := operator(t, ctx, 1, "cstream")
	req, err := http.NewRequestWithContext(ctx, "GET", cluster.URL(1)+"/v1/ops/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+op.Token())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	events := sseEvents(ctx, res.Body)
	// Every site is there, in detail, as seen from b; and the next
	// overview comes about 2 s after the first.
	var first time.Time
	for n := 0; ; n++ {
		ev, ok := <-events
		if !ok {
			t.Fatal("the stream ended")
		}
		if ev.name != "overview" {
			t.Fatalf("event %q: %s", ev.name, ev.data)
		}
		var ov consoleOverview
		if err := json.Unmarshal([]byte(ev.data), &ov); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			first = time.Now()
		}
		if ov.Site != "b" || len(ov.Sites) != 3 {
			t.Fatalf("overview from %s with %d sites", ov.Site, len(ov.Sites))
		}
		all := true
		for i, s := range ov.Sites {
			all = all && s.Reachable && s.Ready && s.Status.Site == s.Name && s.Name == cluster.Site(i).Name() &&
				len(s.Status.Streams) > 0
		}
		if all && n > 0 {
			if d := time.Since(first); d < time.Second || d > 20*time.Second {
				t.Fatalf("the second overview came %s after the first", d)
			}
			break
		}
		if n > 10 {
			t.Fatalf("the sites never all showed: %s", ev.data)
		}
	}
	setRole(t, ctx, name, "user")
	for ev := range events {
		if ev.name == "end" {
			if !strings.Contains(ev.data, "operator role") {
				t.Fatalf("end: %s", ev.data)
			}
			if _, ok := <-events; ok {
				t.Fatal("the stream went on after its end")
			}
			return
		}
	}
	t.Fatal("the stream ended without saying why")
}

type sseEvent struct{ name, data string }

// sseEvents parses a text/event-stream into events until it ends or ctx
// does.
func sseEvents(ctx context.Context, r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 4<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					select {
					case ch <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event:"):
				ev.name = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
			case strings.HasPrefix(line, "data:"):
				ev.data += strings.TrimSpace(strings.TrimPrefix(line, "data:"))
			}
		}
	}()
	return ch
}

// Reading the cluster's streams is a JetStream API request per stream: a
// burst of GET /v1/ops/site (consoles, the drill and the bench poll it) is
// answered from one reading a second (shared while it runs), not one
// reading each, which would flood the API the sites' appends depend on.
// The public GET /v1/status reads none.
func TestStatusBurstReadsTheClusterOnce(t *testing.T) {
	const burst = 20
	op, _ := operator(t, testCtx(t, 60*time.Second), 0, "burstop")
	var requests atomic.Int64
	asked := jsAPIAsks(t, "$JS.API.STREAM.INFO.>", func() {
		// Long enough for the cached reading to go stale at least once;
		// each asker paced, so as not to load the machine for nothing.
		until := time.Now().Add(1500 * time.Millisecond)
		var wg sync.WaitGroup
		for i := range burst {
			wg.Go(func() {
				pace := time.NewTicker(10 * time.Millisecond)
				defer pace.Stop()
				for ; time.Now().Before(until); <-pace.C {
					req, err := http.NewRequest("GET", cluster.URL(1)+"/v1/ops/site", nil)
					if i%2 == 1 {
						req, err = http.NewRequest("GET", cluster.URL(1)+"/v1/status", nil)
					}
					if err != nil {
						t.Error(err)
						return
					}
					req.Header.Set("Authorization", "Bearer "+op.Token())
					res, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode != http.StatusOK {
						t.Errorf("status %d", res.StatusCode)
						return
					}
					requests.Add(1)
				}
			})
		}
		wg.Wait()
	})
	// One reading asks once per stream (partitions, their standbys, the
	// accounts stream); the sites' own leader balancing asks meanwhile.
	const partitions = 3 // testcluster's
	perReading := 2*partitions + 1
	n := int(requests.Load())
	if n < 2*burst || asked >= 10*perReading {
		t.Fatalf("%d status requests asked JetStream for stream info %d times (%d a reading)", n, asked, perReading)
	}
	t.Logf("%d status requests: %d stream info requests", n, asked)
}

// jsAPIAsks counts the JetStream API requests on subject (seen at site 1's
// server, with the admin credential) while burst runs.
func jsAPIAsks(t *testing.T, subject string, burst func()) int {
	t.Helper()
	nc, err := cluster.AdminNATS(1)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	burst()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	asked, _, _ := sub.Pending()
	return asked
}

// "No such user" is confirmed against the log's head before it is said,
// and reading the head is a JetStream API request: a burst of lookups of
// names nobody has shares the readings (each still begun after its
// request), instead of asking JetStream once each.
func TestUnknownNameBurstSharesHeadReadings(t *testing.T) {
	c, _ := signedUp(t, 1, "heads")
	const burst = 40
	asked := jsAPIAsks(t, "$JS.API.STREAM.INFO.SAL_ACCT", func() {
		var wg sync.WaitGroup
		start := make(chan struct{}) // all at once, as a flood comes
		for i := range burst {
			name := uniqueName(fmt.Sprint("nobody", i))
			wg.Go(func() {
				<-start
				r := raw(t, 1, "GET", "/v1/users/"+name, c.Token(), "", nil)
				if r.status != http.StatusNotFound {
					t.Errorf("an unknown name: %d %s", r.status, r.body)
				}
			})
		}
		close(start)
		wg.Wait()
	})
	// Each reading serves every request that arrived before it began (the
	// other sites' leader balancing reads the head too, every 2 s).
	if asked > burst/2 {
		t.Fatalf("%d lookups of unknown names read the accounts stream's head %d times", burst, asked)
	}
	t.Logf("%d lookups of unknown names: %d readings of the head", burst, asked)
}

// The metrics are the monitoring networks' (by default loopback alone) and
// operators': a client from anywhere else (here an address a proxy on the
// site's host names, or none it can read) is refused without a token, and
// with an ordinary user's, and served with an operator's; a scraper on
// loopback needs none.
func TestMetricsAreServedToMonitoringAndOperatorsOnly(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	op, _ := operator(t, ctx, 2, "metricsop")
	user, _ := signedUp(t, 2, "metricsuser")
	get := func(from, token string) (int, string) {
		t.Helper()
		var header []string
		if from != "" {
			header = []string{"X-Forwarded-For", from}
		}
		r := raw(t, 2, "GET", "/metrics", token, "", nil, header...)
		return r.status, string(r.body)
	}
	const metric = "salamander_view_applied_seq"
	for _, tc := range []struct {
		what, from, token string
		status            int
	}{
		{"a scraper on loopback", "", "", 200},
		{"a client on a private network not named in --metrics-from", "10.1.2.3", "", 403},
		{"a proxy on the host naming no client it could be read from", "unknown", "", 403},
		{"a public client", "203.0.113.7", "", 403},
		{"a public client with a user's token", "203.0.113.7", user.Token(), 403},
		{"a public client with a bad token", "203.0.113.7", "nonsense", 401},
		{"an operator from anywhere", "203.0.113.7", op.Token(), 200},
	} {
		status, body := get(tc.from, tc.token)
		if status != tc.status || (status == 200) != strings.Contains(body, metric) {
			t.Errorf("%s: %d, want %d; body %.200q", tc.what, status, tc.status, body)
		}
	}
}
