package bench

import (
	"context"
	"fmt"
	"time"
)

// catchupResult is how a site with an empty disk caught up with the log.
type catchupResult struct {
	site    string
	records int64         // log records it applied
	entries int64         // log entries (messages and other records) in them
	perSec  float64       // entries/s from the restart to caught up
	total   time.Duration // restart → everything applied
	ready   time.Duration // restart → ready
}

// catchup SIGKILLs site CatchupSite, wipes its disk, restarts it and polls
// its GET /v1/ops/site every 50 ms until its read model has applied, on every
// stream, the last sequence the other sites hold. Nothing writes to the
// log meanwhile, so that target does not move.
func (r *run) catchup(ctx context.Context) (*catchupResult, error) {
	cfg := r.cfg
	i := cfg.CatchupSite
	base := cfg.Sites[i]
	ctl := cfg.Control
	if err := ctl.Kill(i); err != nil {
		return nil, fmt.Errorf("bench: catch-up: %w", err)
	}
	if err := ctl.Wipe(i); err != nil {
		return nil, fmt.Errorf("bench: catch-up: %w", err)
	}
	// The target: the log as another site lists it.
	var ref siteStatus
	refCtx, cancel := context.WithTimeout(ctx, time.Minute)
	err := poll(refCtx, 100*time.Millisecond, func() bool {
		var err error
		ref, err = r.streamList(refCtx, i)
		return err == nil
	})
	cancel()
	if err != nil {
		return nil, fmt.Errorf("bench: catch-up: no other site lists the streams: %w", err)
	}
	var records int64
	for _, s := range ref.Streams {
		records += int64(s.LastSeq)
	}
	r.log.Info("catch-up: restarting a site with an empty disk", "site", base, "log_records", records)

	start := time.Now()
	var readyAt time.Time
	var restartErr error
	restarted := make(chan struct{})
	rctx, cancelRestart := context.WithCancel(ctx)
	defer cancelRestart()
	go func() {
		defer close(restarted)
		restartErr = ctl.Restart(rctx, i)
		readyAt = time.Now()
	}()
	var caughtAt time.Time
	var entries int64
	why := "no answer yet"
	pollCtx, cancelPoll := context.WithTimeout(ctx, 10*time.Minute)
	err = poll(pollCtx, 50*time.Millisecond, func() bool {
		select {
		case <-restarted:
			if restartErr != nil {
				return true
			}
		default:
		}
		st, err := r.net.status(pollCtx, base)
		if err != nil {
			why = err.Error()
			return false
		}
		if why = lag(st, ref); why == "" {
			caughtAt, entries = time.Now(), int64(st.EntriesApplied)
			return true
		}
		return false
	})
	cancelPoll()
	if err != nil {
		cancelRestart()
	}
	<-restarted
	if restartErr != nil {
		return nil, fmt.Errorf("bench: catch-up: restarting %s: %w", base, restartErr)
	}
	if err != nil {
		return nil, fmt.Errorf("bench: catch-up: %s did not catch up (%s): %w", base, why, err)
	}
	res := &catchupResult{site: base, records: records, entries: entries, total: caughtAt.Sub(start), ready: readyAt.Sub(start)}
	// The rate counts from the restart, not from the first applied entry:
	// the returning site's JetStream replica must catch up too, and the
	// apply itself is often over within one 50 ms poll, which would make
	// a rate over the apply window alone meaningless.
	if res.total > 0 {
		res.perSec = float64(entries) / res.total.Seconds()
	}
	r.log.Info("catch-up done", "site", base, "ready", res.ready.Round(time.Millisecond),
		"caught_up", res.total.Round(time.Millisecond), "records", records, "entries", entries,
		"entries_per_sec", int(res.perSec))
	return res, nil
}
