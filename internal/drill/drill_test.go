package drill

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander/internal/bench"
	"github.com/salamander-chat/salamander/internal/testbin"
)

// binary is the salamander executable built once for the whole package;
// natsServer is nats-server, built from the module Salamander embeds.
var binary, natsServer string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	bins, remove, err := testbin.Build("drill", testbin.Salamander, testbin.NATSServer)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	binary, natsServer = bins[0], bins[1]
	return m.Run()
}

// TestDrills runs a short fire drill (with the burned site restarted on its
// old disk afterwards), a short partition drill (connections closed, the
// site reconnected after the load), a partition with a silent cut healed
// under load, a short return drill (a burned site brought back on an empty
// disk under load, then a second site burned and brought back on its old
// disk) and a fire-merge drill (a second fire at the standby leader of a
// partition placing its held messages) on one cluster of real `salamander
// serve` processes: a fresh cluster takes a while to create its streams,
// so the drills share it.
func TestDrills(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and runs five 16-30 s drills")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 7*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir := t.TempDir()
	cl, err := StartCluster(ctx, ClusterConfig{Binary: binary, Dir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)

	base := DefaultConfig()
	base.Binary = binary
	base.Users = 24
	base.Duration = 20 * time.Second
	base.FaultAt = 6 * time.Second
	base.Settle = 45 * time.Second
	base.Logger = log

	// Whatever the drills do, a site's data (JetStream files, the read
	// model) stays its user's alone.
	t.Cleanup(func() {
		for _, site := range SiteNames {
			_ = filepath.Walk(filepath.Join(dir, site), func(p string, fi os.FileInfo, err error) error {
				if err == nil && fi.Mode().Perm()&0o077 != 0 {
					t.Errorf("%s is readable or writable by others (mode %04o)", p, fi.Mode().Perm())
				}
				return nil
			})
		}
	})
	t.Run("fire", func(t *testing.T) {
		cfg := base
		cfg.Scenario = ScenarioFire
		cfg.Return = true
		cfg.Devices = 90
		rep := runDrill(ctx, t, cl, cfg)
		// Every device of the burned site, the users' own among them, was
		// live again elsewhere (runDrill fails a report that says
		// otherwise): a third of the 24 users' and of the 90 more.
		if rc := rep.Faults[0].Reconnect; rc.Devices < 30 || rc.Back != rc.Devices || rc.P50MS <= 0 || rc.MaxMS < rc.P50MS {
			t.Errorf("devices of the burned site: %+v", rc)
		}
		checkJSONKeys(t, rep, "reconnect_ms_max", "devices")
		if rep.MajorityCheck == nil || len(rep.CheckedSites) != 3 {
			t.Errorf("the burned site was not checked after its return: %+v", rep.CheckedSites)
		}
		if rep.GapBurned.N == 0 || rep.GapSurvivors.N == 0 {
			t.Errorf("write gaps not split by site: burned %+v survivors %+v", rep.GapBurned, rep.GapSurvivors)
		}
		// The partitions the burned site led elected new leaders; sends to
		// their rooms meanwhile were held in the standbys, not kept waiting
		// (and runDrill checked that each was placed once, in order).
		if rep.Held == 0 {
			t.Errorf("no send was held while the burned site's partitions elected (send wait max %.0f ms)", rep.SendGapMSMax)
		}
		checkWaits(t, rep, cfg)
		checkElections(t, rep)
	})
	if t.Failed() {
		return
	}
	t.Run("partition", func(t *testing.T) {
		cfg := base
		cfg.Scenario = ScenarioPartition
		cfg.CutFor = 0 // cut off for the whole load: the majority is checked alone
		rep := runDrill(ctx, t, cl, cfg)
		if rep.CutStats == nil || rep.Cut != CutClose || rep.CutRefuseMS < 0 || rep.CutWriteProbes == 0 {
			t.Errorf("the cut was not watched, or the cut-off site never refused its clients: %+v", rep.CutStats)
		}
		m := rep.MajorityCheck
		if m == nil {
			t.Fatal("no check of the majority during the cut")
		}
		if strings.Contains(strings.Join(m.CheckedSites, ","), rep.Site) {
			t.Errorf("majority check %v includes the cut-off site %s", m.CheckedSites, rep.Site)
		}
		if m.Acked != rep.Acked || m.Lost != 0 {
			t.Errorf("majority check: acked %d (all sites: %d), lost %d", m.Acked, rep.Acked, m.Lost)
		}
	})
	if t.Failed() {
		return
	}
	t.Run("partition-silent-heal", func(t *testing.T) {
		cfg := base
		cfg.Scenario = ScenarioPartition
		cfg.Cut = CutSilent
		cfg.FaultAt = 5 * time.Second
		// Long enough for the cut-off site to notice a silent cut by its
		// own timeouts, then 9 s of load after the heal.
		cfg.CutFor = 12 * time.Second
		cfg.Duration = 26 * time.Second
		rep := runDrill(ctx, t, cl, cfg)
		checkSilentHeal(t, rep)
	})
	if t.Failed() {
		return
	}
	t.Run("return-empty-disk-then-another-site", func(t *testing.T) {
		cfg := base
		cfg.Scenario = ScenarioReturn
		cfg.Disks = []string{DiskEmpty, DiskOld}
		cfg.Rotate = true
		cfg.Down = 4 * time.Second
		cfg.Duration = 16 * time.Second
		rep := runDrill(ctx, t, cl, cfg)
		if len(rep.Faults) != 2 || rep.Faults[0].Site == rep.Faults[1].Site {
			t.Fatalf("faults: %+v, want two, at two sites", rep.Faults)
		}
		for i, f := range rep.Faults {
			if f.Disk != cfg.Disks[i] || f.ReadyMS <= 0 || f.CaughtUpMS < f.ReadyMS || f.ComparedWith == "" || f.DivergedRooms != 0 {
				t.Errorf("return %d not measured: %+v", i+1, f)
			}
			// Held messages in both fires, each placed once in order
			// (runDrill checked that) — when the partitions the burned
			// site led carry any of the drill's rooms (17 rooms in six
			// partitions leave one empty now and then).
			rooms := 0
			for _, e := range rep.Elections {
				if e.Fault == i+1 {
					rooms += e.Rooms
				}
			}
			if f.Held == 0 && rooms > 0 {
				t.Errorf("fire %d (site %s, led %d streams, %d rooms): no send was held", i+1, f.Site, f.Led, rooms)
			}
		}
		if len(rep.CheckedSites) != 3 {
			t.Errorf("checked at %v, want all three sites", rep.CheckedSites)
		}
		checkElections(t, rep)
	})
	if t.Failed() {
		return
	}
	t.Run("fire-merge", func(t *testing.T) {
		cfg := base
		cfg.Scenario = ScenarioFireMerge
		cfg.Down = 4 * time.Second
		cfg.Duration = 16 * time.Second
		rep := runDrill(ctx, t, cl, cfg)
		mf := rep.MergeFire
		if len(rep.Faults) != 2 || mf == nil || mf.Partition == "" {
			t.Fatalf("faults %+v, merge fire %+v", rep.Faults, mf)
		}
		first, second := rep.Faults[0], rep.Faults[1]
		if first.Site == second.Site || mf.StandbyLeader != second.Site || rep.LeadersAtFault[mf.Partition] != first.Site ||
			mf.KillAtS != second.AtS || mf.ElectedAtS < first.AtS {
			t.Errorf("the second fire did not strike the standby leader of a partition the first site led: faults %+v %+v, %+v",
				first, second, mf)
		}
		for i, f := range rep.Faults {
			if f.BackAtS <= 0 || f.ReadyMS <= 0 || f.CaughtUpMS < f.ReadyMS || f.DivergedRooms != 0 {
				t.Errorf("return %d not measured: %+v", i+1, f)
			}
		}
		if first.BackAtS > second.BackAtS || len(rep.CheckedSites) != 3 {
			t.Errorf("returns at %.1fs and %.1fs, checked at %v", first.BackAtS, second.BackAtS, rep.CheckedSites)
		}
		if mf.PlacedAfterReturnMS < 0 {
			t.Errorf("the held records were not found placed after the returns: %+v", mf)
		}
		// Whether the drill struck in time depends on a race of a few
		// hundred ms with the mergers; the report says which it was.
		if !mf.DuringMerge {
			t.Logf("the second fire came after %s's merge (skipped %v): not during a merge this time", mf.Partition, mf.Skipped)
		}
		checkJSONKeys(t, rep, "merge_fire", "elections", "held_delivery_after_election_ms_max")
	})
}

// checkElections checks that the partitions each fire's site led were
// watched, that their new leaders were found, and that held messages'
// delivery after them was measured. It does not judge the values.
func checkElections(t *testing.T, rep *Report) {
	t.Helper()
	found := map[int]int{}
	for _, e := range rep.Elections {
		if e.Fault < 1 || e.Fault > len(rep.Faults) || e.LeaderBefore != rep.Faults[e.Fault-1].Site {
			t.Errorf("election %+v: not a partition its fault's site led", e)
		}
		if e.ElectedMS >= 0 {
			found[e.Fault]++
			// (A site back within an election may win it.)
			if e.Leader == "" || e.AtS < rep.Faults[e.Fault-1].AtS {
				t.Errorf("election %+v after fault %+v", e, rep.Faults[e.Fault-1])
			}
		}
	}
	for i := range rep.Faults {
		if found[i+1] == 0 {
			var es []Election
			for _, e := range rep.Elections {
				es = append(es, *e)
			}
			t.Errorf("no new leader found after fault %d (elections %+v, leaders just before it %v)", i+1, es, rep.Faults[i].leaders)
		}
	}
	if rep.HeldWaitedForElection == 0 || rep.HeldDeliveryAfterElectionMSMax < 0 || rep.HeldDeliveryAfterElectionMSP50 > rep.HeldDeliveryAfterElectionMSMax {
		t.Errorf("held delivery after the election: %d held waited, p50 %.0f max %.0f ms", rep.HeldWaitedForElection,
			rep.HeldDeliveryAfterElectionMSP50, rep.HeldDeliveryAfterElectionMSMax)
	}
	checkJSONKeys(t, rep, "elections", "held_delivery_after_election_ms_max", "held_delivery_after_election_ms_p50")
}

// TestExternalTopologyFire runs a fire drill on the production layout:
// per site a standalone nats-server process (TLS, credentials, site tag,
// unique_tag, sync_interval always) and two `serve --nats` gateways behind
// the site's load balancer. The fire SIGKILLs the site's server and both
// gateways under load; the site comes back (server and gateways) after
// the load and must catch up.
func TestExternalTopologyFire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three nats-server and six gateway processes and runs a 16 s drill")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	dir := t.TempDir()
	start := time.Now()
	cl, err := StartCluster(ctx, ClusterConfig{Binary: binary, Dir: dir, Logger: log, Partitions: 3,
		Topology: TopologyExternal, GatewaysPerSite: 2, NATSServer: natsServer})
	if err != nil {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, l := range logs {
			t.Logf("%s:\n%s", l, tail(l, 3000))
		}
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	t.Logf("external topology up in %s", time.Since(start).Round(100*time.Millisecond))

	// /v1/sites lists the balancers, and both gateways of a site answer
	// behind its one URL.
	res, err := http.Get(cl.URL(0) + "/v1/sites")
	if err != nil {
		t.Fatal(err)
	}
	var sites struct {
		Sites []struct{ Name, URL string }
	}
	err = json.NewDecoder(res.Body).Decode(&sites)
	res.Body.Close()
	if err != nil || len(sites.Sites) != 3 || sites.Sites[1].URL != cl.URL(1) {
		t.Fatalf("/v1/sites: %+v %v, want the balancers %v", sites, err, cl.URLs())
	}
	instances := map[string]bool{}
	for range 4 {
		st, err := cl.Status(ctx, 1)
		if err != nil {
			t.Fatal(err)
		}
		instances[st.Instance] = true
	}
	if !instances["b1"] || !instances["b2"] {
		t.Fatalf("site b's balancer reached gateways %v, want b1 and b2", instances)
	}
	checkBenchMeasuresGateways(ctx, t, cl, log)

	cfg := DefaultConfig()
	cfg.Binary = binary
	cfg.Users = 18
	cfg.Duration = 16 * time.Second
	cfg.FaultAt = 5 * time.Second
	cfg.Settle = 45 * time.Second
	cfg.Partitions = 3
	cfg.Logger = log
	cfg.Scenario = ScenarioFire
	cfg.Return = true
	rep := runDrill(ctx, t, cl, cfg)
	if rep.MajorityCheck == nil || len(rep.CheckedSites) != 3 {
		t.Errorf("the burned site was not checked after its return: %+v", rep.CheckedSites)
	}
	if len(rep.Faults) != 1 || rep.Faults[0].CaughtUpMS <= 0 {
		t.Errorf("the return was not measured: %+v", rep.Faults)
	}
}

// checkBenchMeasuresGateways runs short benches against the production
// layout and checks that they measure the right processes: an idle site's
// memory is its two gateways' (which hold the sockets, not its
// nats-server), and the sites' CPU is every process's, split by role.
func checkBenchMeasuresGateways(ctx context.Context, t *testing.T, cl *Cluster, log *slog.Logger) {
	t.Helper()
	procs := cl.Processes(1)
	if len(procs) != 3 || procs[0].Role != RoleNATSServer || procs[1].Role != RoleGateway || procs[2].Role != RoleGateway ||
		procs[1].URL == "" || procs[1].URL == procs[2].URL {
		t.Fatalf("site b's processes: %+v, want its nats-server and two gateways at their own URLs", procs)
	}
	cfg := bench.DefaultConfig()
	cfg.OpsToken = cl.OpsToken() // the drill's operator, made as the cluster started
	cfg.Sites = cl.URLs()
	cfg.Logger = log
	cfg.Processes = func(i int) []bench.Process {
		var out []bench.Process
		for _, p := range cl.Processes(i) {
			out = append(out, bench.Process{PID: p.PID, Role: bench.Role(p.Role), URL: p.URL})
		}
		return out
	}
	cfg.Scenario = bench.ScenarioIdle
	cfg.Users, cfg.Conns, cfg.IdleSite, cfg.Duration = 2, 60, 1, 500*time.Millisecond
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Conns != 60 || rep.IdleProcesses != 2 || rep.BytesPerConn == nil || rep.HeapBytesPerConn == nil ||
		rep.GoroutinesPerConn == nil || len(rep.SiteRSS) != 3 {
		t.Errorf("idle on the production layout: %d conns held by %d processes, bytes/conn %v, heap/conn %v, goroutines/conn %v, RSS %v",
			rep.Conns, rep.IdleProcesses, rep.BytesPerConn, rep.HeapBytesPerConn, rep.GoroutinesPerConn, rep.SiteRSS)
	}
	cfg.Scenario = bench.ScenarioP2P
	cfg.Users, cfg.Duration, cfg.Warmup = 4, time.Second, 300*time.Millisecond
	if rep, err = bench.Run(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if rep.Acked == 0 || rep.Lost != 0 || len(rep.SiteCPU) != 3 || rep.SitesCPUByRole[bench.RoleNATSServer] <= 0 ||
		rep.SitesCPUByRole[bench.RoleGateway] <= 0 || len(rep.SitesCPUByRole) != 2 {
		t.Errorf("p2p on the production layout: acked %d, lost %d, CPU by site %v, by role %v",
			rep.Acked, rep.Lost, rep.SiteCPU, rep.SitesCPUByRole)
	}
}

// checkSilentHeal checks that a partition with a silent cut healed under
// load reports its cut and heal measures, and that they are sane. It does
// not judge their values against targets: those are measured in
// BENCHMARKS.md.
func checkSilentHeal(t *testing.T, rep *Report) {
	t.Helper()
	if len(rep.CheckedSites) != 3 || rep.MajorityCheck != nil {
		t.Errorf("checked at %v (majority check %v), want all three sites after the heal", rep.CheckedSites, rep.MajorityCheck != nil)
	}
	cs, h := rep.CutStats, rep.HealStats
	if cs == nil || h == nil || len(rep.Faults) != 1 {
		t.Fatalf("cut %+v, heal %+v, faults %d", cs, h, len(rep.Faults))
	}
	if cs.Cut != CutSilent || cs.CutForMS <= 0 || cs.CutWriteProbes == 0 || cs.CutWritesAcked != 0 {
		t.Errorf("cut: %+v", cs)
	}
	// The promise is that a cut-off site refuses (how soon is a measure).
	if cs.CutRefuseMS < 0 || cs.CutRefuseMS > cs.CutForMS || cs.CutWriteHangMSMax < 0 {
		t.Errorf("the cut-off site did not refuse its clients during the cut: %+v", cs)
	}
	if !(h.HealWindowFromS < h.HealAtS && h.HealAtS < h.HealWindowToS) || h.HealSends == 0 || h.HealGapMSMax <= 0 ||
		h.HealGapBaselineMSMax <= 0 || h.HealSlowSends > h.HealSends {
		t.Errorf("heal gap not measured: %+v", h)
	}
	if f := rep.Faults[0]; f.Kind != FaultCut || f.BackAtS != h.HealAtS || f.ReadyMS < 0 || f.CaughtUpMS < f.ReadyMS {
		t.Errorf("the site's return after the heal: %+v", f)
	}
	checkJSONKeys(t, rep, "cut", "cut_refuse_ms", "cut_readyz_503_ms", "cut_write_refused_ms", "heal_gap_ms_max", "heal_gap_baseline_ms_max", "heal_at_s")
}

// checkWaits checks that a drill with a fault reports the send waits and
// delivery lags after it, and that they are sane. It does not judge their
// values against targets.
func checkWaits(t *testing.T, rep *Report, cfg Config) {
	t.Helper()
	// No send waits past the end of the drain.
	limit := (rep.DurationS-rep.FaultAtS)*1000 + ms(cfg.Drain)
	if rep.SendGapMSMax <= 0 || rep.SendGapMSMax > limit || rep.DeliveryGapMSMax <= 0 {
		t.Errorf("send_gap_ms_max %.0f (at most %.0f), delivery_gap_ms_max %.0f", rep.SendGapMSMax, limit, rep.DeliveryGapMSMax)
	}
	for _, ws := range []struct {
		name string
		max  float64
		Waits
	}{{"send", rep.SendGapMSMax, rep.SendGap}, {"delivery", rep.DeliveryGapMSMax, rep.DeliveryGap}} {
		c, r := ws.Clients, ws.Rooms
		if c.N == 0 || c.MaxMS != ws.max || c.Worst == "" || c.P50MS > c.P99MS || c.P99MS > c.MaxMS ||
			r.N != rep.Rooms || r.MaxMS != ws.max || r.Worst == "" || r.P50MS > r.P99MS || r.P99MS > r.MaxMS ||
			ws.RoomsLeaderBurned.N+ws.RoomsLeaderSurvived.N != r.N ||
			max(ws.RoomsLeaderBurned.MaxMS, ws.RoomsLeaderSurvived.MaxMS) != ws.max {
			t.Errorf("%s gap of %d rooms, max %.0f: %+v", ws.name, rep.Rooms, ws.max, ws.Waits)
		}
	}
	if rep.MissingDeliveries == 0 && rep.DeliveryGap.Rooms.Unfinished != 0 {
		t.Errorf("every message was delivered, yet %d rooms have one undelivered", rep.DeliveryGap.Rooms.Unfinished)
	}
	for _, rg := range rep.RoomGaps {
		if rg.SendGapMS > rep.SendGapMSMax || rg.DeliveryGapMS > rep.DeliveryGapMSMax {
			t.Errorf("room %s: send gap %.0f, delivery gap %.0f, more than the maxima", rg.Room, rg.SendGapMS, rg.DeliveryGapMS)
		}
	}
}

// checkJSONKeys checks that rep's JSON form has every key at its top.
func checkJSONKeys(t *testing.T, rep *Report, keys ...string) {
	t.Helper()
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var top map[string]any
	if err := json.Unmarshal(js.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if _, ok := top[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
}

// TestSuiteJSON checks the JSON shape of a sequence: the required fields
// at the top, totals and worst gaps, one entry per scenario.
func TestSuiteJSON(t *testing.T) {
	s := &Suite{Scenario: "fire,none"}
	s.add(&Report{Scenario: "fire", Verdict: Verdict{Acked: 10, Converged: true}, WriteGapMSP50: 300, WriteGapMSMax: 900,
		SendGapMSMax: 1200, DeliveryGapMSMax: 40})
	s.add(&Report{Scenario: "none", Verdict: Verdict{Acked: 5, Lost: 1, Converged: true}, Failures: []string{"1 lost"},
		SendGapMSMax: 30, DeliveryGapMSMax: 60})
	s.judge()
	var js bytes.Buffer
	if err := s.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var top struct {
		Scenario      string            `json:"scenario"`
		Acked         int               `json:"acked"`
		Lost          int               `json:"lost"`
		Duplicated    *int              `json:"duplicated"`
		Reordered     *int              `json:"reordered"`
		WriteGapMSP50 *float64          `json:"write_gap_ms_p50"`
		WriteGapMSMax float64           `json:"write_gap_ms_max"`
		SendGapMSMax  float64           `json:"send_gap_ms_max"`
		DeliveryGap   float64           `json:"delivery_gap_ms_max"`
		Converged     *bool             `json:"converged"`
		OK            bool              `json:"ok"`
		Scenarios     []json.RawMessage `json:"scenarios"`
	}
	if err := json.Unmarshal(js.Bytes(), &top); err != nil {
		t.Fatal(err)
	}
	if top.Scenario != "fire,none" || top.Acked != 15 || top.Lost != 1 || top.WriteGapMSMax != 900 || top.OK ||
		top.Converged == nil || top.Duplicated == nil || top.Reordered == nil || top.WriteGapMSP50 == nil || len(top.Scenarios) != 2 ||
		top.SendGapMSMax != 1200 || top.DeliveryGap != 60 {
		t.Errorf("suite JSON: %s", js.String())
	}
}

// runDrill runs cfg on cl, logs the text report and checks the promises.
func runDrill(ctx context.Context, t *testing.T, cl *Cluster, cfg Config) *Report {
	t.Helper()
	start := time.Now()
	rep, err := RunOn(ctx, cl, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("drill took %s:\n%s", time.Since(start).Round(time.Second), text.String())
	if rep.Acked == 0 {
		t.Fatal("nothing was acknowledged")
	}
	if rep.Lost != 0 || rep.Duplicated != 0 || rep.Reordered != 0 || !rep.Converged || !rep.OK {
		t.Errorf("lost %d, duplicated %d, reordered %d, converged %v, ok %v: %v",
			rep.Lost, rep.Duplicated, rep.Reordered, rep.Converged, rep.OK, rep.Failures)
		// The sites' logs go with the test's temporary directory: keep
		// what they warned of during this drill in the test's output.
		for i := range cl.N() {
			t.Logf("site %s warned during the drill:\n%s", cl.Name(i), siteWarnings(cl.LogPath(i), start, 80))
		}
	}
	checkJSONKeys(t, rep, "scenario", "acked", "lost", "duplicated", "reordered", "write_gap_ms_p50", "write_gap_ms_max",
		"send_gap_ms_max", "delivery_gap_ms_max", "send_gap", "delivery_gap", "converged")
	var html bytes.Buffer
	if err := rep.WriteHTML(&html); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(html.String(), "<svg") || !strings.Contains(html.String(), "<polyline") {
		t.Error("HTML report has no timeline")
	}
	return rep
}

// siteWarnings returns the last max warnings and errors a site logged
// (slog text lines) since since.
func siteWarnings(path string, since time.Time, max int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	var out []string
	for line := range strings.Lines(string(data)) {
		if !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			continue
		}
		if ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " "); ok {
			if at, err := time.Parse(time.RFC3339Nano, ts); err == nil && at.Before(since) {
				continue
			}
		}
		out = append(out, strings.TrimRight(line, "\n"))
	}
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.Join(out, "\n")
}
