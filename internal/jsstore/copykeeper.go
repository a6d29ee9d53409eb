package jsstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Keeping the own copy growing after a write error.
//
// A write the disk refuses (full, or a file past a size limit) stops a
// copy from growing (ownCopy.fail): what it holds whole stays readable,
// and newer records are read from the replicas. Its tail's keeper then
// tries again now and then (copyRetryMin, doubling up to copyRetryMax):
// it cuts the copy back to the records it holds whole, reads the ones it
// missed from the log into it, in order, up to the tail's newest, and
// writes them out. It does so in a goroutine of its own, so that the tail
// goes on applying new records meanwhile (they are left out of the copy
// until it has caught up: it only ever takes the next record in
// sequence, so it never has a hole). The stop is logged once and the
// resumption once; an attempt that fails is logged at debug level.

// copyRetryMin and copyRetryMax bound the wait before another attempt to
// resume a copy that stopped growing.
const (
	copyRetryMin = time.Second
	copyRetryMax = 30 * time.Second
)

// copyKeeper keeps one tail's own copy growing.
type copyKeeper struct {
	s      *Store
	stream string
	c      *ownCopy
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// tail is the sequence of the newest record the tail handed the copy.
	tail atomic.Uint64
	// down is set while the copy does not grow (logged and counted once).
	down atomic.Bool
	// filling is set while a fill runs; retryAt (Unix nanoseconds) is
	// when the next may start, backoff the wait after the last failure.
	filling atomic.Bool
	retryAt atomic.Int64
	backoff time.Duration // the fill's goroutine only
}

func newCopyKeeper(ctx context.Context, s *Store, stream string, c *ownCopy) *copyKeeper {
	k := &copyKeeper{s: s, stream: stream, c: c}
	k.ctx, k.cancel = context.WithCancel(ctx)
	return k
}

// add hands the copy the record at seq, from the tail; a copy that does not
// need it (it is behind, or stopped) leaves it out.
func (k *copyKeeper) add(seq uint64, data []byte) {
	// Noted before the add: a fill that ends when the copy has caught up
	// with k.tail sees this record either taken or still due.
	k.tail.Store(seq)
	err := k.c.add(seq, data)
	if err == nil && !k.down.Load() {
		return
	}
	if err != nil && !errors.Is(err, errCopyClosed) {
		k.stopped(err)
	}
	k.check()
}

// check starts a fill when the copy lacks a record the tail handed it (it
// stopped growing, or a fill ended early) and the time for one has come.
func (k *copyKeeper) check() {
	if k.filling.Load() {
		return
	}
	next, err := k.c.state()
	switch {
	case errors.Is(err, errCopyClosed):
		return
	case err != nil:
		k.stopped(err) // a read's flush may have failed
	case next > k.tail.Load():
		return // it grows with the tail
	}
	if time.Now().UnixNano() < k.retryAt.Load() || k.ctx.Err() != nil {
		return
	}
	k.filling.Store(true)
	k.wg.Add(1)
	go func() {
		defer k.wg.Done()
		k.fill()
	}()
}

// stopped notes that the copy stopped growing.
func (k *copyKeeper) stopped(err error) {
	if !k.down.CompareAndSwap(false, true) {
		return
	}
	k.retryAt.Store(time.Now().Add(copyRetryMin).UnixNano())
	k.s.copyStops.Add(1)
	k.s.copiesDown.Add(1)
	k.s.log.Error("this site's own copy of the log stopped growing; reading newer records from the replicas, "+
		"and trying again", "stream", k.stream, "err", err, "retry_every_max", copyRetryMax)
}

// fill resumes the copy and fills it up to the tail, then schedules the
// next attempt if that failed.
func (k *copyKeeper) fill() {
	defer k.filling.Store(false)
	n, err := k.refill()
	if err == nil {
		k.backoff = 0
		k.retryAt.Store(0)
		if k.down.CompareAndSwap(true, false) {
			k.s.copiesDown.Add(-1)
			k.s.log.Info("this site's own copy of the log is growing again", "stream", k.stream,
				"records_filled", n)
		}
		return
	}
	if k.ctx.Err() != nil {
		return
	}
	k.backoff = min(max(2*k.backoff, copyRetryMin), copyRetryMax)
	k.retryAt.Store(time.Now().Add(k.backoff).UnixNano())
	k.s.log.Debug("this site's own copy of the log cannot grow yet", "stream", k.stream, "err", err,
		"retry_in", k.backoff)
	if !errors.Is(err, errCopyClosed) && !k.down.Load() {
		k.stopped(err)
	}
}

// refill resumes the copy, adds the records it lacks up to the tail's
// newest from the log, and writes them out. It returns how many it added.
func (k *copyKeeper) refill() (int, error) {
	if err := k.c.resume(); err != nil {
		return 0, err
	}
	replies := make(chan *nats.Msg, tailBatch+8)
	inbox := k.s.nc.NewRespInbox()
	sub, err := k.s.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return 0, err
	}
	defer sub.Unsubscribe()
	added, reqID := 0, 0
	backoff := 20 * time.Millisecond
	for {
		next, err := k.c.state()
		if err != nil {
			return added, err
		}
		if next > k.tail.Load() {
			break
		}
		n, _, err := k.s.directBatch(k.ctx, k.stream, inbox, replies, &reqID, next, func(seq uint64, data []byte) error {
			if err := k.c.add(seq, data); err != nil {
				return err
			}
			added++
			return nil
		})
		switch {
		case k.ctx.Err() != nil:
			return added, k.ctx.Err()
		case n > 0 && err == nil:
			backoff = 20 * time.Millisecond
			continue
		case err != nil:
			if _, serr := k.c.state(); serr != nil {
				return added, serr
			}
		}
		// The replica asked has not got the records yet, or did not answer.
		sleepCtx(k.ctx, jitter(backoff))
		backoff = min(backoff*2, 200*time.Millisecond)
	}
	return added, k.c.flush()
}

// stop ends a fill in progress and waits for it (the tail ends).
func (k *copyKeeper) stop() {
	k.cancel()
	k.wg.Wait()
	if k.down.Load() {
		k.s.copiesDown.Add(-1)
	}
}
