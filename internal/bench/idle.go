package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/salamander-chat/salamander"
)

// idleBatch is how many idle connections are opened between checks of the
// machine's memory and progress lines.
const idleBatch = 1000

// idle runs the idle scenario: Conns WebSockets to one site, spread over
// at most Users users (several devices each), held for Duration; the site
// process's memory growth divided by the connections held is the cost of
// one idle connection.
func (r *run) idle(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	site := cfg.IdleSite
	base := cfg.Sites[site]
	users, err := r.newUsers(min(cfg.Users, cfg.Conns), func(int) int { return site })
	if err != nil {
		return nil, err
	}
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	err = r.signUp(setupCtx, users)
	cancel()
	if err != nil {
		return nil, err
	}
	// The processes that will hold the sockets: the site's own, or its
	// gateways (not its NATS server) in the production layout.
	holders := r.socketHolders(site)
	before := r.sampleMem(ctx, holders, base)
	selfBefore, selfErr := procMem(os.Getpid(), "VmRSS")

	fl := newFleet(ctx)
	defer fl.close()
	var dropped atomic.Int64
	note := ""
	opened := 0
	start := time.Now()
	for opened < cfg.Conns {
		if avail, ok := memAvailable(); ok && avail < cfg.MinAvailable {
			note = fmt.Sprintf("stopped opening connections at %d: the machine's available memory fell to %d MiB", opened, avail>>20)
			break
		}
		batch := min(idleBatch, cfg.Conns-opened)
		var failed atomic.Int64
		err := parallel(ctx, batch, cfg.SetupParallel*4, func(ctx context.Context, k int) error {
			u := users[(opened+k)%len(users)]
			conn, err := r.openIdle(ctx, base, u.token)
			if err != nil {
				failed.Add(1)
				r.errs.add("websocket", err)
				return nil
			}
			fl.goRun(func(ctx context.Context) { holdIdle(ctx, conn, &dropped) })
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("bench: opening idle connections: %w", err)
		}
		opened += batch - int(failed.Load())
		r.log.Info("idle connections open", "open", opened, "failed", failed.Load())
		if failed.Load() == int64(batch) {
			note = fmt.Sprintf("stopped opening connections at %d: a whole batch failed", opened)
			break
		}
	}
	connectTime := time.Since(start)
	if note != "" {
		r.log.Warn(note)
	}
	// Wait until the site has registered every connection, if it says
	// (each gateway counts its own).
	want := float64(opened)
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_ = poll(waitCtx, 200*time.Millisecond, func() bool {
		var sum float64
		for _, u := range metricsURLs(holders, base) {
			vals, err := r.net.metrics(waitCtx, u, "salamander_websockets")
			v, ok := vals["salamander_websockets"]
			if err != nil || !ok {
				return true // the site does not say
			}
			sum += v
		}
		return sum >= want-float64(dropped.Load())
	})
	cancel()
	r.log.Info("holding idle connections", "conns", opened, "for", cfg.Duration)
	if err := sleep(ctx, cfg.Duration); err != nil {
		return nil, err
	}
	after := r.sampleMem(ctx, holders, base)
	selfAfter, selfErr2 := procMem(os.Getpid(), "VmRSS")
	held := int64(opened) - dropped.Load()

	rep := r.newReport(len(users))
	rep.Conns = int(held)
	rep.IdleSite = base
	rep.IdleProcesses = len(holders)
	rep.ConnsDropped = dropped.Load()
	rep.IdleNote = note
	if connectTime > 0 {
		rep.ConnectsPerSec = round(float64(opened)/connectTime.Seconds(), 1)
	}
	if held > 0 {
		if before.rss > 0 && after.rss > 0 {
			rep.RSSBefore, rep.RSSAfter = before.rss, after.rss
			v := (after.rss - before.rss) / held
			rep.BytesPerConn = &v
		}
		if before.heap > 0 && after.heap > 0 {
			v := (after.heap - before.heap) / held
			rep.HeapBytesPerConn = &v
			if v < 0 {
				rep.IdleNote = joinNote(rep.IdleNote, "the site's Go heap shrank while the connections were held: "+
					"a garbage collection freed what earlier work left, so the figures per connection are not what a connection costs; "+
					"measure against a site that has just started, with thousands of connections")
			}
		}
		if before.goroutines >= 0 && after.goroutines >= 0 {
			v := round(float64(after.goroutines-before.goroutines)/float64(held), 2)
			rep.GoroutinesPerConn = &v
		}
		if selfErr == nil && selfErr2 == nil {
			v := (selfAfter - selfBefore) / held
			rep.BenchBytesPerConn = &v
		}
	}
	if held > 0 && rep.BytesPerConn == nil {
		rep.IdleNote = joinNote(rep.IdleNote, "the site's processes are unknown (give --pid) and its /metrics has no "+rssMetric+", so its memory was not measured")
	}
	rep.SiteRSS = r.siteRSS()
	fl.close()
	rep.setErrors(&r.errs)
	return rep, nil
}

// openIdle opens one WebSocket and waits for its "ready" event.
func (r *run) openIdle(ctx context.Context, base, token string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := r.net.dialWS(ctx, base, token, "")
	if err != nil {
		return nil, err
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			conn.CloseNow()
			return nil, fmt.Errorf("websocket to %s: waiting for ready: %w", base, err)
		}
		var ev struct {
			Type salamander.EventType `json:"type"`
		}
		if json.Unmarshal(data, &ev) == nil && ev.Type == salamander.EventReady {
			return conn, nil
		}
	}
}

// holdIdle reads (and drops) whatever arrives on conn, answering the
// site's pings, until ctx ends; a connection that breaks before counts as
// dropped.
func holdIdle(ctx context.Context, conn *websocket.Conn, dropped *atomic.Int64) {
	ctx, cancel := context.WithCancel(ctx) // its own: see receiver.run
	defer cancel()
	defer conn.CloseNow()
	for {
		if _, _, err := conn.Read(ctx); err != nil {
			if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
				dropped.Add(1)
			}
			return
		}
	}
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
