// Package view owns a site's read models: the SQLite database that every
// query at this site answers from, materialized by applying the replicated
// log in order. It is the only package that touches that database.
//
// Each batch of records is applied in one transaction together with the
// log positions it reaches, so the model is always exactly "the log up to
// these positions". A missing, corrupt or outdated database is deleted and
// rebuilt from the log at start. Room rules (who is a member, which client
// message ids were already used) are enforced here, deterministically, so
// every site reaches the same state from the same log.
package view

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/jsstore"
)

// schemaVersion changes whenever the schema or the apply rules change; a
// database of another version is rebuilt from the log.
const schemaVersion = 4

// Source is the log a view applies: the streams there are and an ordered
// tail of each. *jsstore.Store implements it.
type Source interface {
	Streams() []string
	Tail(ctx context.Context, stream string, from uint64, deliver func(jsstore.Entry) bool)
}

var _ Source = (*jsstore.Store)(nil)

// Emitted is a client event produced by applying a record, with the users
// it concerns. The gateway pushes it to those users' connected devices.
type Emitted struct {
	Event    salamander.Event
	Audience []string
}

// View is one site's read model.
type View struct {
	path string
	log  *slog.Logger
	w    *sql.DB // the applier's single connection
	r    *sql.DB // readers

	mu        sync.Mutex
	applied   map[string]uint64
	advanced  chan struct{} // closed and replaced after every commit
	listeners []func([]Emitted)
	key       []byte
}

// Open opens the read model at path, rebuilding it from scratch if it is
// missing, unreadable or of another schema version.
func Open(path string, logger *slog.Logger) (*View, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	log := logger.With("system", "view")
	v, err := open(path, log)
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

func open(path string, log *slog.Logger) (*View, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=synchronous(NORMAL)&_txlock=immediate"
	w, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("view: open %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	v := &View{path: path, log: log, w: w, applied: map[string]uint64{}, advanced: make(chan struct{})}
	if err := v.init(); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("view: open reader %s: %w", path, err)
	}
	r.SetMaxOpenConns(8)
	v.r = r
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
		if _, err := v.w.Exec(schema); err != nil {
			return fmt.Errorf("view: create schema: %w", err)
		}
		if _, err := v.w.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("view: set schema version: %w", err)
		}
	case schemaVersion:
	default:
		return fmt.Errorf("view: schema version %d, want %d", version, schemaVersion)
	}
	rows, err := v.w.Query("SELECT stream, seq FROM applied")
	if err != nil {
		return fmt.Errorf("view: read applied positions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s string
		var seq uint64
		if err := rows.Scan(&s, &seq); err != nil {
			return fmt.Errorf("view: read applied positions: %w", err)
		}
		v.applied[s] = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("view: read applied positions: %w", err)
	}
	var key []byte
	err = v.w.QueryRow("SELECT v FROM meta WHERE k = 'signing_key'").Scan(&key)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("view: read signing key: %w", err)
	}
	v.key = key
	return nil
}

const schema = `
CREATE TABLE applied(stream TEXT PRIMARY KEY, seq INTEGER NOT NULL);
CREATE TABLE meta(k TEXT PRIMARY KEY, v BLOB);
CREATE TABLE users(name TEXT PRIMARY KEY, display_name TEXT NOT NULL, status TEXT NOT NULL DEFAULT '',
  password_hash TEXT NOT NULL, created_at INTEGER NOT NULL, revoked_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE revoked_sessions(sid TEXT PRIMARY KEY, user TEXT NOT NULL, at INTEGER NOT NULL);
CREATE TABLE friends(user TEXT NOT NULL, friend TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY(user, friend));
CREATE INDEX friends_rev ON friends(friend);
CREATE TABLE rooms(id TEXT PRIMARY KEY, kind TEXT NOT NULL, name TEXT NOT NULL, created_at INTEGER NOT NULL,
  last_seq INTEGER NOT NULL DEFAULT 0);
CREATE TABLE members(room TEXT NOT NULL, user TEXT NOT NULL, read_seq INTEGER NOT NULL DEFAULT 0,
  joined_at INTEGER NOT NULL, PRIMARY KEY(room, user));
CREATE INDEX members_user ON members(user);
CREATE TABLE messages(room TEXT NOT NULL, seq INTEGER NOT NULL, sender TEXT NOT NULL, client_id TEXT NOT NULL,
  text TEXT NOT NULL, sent_at INTEGER NOT NULL, stream TEXT NOT NULL, stream_seq INTEGER NOT NULL,
  PRIMARY KEY(room, seq), UNIQUE(room, sender, client_id));
CREATE UNIQUE INDEX messages_pos ON messages(stream, stream_seq);
CREATE TABLE events(stream TEXT NOT NULL, seq INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY(stream, seq));
-- Who an event concerns, fixed when it is applied: the same set live
-- delivery pushes it to, so sync and live never disagree.
CREATE TABLE event_audience(user TEXT NOT NULL, stream TEXT NOT NULL, seq INTEGER NOT NULL,
  PRIMARY KEY(user, stream, seq)) WITHOUT ROWID;
`

// Close closes the database. Run must have returned.
func (v *View) Close() error {
	return errors.Join(v.r.Close(), v.w.Close())
}

// Path is the database file.
func (v *View) Path() string { return v.path }

// OnApply registers fn to be called, in order, with the client events of
// every committed batch. Register before Run; fn must not block for long.
func (v *View) OnApply(fn func([]Emitted)) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.listeners = append(v.listeners, fn)
}

// Applied returns a copy of the applied position of every stream.
func (v *View) Applied() map[string]uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make(map[string]uint64, len(v.applied))
	for k, s := range v.applied {
		out[k] = s
	}
	return out
}

// SigningKey is the cluster's session-signing key, or nil until the record
// that creates it has been applied.
func (v *View) SigningKey() []byte {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.key
}

// WaitApplied blocks until the view has applied the log up to pos, so that
// a query after a write at this site sees the write (read-your-writes).
func (v *View) WaitApplied(ctx context.Context, pos salamander.Position) error {
	for {
		v.mu.Lock()
		done := v.applied[pos.Stream] >= pos.Seq
		ch := v.advanced
		v.mu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return salamander.Errorf(salamander.CodeUnavailable, "this site is catching up with the log; try again or another site")
		case <-ch:
		}
	}
}

// Run applies the log from src until ctx ends: one ordered tail per stream
// feeding one applier, which commits batches of records with their positions.
func (v *View) Run(ctx context.Context, src Source) {
	entries := make(chan jsstore.Entry, 4096)
	var wg sync.WaitGroup
	applied := v.Applied()
	for _, s := range src.Streams() {
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
	batch := make([]jsstore.Entry, 0, 512)
	for {
		select {
		case <-ctx.Done():
			return
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
		for {
			err := v.applyBatch(batch)
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
