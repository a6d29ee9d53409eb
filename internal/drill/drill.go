// Package drill owns Salamander's fire drill: it starts a three-site cluster
// as separate `salamander serve` processes whose NATS routes run through
// link proxies it controls — or the production layout, per site a
// standalone nats-server and several `serve --nats` gateways behind a load
// balancer (ClusterConfig.Topology) — or attaches to a running cluster, drives a
// checked workload of simulated users through the Go SDK, and mid-run burns
// a site (SIGKILL), cuts it off (partition: its route connections closed,
// or every byte silently dropped, then healed under load), brings a burned
// site back on its old or an empty disk (return, the same site or each in
// turn), burns a partition's standby leader during the partition's merge
// (fire-merge), restarts every site in turn (rolling), onto a new binary
// (upgrade: a rolling upgrade), or slows the routes down (latency). Then it
// proves message by message that nothing acknowledged was lost,
// duplicated or reordered and that the sites converged (rolling and
// upgrade: that presence did not flap either). It measures how long
// writes were unavailable, when the partitions a fire hit elected new
// leaders and how soon messages held meanwhile reached everyone after that, how soon a cut-off site refused
// its clients, what a heal cost the majority, how long a returning site
// took to catch up and what latency cost, and reports as text, JSON and
// HTML.
//
// The drill never reaches into a site's process: what it checks comes from
// the public API (the SDK, /readyz, /v1/status), so it checks what users
// would see, and from what the API shows operators (GET /v1/ops/site:
// stream leaders and log positions, opstoken.go). On a cluster it started
// it also reads the log as an operator would, with the admin credential
// (admin.go): only to watch elections and merges, which the API does not
// show; and after a planned restart (rolling, upgrade) the site's log
// file, as an operator reads it, for a read-model rebuild and warnings
// (upgrade.go).
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Scenarios the drill can run.
const (
	// ScenarioFire SIGKILLs one site's process mid-run; it stays down
	// (unless Config.Return).
	ScenarioFire = "fire"
	// ScenarioPartition cuts one site's routes to the other two while its
	// process keeps running (Config.Cut says how) and measures how soon it
	// refuses its clients. The links heal Config.CutFor after the cut while
	// the load runs on, and the report shows what the heal cost the
	// majority's clients; with CutFor zero the cut lasts the whole load,
	// the majority is checked alone, then the site is reconnected and must
	// catch up.
	ScenarioPartition = "partition"
	// ScenarioReturn SIGKILLs one site mid-run and brings it back while the
	// load continues, once per entry of Config.Disks: on its old disk, then
	// on an empty one (its data directory deleted; same name, tags and
	// ports). Each time it measures how long the site took to be ready and
	// to catch up, and compares its histories with a survivor's.
	ScenarioReturn = "return"
	// ScenarioRolling restarts every site in turn under load with SIGTERM
	// (the server lame-ducks and hands its leaderships over), waiting until
	// each is ready and caught up before the next.
	ScenarioRolling = "rolling"
	// ScenarioUpgrade is a rolling upgrade: the sites run Config.Binary
	// (the version in production) and are restarted in turn, as in
	// ScenarioRolling, on Config.UpgradeBinary (the new one). The report
	// names both binaries per site and whether the site rebuilt its read
	// model. Scenarios after it in a sequence run on the new binary.
	ScenarioUpgrade = "upgrade"
	// ScenarioFireMerge burns the site leading the most streams and then,
	// while one of the partitions it led places the messages held in its
	// standby (the partition has its new leader, held records are not
	// merged yet), the site leading that standby: one site is left, with
	// no quorum. After Down the first site comes back on its old disk;
	// once it has caught up (and Pause), the second. See firemerge.go.
	ScenarioFireMerge = "fire-merge"
	// ScenarioLatency runs the load without injected latency until FaultAt,
	// then with Config.Latency ± Jitter on every route (FarLatency for the
	// FarSite), and reports what the distance cost in send latency. No fault.
	ScenarioLatency = "latency"
	// ScenarioNone runs the load and checks it, with no fault. It is the
	// only scenario for a cluster the drill attached to.
	ScenarioNone = "none"
)

// Scenarios lists every scenario, in the order the help text gives them.
var Scenarios = []string{ScenarioFire, ScenarioPartition, ScenarioReturn, ScenarioFireMerge, ScenarioRolling, ScenarioUpgrade, ScenarioLatency, ScenarioNone}

// Disk choices for ScenarioReturn.
const (
	DiskOld   = "old"
	DiskEmpty = "empty"
)

// Config configures a drill. Start from DefaultConfig.
type Config struct {
	// Binary is the salamander executable to run `serve` with.
	Binary string
	// UpgradeBinary (upgrade only, and required there) is the salamander
	// executable each site is restarted on.
	UpgradeBinary string
	// Dir holds the sites' data and logs. Empty: a temporary directory,
	// removed afterwards unless Keep is set.
	Dir  string
	Keep bool
	// Sites, when set, are the HTTP base URLs of a running cluster to
	// attach to instead of starting one; only ScenarioNone can run there,
	// and ScenarioPartition with an Isolator and a CutFor.
	Sites []string
	// OpsToken is an operator's session token for the cluster at Sites:
	// the drill reads each site's log positions and stream leaders in
	// GET /v1/ops/site. Without it, it cannot see the leaders (nor wait
	// for them) or a site catching up.
	OpsToken string
	// Isolator cuts a site of an attached cluster off (see Isolator).
	Isolator Isolator
	// Scenario is one of Scenarios. Run also takes a comma-separated
	// sequence ("fire,partition,return"), run one after another on the same
	// cluster, every site brought back up between them.
	Scenario string
	// Site is the site to burn or cut off; empty picks the one leading the
	// most streams when the fault strikes.
	Site string
	// Cut (partition) is how the cut-off site's links fail: CutClose
	// (default) or CutSilent.
	Cut CutMode
	// CutFor (partition) is how long the cut lasts before the links heal
	// under load; zero keeps the site cut off until after the load.
	CutFor time.Duration
	// Users is the number of simulated users; each is in one 1:1 room and
	// one group of GroupSize.
	Users     int
	GroupSize int
	// Devices is how many more devices the users have beside the one each
	// sends from: idle live subscriptions (an SDK client each, with a
	// user's session), spread over the users and the sites. Every device
	// connected to a fault's site when it strikes, the users' own among
	// them, must be live again — at any site — before the drill passes;
	// the report says how soon (Fault.Reconnect).
	Devices int
	// Rate is each user's mean send rate (messages per second, Poisson).
	Rate float64
	// Duration is how long the load runs; the fault strikes at FaultAt
	// (latency: the latency is injected then). Return and rolling keep the
	// load on past Duration until their last site has caught up, plus Pause.
	Duration time.Duration
	FaultAt  time.Duration
	// Drain bounds how long sends in flight when the load stops may keep
	// retrying; Settle bounds each wait for deliveries and convergence.
	Drain  time.Duration
	Settle time.Duration
	// Return (fire only) restarts the burned site on its old disk after the
	// load and checks that it caught up with the survivors.
	Return bool
	// Down (return) is how long the burned site stays down each time.
	Down time.Duration
	// Disks (return) lists the disks the site comes back with, in order:
	// DiskOld, DiskEmpty. Default: both.
	Disks []string
	// Rotate (return) burns another site each time instead of the same
	// one: the one leading the most streams among the sites not burned
	// yet (after the third, all of them again).
	Rotate bool
	// Pause (return, rolling) is the load time between a site catching up
	// and the next fault.
	Pause time.Duration
	// Latency and Jitter are added to every inter-site round trip (half in
	// each direction) by the route proxies; links touching FarSite get
	// FarLatency instead. For ScenarioLatency they default to 2 ms ± 1 ms
	// and site c at 30 ms; for other scenarios they apply to the whole load,
	// unless the sequence has a latency scenario, which then has them alone.
	Latency    time.Duration
	Jitter     time.Duration
	FarSite    string
	FarLatency time.Duration
	// Partitions is the number of room streams (`serve --partitions`).
	Partitions int
	// Topology, GatewaysPerSite and NATSServer choose the layout of the
	// cluster the drill starts (see ClusterConfig): TopologyExternal runs
	// a standalone nats-server and GatewaysPerSite `serve --nats`
	// processes behind a load balancer per site, and burns all of a
	// site's processes at once.
	Topology        string
	GatewaysPerSite int
	NATSServer      string
	// SiteLogLevel is the sites' log level (`serve --log-level`); their logs
	// go to SITE.log in Dir.
	SiteLogLevel string
	// Logger receives progress lines (default: discarded).
	Logger *slog.Logger
}

// MaxDevices bounds Config.Devices: the drill's process holds a socket per
// device, and a process here may hold 20,000 open files.
const MaxDevices = 10000

// maxDevicesPerUser keeps one user's devices under what a gateway process
// holds per account (256) when every device of a burned site moves to the
// same one of the others.
const maxDevicesPerUser = 120

// DefaultConfig returns a CI-sized fire drill: 60 users for 40 s, the fire
// at 12 s.
func DefaultConfig() Config {
	return Config{
		Scenario:   ScenarioFire,
		Cut:        CutClose,
		CutFor:     12 * time.Second,
		Users:      60,
		GroupSize:  5,
		Rate:       1,
		Duration:   40 * time.Second,
		FaultAt:    12 * time.Second,
		Drain:      30 * time.Second,
		Settle:     60 * time.Second,
		Down:       8 * time.Second,
		Pause:      3 * time.Second,
		Partitions: 6,
	}
}

// scenarioList splits a comma-separated scenario sequence.
func scenarioList(s string) []string {
	var out []string
	for _, x := range strings.Split(s, ",") {
		if x = strings.TrimSpace(x); x != "" {
			out = append(out, x)
		}
	}
	return out
}

// injects reports whether the config asks for route latency.
func (c *Config) injects() bool { return c.Latency > 0 || c.Jitter > 0 || c.FarLatency > 0 }

// Check reports what validate would refuse in c, without changing it: a
// drill recorded in a cluster's log is checked before its start is
// recorded, so that a typo is not counted as a failed drill.
func (c Config) Check() error { return c.validate() }

// validate checks c (one scenario or a sequence) and fills defaults.
func (c *Config) validate() error {
	list := scenarioList(c.Scenario)
	if len(list) == 0 {
		return fmt.Errorf("drill: no scenario given (%s)", strings.Join(Scenarios, ", "))
	}
	for _, sc := range list {
		if !slices.Contains(Scenarios, sc) {
			return fmt.Errorf("drill: unknown scenario %q (%s)", sc, strings.Join(Scenarios, ", "))
		}
		isolates := sc == ScenarioPartition && c.Isolator != nil && c.CutFor > 0
		if len(c.Sites) > 0 && sc != ScenarioNone && !isolates {
			return fmt.Errorf("drill: scenario %s needs the drill's own site processes and route proxies; with --sites only %q "+
				"runs, and %q with the admin credential and a --cut-for: %w", sc, ScenarioNone, ScenarioPartition, ErrAttached)
		}
		if len(c.Sites) > 0 && isolates && c.OpsToken == "" {
			// RunOn would refuse it too, but only after a recorded start:
			// a drill that cannot run must not be counted as a failed one.
			return fmt.Errorf("%w: scenario %s on a running cluster waits there for the cut site to catch up", ErrNoOpsToken, sc)
		}
	}
	if err := c.validateBinaries(list); err != nil {
		return err
	}
	if len(c.Sites) > 0 && c.injects() {
		return fmt.Errorf("drill: injecting latency needs the drill's route proxies: %w", ErrAttached)
	}
	if len(list) == 1 && list[0] == ScenarioLatency && !c.injects() {
		c.Latency, c.Jitter, c.FarSite, c.FarLatency = 2*time.Millisecond, time.Millisecond, "c", 30*time.Millisecond
	}
	switch c.Topology {
	case "", TopologyEmbedded:
	case TopologyExternal:
		if len(c.Sites) > 0 {
			return errors.New("drill: a topology is for the cluster the drill starts, not one it attaches to (--sites)")
		}
	default:
		return fmt.Errorf("drill: unknown topology %q (%s, %s)", c.Topology, TopologyEmbedded, TopologyExternal)
	}
	needsFault := slices.ContainsFunc(list, func(s string) bool { return s != ScenarioNone })
	if c.Cut == "" {
		c.Cut = CutClose
	}
	if !slices.Contains(CutModes, c.Cut) {
		return fmt.Errorf("drill: unknown cut %q (close, silent)", c.Cut)
	}
	if slices.Contains(list, ScenarioPartition) && c.CutFor > 0 && c.FaultAt+c.CutFor >= c.Duration {
		return errors.New("drill: the cut must heal before the load ends: need fault-at + cut-for < duration (or cut-for 0: heal after the load)")
	}
	switch {
	case c.Users < 2:
		return errors.New("drill: need at least 2 users")
	case c.Devices < 0 || c.Devices > MaxDevices:
		return fmt.Errorf("drill: devices must be 0 to %d", MaxDevices)
	case c.Devices > c.Users*maxDevicesPerUser:
		return fmt.Errorf("drill: at most %d devices per user (%d users: up to %d devices)", maxDevicesPerUser, c.Users,
			c.Users*maxDevicesPerUser)
	case c.Rate <= 0:
		return errors.New("drill: rate must be positive")
	case c.Duration <= 0:
		return errors.New("drill: duration must be positive")
	case needsFault && (c.FaultAt <= 0 || c.FaultAt >= c.Duration):
		return errors.New("drill: need 0 < fault-at < duration")
	case c.Site != "" && len(c.Sites) == 0 && !validSite(c.Site):
		return fmt.Errorf("drill: unknown site %q (a, b, c)", c.Site)
	case c.FarSite != "" && !validSite(c.FarSite):
		return fmt.Errorf("drill: unknown far site %q (a, b, c)", c.FarSite)
	case c.Latency < 0 || c.Jitter < 0 || c.FarLatency < 0:
		return errors.New("drill: latencies must not be negative")
	}
	for _, d := range c.Disks {
		if d != DiskOld && d != DiskEmpty {
			return fmt.Errorf("drill: unknown disk %q (old, empty)", d)
		}
	}
	if len(c.Disks) == 0 {
		c.Disks = []string{DiskOld, DiskEmpty}
	}
	if c.Rotate && !slices.Contains(list, ScenarioReturn) {
		return errors.New("drill: rotate is for the return scenario")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Drain <= 0 {
		c.Drain = 30 * time.Second
	}
	if c.Settle <= 0 {
		c.Settle = 60 * time.Second
	}
	if c.Down <= 0 {
		c.Down = 8 * time.Second
	}
	if c.Pause < 0 {
		c.Pause = 0
	}
	return nil
}

// validateBinaries refuses, before anything starts: an upgrade without a
// new binary, a new binary with no upgrade to run it, an upgrade twice in
// a sequence, and a binary that is missing or not executable.
func (c *Config) validateBinaries(list []string) error {
	upgrades := 0
	for _, sc := range list {
		if sc == ScenarioUpgrade {
			upgrades++
		}
	}
	switch {
	case upgrades > 1:
		return errors.New("drill: the upgrade scenario runs once in a sequence (the scenarios after it run on the new binary)")
	case upgrades == 1 && c.UpgradeBinary == "":
		return errors.New("drill: the upgrade scenario needs the new binary (--upgrade-bin); the sites start on --bin")
	case upgrades == 0 && c.UpgradeBinary != "":
		return fmt.Errorf("drill: a new binary (--upgrade-bin) is for the upgrade scenario, which restarts every site on it; %q restarts none on it",
			c.Scenario)
	}
	if c.Binary != "" && len(c.Sites) == 0 {
		if err := checkExecutable("--bin", c.Binary); err != nil {
			return err
		}
	}
	if c.UpgradeBinary != "" {
		if err := checkExecutable("--upgrade-bin", c.UpgradeBinary); err != nil {
			return err
		}
	}
	return nil
}

// Run runs cfg's scenario, or each scenario of a sequence in turn, on one
// cluster: one it starts in cfg.Dir (and stops afterwards), or the running
// cluster at cfg.Sites. Between scenarios every downed site is restarted
// on its old disk. If ctx ends, the sites it started are killed at once.
// An error means the drill itself could not run (e.g. the cluster did not
// start); a drill that ran and found a problem returns a suite whose OK is
// false.
func Run(ctx context.Context, cfg Config) (*Suite, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("system", "drill")
	if cfg.UpgradeBinary != "" {
		// Not a salamander (or not one that runs here): refused before
		// the cluster starts, not after a site has stopped.
		for _, path := range []string{cfg.Binary, cfg.UpgradeBinary} {
			if _, err := describeBinary(ctx, path); err != nil {
				return nil, err
			}
		}
	}
	var cl *Cluster
	if len(cfg.Sites) > 0 {
		actx, cancel := context.WithTimeout(ctx, time.Minute)
		c, err := Attach(actx, cfg.Sites, cfg.OpsToken, cfg.Logger)
		cancel()
		if err != nil {
			return nil, err
		}
		cl = c
		if cfg.Isolator != nil {
			cl.SetIsolator(cfg.Isolator)
		}
	} else {
		dir := cfg.Dir
		if dir == "" {
			d, err := os.MkdirTemp("", "salamander-drill-")
			if err != nil {
				return nil, fmt.Errorf("drill: temp dir: %w", err)
			}
			dir = d
			if !cfg.Keep {
				defer os.RemoveAll(dir)
			}
		}
		log.Info("starting three sites", "dir", dir, "topology", cfg.Topology)
		startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		c, err := StartCluster(startCtx, ClusterConfig{Binary: cfg.Binary, Dir: dir, Partitions: cfg.Partitions,
			SiteLogLevel: cfg.SiteLogLevel, Logger: cfg.Logger,
			Topology: cfg.Topology, GatewaysPerSite: cfg.GatewaysPerSite, NATSServer: cfg.NATSServer})
		cancel()
		if err != nil {
			return nil, err
		}
		cl = c
		defer cl.Close()
		// An interrupted drill must not leave its sites running.
		stop := context.AfterFunc(ctx, cl.Close)
		defer stop()
	}
	suite := &Suite{Scenario: strings.Join(scenarioList(cfg.Scenario), ",")}
	for k, sc := range scenarioList(cfg.Scenario) {
		if k > 0 {
			if err := restore(ctx, cl, cfg.Settle); err != nil {
				return nil, err
			}
		}
		one := cfg
		one.Scenario = sc
		if sc != ScenarioLatency && slices.Contains(scenarioList(cfg.Scenario), ScenarioLatency) {
			// In a sequence with a latency scenario, the latency is its alone.
			one.Latency, one.Jitter, one.FarSite, one.FarLatency = 0, 0, "", 0
		}
		log.Info("scenario", "n", k+1, "scenario", sc)
		rep, err := RunOn(ctx, cl, one)
		if err != nil {
			return nil, fmt.Errorf("drill: scenario %s: %w", sc, err)
		}
		suite.add(rep)
	}
	suite.judge()
	return suite, nil
}

// restore restarts every site that is down on its old disk, heals every
// link, and waits until every site is ready and caught up and every stream
// has a leader.
func restore(ctx context.Context, cl *Cluster, settle time.Duration) error {
	if cl.Attached() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, settle+time.Minute)
	defer cancel()
	for i := range cl.N() {
		cl.Heal(cl.Name(i))
		if !cl.Alive(i) {
			if err := cl.Restart(ctx, i); err != nil {
				return err
			}
		}
	}
	for i := range cl.N() {
		if _, err := cl.WaitCaughtUp(ctx, i, true); err != nil {
			return err
		}
	}
	if err := cl.WaitLeaders(ctx); err != nil {
		return err
	}
	// The sites move leaderships back to a returned site one at a time;
	// a scenario started meanwhile would measure those moves too.
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.WaitBalanced(bctx); err != nil {
		cl.log.Warn("stream leaders still unevenly spread; starting the next scenario anyway", "error", err)
	}
	return nil
}

// RunOn runs one scenario on a running cluster whose sites are all up: it
// signs up fresh users, runs the load, causes the scenario's faults, checks
// every message and measures the write gaps. A fire leaves the burned site
// down unless cfg.Return; every other scenario ends with every site up.
func RunOn(ctx context.Context, cl *Cluster, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(scenarioList(cfg.Scenario)) != 1 {
		return nil, fmt.Errorf("drill: RunOn runs one scenario, not %q (Run runs sequences)", cfg.Scenario)
	}
	isolates := cfg.Scenario == ScenarioPartition && cl.isolator != nil && cfg.CutFor > 0
	if cl.Attached() && (cfg.Scenario != ScenarioNone && !isolates || cfg.injects()) {
		return nil, fmt.Errorf("drill: scenario %s: %w", cfg.Scenario, ErrAttached)
	}
	if isolates && cl.OpsToken() == "" {
		// It waits for the cut site to catch up, reading how far its read
		// model has applied the log.
		return nil, fmt.Errorf("drill: scenario %s: %w", cfg.Scenario, ErrNoOpsToken)
	}
	log := cfg.Logger.With("system", "drill")
	for i := range cl.N() {
		if !cl.Alive(i) {
			return nil, fmt.Errorf("drill: site %s is down", cl.Name(i))
		}
	}
	lctx, cancel := context.WithTimeout(ctx, time.Minute)
	err := cl.WaitLeaders(lctx)
	cancel()
	if err != nil {
		return nil, err
	}

	var bins [2]*BinaryInfo // upgrade: the old binary and the new
	if cfg.Scenario == ScenarioUpgrade {
		// Refused before any site is stopped, not when the first fails
		// to start again.
		for k, path := range []string{cl.Binary(0), cfg.UpgradeBinary} {
			var err error
			if bins[k], err = describeBinary(ctx, path); err != nil {
				return nil, err
			}
		}
		for i := range cl.N() {
			if cl.Binary(i) != cl.Binary(0) {
				return nil, fmt.Errorf("drill: upgrade: site %s runs %s, site %s %s: the sites must start on one binary",
					cl.Name(i), cl.Binary(i), cl.Name(0), cl.Binary(0))
			}
		}
	}
	w := newWorkload(cl, cfg.Users, cfg.Devices, cfg.Rate, cfg.GroupSize)
	w.presence = restartsAll(cfg.Scenario)
	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = w.setup(setupCtx)
	cancel()
	defer w.closeSubscriptions()
	if err != nil {
		return nil, err
	}
	r := &run{ctx: ctx, cl: cl, cfg: cfg, w: w, log: log, bins: bins, rep: &Report{
		Scenario:    cfg.Scenario,
		Users:       len(w.users),
		Devices:     len(w.devices),
		Rooms:       len(w.rooms),
		RatePerUser: cfg.Rate,
	}}
	if cfg.injects() {
		r.rep.Injected = &InjectedLatency{RTTMS: ms(cfg.Latency), JitterMS: ms(cfg.Jitter), FarSite: cfg.FarSite, FarRTTMS: ms(cfg.FarLatency)}
		if cfg.Scenario != ScenarioLatency {
			cl.SetLatency(cfg.Latency, cfg.Jitter, cfg.FarSite, cfg.FarLatency)
		}
		defer cl.SetLatency(0, 0, "", 0)
	}
	if kills(cfg.Scenario) && !cl.Attached() {
		// The elections after a fire are watched with the admin credential.
		actx, cancel := context.WithTimeout(ctx, 15*time.Second)
		err := cl.openAdmins(actx)
		cancel()
		if err != nil && cfg.Scenario == ScenarioFireMerge {
			return nil, err
		}
		if err != nil {
			log.Warn("no admin connection: the partitions' new leaders will not be watched", "error", err)
		}
	}
	log.Info("load starting", "users", len(w.users), "rooms", len(w.rooms))

	r.t0 = time.Now()
	w.start()
	defer func() {
		r.stopElections()
		if !r.stopped {
			w.stopSending(ctx, 0)
		}
	}()
	switch cfg.Scenario {
	case ScenarioFire:
		err = r.fire()
	case ScenarioPartition:
		err = r.partition()
	case ScenarioReturn:
		err = r.returns()
	case ScenarioFireMerge:
		err = r.fireMerge()
	case ScenarioRolling, ScenarioUpgrade:
		err = r.rolling()
	case ScenarioLatency:
		err = r.latency()
	case ScenarioNone:
		err = r.none()
	}
	if err != nil {
		return nil, err
	}
	rep := r.rep
	rep.ReadMarks, rep.ReadMarkErrs = w.marks.Load(), w.markErrs.Load()
	rep.measure(w, r.recs, r.t0, r.faults)
	rep.measureElections(w, r.recs, r.elections())
	rep.measureReconnects(w, r.faults)
	if w.presence {
		if rep.Presence == nil {
			rep.Presence = &PresenceStats{}
		}
		r.measurePresence(rep.Presence)
	}
	rep.judge()
	return rep, nil
}

// run is one scenario in progress on a running load.
type run struct {
	ctx     context.Context
	cl      *Cluster
	cfg     Config
	w       *workload
	log     *slog.Logger
	rep     *Report
	t0      time.Time // the load started
	stopped bool      // the load has stopped
	recs    []sendRecord
	faults  []*Fault
	// watches are the faults' election watches (elections.go), the last
	// one running.
	watches []*electionWatch
	// bins (upgrade) are the binary the sites ran first and the new one.
	bins [2]*BinaryInfo
}

// restartsAll reports whether scenario restarts every site in turn,
// planned: its users follow each other, and presence must not flap.
func restartsAll(scenario string) bool {
	return scenario == ScenarioRolling || scenario == ScenarioUpgrade
}

// kills reports whether scenario SIGKILLs sites, so that the partitions
// they led elect new leaders.
func kills(scenario string) bool {
	return scenario == ScenarioFire || scenario == ScenarioReturn || scenario == ScenarioFireMerge
}

// since returns t in seconds since the load started.
func (r *run) since(t time.Time) float64 { return t.Sub(r.t0).Seconds() }

// stopLoad stops the load, waits for sends in flight up to cfg.Drain and
// keeps their records.
func (r *run) stopLoad() {
	r.rep.DurationS = time.Since(r.t0).Seconds()
	r.log.Info("load stopping; waiting for sends in flight", "drain", r.cfg.Drain)
	start := time.Now()
	r.w.stopSending(r.ctx, r.cfg.Drain)
	r.rep.DrainMS = ms(time.Since(start))
	r.stopped = true
	r.recs = r.w.records()
	r.stopElections()
}

// victim waits until FaultAt, then notes the stream leaders and picks the
// site to strike.
func (r *run) victim() (int, error) {
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.FaultAt)); err != nil {
		return 0, err
	}
	lctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	streams, err := r.cl.streams(lctx)
	cancel()
	if err != nil {
		r.log.Warn("stream leaders unknown at the fault", "error", err)
	}
	leaders := leadersOf(streams)
	for _, s := range streams {
		if len(s.Unhealthy) > 0 {
			if r.rep.UnhealthyAtFault == nil {
				r.rep.UnhealthyAtFault = map[string][]string{}
			}
			r.rep.UnhealthyAtFault[s.Stream] = s.Unhealthy
		}
	}
	name := r.cfg.Site
	if name == "" {
		name = mostLeader(leaders)
	}
	r.rep.Site, r.rep.LeadersAtFault = name, leaders
	return r.cl.Index(name), nil
}

// newFault notes the stream leaders (how many site vi leads) and records
// a fault striking it now.
func (r *run) newFault(kind string, vi int) *Fault {
	return r.addFault(kind, vi, r.leadersNow())
}

// leadersNow returns the stream leaders as a live site lists them (nil
// when none could within 2 s).
func (r *run) leadersNow() map[string]string {
	lctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
	defer cancel()
	leaders, err := r.cl.Leaders(lctx)
	if err != nil {
		return nil
	}
	return leaders
}

// addFault records a fault striking site vi now, given the stream leaders
// just before (nil: unknown).
func (r *run) addFault(kind string, vi int, leaders map[string]string) *Fault {
	led := -1
	if leaders != nil {
		led = len(ledBy(leaders, r.cl.Name(vi), false))
	}
	now := time.Now()
	f := &Fault{Kind: kind, Site: r.cl.Name(vi), Led: led, AtS: r.since(now), at: now, site: vi, leaders: leaders}
	if len(r.faults) == 0 {
		r.rep.FaultAtS = f.AtS
	}
	r.faults = append(r.faults, f)
	return f
}

// ledBy lists the streams leaders says site leads (with partitionsOnly,
// only the room partitions), in order.
func ledBy(leaders map[string]string, site string, partitionsOnly bool) []string {
	var out []string
	for st, s := range leaders {
		if s == site && (!partitionsOnly || st != jsstore.AccountsStream) {
			out = append(out, st)
		}
	}
	slices.Sort(out)
	return out
}

// watchFault starts watching, from now on, for new leaders of the
// partitions fault f's site led.
func (r *run) watchFault(f *Fault) {
	r.watchElections(len(r.faults), ledBy(f.leaders, f.Site, true), f.leaders, f.at)
}

// others returns every site index but vi.
func (r *run) others(vi int) []int {
	var out []int
	for i := range r.cl.N() {
		if i != vi {
			out = append(out, i)
		}
	}
	return out
}

// fire burns one site at FaultAt, checks the other two after the load
// and, with Return, restarts the site on its old disk and checks all
// three.
func (r *run) fire() error {
	vi, err := r.victim()
	if err != nil {
		return err
	}
	victim := r.cl.Name(vi)
	f := r.newFault(FaultKill, vi)
	if err := r.cl.Kill(vi); err != nil {
		return err
	}
	r.watchFault(f)
	r.log.Info("fire", "site", victim)
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.Duration)); err != nil {
		return err
	}
	r.stopLoad()
	r.log.Info("checking the surviving sites")
	verdict, err := checkAt(r.ctx, r.w, r.others(vi), r.recs, r.cfg.Settle)
	if err != nil {
		return err
	}
	if r.cfg.Return {
		m := verdict
		r.rep.MajorityCheck = &m
		ret := time.Now()
		r.rep.ReturnAtS = r.since(ret)
		f.BackAtS = r.rep.ReturnAtS
		f.Disk = DiskOld
		r.log.Info("restarting the burned site on its old disk", "site", victim)
		rctx, cancel := context.WithTimeout(r.ctx, 3*time.Minute)
		err := r.cl.Restart(rctx, vi)
		cancel()
		if err != nil {
			return err
		}
		f.ReadyMS = ms(time.Since(ret))
		r.log.Info("checking all three sites")
		verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
		if err != nil {
			return err
		}
		r.rep.CatchUpMS = ms(time.Since(ret))
		f.CaughtUpMS = r.rep.CatchUpMS
	}
	r.rep.Verdict = verdict
	return nil
}

// returns burns one site at FaultAt and, once per disk in cfg.Disks,
// restarts it after cfg.Down while the load continues, measures how long it
// takes to be ready and to catch up, and compares its histories with a
// survivor's; between returns it waits cfg.Pause and burns it again (with
// cfg.Rotate, another site: the one leading the most streams among those
// not burned yet). The load runs until Duration or until Pause after the
// last catch-up, then all three sites are checked.
func (r *run) returns() error {
	vi, err := r.victim()
	if err != nil {
		return err
	}
	burned := map[string]bool{}
	for k, disk := range r.cfg.Disks {
		if k > 0 {
			if err := sleepUntil(r.ctx, time.Now().Add(r.cfg.Pause)); err != nil {
				return err
			}
		}
		leaders := r.leadersNow()
		if k > 0 && r.cfg.Rotate {
			if len(burned) == r.cl.N() {
				clear(burned)
			}
			vi = r.cl.Index(mostLeaderBut(leaders, burned))
		}
		f := r.addFault(FaultKill, vi, leaders)
		burned[f.Site] = true
		victim, ref := r.cl.Name(vi), r.others(vi)[0]
		f.Disk = disk
		if err := r.cl.Kill(vi); err != nil {
			return err
		}
		r.watchFault(f)
		r.log.Info("fire", "site", victim, "returns_with", disk+" disk")
		if err := sleepUntil(r.ctx, f.at.Add(r.cfg.Down)); err != nil {
			return err
		}
		if disk == DiskEmpty {
			if err := r.cl.Wipe(vi); err != nil {
				return err
			}
		}
		back := time.Now()
		f.BackAtS = r.since(back)
		rctx, cancel := context.WithTimeout(r.ctx, r.cfg.Settle+time.Minute)
		err := r.cl.Restart(rctx, vi)
		if err == nil {
			f.ReadyMS = ms(time.Since(back))
			r.log.Info("site back", "site", victim, "disk", disk, "ready_ms", int(f.ReadyMS))
			var at time.Time
			at, err = r.cl.WaitCaughtUp(rctx, vi, false)
			f.CaughtUpMS = ms(at.Sub(back))
		}
		cancel()
		if err != nil {
			return err
		}
		n, err := prefixDiverged(r.ctx, r.w, vi, ref)
		if err != nil {
			return err
		}
		f.ComparedWith, f.DivergedRooms, f.ComparedMS = r.cl.Name(ref), n, ms(time.Since(back))
		rctx, cancel = context.WithTimeout(r.ctx, r.cfg.Settle)
		at, err := r.cl.WaitCaughtUp(rctx, vi, true)
		cancel()
		if err != nil {
			return err
		}
		f.ReplicasCurrentMS = ms(at.Sub(back))
		r.log.Info("site caught up", "site", victim, "disk", disk, "caught_up_ms", int(f.CaughtUpMS),
			"diverged_rooms", n, "replicas_current_ms", int(f.ReplicasCurrentMS))
	}
	if err := r.loadUntilDone(); err != nil {
		return err
	}
	return r.checkAllSites()
}

// loadUntilDone lets the load run until Duration, and at least Pause
// after now.
func (r *run) loadUntilDone() error {
	return sleepUntil(r.ctx, latest(r.t0.Add(r.cfg.Duration), time.Now().Add(r.cfg.Pause)))
}

// checkAllSites stops the load and checks all three sites (the verdict).
func (r *run) checkAllSites() error {
	r.stopLoad()
	r.log.Info("checking all three sites")
	var err error
	r.rep.Verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
	return err
}

// rolling restarts every site in turn with SIGTERM from FaultAt on
// (upgrade: on the new binary), waiting until each is ready, caught up and
// every stream replica current (so that no stream is left short of a
// quorum) plus cfg.Pause before the next. Then it checks all three sites,
// and reads what the sites logged from the first restart on.
func (r *run) rolling() error {
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.FaultAt)); err != nil {
		return err
	}
	marks := make([]logMark, r.cl.N())
	for i := range marks {
		marks[i] = r.cl.markLogs(i)
	}
	kind := FaultTerm
	if r.cfg.Scenario == ScenarioUpgrade {
		kind = FaultUpgrade
	}
	r.rep.Presence = &PresenceStats{}
	pp := r.startPresencePoller()
	polling := true
	defer func() {
		if polling {
			pp.stopInto(r.rep.Presence)
		}
	}()
	for vi := range r.cl.N() {
		if vi > 0 {
			if err := sleepUntil(r.ctx, time.Now().Add(r.cfg.Pause)); err != nil {
				return err
			}
		}
		f := r.newFault(kind, vi)
		pp.down(vi)
		if err := r.cl.Term(vi, 30*time.Second); err != nil {
			return err
		}
		back := time.Now()
		f.DownMS = ms(back.Sub(f.at))
		f.BackAtS, f.Disk = r.since(back), DiskOld
		if kind == FaultUpgrade {
			f.Before, f.After = r.bins[0], r.bins[1]
			r.cl.SetBinary(vi, r.cfg.UpgradeBinary)
			r.log.Info("upgrading", "site", f.Site, "from", f.Before.Path, "to", f.After.Path)
		}
		mark := r.cl.markLogs(vi)
		rctx, cancel := context.WithTimeout(r.ctx, r.cfg.Settle+time.Minute)
		err := r.cl.Restart(rctx, vi)
		if err == nil {
			f.ReadyMS = ms(time.Since(back))
			f.NotReady = r.cl.UnreadyWhy(vi)
			pp.up(vi)
			var at time.Time
			at, err = r.cl.WaitCaughtUp(rctx, vi, true)
			f.CaughtUpMS = ms(at.Sub(back))
		}
		cancel()
		if err != nil {
			return err
		}
		rebuilt, why, err := r.cl.rebuiltSince(vi, mark)
		if err != nil {
			return err
		}
		f.ReadModel = "kept"
		if rebuilt {
			f.ReadModel = "rebuilt from the log: " + why
		}
		r.log.Info("site restarted", "site", f.Site, "stopped_ms", int(f.DownMS), "ready_ms", int(f.ReadyMS),
			"caught_up_ms", int(f.CaughtUpMS), "read_model", f.ReadModel)
	}
	if err := r.loadUntilDone(); err != nil {
		return err
	}
	polling = false
	pp.stopInto(r.rep.Presence)
	if err := r.checkAllSites(); err != nil {
		return err
	}
	for i := range r.cl.N() {
		sl, err := r.cl.siteLog(i, marks[i])
		if err != nil {
			return err
		}
		r.rep.SiteLogs = append(r.rep.SiteLogs, sl)
	}
	return nil
}

// latency runs the load without injected latency until FaultAt and with
// it afterwards, then checks all three sites and compares send latencies.
// With a far site, the first half of the injected time has only the near
// latency on every link, the second half the far site's too.
func (r *run) latency() error {
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.FaultAt)); err != nil {
		return err
	}
	c := r.cfg
	on := time.Now()
	r.rep.Injected.FromS = r.since(on)
	r.cl.SetLatency(c.Latency, c.Jitter, "", 0)
	var farOn time.Time
	if c.FarSite != "" && c.FarLatency > 0 {
		if err := sleepUntil(r.ctx, on.Add(r.t0.Add(c.Duration).Sub(on)/2)); err != nil {
			return err
		}
		farOn = time.Now()
		r.cl.SetLatency(c.Latency, c.Jitter, c.FarSite, c.FarLatency)
		r.rep.Injected.FarFromS = r.since(farOn)
	}
	if err := sleepUntil(r.ctx, r.t0.Add(c.Duration)); err != nil {
		return err
	}
	r.stopLoad()
	end := time.Now()
	r.rep.LatencyPhases = []LatencyPhase{r.phase("no injected latency", r.t0, on)}
	if !farOn.IsZero() {
		near := InjectedLatency{RTTMS: ms(c.Latency), JitterMS: ms(c.Jitter)}
		r.rep.LatencyPhases = append(r.rep.LatencyPhases,
			r.phase("with "+near.String(), on, farOn),
			r.phase("with "+r.rep.Injected.String(), farOn, end))
	} else {
		r.rep.LatencyPhases = append(r.rep.LatencyPhases, r.phase("with "+r.rep.Injected.String(), on, end))
	}
	var err error
	r.rep.Verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
	return err
}

// none runs the load with no fault and checks every site.
func (r *run) none() error {
	if err := sleepUntil(r.ctx, r.t0.Add(r.cfg.Duration)); err != nil {
		return err
	}
	r.stopLoad()
	label := "no fault"
	if r.rep.Injected != nil {
		label += ", " + r.rep.Injected.String()
	}
	r.rep.LatencyPhases = []LatencyPhase{r.phase(label, r.t0, time.Now())}
	var err error
	r.rep.Verdict, err = checkAt(r.ctx, r.w, allSites(r.cl), r.recs, r.cfg.Settle)
	return err
}

// phase summarizes the acknowledged sends that started at or after from
// and ended before to, overall and by the sender's preferred site.
func (r *run) phase(label string, from, to time.Time) LatencyPhase {
	all := []float64{}
	by := map[string][]float64{}
	for _, rec := range r.recs {
		if !rec.acked || rec.start.Before(from) || !rec.end.Before(to) {
			continue
		}
		l := ms(rec.end.Sub(rec.start))
		all = append(all, l)
		home := r.cl.Name(r.w.users[rec.user].home)
		by[home] = append(by[home], l)
	}
	p := LatencyPhase{Label: label, FromS: r.since(from), ToS: r.since(to), Sends: len(all), Latency: latency(all),
		ByHomeSite: map[string]Latency{}}
	for s, xs := range by {
		p.ByHomeSite[s] = latency(xs)
	}
	return p
}

// prefixDiverged compares every room's history at sites a and b up to the
// newer seq both hold (the load is still running, so one may be a little
// behind) and returns how many rooms differ.
func prefixDiverged(ctx context.Context, w *workload, a, b int) (int, error) {
	n := 0
	for _, rm := range w.rooms {
		var hs [2][]salamander.Message
		for k, i := range []int{a, b} {
			c, err := w.pinned(rm.members[0], i)
			if err != nil {
				return 0, fmt.Errorf("drill: comparing histories: %w", err)
			}
			h, err := fullHistory(ctx, c, rm.id)
			if err != nil {
				return 0, fmt.Errorf("drill: comparing histories: %w", err)
			}
			hs[k] = h
		}
		top := min(lastSeq(hs[0]), lastSeq(hs[1]))
		if !sameHistory(upTo(hs[0], top), upTo(hs[1], top)) {
			n++
			w.cl.log.Warn("histories differ", "room", rm.id, "site", w.cl.Name(a), "other", w.cl.Name(b), "up_to_seq", top)
		}
	}
	return n, nil
}

func lastSeq(h []salamander.Message) uint64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Seq
}

// upTo returns the prefix of h with seq <= top.
func upTo(h []salamander.Message, top uint64) []salamander.Message {
	i, _ := slices.BinarySearchFunc(h, top+1, func(m salamander.Message, s uint64) int { return cmpU(m.Seq, s) })
	return h[:i]
}

// allSites returns every site index.
func allSites(cl *Cluster) []int {
	out := make([]int, cl.N())
	for i := range out {
		out[i] = i
	}
	return out
}

func latest(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// checkAt waits (up to settle) until every member has been delivered every
// acknowledged message, then checks the sites in sites.
func checkAt(ctx context.Context, w *workload, sites []int, recs []sendRecord, settle time.Duration) (Verdict, error) {
	last := map[string]uint64{}
	for _, r := range recs {
		if r.acked {
			last[r.room] = max(last[r.room], r.seq)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, settle)
	_ = poll(dctx, 200*time.Millisecond, func() (bool, error) { return w.deliveredUpTo(last), nil })
	cancel()
	ch, err := newChecker(w, sites, settle)
	if err != nil {
		return Verdict{}, err
	}
	return ch.check(ctx, recs)
}

// mostLeader returns the site leading the most streams (the first site on
// a tie or when leaders are unknown).
func mostLeader(leaders map[string]string) string { return mostLeaderBut(leaders, nil) }

// mostLeaderBut returns the site leading the most streams but those in
// skip (the first such site on a tie or when leaders are unknown).
func mostLeaderBut(leaders map[string]string, skip map[string]bool) string {
	count := map[string]int{}
	for _, s := range leaders {
		count[s]++
	}
	best := ""
	for _, s := range SiteNames {
		if !skip[s] && (best == "" || count[s] > count[best]) {
			best = s
		}
	}
	return best
}

func validSite(s string) bool {
	for _, n := range SiteNames {
		if n == s {
			return true
		}
	}
	return false
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("drill: interrupted: %w", ctx.Err())
	}
}
