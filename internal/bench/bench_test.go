package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/jsstore"
	"github.com/salamander-chat/salamander/internal/testcluster"
)

// cluster is one in-process three-site cluster shared by every test: a
// fresh JetStream cluster takes seconds to elect its leaders.
var cluster *testcluster.Cluster

// opsToken is an operator's session token on cluster.
var opsToken string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "salamander-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), testcluster.Timeout)
	defer cancel()
	cluster, err = testcluster.Start(ctx, dir, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start test cluster:", err)
		return 1
	}
	defer cluster.Close()
	if opsToken, err = makeOperator(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "make an operator:", err)
		return 1
	}
	return m.Run()
}

// testControl lets the bench restart the test cluster's sites. An
// in-process site has no disk of its own to wipe beyond its read model,
// so Wipe deletes that: the site then rebuilds it from its log replica.
type testControl struct{ c *testcluster.Cluster }

func (t testControl) Kill(i int) error                         { t.c.Kill(i); return nil }
func (t testControl) Wipe(i int) error                         { return t.c.RemoveReadModel(i) }
func (t testControl) Restart(ctx context.Context, i int) error { return t.c.Restart(ctx, i) }

// short returns a configuration for a run of a few seconds against the
// test cluster.
func short(t *testing.T, scenario string) Config {
	cfg := DefaultConfig()
	cfg.Scenario = scenario
	cfg.Sites = cluster.URLs()
	cfg.OpsToken = opsToken
	cfg.Duration = 2 * time.Second
	cfg.Warmup = 300 * time.Millisecond
	cfg.Grace = 10 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	return cfg
}

// check runs cfg and checks what every run must show: messages acked and
// delivered, none lost or duplicated, and every required JSON field.
func check(t *testing.T, cfg Config) (*Report, map[string]any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	dec := json.NewDecoder(&buf)
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	if dec.More() {
		t.Fatal("JSON report is more than one object")
	}
	required := []string{"scenario", "users", "duration_s", "sites", "errors", "acked_per_sec", "delivered_per_sec",
		"send_p50_ms", "send_p99_ms", "deliver_p50_ms", "deliver_p99_ms", "lost", "duplicated"}
	for _, k := range required {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	if cfg.Scenario == ScenarioIdle {
		return rep, obj
	}
	if rep.Acked == 0 || rep.Deliveries == 0 || rep.AckedPerSec <= 0 || rep.DeliveredPerSec <= 0 {
		t.Errorf("nothing measured: acked %d, deliveries %d", rep.Acked, rep.Deliveries)
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Reordered != 0 || rep.Unknown != 0 {
		t.Errorf("lost %d, duplicated %d, reordered %d, unknown %d", rep.Lost, rep.Duplicated, rep.Reordered, rep.Unknown)
	}
	if rep.Errors != 0 {
		t.Errorf("errors: %v %v", rep.ErrorKinds, rep.ErrorSamples)
	}
	if rep.SendP50Ms <= 0 || rep.DeliverP50Ms <= 0 || rep.SendP99Ms < rep.SendP50Ms {
		t.Errorf("latencies: send p50 %v p99 %v, deliver p50 %v", rep.SendP50Ms, rep.SendP99Ms, rep.DeliverP50Ms)
	}
	// The first site applies every message, so the entries its log
	// carried in the window are about the messages acked in it.
	if entries := rep.LogRecordsPerSec * rep.EntriesPerRecord; rep.EntriesPerRecord < 1 || entries < rep.AckedPerSec/2 {
		t.Errorf("log: %v records/s of %v entries for %v acked/s", rep.LogRecordsPerSec, rep.EntriesPerRecord, rep.AckedPerSec)
	}
	return rep, obj
}

// The log's batching is read from two samples of a site's counters, and
// left out where they are missing or nothing was applied.
func TestLogBatching(t *testing.T) {
	t0 := time.Now()
	a := logSample{at: t0, entries: 100, records: 40, ok: true}
	b := logSample{at: t0.Add(2 * time.Second), entries: 1100, records: 140, ok: true}
	if got := batching(a, b); got != (logBatching{recordsPerSec: 50, entriesPerRecord: 10}) {
		t.Errorf("batching = %+v", got)
	}
	// One entry per record, read a moment apart from the records.
	skewed := logSample{at: b.at, entries: 199, records: 140, ok: true}
	if got := batching(a, skewed); got != (logBatching{recordsPerSec: 50, entriesPerRecord: 1}) {
		t.Errorf("batching of one entry per record, skewed = %+v", got)
	}
	for name, pair := range map[string][2]logSample{
		"a site without the counters": {a, {at: b.at}},
		"nothing applied":             {a, {at: b.at, entries: 100, records: 40, ok: true}},
		"a restarted site":            {a, {at: b.at, entries: 10, records: 5, ok: true}},
		"no time between":             {a, a},
		"no entries":                  {a, {at: b.at, entries: 100, records: 41, ok: true}},
	} {
		if got := batching(pair[0], pair[1]); got != (logBatching{}) {
			t.Errorf("%s: %+v, want nothing", name, got)
		}
	}
}

// The sites' CPU counts each process once: `salamander dev` serves every
// site from one, and then there is no per-site figure.
func TestCPUShare(t *testing.T) {
	t0 := time.Now()
	sites := []string{"http://a", "http://b", "http://c"}
	// sample: site i's processes are procs[i], each with used[pid] so far.
	sample := func(at time.Time, self time.Duration, procs [][]Process, used map[int]time.Duration) cpuSample {
		c := cpuSample{at: at, self: self, procs: map[int]time.Duration{}, sites: map[int][]int{}, roles: map[int]Role{}, ok: true}
		for i, ps := range procs {
			for _, p := range ps {
				c.procs[p.PID], c.roles[p.PID] = used[p.PID], p.Role
				c.sites[i] = append(c.sites[i], p.PID)
			}
		}
		return c
	}
	site := func(pid int) []Process { return []Process{{PID: pid, Role: RoleSite}} }
	r := &run{cfg: Config{Sites: sites}}
	s := time.Second
	// One process for all three sites: 3 s of its CPU over 2 s.
	one := [][]Process{site(7), site(7), site(7)}
	got := r.cpuShare(sample(t0, s, one, map[int]time.Duration{7: s}), sample(t0.Add(2*s), 2*s, one, map[int]time.Duration{7: 4 * s}))
	if got.bench != 50 || got.all != 150 || got.sites != nil || got.roles != nil {
		t.Errorf("one process: %+v", got)
	}
	// A process per site.
	own := [][]Process{site(7), site(8), site(9)}
	got = r.cpuShare(sample(t0, 0, own, nil), sample(t0.Add(2*s), s, own, map[int]time.Duration{7: s, 8: 2 * s, 9: s}))
	if got.all != 200 || len(got.sites) != 3 || got.sites["http://b"] != 100 || got.sites["http://a"] != 50 || got.roles != nil {
		t.Errorf("a process per site: %+v", got)
	}
	// A site restarted in between (another process) is not counted.
	restarted := [][]Process{site(7), site(8), site(10)}
	got = r.cpuShare(sample(t0, 0, own, nil), sample(t0.Add(2*s), s, restarted, map[int]time.Duration{7: s, 8: s, 10: s}))
	if got.all != 100 || got.sites["http://c"] != 0 {
		t.Errorf("a restarted site: %+v", got)
	}
	// The production layout: a nats-server and two gateways per site. A
	// site's figure is its three processes; the roles split the whole.
	ext := [][]Process{}
	used := map[int]time.Duration{}
	for i := range 3 {
		n, g1, g2 := 10*i+1, 10*i+2, 10*i+3
		ext = append(ext, []Process{{PID: n, Role: RoleNATSServer}, {PID: g1, Role: RoleGateway, URL: "http://g1"},
			{PID: g2, Role: RoleGateway, URL: "http://g2"}})
		used[n], used[g1], used[g2] = s, s/2, s/2
	}
	got = r.cpuShare(sample(t0, 0, ext, nil), sample(t0.Add(2*s), s, ext, used))
	if got.all != 300 || len(got.sites) != 3 || got.sites["http://c"] != 100 ||
		got.roles[RoleNATSServer] != 150 || got.roles[RoleGateway] != 150 || len(got.roles) != 2 {
		t.Errorf("the production layout: %+v", got)
	}
	if got := r.cpuShare(cpuSample{}, sample(t0, s, own, nil)); got.all != 0 || got.bench != 0 {
		t.Errorf("without a first sample: %+v", got)
	}
}

// A process that serves every site is counted once in the memory figures;
// a site's several processes are summed.
func TestSiteRSSListsAProcessOnce(t *testing.T) {
	sites := []string{"http://a", "http://b", "http://c"}
	self, parent := os.Getpid(), os.Getppid()
	shared := &run{cfg: Config{Sites: sites, Processes: func(int) []Process { return []Process{{PID: self, Role: RoleSite}} }}}
	if got := shared.siteRSS(); len(got) != 1 || got["http://a"] <= 0 {
		t.Errorf("one process for every site: %v", got)
	}
	own := &run{cfg: Config{Sites: sites, Processes: func(i int) []Process {
		return [][]Process{{{PID: self}}, {{PID: parent}}, nil}[i]
	}}}
	if got := own.siteRSS(); len(got) != 2 || got["http://b"] <= 0 {
		t.Errorf("a process per site, one unknown: %v", got)
	}
	selfRSS, err := procMem(self, "VmRSS")
	if err != nil {
		t.Fatal(err)
	}
	two := &run{cfg: Config{Sites: sites[:1], Processes: func(int) []Process {
		return []Process{{PID: self, Role: RoleNATSServer}, {PID: parent, Role: RoleGateway}}
	}}}
	if got := two.siteRSS(); got["http://a"] <= selfRSS {
		t.Errorf("a site's two processes: %v, the first alone %d", got, selfRSS)
	}
	// Its sockets are held by the gateway only, whose /metrics are read at
	// its own address.
	holders := two.socketHolders(0)
	if len(holders) != 1 || holders[0].PID != parent {
		t.Errorf("socket holders %+v, want the gateway only", holders)
	}
	urls := metricsURLs([]Process{{PID: 1, URL: "http://g1"}, {PID: 2, URL: "http://g2"}, {PID: 3, URL: "http://g1"}}, "http://a")
	if !slices.Equal(urls, []string{"http://g1", "http://g2"}) {
		t.Errorf("metrics read at %v", urls)
	}
	if urls := metricsURLs([]Process{{PID: 1}}, "http://a"); !slices.Equal(urls, []string{"http://a"}) {
		t.Errorf("a site's own process: metrics read at %v", urls)
	}
}

// A closed-loop p2p run loses and duplicates nothing; afterwards one site
// rebuilds its read model from the log and the catch-up is reported.
func TestP2PWithCatchup(t *testing.T) {
	cfg := short(t, ScenarioP2P)
	cfg.Users = 7 // odd: the last user pairs with the first
	cfg.Catchup = true
	cfg.Control = testControl{cluster}
	rep, obj := check(t, cfg)
	if rep.Rooms != 4 || rep.Senders != 8 || rep.Mode != "closed" {
		t.Errorf("rooms %d, senders %d, mode %s", rep.Rooms, rep.Senders, rep.Mode)
	}
	for _, k := range []string{"catchup_msgs", "catchup_msgs_per_sec"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	// A log record may carry several messages (sends to one partition
	// share an append), so there may be fewer records than messages.
	if rep.CatchupMsgs <= int64(rep.Rooms) || rep.CatchupMsgsPerSec <= 0 {
		t.Errorf("catch-up applied %d records (%v/s) for %d acked messages", rep.CatchupMsgs, rep.CatchupMsgsPerSec, rep.Acked)
	}
}

// An open-loop group run with pipelined senders loses and duplicates
// nothing, and every member gets every message.
func TestGroupOpenLoop(t *testing.T) {
	cfg := short(t, ScenarioGroup)
	cfg.Users = 11
	cfg.GroupSize = 5 // 5, then 6: the odd one out joins the last group
	cfg.Senders = 3
	cfg.Rate = 60
	cfg.Inflight = 2
	rep, _ := check(t, cfg)
	if rep.Rooms != 2 || rep.Senders != 6 || rep.Mode != "open" {
		t.Errorf("rooms %d, senders %d, mode %s", rep.Rooms, rep.Senders, rep.Mode)
	}
	if rep.Deliveries < rep.Acked*4 {
		t.Errorf("%d deliveries for %d acked messages in rooms of 5 and 6", rep.Deliveries, rep.Acked)
	}
}

// Receiving through SDK Subscriptions (which the SDK may also send over)
// loses and duplicates nothing either.
func TestP2PThroughSDKSubscriptions(t *testing.T) {
	cfg := short(t, ScenarioP2P)
	cfg.Users = 6
	cfg.SDKSubscribe = true
	cfg.Inflight = 2
	rep, _ := check(t, cfg)
	if rep.Receivers != "sdk" {
		t.Errorf("receivers %q", rep.Receivers)
	}
}

// Idle holds its connections at one site and reports memory per
// connection (here the process is the test itself, which holds both ends).
func TestIdle(t *testing.T) {
	cfg := short(t, ScenarioIdle)
	cfg.Users = 3
	cfg.Conns = 40
	cfg.IdleSite = 1
	cfg.Duration = 500 * time.Millisecond
	pid := os.Getpid()
	cfg.Processes = func(int) []Process { return []Process{{PID: pid, Role: RoleSite}} }
	rep, obj := check(t, cfg)
	if rep.Conns != 40 || rep.Errors != 0 || rep.IdleProcesses != 1 {
		t.Errorf("held %d of 40 connections; errors %v %v", rep.Conns, rep.ErrorKinds, rep.ErrorSamples)
	}
	for _, k := range []string{"conns", "bytes_per_conn"} {
		if _, ok := obj[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	for v := range 10000 {
		h.add(time.Duration(v+1) * time.Microsecond)
	}
	for _, c := range []struct{ q, want float64 }{{0.5, 5}, {0.99, 9.9}, {1, 10}} {
		if got := h.quantile(c.q); got < c.want*0.98 || got > c.want*1.02 {
			t.Errorf("q%v = %v ms, want %v", c.q, got, c.want)
		}
	}
	for v := uint64(0); v < 1<<20; v += 7 {
		i := histBucket(v)
		if lo := histValue(i); lo > float64(v)*1.02+1 || lo < float64(v)*0.98-1 {
			t.Fatalf("value %d in bucket %d reads as %v", v, i, lo)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	text := "# HELP x\nsalamander_websockets{site=\"a\"} 12\nsalamander_websockets_total 3\ngo_memstats_heap_inuse_bytes 1.5e+06\n"
	got := parseMetrics(text, "salamander_websockets", heapMetric, "absent")
	if got["salamander_websockets"] != 12 || got[heapMetric] != 1.5e6 {
		t.Fatalf("parsed %v", got)
	}
	if _, ok := got["absent"]; ok {
		t.Fatal("absent metric reported")
	}
}

// A duplicated message is counted and described: its room, both seqs it
// came under, and each member's deliveries, so that a rare duplicate in a
// long run can be traced in the sites' logs.
func TestDuplicatesAreDescribed(t *testing.T) {
	now := time.Now()
	ann, bob := &user{idx: 0, name: "ann"}, &user{idx: 1, name: "bob"}
	rm := &room{id: "d_x", members: []*user{ann, bob}, pos: map[int]int{0: 0, 1: 1}}
	tr := newTracker(10)
	tr.setWindow(now, now.Add(time.Minute))
	for _, id := range []string{"c-1", "c-2"} {
		if !tr.begin(id, rm, 0, now) {
			t.Fatal("begin refused")
		}
	}
	tr.ack("c-1", 7, now)
	tr.delivered(bob, "d_x", 7, "c-1", now)
	tr.delivered(bob, "d_x", 9, "c-1", now) // again, under another seq
	tr.ack("c-2", 8, now)
	tr.delivered(bob, "d_x", 8, "c-2", now)
	lost, _, duplicated, samples := tr.verdict()
	if lost != 0 || duplicated != 1 || len(samples) != 1 {
		t.Fatalf("lost %d, duplicated %d, samples %q", lost, duplicated, samples)
	}
	if want := "client id c-1 in room d_x: seq 7 and 9, acked true; deliveries per member: ann (sender) 0 bob 2"; samples[0] != want {
		t.Errorf("sample %q, want %q", samples[0], want)
	}
}

// makeOperator signs a user up, makes it an operator with the admin
// credential (as `salamander admin set-role` does) and returns its token
// once every site lets it read GET /v1/ops/site.
func makeOperator(ctx context.Context) (string, error) {
	c, err := client.New(client.Config{Sites: cluster.URLs()})
	if err != nil {
		return "", err
	}
	s, err := c.SignUp(ctx, "benchops", "Bench operator", "bench-ops-password")
	if err != nil {
		return "", err
	}
	cfg, _, err := jsstore.AdminConfig(cluster.AdminFile(), "salamander-test-admin", cluster.NATSURL(0))
	if err != nil {
		return "", err
	}
	st, err := jsstore.Open(ctx, cfg)
	if err != nil {
		return "", err
	}
	defer st.Close()
	rec := salamander.Record{Type: salamander.RecRoleSet, User: "benchops", Role: salamander.RoleOperator, Site: "test",
		At: time.Now().UTC()}
	if _, _, err := st.Append(ctx, jsstore.AccountsStream, "role.benchops", rec, jsstore.AppendOptions{MsgID: "test-role-benchops"}); err != nil {
		return "", err
	}
	n := newNetwork(cluster.URLs(), 0, s.Token)
	for _, u := range cluster.URLs() {
		var why error
		if err := poll(ctx, 50*time.Millisecond, func() bool {
			_, why = n.status(ctx, u)
			return why == nil
		}); err != nil {
			return "", fmt.Errorf("%s: %v: %w", u, why, err)
		}
	}
	return s.Token, nil
}
