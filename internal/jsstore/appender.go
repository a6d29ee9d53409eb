package jsstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/salamander-chat/salamander"
)

// Group commit. Every record JetStream stores costs the same fixed work on
// each of the three servers — a Raft log entry (fsynced), a write to the
// stream's file, a commit announcement to every site, a direct get when a
// tail catches up — however small it is. Concurrent batchable appends to one
// stream (messages and read markers) therefore share records: one appender
// per stream keeps one record in flight, and whatever queues up behind it
// goes out together as the next RecBatch record of up to maxBatchEntries
// entries. Under light load a send travels alone, with no
// added delay; under heavy load one replicated write carries many. Each
// entry keeps its own position (see PositionOf), so readers see the same
// log entries either way.
//
// The process's appenders together keep at most recordSlots records in
// flight (see recordSlots): with one record per stream alone, a process
// whose cores are busy would carry as many small records as it has
// streams (three sites × six partitions in `salamander dev`), each paying
// the fixed cost, and every record would wait its turn for CPU anyway.

const (
	// appendWindow is how many records one stream's appender keeps in
	// flight at once. One is measured best here: every record costs three
	// fsyncs (the Raft log on each of three servers) and a Raft round,
	// and with one in flight the next record gathers everything that
	// arrived during the previous one's round trip (p2p, 400 closed-loop
	// senders: 2,905 msg/s with one, 2,248 with two). It also means a
	// record made here is never overtaken by this appender's next, even
	// when it is retried. (A forwarded batch that the gatherer appends
	// late, after its sender's site appended it itself, may land after
	// that site's later records: the read models keep its first copy.)
	appendWindow = 1
	// maxBatchEntries and maxBatchBytes bound one batch record.
	maxBatchEntries = 256
	maxBatchBytes   = 192 << 10
	// slotLease is how long a record in flight holds one of the process's
	// record slots at most. A record that waits longer (its stream has no
	// leader, or the network is slow) goes on without one, so that a
	// stalled partition cannot hold back the others' records.
	slotLease = 100 * time.Millisecond
)

// recordSlots bounds the records this process's appenders have in flight,
// all stores and streams together: by default one per core
// (defaultRecordSlots; SetRecordSlots changes it). What a record costs is
// mostly fixed (a Raft entry and three fsyncs, three commit announcements,
// three tails' and store batches' work), so while the cores are busy,
// fewer and larger records carry more messages per second: measured here
// (p2p, 400 closed-loop senders, `salamander dev` on two cores), two per
// core made records grow from ~11 to ~21 entries and throughput by 15–40 %
// over no bound; since one gatherer per partition (forward.go), one per
// core did better again: records of 43 entries instead of 32, ahead in
// every pair (see BENCHMARKS.md, "One record slot per core"). A process
// that is not busy never waits for a slot: its records go out as soon as
// they are gathered. It is per process, not per store, because the cores
// are: `salamander dev` runs three sites in one.
//
// A gateway of an external cluster (`serve --nats`) holds no NATS server:
// the records it keeps in flight cost the cluster's servers, which its own
// cores say nothing about, and every gateway of every site keeps its own.
// Its operator may bound them with SetRecordSlots (BENCHMARKS.md, "Record
// slots on the production layout").
var recordSlots atomic.Pointer[chan struct{}]

func init() { _ = SetRecordSlots(defaultRecordSlots()) }

// currentSlots is the process's record slots now.
func currentSlots() chan struct{} { return *recordSlots.Load() }

// defaultRecordSlots is the process's record slots unless SetRecordSlots
// says otherwise: one per core.
func defaultRecordSlots() int { return runtime.GOMAXPROCS(0) }

// MaxRecordSlots bounds SetRecordSlots.
const MaxRecordSlots = 1024

// SetRecordSlots sets how many records this process's appenders may have
// in flight together (1–MaxRecordSlots). Call it before opening a Store:
// a slot taken before is given back to the old bound.
func SetRecordSlots(n int) error {
	if n < 1 || n > MaxRecordSlots {
		return fmt.Errorf("jsstore: record slots must be 1-%d", MaxRecordSlots)
	}
	c := make(chan struct{}, n)
	recordSlots.Store(&c)
	return nil
}

// takeRecordSlot waits for one of the process's record slots and returns
// the function that gives it back; the slot also comes back by itself
// after slotLease. ok is false if ctx ended first.
func takeRecordSlot(ctx context.Context) (release func(), ok bool) {
	held := currentSlots()
	select {
	case held <- struct{}{}:
	case <-ctx.Done():
		return nil, false
	}
	var once sync.Once
	give := func() { once.Do(func() { <-held }) }
	lease := time.AfterFunc(slotLease, give)
	return func() { lease.Stop(); give() }, true
}

// appendRequest is one batchable append waiting for its record.
type appendRequest struct {
	typ   salamander.RecordType
	key   string
	msgID string
	body  []byte
	done  chan appendResult // buffered: the appender never blocks on it
	// forwarded: another site's, taken by this site's gatherer (forward.go).
	forwarded bool
	// expires, for a forwarded request, is when its site has stopped
	// waiting for the answer and stores it itself (see expired).
	expires time.Time
}

type appendResult struct {
	pos salamander.Position
	dup bool
	err error
}

// appender batches one stream's appends.
type appender struct {
	s      *Store
	stream string
	in     chan *appendRequest
	// holds: a partition's messages may be held in its standby.
	holds bool
	// ran is closed once run has returned, every record it took answered.
	ran chan struct{}
}

// appender returns stream's appender, starting it on first use. Close
// stops it.
func (s *Store) appender(stream string) *appender {
	s.appMu.Lock()
	defer s.appMu.Unlock()
	if a := s.appenders[stream]; a != nil {
		return a
	}
	if s.appenders == nil {
		s.appenders = map[string]*appender{}
	}
	a := &appender{s: s, stream: stream, in: make(chan *appendRequest, 4*maxBatchEntries),
		holds: isPartition(stream) && s.cfg.HoldAfter > 0, ran: make(chan struct{})}
	s.appenders[stream] = a
	if s.appCtx.Err() != nil {
		// Closed (Close cancels under appMu, so that no appender starts
		// once it waits for them): whoever queues here is answered
		// unavailable (await).
		close(a.ran)
		return a
	}
	s.appWG.Add(1)
	go func() {
		defer s.appWG.Done()
		defer close(a.ran)
		a.run(s.appCtx)
	}()
	return a
}

// append queues one record and waits for its position. If ctx ends first
// the record may still be stored, as with any append whose answer is lost.
func (a *appender) append(ctx context.Context, key string, rec salamander.Record, msgID string) (salamander.Position, bool, error) {
	body, err := salamander.EncodeRecord(&rec)
	if err != nil {
		return salamander.Position{}, false, fmt.Errorf("jsstore: encode %s: %w", rec.Type, err)
	}
	req := &appendRequest{typ: rec.Type, key: key, msgID: msgID, body: body, done: make(chan appendResult, 1)}
	select {
	case a.in <- req:
	case <-ctx.Done():
		return salamander.Position{}, false, ctx.Err()
	case <-a.s.appCtx.Done():
		return salamander.Position{}, false, errNoQuorum
	}
	r := a.await(ctx, req)
	return r.pos, r.dup, r.err
}

// await waits for the answer to a request queued to a. When the store
// closes, run answers the records it has in flight and then stops (ran):
// a request it never took is answered unavailable, for its client to
// retry elsewhere.
func (a *appender) await(ctx context.Context, req *appendRequest) appendResult {
	select {
	case r := <-req.done:
		return r
	case <-ctx.Done():
		return appendResult{err: ctx.Err()}
	case <-a.ran:
	}
	select {
	case r := <-req.done:
		return r
	default:
		return appendResult{err: errNoQuorum}
	}
}

// run gathers queued requests into records, appendWindow in flight.
func (a *appender) run(ctx context.Context) {
	slots := make(chan struct{}, appendWindow)
	defer func() {
		for range appendWindow { // wait for the records in flight
			slots <- struct{}{}
		}
	}()
	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		var first *appendRequest
		select {
		case first = <-a.in:
		case <-ctx.Done():
			<-slots
			return
		}
		// Gather only once the process has a slot for the record: what
		// queues while it waits goes out in the same record.
		release, ok := takeRecordSlot(ctx)
		if !ok {
			first.done <- appendResult{err: errNoQuorum}
			<-slots
			return
		}
		batch, size := []*appendRequest{first}, len(first.body)
	gather:
		for len(batch) < maxBatchEntries {
			select {
			case r := <-a.in:
				batch = append(batch, r)
				size += len(r.body)
				if size >= maxBatchBytes {
					break gather
				}
			default:
				break gather
			}
		}
		go func() {
			defer func() { <-slots }()
			defer release()
			a.commit(ctx, batch, release)
		}()
	}
}

// commit appends one record for batch and answers every request in it. A
// partition's batch may be held in its standby instead (standby.go), or
// go to the partition's leader's site, to share its record (forward.go):
// that makes no record here, so the process's record slot is given back
// (release) while it waits for the answer, and taken again if the batch
// is appended here after all. The time the forward waited counts towards
// the batch's HoldAfter: the partition's silence is most often why the
// leader's site did not answer.
func (a *appender) commit(ctx context.Context, batch []*appendRequest, release func()) {
	var waited time.Duration // for a forward's answer
	if len(batch) >= forwardMinBatch && !slices.ContainsFunc(batch, isForwarded) && a.mayForward() {
		if site := a.s.forwardTo(a.stream); site != "" {
			release()
			start := time.Now()
			if res, ok := a.forward(ctx, site, batch); ok {
				a.noteForwardHeld(res)
				answerAll(batch, res)
				return
			}
			waited = time.Since(start)
			var ok bool
			if release, ok = takeRecordSlot(ctx); !ok {
				answerAll(batch, sameResults(len(batch), appendResult{err: errNoQuorum}))
				return
			}
			defer release()
		}
	}
	if a.holds {
		a.commitPartition(ctx, batch, waited)
		return
	}
	answerAll(batch, a.publishBatch(ctx, a.stream, batch))
}

// publishBatch appends batch to stream as one record and returns each
// request's answer.
func (a *appender) publishBatch(ctx context.Context, stream string, batch []*appendRequest) []appendResult {
	out := make([]appendResult, len(batch))
	if len(batch) == 1 {
		r := batch[0]
		seq, dup, err := a.s.publish(ctx, stream, subjectRoot(stream)+"."+r.key, r.body, AppendOptions{MsgID: r.msgID})
		out[0] = appendResult{pos: PositionOf(stream, seq, 0), dup: dup, err: a.mapErr(err)}
		return out
	}
	entries, size := make([][]byte, len(batch)), 0
	for i, r := range batch {
		entries[i] = r.body
		size += len(r.body) + 1
	}
	body := salamander.AppendBatchRecord(make([]byte, 0, size+32), entries)
	// One id for every attempt of this record, so that a retry after a
	// lost ack is recognized as the same record.
	seq, _, err := a.s.publish(ctx, stream, subjectRoot(stream)+".batch", body, AppendOptions{MsgID: "b:" + randomID()})
	for i := range batch {
		out[i] = appendResult{pos: PositionOf(stream, seq, i), err: a.mapErr(err)}
	}
	return out
}

func isForwarded(r *appendRequest) bool { return r.forwarded }

// expired reports whether r is a forwarded request whose site no longer
// waits for its answer (it stores r itself): nobody would hear that it
// was held.
func (r *appendRequest) expired(now time.Time) bool {
	return r.forwarded && now.After(r.expires)
}

func sameResults(n int, r appendResult) []appendResult {
	out := make([]appendResult, n)
	for i := range out {
		out[i] = r
	}
	return out
}

func answerAll(batch []*appendRequest, results []appendResult) {
	for i, r := range results {
		batch[i].done <- r
	}
}

// mapErr turns the store shutting down into "unavailable": the request's
// client resends elsewhere.
func (a *appender) mapErr(err error) error {
	if err != nil && errors.Is(err, context.Canceled) {
		return errNoQuorum
	}
	return err
}

func randomID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
