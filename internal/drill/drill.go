// Package drill owns Salamander's fire drill: it starts a three-site cluster
// as separate `salamander serve` processes whose NATS routes run through
// link proxies it controls, drives a checked workload of simulated users
// through the Go SDK, burns a site (SIGKILL) or cuts it off (partition)
// mid-run, and then proves message by message that nothing acknowledged was
// lost, duplicated or reordered and that the sites converged. It measures
// how long writes were unavailable and reports as text, JSON and HTML.
//
// The drill never reaches into a site's process: everything it knows comes
// from the public API (the SDK, /readyz, /v1/status), so it checks what users
// would see.
package drill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"
)

// Scenarios the drill can run.
const (
	// ScenarioFire SIGKILLs one site's process mid-run; it stays down.
	ScenarioFire = "fire"
	// ScenarioPartition cuts one site's routes to the other two while its
	// process keeps running; after the load the majority is checked, then
	// the site is reconnected and must catch up.
	ScenarioPartition = "partition"
)

// Config configures a drill. Start from DefaultConfig.
type Config struct {
	// Binary is the salamander executable to run `serve` with.
	Binary string
	// Dir holds the sites' data and logs. Empty: a temporary directory,
	// removed afterwards unless Keep is set.
	Dir  string
	Keep bool
	// Scenario is ScenarioFire or ScenarioPartition.
	Scenario string
	// Site is the site to burn or cut off; empty picks the one leading the
	// most streams when the fault strikes.
	Site string
	// Users is the number of simulated users; each is in one 1:1 room and
	// one group of GroupSize.
	Users     int
	GroupSize int
	// Rate is each user's mean send rate (messages per second, Poisson).
	Rate float64
	// Duration is how long the load runs; the fault strikes at FaultAt.
	Duration time.Duration
	FaultAt  time.Duration
	// Drain bounds how long sends in flight when the load stops may keep
	// retrying; Settle bounds each wait for deliveries and convergence.
	Drain  time.Duration
	Settle time.Duration
	// Return (fire only) restarts the burned site on its old disk after the
	// load and checks that it caught up with the survivors.
	Return bool
	// Partitions is the number of room streams (`serve --partitions`).
	Partitions int
	// SiteLogLevel is the sites' log level (`serve --log-level`); their logs
	// go to SITE.log in Dir.
	SiteLogLevel string
	// Logger receives progress lines (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns a CI-sized fire drill: 60 users for 40 s, the fire
// at 12 s.
func DefaultConfig() Config {
	return Config{
		Scenario:   ScenarioFire,
		Users:      60,
		GroupSize:  5,
		Rate:       1,
		Duration:   40 * time.Second,
		FaultAt:    12 * time.Second,
		Drain:      30 * time.Second,
		Settle:     60 * time.Second,
		Partitions: 6,
	}
}

func (c *Config) validate() error {
	switch {
	case c.Scenario != ScenarioFire && c.Scenario != ScenarioPartition:
		return fmt.Errorf("drill: unknown scenario %q (fire, partition)", c.Scenario)
	case c.Users < 2:
		return errors.New("drill: need at least 2 users")
	case c.Rate <= 0:
		return errors.New("drill: rate must be positive")
	case c.Duration <= 0 || c.FaultAt <= 0 || c.FaultAt >= c.Duration:
		return errors.New("drill: need 0 < fault-at < duration")
	case c.Site != "" && !validSite(c.Site):
		return fmt.Errorf("drill: unknown site %q (a, b, c)", c.Site)
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
	return nil
}

// Run starts a cluster in cfg.Dir, runs one drill on it (see RunOn) and
// stops the cluster. An error means the drill itself could not run (e.g.
// the cluster did not start); a drill that ran and found a problem returns
// a report whose OK is false.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("system", "drill")
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
	log.Info("starting three sites", "dir", dir)
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	cl, err := StartCluster(startCtx, ClusterConfig{Binary: cfg.Binary, Dir: dir, Partitions: cfg.Partitions,
		SiteLogLevel: cfg.SiteLogLevel, Logger: cfg.Logger})
	cancel()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return RunOn(ctx, cl, cfg)
}

// RunOn runs one drill on a running cluster whose sites are all up: it
// signs up fresh users, runs the load, strikes the fault, checks every
// message and measures the write gaps. With Return set (fire) it then
// restarts the burned site on its old disk and checks it caught up. It
// leaves the burned site down otherwise; a partition is always healed.
func RunOn(ctx context.Context, cl *Cluster, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
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

	w := newWorkload(cl, cfg.Users, cfg.Rate, cfg.GroupSize)
	setupCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err = w.setup(setupCtx)
	cancel()
	defer w.closeSubscriptions()
	if err != nil {
		return nil, err
	}
	log.Info("load starting", "users", len(w.users), "rooms", len(w.rooms))

	t0 := time.Now()
	w.start()
	stopped := false
	defer func() {
		if !stopped {
			w.stopSending(0)
		}
	}()
	if err := sleepUntil(ctx, t0.Add(cfg.FaultAt)); err != nil {
		return nil, err
	}
	lctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	leaders, err := cl.Leaders(lctx)
	cancel()
	if err != nil {
		log.Warn("stream leaders unknown at the fault", "error", err)
	}
	victim := cfg.Site
	if victim == "" {
		victim = mostLeader(leaders)
	}
	vi := cl.Index(victim)
	fault := time.Now()
	switch cfg.Scenario {
	case ScenarioFire:
		if err := cl.Kill(vi); err != nil {
			return nil, err
		}
		log.Info("fire", "site", victim)
	case ScenarioPartition:
		cl.Cut(victim)
		defer cl.Heal(victim)
		log.Info("partition", "site", victim)
	}
	if err := sleepUntil(ctx, t0.Add(cfg.Duration)); err != nil {
		return nil, err
	}
	log.Info("load stopping; waiting for sends in flight", "drain", cfg.Drain)
	w.stopSending(cfg.Drain)
	stopped = true
	recs := w.records()

	var majority []int
	for i := range cl.N() {
		if i != vi {
			majority = append(majority, i)
		}
	}
	rep := &Report{
		Scenario:       cfg.Scenario,
		Site:           victim,
		Users:          len(w.users),
		Rooms:          len(w.rooms),
		RatePerUser:    cfg.Rate,
		DurationS:      cfg.Duration.Seconds(),
		FaultAtS:       fault.Sub(t0).Seconds(),
		LeadersAtFault: leaders,
	}
	log.Info("checking the surviving sites")
	verdict, err := checkAt(ctx, w, majority, recs, cfg.Settle)
	if err != nil {
		return nil, err
	}
	back := cfg.Scenario == ScenarioPartition || cfg.Return
	if back {
		m := verdict
		rep.MajorityCheck = &m
		ret := time.Now()
		rep.ReturnAtS = ret.Sub(t0).Seconds()
		if cfg.Scenario == ScenarioPartition {
			cl.Heal(victim)
			log.Info("reconnected", "site", victim)
		} else {
			log.Info("restarting the burned site on its old disk", "site", victim)
			rctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			err := cl.Restart(rctx, vi)
			cancel()
			if err != nil {
				return nil, err
			}
		}
		log.Info("checking all three sites")
		verdict, err = checkAt(ctx, w, []int{0, 1, 2}, recs, cfg.Settle)
		if err != nil {
			return nil, err
		}
		rep.CatchUpMS = ms(time.Since(ret))
	}
	rep.Verdict = verdict
	rep.ReadMarks, rep.ReadMarkErrs = w.marks.Load(), w.markErrs.Load()
	rep.measure(w, recs, t0, fault, vi)
	rep.judge()
	return rep, nil
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
func mostLeader(leaders map[string]string) string {
	count := map[string]int{}
	for _, s := range leaders {
		count[s]++
	}
	best := SiteNames[0]
	for _, s := range SiteNames {
		if count[s] > count[best] {
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
