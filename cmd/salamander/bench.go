package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/salamander-chat/salamander/internal/bench"
	"github.com/salamander-chat/salamander/internal/drill"
)

// benchFlags is everything `bench` can be told beyond bench.Config.
type benchFlags struct {
	cfg          bench.Config
	catchupSite  string
	pids         []int // --pid: the process serving each site
	json         bool
	dir          string
	keep         bool
	bin          string
	partitions   int
	bcryptCost   int
	recordSlots  int // a started cluster's serve --record-slots (0: their default)
	siteLogLevel string
	logLevel     string
	catchupSet   bool
	// topology, gateways and natsServer lay the started cluster out as
	// the drill does (--topology external: the production layout).
	topology   string
	gateways   int
	natsServer string
	// pprof serves the bench's own profiles: the load generator shares the
	// machine with the sites, so its cost is part of every figure.
	pprof string
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f, err := parseBenchFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	cfg := f.cfg
	cfg.Logger = log
	if f.pprof != "" {
		stop, _, err := startPprof(f.pprof, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	if len(cfg.Sites) > 0 && cfg.OpsToken == "" {
		// Refused before anything starts, naming where the token goes.
		return fmt.Errorf("bench: --sites needs an operator's session token in $%s: the bench waits for the sites' read models in GET /v1/ops/site, which only operators may read", opsTokenEnv)
	}
	switch {
	case len(cfg.Sites) > 0 && len(f.pids) > 0:
		pids := f.pids
		cfg.Processes = func(i int) []bench.Process { return []bench.Process{{PID: pids[i], Role: bench.RoleSite}} }
	case len(cfg.Sites) == 0:
		cl, cleanup, err := startBenchCluster(ctx, f, log)
		if err != nil {
			return err
		}
		defer cleanup()
		cfg.Sites = cl.URLs()
		cfg.OpsToken = cl.OpsToken()
		cfg.Processes = func(i int) []bench.Process { return benchProcesses(cl.Processes(i)) }
		cfg.Control = cl
		if !f.catchupSet {
			cfg.Catchup = cfg.Scenario != bench.ScenarioIdle
		}
	}
	if cfg.Catchup && f.catchupSite != "" {
		i, err := siteIndex(f.catchupSite, len(cfg.Sites))
		if err != nil {
			return err
		}
		cfg.CatchupSite = i
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("bench: interrupted (%w); no report", ctx.Err())
		}
		return err
	}
	if f.json {
		return rep.WriteJSON(stdout)
	}
	return rep.WriteText(stdout)
}

// benchProcesses tells the bench what each of a started site's processes
// is (the drill's roles and the bench's have the same names).
func benchProcesses(procs []drill.Process) []bench.Process {
	out := make([]bench.Process, 0, len(procs))
	for _, p := range procs {
		out = append(out, bench.Process{PID: p.PID, Role: bench.Role(p.Role), URL: p.URL})
	}
	return out
}

// startBenchCluster starts three `salamander serve` processes for the
// bench (routes direct, cheap password hashing) and returns them with a
// function that kills them and removes their data unless --keep. An
// interrupt kills them at once.
func startBenchCluster(ctx context.Context, f benchFlags, log *slog.Logger) (*drill.Cluster, func(), error) {
	bin := f.bin
	if bin == "" {
		var err error
		if bin, err = os.Executable(); err != nil {
			return nil, nil, fmt.Errorf("bench: finding this binary: %w", err)
		}
	}
	dir, temp := f.dir, false
	if dir == "" {
		d, err := os.MkdirTemp("", "salamander-bench-")
		if err != nil {
			return nil, nil, fmt.Errorf("bench: temp dir: %w", err)
		}
		dir, temp = d, true
	}
	removeDir := func() {
		if temp && !f.keep {
			os.RemoveAll(dir)
		}
	}
	log.Info("starting three sites", "dir", dir)
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cl, err := drill.StartCluster(startCtx, drill.ClusterConfig{
		Binary:       bin,
		Dir:          dir,
		Partitions:   f.partitions,
		SiteLogLevel: f.siteLogLevel,
		ServeArgs:    []string{"--bcrypt-cost", strconv.Itoa(f.bcryptCost), "--record-slots", strconv.Itoa(f.recordSlots)},
		DirectRoutes: true,
		Logger:       log,
		Topology:     f.topology,
		// The gateways of a site are reached through its balancer.
		GatewaysPerSite: f.gateways,
		NATSServer:      f.natsServer,
	})
	if err != nil {
		removeDir()
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, cl.Close) // Ctrl-C: no site outlives the bench
	return cl, func() {
		stop()
		cl.Close()
		removeDir()
	}, nil
}

// parseBenchFlags parses bench's flags.
func parseBenchFlags(args []string, stderr io.Writer) (benchFlags, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := benchFlags{cfg: bench.DefaultConfig()}
	c := &f.cfg
	fs.StringVar(&c.Scenario, "scenario", c.Scenario, "p2p (1:1 rooms, members at different sites), group (rooms of --group-size) or idle (hold --conns WebSockets to one site and measure its memory)")
	fs.IntVar(&c.Users, "users", c.Users, "simulated users, spread over the sites (idle: at most this many users share the connections)")
	fs.IntVar(&c.GroupSize, "group-size", c.GroupSize, "group: members per room")
	fs.IntVar(&c.Senders, "senders", 0, "members of each room who send (default: all)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "measured load time (idle: how long the connections are held)")
	fs.DurationVar(&c.Warmup, "warmup", c.Warmup, "load before the measured window")
	fs.Float64Var(&c.Rate, "rate", 0, "aggregate messages per second on a fixed schedule (open loop); 0 sends each sender's next message when the previous one is acknowledged (closed loop)")
	fs.IntVar(&c.Inflight, "inflight", c.Inflight, "sends outstanding per sender")
	fs.IntVar(&c.Size, "size", c.Size, "message text bytes")
	fs.BoolVar(&c.SDKSubscribe, "sdk-subscribe", false, "receive through the SDK's Subscription instead of a raw WebSocket (an SDK that sends over its WebSocket then sends there too); the SDK hides duplicates it drops")
	fs.DurationVar(&c.Grace, "grace", c.Grace, "after the load: how long sends in flight, and then deliveries, may take before they count as failed or lost")
	fs.IntVar(&c.MaxMessages, "max-messages", c.MaxMessages, "stop sending after this many messages")
	fs.IntVar(&c.Conns, "conns", c.Conns, "idle: WebSockets to open")
	fs.IntVar(&c.IdleSite, "idle-site", 0, "idle: index of the site the connections go to (0 = the first)")
	fs.IntVar(&c.SourceAddrs, "source-addrs", c.SourceAddrs, "spread connections over this many loopback source addresses (127.0.0.101…) when the sites are on loopback")
	fs.IntVar(&c.SetupParallel, "setup-parallel", c.SetupParallel, "concurrent sign-ups and room creations while setting up")
	fs.BoolVar(&c.Catchup, "catchup", false, "after a p2p or group load, SIGKILL a site, wipe its disk, restart it and measure its catch-up (default on when the bench starts the cluster)")
	fs.StringVar(&f.catchupSite, "catchup-site", "", "the site to wipe: a, b, c or its index (default: the last)")
	sites := fs.String("sites", "", "comma-separated URLs of a running cluster's sites (default: start three serve processes); needs an operator's session token in $"+opsTokenEnv+", to read their log positions")
	fs.StringVar(&f.topology, "topology", drill.TopologyEmbedded, "the started cluster's layout: embedded (one serve process per site) or "+
		"external (per site a standalone nats-server, --gateways-per-site 'serve --nats' processes and a load balancer, as in production)")
	fs.IntVar(&f.gateways, "gateways-per-site", 2, "external topology: 'serve --nats' processes per site")
	fs.StringVar(&f.natsServer, "nats-server", "", "external topology: the nats-server executable, 2.11 or later (default: nats-server on PATH)")
	pid := fs.String("pid", "", "with --sites: the process id serving every site (salamander dev), or one per site in --sites order (PID,PID,PID); "+
		"the bench then reports the sites' CPU per acknowledged message, and idle the idle site's memory")
	fs.BoolVar(&f.json, "json", false, "print one JSON object instead of the table")
	fs.StringVar(&f.dir, "data", "", "directory for the started sites' data and logs (default: a temporary one, removed afterwards)")
	fs.BoolVar(&f.keep, "keep", false, "keep the temporary data directory")
	fs.StringVar(&f.bin, "bin", "", "salamander binary to run the sites with (default: this one)")
	fs.IntVar(&f.partitions, "partitions", 6, "room partitions of a started cluster")
	fs.IntVar(&f.bcryptCost, "bcrypt-cost", 4, "password hashing cost of a started cluster (sign-ups are set-up, not load)")
	fs.IntVar(&f.recordSlots, "record-slots", 0, "a started cluster's serve --record-slots: records each site process or gateway keeps in flight (0: one per core)")
	fs.StringVar(&f.siteLogLevel, "site-log-level", "warn", "started sites' log level; their logs go to SITE.log in the data directory")
	fs.StringVar(&f.pprof, "pprof", "", "serve the bench's own Go profiles at http://ADDR/debug/pprof/ (\":6061\" = loopback only)")
	fs.StringVar(&f.logLevel, "log-level", "info", "the bench's own progress log on stderr: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return f, flagError(err)
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("bench: unexpected arguments %q", fs.Args())
	}
	fs.Visit(func(fl *flag.Flag) { f.catchupSet = f.catchupSet || fl.Name == "catchup" })
	c.Sites = splitList(*sites)
	if len(c.Sites) > 0 {
		c.OpsToken = os.Getenv(opsTokenEnv)
	}
	if len(c.Sites) > 0 && f.catchupSet && c.Catchup {
		return f, fmt.Errorf("bench: --catchup needs a cluster the bench starts itself (not --sites)")
	}
	if *pid != "" && len(c.Sites) == 0 {
		return f, fmt.Errorf("bench: --pid is for --sites; a started cluster's processes are known")
	}
	if *pid != "" {
		for _, p := range splitList(*pid) {
			n, err := strconv.Atoi(p)
			if err != nil || n <= 0 {
				return f, fmt.Errorf("bench: --pid %q: want process ids", *pid)
			}
			f.pids = append(f.pids, n)
		}
		switch len(f.pids) {
		case len(c.Sites):
		case 1: // one process serves every site (salamander dev)
			f.pids = slices.Repeat(f.pids, len(c.Sites))
		default:
			return f, fmt.Errorf("bench: --pid names %d processes for %d sites: give one for all, or one per site", len(f.pids), len(c.Sites))
		}
	}
	if err := checkRecordSlots(f.recordSlots); err != nil {
		return f, fmt.Errorf("bench: %w", err)
	}
	if f.recordSlots > 0 && len(c.Sites) > 0 {
		return f, fmt.Errorf("bench: --record-slots sets a cluster the bench starts, not --sites (give serve --record-slots there)")
	}
	switch f.topology {
	case drill.TopologyEmbedded:
	case drill.TopologyExternal:
		if len(c.Sites) > 0 {
			return f, fmt.Errorf("bench: --topology lays out a cluster the bench starts, not --sites")
		}
		if f.gateways < 1 {
			return f, fmt.Errorf("bench: --gateways-per-site must be 1 or more")
		}
		if f.natsServer == "" {
			p, err := exec.LookPath("nats-server")
			if err != nil {
				return f, fmt.Errorf("bench: --topology external needs nats-server 2.11 or later: give --nats-server PATH (%w)", err)
			}
			f.natsServer = p
		}
	default:
		return f, fmt.Errorf("bench: --topology must be %s or %s", drill.TopologyEmbedded, drill.TopologyExternal)
	}
	return f, nil
}

// siteIndex turns "a", "b", "c" or an index into an index of n sites.
func siteIndex(s string, n int) (int, error) {
	i := -1
	if len(s) == 1 && s[0] >= 'a' && s[0] <= 'z' {
		i = int(s[0] - 'a')
	} else if v, err := strconv.Atoi(s); err == nil {
		i = v
	}
	if i < 0 || i >= n {
		return 0, fmt.Errorf("bench: --catchup-site %q is not one of the %d sites", s, n)
	}
	return i, nil
}
