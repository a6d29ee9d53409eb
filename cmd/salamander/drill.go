package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/drill"
)

// opsTokenEnv names the environment variable that gives the drill and
// the bench an operator's session token for a running cluster (--sites):
// they read the sites' stream leaders and log positions in GET
// /v1/ops/site. (Not a flag: a command line is visible to every user of
// the host.)
const opsTokenEnv = "SALAMANDER_OPS_TOKEN"

// opsTokenHowTo says how to give the drill or the bench an operator's
// session token: the error that it is missing must say what to do.
const opsTokenHowTo = "set $" + opsTokenEnv + " to the session token of an account with the operator role " +
	"(salamander admin set-role NAME operator; the token is the \"token\" of its POST /v1/login)"

// withOpsTokenHint adds to an error for a missing operator's token what
// to do about it.
func withOpsTokenHint(err error) error {
	if errors.Is(err, drill.ErrNoOpsToken) {
		return fmt.Errorf("%w: %s", err, opsTokenHowTo)
	}
	return err
}

func runDrill(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("drill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := drill.DefaultConfig()
	fs.StringVar(&cfg.Scenario, "scenario", cfg.Scenario, "fire (SIGKILL a site; it stays down), partition (cut a site's routes; heal them under load after --cut-for), "+
		"return (SIGKILL a site and bring it back under load, on its old disk and then an empty one), "+
		"fire-merge (SIGKILL a site, then the site leading a partition's standby while the partition places its held messages; bring both back), "+
		"rolling (SIGTERM and restart each site in turn), "+
		"upgrade (a rolling restart from --bin onto --upgrade-bin, checking presence and reporting each site's versions and time to ready), "+
		"latency (inject route latency at --fault-at; no fault) or none (load and check only); a comma-separated list runs them in turn on one cluster")
	fs.StringVar(&cfg.Site, "site", "", "site to burn or cut off: a, b or c (default: the one leading the most streams)")
	cut := fs.String("cut", string(cfg.Cut), "partition: how the cut site's links fail: close (connections closed, new ones refused: noticed at once) or silent (bytes dropped both ways, connections left open, new ones hang: noticed only by timeouts, as most real partitions)")
	fs.DurationVar(&cfg.CutFor, "cut-for", cfg.CutFor, "partition: how long the cut lasts before the links heal under load (0: until after the load; the majority is checked alone first)")
	sites := fs.String("sites", "", "attach to a running cluster at these comma-separated site URLs (e.g. salamander dev's) instead of starting one; "+
		"only --scenario none (then the default) runs there, and partition with --record: the site isolates itself for --cut-for; "+
		"an operator's session token in $"+opsTokenEnv+" lets the drill see the sites' stream leaders and log positions (partition needs it)")
	record := fs.Bool("record", false, "keep this drill's record (scenario, time, result, report) in the replicated log of the cluster at --nats, "+
		"with the admin credential --creds: every site's ops console lists it and counts it toward the year's legal minimum "+
		"(default: on with --sites, where the drill is one of that deployment)")
	conn := addConnFlags(fs, 30*time.Second)
	fs.DurationVar(&cfg.Down, "down", cfg.Down, "return: how long the burned site stays down each time; fire-merge: how long after the second fire the first site returns")
	disks := fs.String("disks", "old,empty", "return: the disks the burned site comes back with, in order (old, empty)")
	fs.BoolVar(&cfg.Rotate, "rotate", false, "return: burn another site each time (the one leading the most streams among those not burned yet), "+
		"e.g. --disks old,old burns a second site after the first has returned and caught up")
	fs.DurationVar(&cfg.Pause, "pause", cfg.Pause, "return, rolling, fire-merge: load time between a site catching up and the next fault")
	fs.DurationVar(&cfg.Latency, "latency", 0, "add this to every inter-site round trip (half each way) in the route proxies: for the whole load, or for the latency scenario alone if the sequence has one (its default 2ms)")
	fs.DurationVar(&cfg.Jitter, "jitter", 0, "vary the added round trip by ± this, uniformly (latency scenario default 1ms)")
	fs.StringVar(&cfg.FarSite, "far-site", "", "a site whose links get --far-latency instead (latency scenario default c; it gets it half-way through the injected time)")
	fs.DurationVar(&cfg.FarLatency, "far-latency", 0, "the round trip added to the far site's links (latency scenario default 30ms)")
	fs.IntVar(&cfg.Users, "users", cfg.Users, "simulated users, spread over the sites")
	fs.IntVar(&cfg.Devices, "devices", cfg.Devices, fmt.Sprintf("idle devices the users have beside their own, live over the sites (at most %d): every device of a struck site must be live again elsewhere, and the report says how soon", drill.MaxDevices))
	fs.IntVar(&cfg.GroupSize, "group-size", cfg.GroupSize, "members per group room (each user is also in one 1:1 room)")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "messages per second per user (random, exponential arrivals)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the load runs")
	fs.DurationVar(&cfg.FaultAt, "fault-at", cfg.FaultAt, "when the (first) fault strikes, after the load starts (latency: when the latency is switched on)")
	fs.DurationVar(&cfg.Drain, "drain", cfg.Drain, "how long sends in flight when the load stops may keep retrying")
	fs.DurationVar(&cfg.Settle, "settle", cfg.Settle, "bound on each wait for deliveries and for the sites to agree")
	fs.BoolVar(&cfg.Return, "return", false, "fire: after the load, restart the burned site on its old disk and check it catches up")
	fs.IntVar(&cfg.Partitions, "partitions", cfg.Partitions, "room streams (serve --partitions)")
	fs.StringVar(&cfg.Topology, "topology", drill.TopologyEmbedded, "embedded (one serve process per site, its NATS server inside) or external "+
		"(the production layout: per site a standalone nats-server with TLS, credentials, site tag, unique_tag and sync_interval always, "+
		"--gateways-per-site 'serve --nats' processes and a load balancer; a fire SIGKILLs the server and every gateway of the site)")
	fs.IntVar(&cfg.GatewaysPerSite, "gateways-per-site", 2, "external topology: 'serve --nats' processes per site, behind the site's balancer")
	fs.StringVar(&cfg.NATSServer, "nats-server", "", "external topology: the nats-server executable, 2.11 or later (default: nats-server on PATH)")
	fs.StringVar(&cfg.SiteLogLevel, "site-log-level", "warn", "the sites' log level; their logs go to SITE.log in the data directory")
	fs.StringVar(&cfg.Dir, "data", "", "directory for the sites' data and logs (default: a temporary one, removed afterwards)")
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the temporary data directory")
	bin := fs.String("bin", "", "salamander binary to run the sites with (default: this one); upgrade: the version in production")
	fs.StringVar(&cfg.UpgradeBinary, "upgrade-bin", "", "upgrade: the new salamander binary each site is restarted on, in turn (required there, refused elsewhere)")
	jsonPath := fs.String("json", "", "write the JSON report to this file")
	htmlPath := fs.String("html", "", "write the HTML report (with a timeline) to this file")
	logLevel := fs.String("log-level", "info", "the drill's own progress log: debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return flagError(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("drill: unexpected arguments %q", fs.Args())
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	cfg.Logger = log
	cfg.Sites = splitList(*sites)
	cfg.OpsToken = os.Getenv(opsTokenEnv)
	if len(cfg.Sites) > 0 {
		scenarioSet, recordSet := false, false
		fs.Visit(func(f *flag.Flag) {
			scenarioSet = scenarioSet || f.Name == "scenario"
			recordSet = recordSet || f.Name == "record"
		})
		if !scenarioSet {
			cfg.Scenario = drill.ScenarioNone // the only one an attached cluster allows
		}
		if !recordSet {
			*record = true // a drill of a deployment is kept in its log
		}
	}
	cfg.Disks = splitList(*disks)
	cfg.Cut = drill.CutMode(*cut)
	cfg.Binary = *bin
	if cfg.Binary == "" && len(cfg.Sites) == 0 {
		if cfg.Binary, err = os.Executable(); err != nil {
			return fmt.Errorf("drill: finding this binary: %w", err)
		}
	}
	if cfg.Topology == drill.TopologyExternal && cfg.NATSServer == "" {
		if cfg.NATSServer, err = exec.LookPath("nats-server"); err != nil {
			return fmt.Errorf("drill: --topology external needs nats-server 2.11 or later: give --nats-server PATH (%w)", err)
		}
	}
	var rec *drillRecorder
	if *record {
		// A typo must not be recorded as a failed drill. (Checked as it
		// will run: attached, the recorder isolates through the log.)
		check := cfg
		if len(cfg.Sites) > 0 {
			check.Isolator = &drillRecorder{}
			// Its record blocks drains while it runs, and stops counting
			// as running an hour after its start: it must end well before.
			if cfg.Duration > salamander.MaxRecordedDrill {
				return fmt.Errorf("drill: a recorded drill of a running deployment runs at most %s (--duration %s)",
					salamander.MaxRecordedDrill, cfg.Duration)
			}
		}
		if err := check.Check(); err != nil {
			return withOpsTokenHint(err)
		}
		rctx, cancel := context.WithTimeout(ctx, conn.timeout)
		rec, err = startDrillRecord(rctx, conn, cfg)
		cancel()
		if err != nil {
			return fmt.Errorf("%w (a drill of a running deployment is recorded in its log with the admin credential: "+
				"give --creds and --nats, or --record=false)", err)
		}
		if len(cfg.Sites) > 0 {
			cfg.Isolator = rec
		}
		fmt.Fprintf(stderr, "recording the drill as %s\n", rec.id)
	}
	rep, err := drill.Run(ctx, cfg)
	if rec != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), conn.timeout)
		if recErr := rec.end(rctx, rep, err); recErr != nil {
			fmt.Fprintln(stderr, recErr)
		} else {
			fmt.Fprintf(stderr, "drill %s recorded in the cluster's log\n", rec.id)
		}
		cancel()
	}
	if err != nil {
		return withOpsTokenHint(err)
	}
	if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if *jsonPath != "" {
		if err := writeFile(*jsonPath, rep.WriteJSON); err != nil {
			return err
		}
	}
	if *htmlPath != "" {
		if err := writeFile(*htmlPath, rep.WriteHTML); err != nil {
			return err
		}
	}
	if !rep.OK {
		return exitCode(1)
	}
	return nil
}

// writeFile creates path and writes it with write.
func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("drill: %w", err)
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("drill: writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("drill: writing %s: %w", path, err)
	}
	return nil
}
