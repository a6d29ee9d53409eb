// Package bench is Salamander's load generator. It drives a running cluster
// only through the public API — the Go SDK for sign-up, rooms and sends,
// raw WebSockets for live events — and reports what users experience: send
// latency (call to acknowledgement), delivery latency (send to the message
// arriving on every other member's WebSocket), throughput, messages lost or
// duplicated, the memory an idle WebSocket costs a site's process, and how
// fast a site that lost its disk catches up with the log.
//
// The package owns the workload, the checker and the report. Starting and
// stopping the cluster is the caller's job: `salamander bench` starts three
// `salamander serve` processes with internal/drill, or attaches to running
// sites, and hands Run their URLs, their processes (each with its role:
// a whole site, a gateway or a nats-server, for CPU and memory) and a
// SiteControl (for the catch-up measurement).
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"time"

	"github.com/salamander-chat/salamander"
)

// Scenarios Run knows.
const (
	// ScenarioP2P: 1:1 rooms, each pair's two members preferring different
	// sites; both members send.
	ScenarioP2P = "p2p"
	// ScenarioGroup: group rooms of GroupSize members spread over the
	// sites; Senders members of each room send (default all).
	ScenarioGroup = "group"
	// ScenarioIdle: Conns WebSockets held open to one site, which is
	// measured for memory per connection. Nothing is sent.
	ScenarioIdle = "idle"
)

// SiteControl stops, wipes and restarts the sites of a cluster the caller
// owns; Run uses it to measure catch-up. *drill.Cluster implements it.
type SiteControl interface {
	// Kill stops site i abruptly and returns when it is gone.
	Kill(i int) error
	// Wipe deletes the stopped site i's data.
	Wipe(i int) error
	// Restart starts site i again and returns when it is ready.
	Restart(ctx context.Context, i int) error
}

// Config configures one bench run. DefaultConfig gives the defaults; only
// Sites must be set.
type Config struct {
	// Scenario is ScenarioP2P, ScenarioGroup or ScenarioIdle.
	Scenario string
	// Sites are the base URLs of every site, e.g. "http://127.0.0.1:8081".
	// User i prefers site i mod len(Sites): its requests and its WebSocket
	// go there first.
	Sites []string
	// Users is the number of simulated users. Idle uses at most Conns of
	// them, each holding several WebSockets.
	Users int
	// GroupSize is the members per group room (ScenarioGroup).
	GroupSize int
	// Senders is how many members of each room send (0: all of them).
	Senders int
	// Duration is how long the load is measured, after Warmup. Idle holds
	// its connections this long before measuring memory.
	Duration time.Duration
	// Warmup is load run before the measured window and left out of its
	// rates and latencies (but checked for loss and duplicates).
	Warmup time.Duration
	// Rate, when positive, is the aggregate send rate in messages per
	// second (open loop: each send has a scheduled time and latency counts
	// from it, so a server that falls behind is not hidden). Zero runs a
	// closed loop: each sender sends its next message when the previous
	// one is acknowledged.
	Rate float64
	// Inflight is the number of sends each sender may have outstanding: the
	// number of closed loops per sender, or the open loop's bound.
	Inflight int
	// Size is the message text length in bytes (1 to
	// salamander.MaxMessageBytes).
	Size int
	// SDKSubscribe receives through each user's SDK Subscription instead
	// of a raw WebSocket. An SDK that sends over its open WebSocket then
	// sends there too (the new send path). The SDK drops events it has
	// delivered before, so duplicates it hides are not counted.
	SDKSubscribe bool
	// Grace bounds the wait, after the load stops, for sends in flight and
	// then for every acknowledged message to reach every member. A message
	// still undelivered after it is lost.
	Grace time.Duration
	// MaxMessages bounds the messages one run tracks (its memory); senders
	// stop when it is reached.
	MaxMessages int
	// Conns is the number of WebSockets ScenarioIdle opens.
	Conns int
	// IdleSite is the index in Sites of the site the idle connections go to.
	IdleSite int
	// MinAvailable stops idle from opening more connections when the
	// machine's available memory (MemAvailable) falls below it, in bytes.
	MinAvailable uint64
	// SourceAddrs, when positive and every site is on a loopback address,
	// spreads the bench's connections over that many source addresses
	// (127.0.0.101, .102, …) so that ephemeral ports do not run out.
	SourceAddrs int
	// Catchup, after a p2p or group load, SIGKILLs site CatchupSite, wipes
	// its disk, restarts it and measures how fast its read model applies
	// the log until it reaches the other sites' positions. Needs Control.
	Catchup     bool
	CatchupSite int
	// Control stops and restarts sites (nil for a cluster the caller does
	// not own: no catch-up).
	Control SiteControl
	// OpsToken is an operator's session token: the bench reads how far
	// each site's read model has applied the log in GET /v1/ops/site,
	// which only operators may read. It is also shown with /metrics, which
	// a site serves to an operator from anywhere.
	OpsToken string
	// Processes returns site i's processes, the ones whose CPU time and
	// memory the bench reads from /proc (nil, or none: unknown). A process
	// that serves several sites (`salamander dev`) is returned for each.
	Processes func(site int) []Process
	// SetupParallel bounds the concurrent sign-ups, room creations and
	// WebSocket dials while setting up.
	SetupParallel int
	// Logger receives progress lines (default: discarded).
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: a closed-loop p2p run of 100 users
// for 20 s after a 2 s warm-up, 100-byte messages.
func DefaultConfig() Config {
	return Config{
		Scenario:      ScenarioP2P,
		Users:         100,
		GroupSize:     50,
		Duration:      20 * time.Second,
		Warmup:        2 * time.Second,
		Inflight:      1,
		Size:          100,
		Grace:         10 * time.Second,
		MaxMessages:   5_000_000,
		Conns:         1000,
		MinAvailable:  1 << 30,
		SourceAddrs:   8,
		CatchupSite:   -1,
		SetupParallel: 16,
	}
}

// validate checks cfg and fills in what follows from other fields.
func (c *Config) validate() error {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if len(c.Sites) == 0 {
		return errors.New("bench: no sites")
	}
	if c.OpsToken == "" {
		return errors.New("bench: no operator's session token: the bench waits for the sites' read models in GET /v1/ops/site, which only operators may read")
	}
	for _, s := range c.Sites {
		u, err := url.Parse(s)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bench: site %q is not an http(s) base URL", s)
		}
	}
	switch c.Scenario {
	case ScenarioP2P, ScenarioGroup, ScenarioIdle:
	default:
		return fmt.Errorf("bench: unknown scenario %q (p2p, group, idle)", c.Scenario)
	}
	switch {
	case c.Users < 1:
		return errors.New("bench: users must be at least 1")
	case c.Scenario != ScenarioIdle && c.Users < 2:
		return errors.New("bench: p2p and group need at least 2 users")
	case c.Scenario == ScenarioGroup && (c.GroupSize < 2 || c.GroupSize > salamander.MaxGroupMembers):
		return fmt.Errorf("bench: group size must be 2-%d", salamander.MaxGroupMembers)
	case c.Senders < 0:
		return errors.New("bench: senders must not be negative")
	case c.Duration <= 0 || c.Warmup < 0 || c.Grace < 0:
		return errors.New("bench: duration must be positive, warm-up and grace not negative")
	case c.Rate < 0:
		return errors.New("bench: rate must not be negative")
	case c.Inflight < 1:
		return errors.New("bench: inflight must be at least 1")
	case c.Size < 1 || c.Size > salamander.MaxMessageBytes:
		return fmt.Errorf("bench: size must be 1-%d bytes", salamander.MaxMessageBytes)
	case c.MaxMessages < 1:
		return errors.New("bench: max messages must be at least 1")
	case c.Scenario == ScenarioIdle && c.Conns < 1:
		return errors.New("bench: idle needs at least 1 connection")
	case c.IdleSite < 0 || c.IdleSite >= len(c.Sites):
		return fmt.Errorf("bench: idle site %d is not an index into %d sites", c.IdleSite, len(c.Sites))
	}
	if c.Catchup {
		if c.Scenario == ScenarioIdle {
			return errors.New("bench: catch-up is measured after p2p or group only")
		}
		if c.Control == nil {
			return errors.New("bench: catch-up needs a cluster the bench controls (not --sites)")
		}
		if len(c.Sites) < 2 {
			return errors.New("bench: catch-up needs at least two sites")
		}
		if c.CatchupSite < 0 {
			c.CatchupSite = len(c.Sites) - 1
		}
		if c.CatchupSite >= len(c.Sites) {
			return fmt.Errorf("bench: catch-up site %d is not an index into %d sites", c.CatchupSite, len(c.Sites))
		}
	}
	if c.SetupParallel < 1 {
		c.SetupParallel = 1
	}
	if c.Processes == nil {
		c.Processes = func(int) []Process { return nil }
	}
	return nil
}

// Run runs cfg's scenario against the sites and returns its report. An
// error means the bench could not run (set-up failed, ctx ended); problems
// found while it ran (lost or duplicated messages, failed sends) are in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := newRun(cfg)
	defer r.net.close()
	if cfg.Scenario == ScenarioIdle {
		return r.idle(ctx)
	}
	rep, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	if cfg.Catchup {
		c, err := r.catchup(ctx)
		if err != nil {
			return nil, err
		}
		rep.setCatchup(c)
	}
	return rep, nil
}

// run is one bench run's shared state.
type run struct {
	cfg    Config
	log    *slog.Logger
	net    *network
	prefix string // makes this run's user names and client ids unique
	errs   errorLog
}

func newRun(cfg Config) *run {
	r := &run{
		cfg:    cfg,
		log:    cfg.Logger.With("system", "bench"),
		net:    newNetwork(cfg.Sites, cfg.SourceAddrs, cfg.OpsToken),
		prefix: fmt.Sprintf("b%06x", rand.IntN(1<<24)),
	}
	r.net.metricsRefused = func(base string) {
		r.log.Warn("the site refuses its /metrics to this host and to the bench's operator token: the figures read from them (log batching, memory) are left out; "+
			"run the bench from a network the sites name in serve --metrics-from", "site", base)
	}
	return r
}
