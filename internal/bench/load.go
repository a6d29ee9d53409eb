package bench

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// setupTimeout bounds a run's set-up: sign-ups, rooms, WebSockets. (The
// SDK retries a request at every site until its context ends.)
const setupTimeout = 5 * time.Minute

// sender is one room member who sends to the room.
type sender struct {
	u   *user
	rm  *room
	pos int // position in rm.members
}

// load runs the p2p or group scenario: set-up (sign-ups, rooms, every
// WebSocket) before anything is timed, then the timed load, then the wait
// for every acknowledged message to reach every member.
func (r *run) load(ctx context.Context) (*Report, error) {
	cfg := r.cfg
	setupStart := time.Now()
	setupCtx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	users, err := r.newUsers(cfg.Users, func(i int) int { return i % len(cfg.Sites) })
	if err != nil {
		return nil, err
	}
	if err := r.signUp(setupCtx, users); err != nil {
		return nil, err
	}
	// A room names users signed up at other sites: wait until every site
	// knows them all.
	if err := r.waitApplied(setupCtx); err != nil {
		return nil, err
	}
	rooms, err := r.makeRooms(setupCtx, users)
	if err != nil {
		return nil, err
	}
	tr := newTracker(cfg.MaxMessages)
	var reordered atomic.Int64
	fl := newFleet(ctx)
	defer fl.close()
	r.startReceivers(fl, users, tr, &reordered)
	if err := r.waitReceivers(setupCtx, users); err != nil {
		return nil, err
	}
	cancel()
	var senders []sender
	for _, rm := range rooms {
		for _, p := range rm.senders {
			senders = append(senders, sender{u: rm.members[p], rm: rm, pos: p})
		}
	}
	r.log.Info("set up; load starting", "users", len(users), "rooms", len(rooms), "senders", len(senders),
		"setup", time.Since(setupStart).Round(time.Millisecond), "warmup", cfg.Warmup, "duration", cfg.Duration)

	dr := r.drive(ctx, tr, senders)
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	// Every acknowledged message must reach every member within the grace.
	graceCtx, cancel := context.WithTimeout(ctx, cfg.Grace)
	_ = poll(graceCtx, 50*time.Millisecond, func() bool { return tr.outstanding() == 0 })
	cancel()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	fl.close()

	rep := r.newReport(len(users))
	rep.Rooms = len(rooms)
	rep.Senders = len(senders)
	if cfg.Scenario == ScenarioGroup {
		rep.GroupSize = cfg.GroupSize
	}
	rep.setLoad(tr, cfg)
	rep.Unsent = dr.unsent
	rep.BenchCPU, rep.SiteCPU, rep.SitesCPU, rep.SitesCPUByRole = dr.cpu.bench, dr.cpu.sites, dr.cpu.all, dr.cpu.roles
	if rep.SitesCPU > 0 && rep.AckedPerSec > 0 {
		rep.SitesCPUPerMsgMs = round(10*rep.SitesCPU/rep.AckedPerSec, 4) // (pct/100 cores) / (msg/s) in ms
	}
	rep.LogRecordsPerSec, rep.EntriesPerRecord = dr.log.recordsPerSec, dr.log.entriesPerRecord
	rep.Reordered = reordered.Load()
	rep.SiteRSS = r.siteRSS()
	rep.setErrors(&r.errs)
	r.log.Info("load done", "acked", rep.Acked, "lost", rep.Lost, "duplicated", rep.Duplicated)
	return rep, nil
}

// drive runs the senders for Warmup+Duration, then lets sends in flight
// finish for up to Grace.
func (r *run) drive(ctx context.Context, tr *tracker, senders []sender) (res driveResult) {
	cfg := r.cfg
	t0 := time.Now()
	from := t0.Add(cfg.Warmup)
	end := from.Add(cfg.Duration)
	tr.setWindow(from, end)
	stopCtx, stop := context.WithDeadline(ctx, end) // no new sends after it
	defer stop()
	sendCtx, abort := context.WithCancel(ctx) // sends in flight
	defer abort()

	text := strings.Repeat("x", cfg.Size)
	var ids atomic.Uint64
	idPrefix := r.prefix + "-"
	nextID := func() string { return idPrefix + strconv.FormatUint(ids.Add(1), 10) } // per send: no fmt
	var skipped atomic.Int64
	var wg sync.WaitGroup
	for j, s := range senders {
		if cfg.Rate > 0 {
			wg.Go(func() {
				skipped.Add(r.openLoop(stopCtx, sendCtx, tr, s, j, len(senders), t0, end, nextID, text))
			})
			continue
		}
		for range cfg.Inflight {
			wg.Go(func() { r.closedLoop(stopCtx, sendCtx, tr, s, nextID, text) })
		}
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	// The CPU the bench and the sites use in the measured window shows
	// whether the bench itself was short of CPU.
	if sleep(ctx, time.Until(from)) == nil {
		cpu0, log0 := r.sampleCPU(), r.sampleLog(ctx)
		if sleep(ctx, time.Until(end)) == nil {
			res.cpu = r.cpuShare(cpu0, r.sampleCPU())
			res.log = batching(log0, r.sampleLog(ctx))
		}
	}
	drain := time.NewTimer(time.Until(end) + cfg.Grace)
	defer drain.Stop()
	select {
	case <-done:
	case <-drain.C:
		abort()
		<-done
	case <-ctx.Done():
		abort()
		<-done
	}
	res.unsent = skipped.Load()
	return res
}

// driveResult is what drive measured beyond the tracker.
type driveResult struct {
	unsent int64       // open-loop sends that never started
	cpu    cpuUse      // the CPU the bench and the sites used in the window
	log    logBatching // the first site's log in the window
}

// closedLoop sends the next message as soon as the previous one is
// acknowledged, until stopCtx ends.
func (r *run) closedLoop(stopCtx, sendCtx context.Context, tr *tracker, s sender, nextID func() string, text string) {
	sendCtx, cancel := context.WithCancel(sendCtx) // its own: see receiver.run
	defer cancel()
	for stopCtx.Err() == nil {
		id := nextID()
		if !tr.begin(id, s.rm, s.pos, time.Now()) {
			return
		}
		if !r.sendOne(sendCtx, tr, s, id, text) {
			_ = sleep(stopCtx, 100*time.Millisecond) // do not spin on a failing site
		}
	}
}

// openLoop sends sender j of n at its share of the aggregate rate, on a
// fixed schedule from t0 (offset so that the senders interleave), with at
// most Inflight sends outstanding. Latency counts from the scheduled time.
// It returns the number of scheduled sends that never started.
func (r *run) openLoop(stopCtx, sendCtx context.Context, tr *tracker, s sender, j, n int, t0, end time.Time,
	nextID func() string, text string) (unsent int64) {
	sendCtx, cancel := context.WithCancel(sendCtx) // its own: see receiver.run
	defer cancel()
	interval := time.Duration(float64(n) / r.cfg.Rate * float64(time.Second))
	due := t0.Add(time.Duration(float64(j) / r.cfg.Rate * float64(time.Second)))
	slots := make(chan struct{}, r.cfg.Inflight)
	var inflight sync.WaitGroup
	defer inflight.Wait()
	defer func() {
		if due.Before(end) {
			unsent = int64(end.Sub(due)/interval) + 1
		}
	}()
	for ; due.Before(end); due = due.Add(interval) {
		if sleep(stopCtx, time.Until(due)) != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		case <-stopCtx.Done():
			return
		}
		id := nextID()
		if !tr.begin(id, s.rm, s.pos, due) {
			<-slots
			return
		}
		inflight.Go(func() {
			defer func() { <-slots }()
			r.sendOne(sendCtx, tr, s, id, text)
		})
	}
	return
}

// sendOne sends one tracked message and records the outcome.
func (r *run) sendOne(ctx context.Context, tr *tracker, s sender, id, text string) bool {
	res, err := s.u.c.SendWithID(ctx, s.rm.id, id, text)
	at := time.Now()
	if err != nil {
		tr.fail(id)
		if ctx.Err() != nil {
			r.errs.add("send not acknowledged within the grace after the load", err)
		} else {
			r.errs.add("send", err)
		}
		return false
	}
	tr.ack(id, res.Message.Seq, at)
	return true
}
