// Package view owns a site's read models, materialized by applying the
// replicated log in order: the model in memory (users, sessions, rooms,
// members, read markers, each room's newest message and dedupe window),
// which queries answer from first, and the SQLite store written behind it
// (history's index, sync's events, the audit trail), which it is the only
// package to touch.
//
// The applier applies each batch of records to the model under its lock,
// and hands the store writer what changed; the writer commits many batches
// in one transaction together with the log positions they reach, so the
// store is always exactly "the log up to these positions" and a restart
// resumes from there. A missing, corrupt or outdated database is deleted
// and rebuilt from the log at start. Room rules (who is a member, which
// client message ids were already used) are enforced here,
// deterministically, so every site reaches the same state from the same
// log.
package view

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite" // registers the "sqlite" driver
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// Source is the log a view applies: the streams there are, an ordered
// tail of each, and the entries at given positions (message texts are read
// from the log, not copied into the store). *jsstore.Store implements it.
type Source interface {
	Streams() []string
	Tail(ctx context.Context, stream string, from uint64, deliver func(jsstore.Entry) bool)
	Fetch(ctx context.Context, stream string, positions []uint64) (map[uint64]salamander.Record, error)
	// Standbys are the partitions' standby streams, whose messages are
	// held until a merge record in the partition places them.
	Standbys() []string
}

var _ Source = (*jsstore.Store)(nil)

// Emitted is a client event produced by applying a record, with the users
// it concerns. The gateway pushes it to those users' connected devices.
type Emitted struct {
	Event    salamander.Event
	Audience []string
	// Broadcast events (incidents, drains) are for every connected device.
	Broadcast bool
}

// View is one site's read model: the in-memory model every request
// answers from first, and the SQLite store written behind it.
type View struct {
	path string
	log  *slog.Logger
	w    *sql.DB // the writer's single connection
	r    *sql.DB // readers
	// own is the applier's reader for what it reads while it holds the
	// model's lock (a room's dedupe window, when preloadWindows could
	// not): a connection of its own, since queries hold readers' (Sync
	// holds one for its transaction) while they wait for the lock.
	own *sql.DB
	st  *statements
	// rd are the readers' queries, prepared once (readStatements).
	rd *readStatements

	// mu guards the model and everything below. The applier holds it for
	// writing while it applies a batch; requests hold it for reading.
	mu sync.RWMutex
	m  *model
	// applied is how far the model has applied each stream; dbApplied how
	// far the store has. Requests that read the store wait until it has
	// caught up with the model as it was when they started.
	applied   map[string]uint64
	dbApplied map[string]uint64
	// heldEnd is how far the model has read each partition's standby
	// stream: the held messages after applied[standby] (the last one
	// placed, which the store keeps) wait in the model until a merge
	// record places them.
	heldEnd    map[string]uint64
	advanced   chan struct{} // closed and replaced after every applied batch
	dbAdvanced chan struct{} // closed and replaced after every store commit
	// hurry asks the writer to commit now: a query waits for the store.
	hurry chan struct{}
	// pace is how long the writer gathers while nobody waits (writerPace).
	pace      time.Duration
	listeners []func([]Emitted)
	// sessionListeners are told of users whose sessions a batch ended
	// (OnSessionsEnded).
	sessionListeners []func(users []string)
	// entries counts the log entries applied since the view was opened.
	entries atomic.Uint64
	// windowStats is the dedupe windows in memory as of the last batch,
	// for metrics (Windows), which do not take the model's lock.
	windowStats atomic.Pointer[WindowStats]
	// windowIdle is how long a room's window stays in memory unused
	// (WindowIdle; tests shorten it), and now the applier's clock.
	windowIdle time.Duration
	// sessionTTL is how long session tokens are valid (0: SessionTTL);
	// storePruned is when the store last forgot expired logouts, and
	// storePruneDue says that memory forgot some since.
	sessionTTL    time.Duration
	storePruned   time.Time
	storePruneDue bool
	now           func() time.Time
	// idleChanged tells Run that windowIdle changed.
	idleChanged chan struct{}
	// src is the log, once Run has started: where message texts are read.
	src Source
	// parts is the log's partition count, once Run has started (0
	// before): the applier checks room creations against it.
	parts int
	// storeFailure is the store writer's run of failed writes (nil while
	// its last write succeeded): see StoreFailing.
	storeFailure atomic.Pointer[storeFailure]
}

type storeFailure struct {
	since time.Time
	err   error
}

// Open opens the read model at path, rebuilding it from scratch if it is
// missing, corrupt, not a read model or of another schema version. One
// that cannot be opened for a reason outside it (no file descriptor or
// memory left, a full or failing disk, a lock held elsewhere) is kept as
// it is, and Open fails: the next start finds it where it was.
func Open(path string, logger *slog.Logger) (*View, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("system", "view")
	v, err := open(path, log)
	if err != nil && notItsFault(err) {
		return nil, fmt.Errorf("view: cannot open the read model %s now (kept as it is): %w", path, err)
	}
	if err != nil {
		log.Warn("read model unusable; rebuilding from the log", "path", path, "err", err)
		for _, suffix := range []string{"", "-wal", "-shm"} {
			if rmErr := os.Remove(path + suffix); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				return nil, fmt.Errorf("view: remove %s: %w", path+suffix, rmErr)
			}
		}
		v, err = open(path, log)
		if err != nil {
			return nil, err
		}
	}
	return v, nil
}

// notItsFault says whether err, from opening a read model, is SQLite's
// answer about the circumstances rather than about the database: deleting
// it for those would turn a moment's shortage (a full disk, no file
// descriptor left) into a rebuild from the whole log — and of the own
// copy of the log with it — read from the other sites.
func notItsFault(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	switch se.Code() & 0xff { // the primary code, without the extended part
	case sqlite3.SQLITE_PERM, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_READONLY,
		sqlite3.SQLITE_INTERRUPT, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
		return true
	}
	return false
}

func open(path string, log *slog.Logger) (*View, error) {
	// A 64 MiB page cache and memory-mapped reads keep the indexes the
	// writer updates in memory instead of re-reading them page by page;
	// checkpoints every 8,192 WAL pages (32 MiB) instead of 1,000 copy hot
	// pages into the database file less often.
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)" +
		"&_pragma=cache_size(-65536)&_pragma=mmap_size(268435456)&_pragma=wal_autocheckpoint(8192)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("view: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	v := &View{path: path, log: log, w: w, advanced: make(chan struct{}), dbAdvanced: make(chan struct{}),
		hurry: make(chan struct{}, 1), pace: writerPace, windowIdle: WindowIdle, now: time.Now,
		idleChanged: make(chan struct{}, 1)}
	if err := v.init(); err != nil {
		w.Close()
		return nil, err
	}
	if v.st, err = prepare(w); err != nil {
		w.Close()
		return nil, err
	}
	readers := func(n int) (*sql.DB, error) {
		r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)&_pragma=mmap_size(268435456)")
		if err != nil {
			return nil, fmt.Errorf("view: open reader %s: %w", path, err)
		}
		// Kept open, all of them: a reader opened again after a burst
		// (database/sql keeps two idle by default) reads the schema and
		// prepares its statements anew, ~1.7 ms, on a request's path.
		r.SetMaxOpenConns(n)
		r.SetMaxIdleConns(n)
		return r, nil
	}
	if v.r, err = readers(8); err != nil {
		w.Close()
		return nil, err
	}
	if v.own, err = readers(1); err != nil {
		v.r.Close()
		w.Close()
		return nil, err
	}
	if v.rd, err = prepareReads(v.r); err != nil {
		v.st.close()
		v.r.Close()
		v.own.Close()
		w.Close()
		return nil, err
	}
	return v, nil
}

func (v *View) init() error {
	var check string
	if err := v.w.QueryRow("PRAGMA quick_check").Scan(&check); err != nil {
		return fmt.Errorf("view: integrity check: %w", err)
	}
	if check != "ok" {
		return fmt.Errorf("view: integrity check: %s", check)
	}
	var version int
	if err := v.w.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("view: read schema version: %w", err)
	}
	switch version {
	case 0:
		if _, err := v.w.Exec(schema + opsSchema); err != nil {
			return fmt.Errorf("view: create schema: %w", err)
		}
		if _, err := v.w.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("view: set schema version: %w", err)
		}
	case schemaVersion:
	default:
		return fmt.Errorf("view: schema version %d, want %d", version, schemaVersion)
	}
	return v.load()
}

// Close closes the database. Run must have returned.
func (v *View) Close() error {
	v.st.close()
	v.rd.close()
	return errors.Join(v.r.Close(), v.own.Close(), v.w.Close())
}

// Path is the database file.
func (v *View) Path() string { return v.path }

// OnApply registers fn to be called, in order, with the client events of
// every batch the model applies (before the store commits it). Register
// before Run; fn must not block for long.
func (v *View) OnApply(fn func([]Emitted)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.listeners = append(v.listeners, fn)
}

// OnSessionsEnded registers fn to be called, after each batch the model
// applies, with the users some of whose sessions it ended: a session
// logged out or revoked, all of a user's revoked, an account suspended
// (a user may be named more than once). Their open WebSockets re-check
// their sessions at once, rather than at their next periodic check.
// Register before Run; fn must not block for long.
func (v *View) OnSessionsEnded(fn func(users []string)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sessionListeners = append(v.sessionListeners, fn)
}

// Applied returns a copy of the applied position of every stream.
func (v *View) Applied() map[string]uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return maps.Clone(v.applied)
}

// AppliedOf returns how far stream is applied (Applied's entry for it,
// without copying the rest).
func (v *View) AppliedOf(stream string) uint64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.applied[stream]
}

// WindowStats describes the rooms' dedupe windows a site holds in memory.
type WindowStats struct {
	Windows int // rooms whose window is in memory
	Bytes   int // what their arrays take
	// Loads counts windows read from the store since the view was opened
	// (a room's first message after a start, or after WindowIdle unused);
	// Evictions counts windows dropped from memory after WindowIdle.
	Loads, Evictions uint64
}

// Windows returns the dedupe windows in memory as of the last applied
// batch.
func (v *View) Windows() WindowStats {
	if st := v.windowStats.Load(); st != nil {
		return *st
	}
	return WindowStats{}
}

// SetWindowIdle sets how long a room's dedupe window stays in memory
// after the room's last message (default WindowIdle).
func (v *View) SetWindowIdle(d time.Duration) {
	v.mu.Lock()
	v.windowIdle = d
	v.mu.Unlock()
	select {
	case v.idleChanged <- struct{}{}:
	default: // Run looks already, or is not running
	}
}

// sweepEvery is how often Run looks for idle windows: every
// windowSweepEvery, or every idle time if that is shorter (not more
// often than every 100 ms).
func (v *View) sweepEvery() time.Duration {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return min(windowSweepEvery, max(v.windowIdle, 100*time.Millisecond))
}

// publishWindows makes the windows' figures what Windows returns; the
// caller holds v.mu.
func (v *View) publishWindows() {
	w := &v.m.windows
	v.windowStats.Store(&WindowStats{Windows: w.count, Bytes: w.bytes, Loads: w.loads, Evictions: w.evictions})
}

// evictIdleWindows drops from memory the dedupe windows of rooms without
// a message for windowIdle, once the store holds their newest message. It
// keeps those of rooms a standby holds messages of: which of them are
// placed already is told by their rooms' windows (model.placed). A site
// catching up from an empty disk holds the history's held messages until
// it reaches their merges: the other rooms' windows must still go.
func (v *View) evictIdleWindows() {
	v.mu.Lock()
	defer v.mu.Unlock()
	var holding map[*roomState]bool
	for _, h := range v.m.held {
		for _, hm := range h {
			if rs := v.m.rooms[hm.rec.Room]; rs != nil {
				if holding == nil {
					holding = map[*roomState]bool{}
				}
				holding[rs] = true
			}
		}
	}
	v.m.windows.evictIdle(v.now().Add(-v.windowIdle), func(s string) uint64 { return v.dbApplied[s] },
		func(rs *roomState) bool { return holding[rs] }, maxWindowVisits, maxEvictionsPerSweep)
	v.publishWindows()
}

// SessionTTL is how long a session token is valid unless SetSessionTTL
// says otherwise: gateway.DefaultConfig's TokenTTL.
const SessionTTL = 30 * 24 * time.Hour

// revocationSlack is how long a revocation is kept past its token's
// expiry: for clocks that disagree (the record's time is its gateway's).
const revocationSlack = 24 * time.Hour

// maxRevocationsPruned bounds the revocations one sweep forgets, and so
// the time it holds the model's lock.
const maxRevocationsPruned = 10000

// SetSessionTTL says how long the gateways' session tokens are valid: a
// logout is remembered until its token has expired.
func (v *View) SetSessionTTL(d time.Duration) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.sessionTTL = d
}

// revokedCutoff is the time (unix ns) before which a logout's token has
// expired, whoever signed it.
func (v *View) revokedCutoff() int64 {
	ttl := v.sessionTTL
	if ttl <= 0 {
		ttl = SessionTTL
	}
	return v.now().Add(-ttl - revocationSlack).UnixNano()
}

// storePruneEvery is how often the store forgets expired logouts (a scan
// of its revocations: they are not indexed by time).
const storePruneEvery = time.Hour

// pruneRevoked forgets the logouts whose tokens have expired, and returns
// the cutoff the store should forget them by too (0: not now), at most
// every storePruneEvery. Each logout would otherwise stay in every site's
// memory and store for good.
func (v *View) pruneRevoked() int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	cutoff := v.revokedCutoff()
	if v.m.pruneRevoked(cutoff, maxRevocationsPruned) > 0 {
		v.storePruneDue = true
	}
	if !v.storePruneDue || v.now().Sub(v.storePruned) < storePruneEvery {
		return 0
	}
	v.storePruneDue, v.storePruned = false, v.now()
	return cutoff
}

// EntriesApplied is how many log entries (messages, read markers and every
// other record) the model has applied since this process opened it: the
// measure of a catch-up's pace, since one record may carry many entries.
func (v *View) EntriesApplied() uint64 { return v.entries.Load() }

// CurrentKey is the session-signing key new tokens are signed with; ok is
// false until the record that creates the first key has been applied.
func (v *View) CurrentKey() (k SigningKey, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if p := v.m.keys[v.m.current]; p != nil {
		return *p, true
	}
	return SigningKey{}, false
}

// KeyByID is the session-signing key with id, current or retired.
func (v *View) KeyByID(id string) (k SigningKey, ok bool) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if p := v.m.keys[id]; p != nil {
		return *p, true
	}
	return SigningKey{}, false
}

// LogIdentity returns what the read model recorded of the log it applies
// (see jsstore.Identity): "cluster" and "created:STREAM" keys; empty for a
// read model that has recorded nothing yet.
func (v *View) LogIdentity() (map[string]string, error) {
	rows, err := v.w.Query(`SELECT k, v FROM log_identity`)
	if err != nil {
		return nil, fmt.Errorf("view: log identity: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var k, val string
		if err := rows.Scan(&k, &val); err != nil {
			return nil, fmt.Errorf("view: log identity: %w", err)
		}
		out[k] = val
	}
	return out, rows.Err()
}

// RecordLogIdentity adds to what the read model recorded of its log;
// existing keys keep their values (they are what the model was built from).
func (v *View) RecordLogIdentity(id map[string]string) error {
	tx, err := v.w.Begin()
	if err != nil {
		return fmt.Errorf("view: log identity: %w", err)
	}
	defer tx.Rollback()
	for k, val := range id {
		if _, err := tx.Exec(`INSERT INTO log_identity(k, v) VALUES(?, ?) ON CONFLICT(k) DO NOTHING`, k, val); err != nil {
			return fmt.Errorf("view: log identity: %w", err)
		}
	}
	return tx.Commit()
}

// HasSigningKey reports whether the first signing key has been applied.
func (v *View) HasSigningKey() bool {
	_, ok := v.CurrentKey()
	return ok
}

// WaitApplied blocks until the view has applied the log up to pos, so that
// a query after a write at this site sees the write (read-your-writes). A
// position in a standby stream is "applied" once the model holds the
// message read there (held, see HeldMessage), not once it is placed.
func (v *View) WaitApplied(ctx context.Context, pos salamander.Position) error {
	return v.waitFor(ctx, func() (bool, chan struct{}) {
		return max(v.applied[pos.Stream], v.heldEnd[pos.Stream]) >= pos.Seq, v.advanced
	})
}

var errCatchingUp = salamander.Errorf(salamander.CodeUnavailable, "this site is catching up with the log; try again or another site")

// waitStored blocks until the store holds everything the model had applied
// when it was called, so that a query of the store sees every write this
// site has acknowledged. The store trails the model by up to a second
// (writerPace), less when a query waits.
func (v *View) waitStored(ctx context.Context) error {
	v.mu.RLock()
	want := maps.Clone(v.applied)
	v.mu.RUnlock()
	return v.waitStoredUpTo(ctx, want)
}

// waitStoredUpTo waits until the store holds each stream of want up to
// its position (asking the writer to commit at once).
func (v *View) waitStoredUpTo(ctx context.Context, want map[string]uint64) error {
	if len(want) == 0 {
		return nil
	}
	return v.waitFor(ctx, func() (bool, chan struct{}) {
		for s, seq := range want {
			if v.dbApplied[s] < seq {
				select {
				case v.hurry <- struct{}{}:
				default: // asked already
				}
				return false, v.dbAdvanced
			}
		}
		return true, nil
	})
}

// waitFor calls check under the read lock until it reports done, waiting
// in between on the channel it returns (closed when things move on).
func (v *View) waitFor(ctx context.Context, check func() (bool, chan struct{})) error {
	for {
		v.mu.RLock()
		done, moved := check()
		v.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return errCatchingUp
		case <-moved:
		}
	}
}

// Run applies the log from src until ctx ends: one ordered tail per stream
// feeds the applier, which applies batches of records to the model and
// hands what they change to the store's writer, which commits it behind.
func (v *View) Run(ctx context.Context, src Source) {
	v.mu.Lock()
	v.src, v.parts = src, len(src.Standbys())
	v.mu.Unlock()
	entries := make(chan jsstore.Entry, 8192)
	var wg sync.WaitGroup
	applied := v.Applied()
	// The standbys are read from the last record placed on: what is after
	// it is held, and waits in the model for its merge record.
	for _, s := range append(src.Streams(), src.Standbys()...) {
		wg.Add(1)
		go func(stream string, from uint64) {
			defer wg.Done()
			src.Tail(ctx, stream, from, func(e jsstore.Entry) bool {
				select {
				case entries <- e:
					return true
				case <-ctx.Done():
					return false
				}
			})
		}(s, applied[s]+1)
	}
	defer wg.Wait()
	toStore := make(chan *dbBatch, 256)
	writerDone := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(writerDone)
		v.runWriter(toStore, ctx.Done())
	}()
	defer close(toStore)
	// store hands the writer a batch, or reports that Run must return: a
	// writer that cannot write (a full disk) gives up once the view stops,
	// and the applier must not wait for it then. The batches not handed
	// over are a suffix of what the model applied; the store holds the log
	// up to its positions without them, and the next start applies them
	// again. A writer that can write takes every batch, also while the
	// view stops: a stop does not leave the store behind the events the
	// model emitted (the next start would emit them again).
	store := func(b *dbBatch) bool {
		select {
		case toStore <- b: // blocks when the writer is far behind: back-pressure
			return true
		case <-writerDone:
			return false
		}
	}
	batch := make([]jsstore.Entry, 0, 1024)
	sweep := time.NewTicker(v.sweepEvery())
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sweep.C:
			v.evictIdleWindows()
			if before := v.pruneRevoked(); before != 0 && !store(&dbBatch{reached: map[string]uint64{}, revokedBefore: before}) {
				return
			}
			continue
		case <-v.idleChanged:
			v.evictIdleWindows()
			sweep.Reset(v.sweepEvery())
			continue
		case e := <-entries:
			batch = append(batch[:0], e)
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case e := <-entries:
				batch = append(batch, e)
			default:
				break drain
			}
		}
		v.preloadWindows(batch)
		for {
			b, err := v.applyModel(batch)
			if b != nil && !store(b) {
				return
			}
			if err == nil {
				break
			}
			v.log.Error("apply failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
}

// StoreFailing reports since when the store's writer has failed to write
// (a full disk, a lock held elsewhere) and its last error; the zero time
// while its last write succeeded. Meanwhile the model goes on applying the
// log, but every query of the store waits, and once the writer is far
// behind the applier waits too: the site cannot serve.
func (v *View) StoreFailing() (since time.Time, err error) {
	if f := v.storeFailure.Load(); f != nil {
		return f.since, f.err
	}
	return time.Time{}, nil
}

// runWriter commits what the applier hands it until in is closed and
// drained. It commits everything that arrived meanwhile, every writerPace,
// or sooner (but not within writerMinPace of the last commit) when a query
// waits for the store: a commit costs a WAL frame for every page it
// touches however many rows changed it, so when nobody waits, rare big
// commits write far fewer bytes than frequent small ones. Nothing on the
// send path waits for the store.
//
// A failing write is retried until it succeeds, or, once stop is closed,
// given up with everything after it: the store then holds a prefix of the
// log, as after a crash, and the next start applies the rest again.
func (v *View) runWriter(in <-chan *dbBatch, stop <-chan struct{}) {
	const maxPerTx = 4096
	last := time.Now()
	for b := range in {
		pending := []*dbBatch{b}
		closed := false
		wait := time.NewTimer(max(0, v.pace-time.Since(last)))
	more:
		for len(pending) < maxPerTx {
			select {
			case b, ok := <-in:
				if !ok {
					closed = true
					break more
				}
				pending = append(pending, b)
			case <-v.hurry:
				wait.Reset(max(0, writerMinPace-time.Since(last)))
			case <-wait.C:
				break more
			}
		}
		wait.Stop()
	drain: // take what is queued now too, without waiting
		for !closed && len(pending) < maxPerTx {
			select {
			case b, ok := <-in:
				if !ok {
					break drain
				}
				pending = append(pending, b)
			default:
				break drain
			}
		}
		for attempt := 0; ; attempt++ {
			err := v.write(pending)
			if err == nil {
				v.storeFailure.Store(nil)
				break
			}
			since := time.Now()
			if f := v.storeFailure.Load(); f != nil {
				since = f.since
			}
			v.storeFailure.Store(&storeFailure{since: since, err: err})
			// The model is ahead of the store; queries of the store wait.
			// A failing disk is retried rather than skipped, so that the
			// store never holds a hole; when the view stops, what is not
			// written is left to the next start (the log has it).
			select {
			case <-stop:
				v.log.Error("writing the read model failed as it stops; the next start applies the rest of the log again",
					"err", err, "attempts", attempt+1)
				return
			default:
			}
			v.log.Error("writing the read model failed; retrying", "err", err, "attempt", attempt)
			select {
			case <-stop:
			case <-time.After(time.Duration(min(attempt+1, 10)) * 100 * time.Millisecond):
			}
		}
		last = time.Now()
	}
}

// writerPace is how long the store's writer gathers changes while no
// query waits for it: a commit writes every page it dirtied, so one commit
// a second writes each busy room's pages a quarter as often as one every
// 250 ms did (BENCHMARKS.md). writerMinPace is the least time between two
// commits (what a query right after a write may wait for, besides the
// commit).
const (
	writerPace    = time.Second
	writerMinPace = 5 * time.Millisecond
)
