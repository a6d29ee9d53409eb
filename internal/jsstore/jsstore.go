// Package jsstore owns Salamander's replicated log on NATS JetStream: the
// streams (one for accounts, a fixed number of room partitions), their
// placement (R3, one replica per site), appending records with idempotency
// and optimistic concurrency, and tailing a stream in order from a position
// in a way that survives leader and meta-leader changes.
//
// Streams and KV buckets are created at start-up only, never on the request
// path: the JetStream management API is down for seconds whenever the meta
// leader is lost.
package jsstore

import (
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/secrets"
)

// AccountsStream is the logical name of the accounts stream; room partitions
// are "p0", "p1", …. Logical names appear in client cursors.
const AccountsStream = "acct"

const (
	natsPrefix    = "SAL_"
	clusterBucket = "SAL_CLUSTER"
	partitionsKey = "partitions"
	// clusterIDKey names the cluster: a site's data belongs to one.
	clusterIDKey = "cluster-id"
	// setUpKey is written once every stream of a new cluster exists: from
	// then on a missing stream is a loss to report, never one to create.
	setUpKey = "set-up"
	// standbysKey is written once every partition's standby stream exists.
	standbysKey   = "standbys"
	maxRecordSize = 256 << 10
	// appendAttemptTimeout bounds one publish; a healthy quorum answers in
	// milliseconds even with fsync on every write. A leader that hands its
	// leadership over (the balancing, a drain, a site's restart) drops the
	// proposals it has not sent yet, and their publishes get no answer:
	// they are sent again after this, to the new leader (their msg ids make
	// the retry of one that did land a duplicate). It must stay well under
	// HoldAfter: at 1 s, as long as HoldAfter, every send caught in a
	// handover was held instead (rolling restarts: a ~1 s send and 2-8
	// held messages in 4 of 12 restarts; 0 of 12 at 300 ms, slowest send
	// 0.41 s). A publish slower than this under load is sent again too,
	// and answered "in process" until the first lands, which cost nothing
	// measurable at 1,200 senders (send p99 ~400 ms).
	appendAttemptTimeout = 300 * time.Millisecond
	// errCodeNoMessageFound is JetStream's JSNoMessageFoundErr (a 404 like
	// "stream not found", which is not the same answer).
	errCodeNoMessageFound = 10037
	// errCodeMsgIDInProcess is JetStream's JSStreamDuplicateMessageConflict
	// (10158): a message with this id is being proposed right now.
	errCodeMsgIDInProcess jetstream.ErrorCode = 10158
	// ensureAttemptTimeout bounds one round of stream creation: before the
	// meta leader exists, management requests go unanswered, and a short
	// round lets the next one start soon after it is elected.
	ensureAttemptTimeout = 3 * time.Second
)

// ErrExists is returned by Append when ExpectNew was set and the subject
// already has a record (someone else created it first).
var ErrExists = errors.New("jsstore: subject already has a record")

// ErrStreamMissing is returned when a stream of a cluster that was set up
// is gone (deleted by mistake or malice): it is never re-created empty,
// which would silently lose its records and confuse every site.
var ErrStreamMissing = errors.New("jsstore: a stream of this cluster is missing")

// Config configures a Store. Use DefaultConfig for defaults.
type Config struct {
	// URLs of NATS servers, the site's own first. The connection stays on
	// the first reachable one and fails over to the others.
	URLs []string
	// Name identifies the connection in NATS monitoring.
	Name string
	// Partitions is the number of room partition streams for a new cluster.
	// An existing cluster keeps the number it was created with.
	Partitions int
	// Replicas per stream; 3 = one per site.
	Replicas int
	// DuplicateWindow is how long JetStream remembers message ids for
	// deduplication; the read model dedupes forever behind it.
	DuplicateWindow time.Duration
	// AppendTimeout bounds one append; past it the site is treated as unable
	// to reach a quorum.
	AppendTimeout time.Duration
	// HoldAfter is how long an append of messages to a partition waits for
	// an answer before it is held in the partition's standby (standby.go);
	// 0 never holds.
	HoldAfter time.Duration
	// User and Password are the NATS credential; TLS, when set, encrypts
	// the connection and says which certificates to trust.
	User, Password string
	TLS            *tls.Config
	Logger         *slog.Logger
	// ConfiguredOnly keeps the connection on URLs: servers the cluster
	// announces (other sites' servers) are not added to the ones it
	// reconnects to. For a site on an external cluster (its --nats list
	// is its order of servers) and a connection meant to go through one
	// site's server alone (the drill's admin view of each site).
	ConfiguredOnly bool
	// InProcess, when set, is the NATS server in this very process (a
	// site's embedded one): the store connects to it over an in-memory
	// pipe instead of loopback TCP, and without TLS, as nothing leaves the
	// process. Every record, ack, commit announcement and direct get of
	// the site crosses this connection. URLs still name the server (for
	// logs, reports and the connection's reconnect bookkeeping).
	InProcess nats.InProcessConnProvider
	// Site is the site this store serves; with it the store forwards its
	// gathered batches to the site leading their partition and takes the
	// other sites' (see forward.go, and Gather). Empty: neither (tools,
	// tests).
	Site string
	// SiteOf names the site of a NATS server (nil: ServerSite).
	SiteOf func(server string) string
	// CopyDir holds this site's own copy of the log (see ownCopy): the
	// records its tails applied, read back by Fetch without asking another
	// site. Empty: no copy, Fetch reads from the replicas.
	CopyDir string
}

// DefaultConfig returns the defaults for a three-site deployment.
func DefaultConfig(urls ...string) Config {
	return Config{
		URLs:            urls,
		Name:            "salamander",
		Partitions:      6,
		Replicas:        3,
		DuplicateWindow: 10 * time.Minute,
		AppendTimeout:   7 * time.Second,
		HoldAfter:       holdAfter,
		Logger:          slog.New(slog.DiscardHandler),
	}
}

// AdminConfig is DefaultConfig for a connection named name with the admin
// credential in adminFile, as `salamander admin` connects (its user,
// password and the CA it trusts); it also returns the credential, which
// carries the log key.
func AdminConfig(adminFile, name string, urls ...string) (Config, *secrets.Admin, error) {
	a, err := secrets.LoadAdmin(adminFile)
	if err != nil {
		return Config{}, nil, err
	}
	tc, err := a.ClientTLS()
	if err != nil {
		return Config{}, nil, err
	}
	cfg := DefaultConfig(urls...)
	cfg.Name = name
	cfg.User, cfg.Password, cfg.TLS = a.NATSUser, a.NATSPassword, tc
	return cfg, a, nil
}

// Store is a connection to the replicated log.
type Store struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	// refused counts what the servers refused this connection for want
	// of permission (Refusals).
	refused refusals
	// partitions is the cluster's partition count, known once
	// EnsureStreams has read it; 0 until then.
	partitions atomic.Int32
	clusterID  atomic.Value // string, once EnsureStreams has read it

	stalledMu sync.Mutex
	stalled   map[string]string // stream -> why its tail stopped
	// gapFills counts announcements that arrived ahead of the next record
	// due, so that the tail read the missing ones by direct get.
	gapFills atomic.Int64

	// The appenders (one per stream, started on first use) run until
	// Close cancels appCtx.
	appMu     sync.Mutex
	appenders map[string]*appender
	appCtx    context.Context
	appCancel context.CancelFunc
	appWG     sync.WaitGroup

	// preferHost is the host:port ReconnectTo asked the next reconnect
	// to go to (nil: the usual order).
	preferHost atomic.Pointer[string]

	// sb is what this site knows of each partition's standby (standby.go).
	sbMu sync.Mutex
	sb   map[string]*standbyState

	// apiPaused stops this store's JetStream API requests (stream info,
	// step-downs, message gets) while its site pauses and resumes its
	// embedded server's JetStream (see PauseAPI).
	apiPaused atomic.Bool

	// gather is where this store forwards its batches (forward.go);
	// gatherSub takes the other sites' while gathering is on.
	gather           gatherSites
	gatherMu         sync.Mutex
	gatherSub        *nats.Subscription
	gathering        atomic.Bool
	forwarded        atomic.Int64
	forwardFallbacks atomic.Int64

	// copies are the streams' own copies, opened by their tails (nil: the
	// copy could not be opened; reads go to the replicas).
	copyMu sync.Mutex
	copies map[string]*ownCopy
	// copyStops counts the times a stream's own copy stopped growing
	// after a write error; copiesDown is how many do not grow now
	// (copykeeper.go).
	copyStops, copiesDown atomic.Int64
	// ownReads and replicaReads count the records Fetch read from this
	// site's own copy and from the replicas.
	ownReads, replicaReads atomic.Int64
}

// Entry is one log entry with its position: a record, or one of the
// records a batch record carries.
type Entry struct {
	Pos    salamander.Position
	Record salamander.Record
	// Last is set on the last entry of a stored record: applying it means
	// applying up to End(Pos).
	Last bool
	// Err is set when the stored bytes could not be decoded; the entry still
	// advances the position so that one bad record cannot stall a site.
	Err error
}

// Open connects to NATS. It retries until ctx ends, so a site may start
// before its peers.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("jsstore: no NATS URLs")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	log := cfg.Logger.With("system", "jsstore")
	s := &Store{cfg: cfg, log: log}
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, 100*time.Millisecond),
		nats.PingInterval(2 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(2 * time.Second),
		nats.DontRandomize(),
		nats.RetryOnFailedConnect(true),
		// Nothing is kept to be sent once connected again: nats.go would
		// send it however late, and an append its caller was told had
		// failed (resent elsewhere since, chatted past) would land
		// minutes later — a message twice and out of order, a stale room
		// change over newer ones. A publish fails at once instead, and
		// Append's own retries (within AppendTimeout, under the caller's
		// context) are the only ones.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		// Redacted: a URL may carry a user and password.
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrlRedacted()) }),
		// Refused credentials and permissions arrive here: say so, rather
		// than leave an operator with "disconnected" and a stalled site.
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				s.refused.note(err)
			}
			log.Error("nats refused a request of this connection", "user", cfg.User, "err", err)
		}),
		// And a connection that cannot be made here, a server's
		// certificate refused among them (expired, another CA's, another
		// name): nats.go tells nobody else, and the site would only wait.
		nats.ReconnectErrHandler(connectFailures(log)),
	}
	if cfg.User != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password), nats.CustomInboxPrefix(InboxPrefix(cfg.User)))
	}
	switch {
	case cfg.InProcess != nil:
		opts = append(opts, nats.InProcessServer(cfg.InProcess))
	case cfg.TLS != nil:
		opts = append(opts, nats.Secure(cfg.TLS))
	}
	if cfg.ConfiguredOnly {
		opts = append(opts, nats.IgnoreDiscoveredServers())
	}
	opts = append(opts, nats.ReconnectToServer(s.pickServer))
	urls := cfg.URLs
	if cfg.InProcess != nil {
		// The pipe carries no TLS: a tls:// URL would make the client
		// insist on it.
		urls = make([]string, len(cfg.URLs))
		for i, u := range cfg.URLs {
			if rest, ok := strings.CutPrefix(u, "tls://"); ok {
				u = "nats://" + rest
			}
			urls[i] = u
		}
	}
	nc, err := nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("jsstore: connect %v: %w", RedactURLs(cfg.URLs), err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.AppendTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jsstore: jetstream context: %w", err)
	}
	s.nc, s.js = nc, js
	s.appCtx, s.appCancel = context.WithCancel(context.Background())
	return s, nil
}

// refusals counts the publishes, subscriptions and requests the NATS
// servers refused this connection for want of permission, and keeps the
// last. A gateway whose user's permissions do not match what it uses (a
// server configured for another version, or for fewer partitions than the
// cluster has) is otherwise still connected and ready, and only its
// sends to some rooms, or its presence, fail.
type refusals struct {
	mu    sync.Mutex
	count int64
	last  string
	at    time.Time
}

func (r *refusals) note(err error) {
	r.mu.Lock()
	r.count++
	r.last, r.at = err.Error(), time.Now()
	r.mu.Unlock()
}

// Refusals reports how many publishes, subscriptions and requests the
// servers refused this store's connection for want of permission since it
// opened, and the last refusal (the server's words, naming the subject)
// with its time.
func (s *Store) Refusals() (n int64, last string, at time.Time) {
	s.refused.mu.Lock()
	defer s.refused.mu.Unlock()
	return s.refused.count, s.refused.last, s.refused.at
}

// connectFailures logs why connecting (or reconnecting) failed, each
// reason at most once a minute: attempts repeat every quarter second, to
// every server of the list in turn.
func connectFailures(log *slog.Logger) nats.ConnErrHandler {
	var mu sync.Mutex
	last := map[string]time.Time{}
	return func(_ *nats.Conn, err error) {
		if err == nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		now := time.Now()
		if at, ok := last[err.Error()]; ok && now.Sub(at) < time.Minute {
			return
		}
		if len(last) > 64 {
			clear(last)
		}
		last[err.Error()] = now
		log.Warn("cannot connect to NATS", "err", err)
	}
}

// Close stops the appenders (appends in flight answer unavailable) and
// closes the connection.
func (s *Store) Close() {
	_ = s.Gather(false)
	// Under the locks that start appenders and mergers: none starts once
	// appWG is waited for.
	s.appMu.Lock()
	s.sbMu.Lock()
	s.appCancel()
	s.sbMu.Unlock()
	s.appMu.Unlock()
	s.appWG.Wait()
	s.nc.Close()
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	for stream, c := range s.copies {
		if c != nil {
			if err := c.close(); err != nil {
				s.log.Warn("closing the own copy of the log", "stream", stream, "err", err)
			}
		}
	}
	s.copies = nil
}

// copyOf is stream's own copy, opened the first time it is asked for; nil
// when there is none (no CopyDir, the cluster not known yet, or the file
// could not be opened).
func (s *Store) copyOf(stream string) *ownCopy {
	id, _ := s.clusterID.Load().(string)
	if s.cfg.CopyDir == "" || id == "" {
		return nil
	}
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if c, ok := s.copies[stream]; ok {
		return c
	}
	if s.copies == nil {
		s.copies = map[string]*ownCopy{}
	}
	c, err := openCopy(filepath.Join(s.cfg.CopyDir, id, stream+".log"))
	if err != nil {
		s.log.Error("cannot open this site's own copy of the log; reading from the replicas instead",
			"stream", stream, "err", err)
	}
	s.copies[stream] = c
	return c
}

// Reads counts the records Fetch has read from this site's own copy of the
// log and from the replicas (any site's, as JetStream picks them).
func (s *Store) Reads() (own, replicas int64) { return s.ownReads.Load(), s.replicaReads.Load() }

// OwnCopyStops reports how many times a stream's own copy of the log
// stopped growing after a write error (a full disk), and how many copies
// do not grow now: their newer records are read from the replicas until
// a retry finds the disk writable again.
func (s *Store) OwnCopyStops() (stops, down int64) { return s.copyStops.Load(), s.copiesDown.Load() }

// Conn is the NATS connection, for ephemeral (never stored) subjects such as
// typing and presence.
func (s *Store) Conn() *nats.Conn { return s.nc }

// EnsureStreams creates the cluster's streams if they do not exist and
// learns the partition count. It retries until ctx ends: on a fresh cluster
// the meta leader takes seconds to be elected.
func (s *Store) EnsureStreams(ctx context.Context) error { return s.retryEnsure(ctx, true) }

// UpgradeStreams is EnsureStreams for a tool acting on a cluster that
// exists (the admin CLI): it upgrades the streams an older version
// created and learns the partition count, but creates nothing — a
// missing cluster bucket or stream is reported, never made anew (a
// diagnostic command in a disaster must not set up a new cluster over a
// damaged one).
func (s *Store) UpgradeStreams(ctx context.Context) error { return s.retryEnsure(ctx, false) }

func (s *Store) retryEnsure(ctx context.Context, create bool) error {
	backoff := 50 * time.Millisecond
	// A damaged log or a stream that breaks a guarantee stays so until an
	// operator acts: it is looked at again every half second, but the same
	// error is logged once a minute, not at every look.
	var lastErr string
	var lastLogged time.Time
	for {
		err := s.ensureStreams(ctx, create)
		if errors.Is(err, ErrNoCluster) || !create && errors.Is(err, ErrStreamMissing) {
			return err // waiting will not bring them: only the sites (or a restore) make them
		}
		if errors.Is(err, ErrPartitions) {
			return err // only a restart with the cluster's count helps
		}
		if err == nil {
			return nil
		}
		repeated := err.Error() == lastErr && time.Since(lastLogged) < time.Minute
		if !repeated {
			lastErr, lastLogged = err.Error(), time.Now()
		}
		switch {
		case repeated:
		case errors.Is(err, ErrStreamMissing):
			s.log.Error("the log is damaged; this site will not serve until it is restored", "err", err)
		case errors.Is(err, ErrStreamConfig):
			s.log.Error("refusing to serve on a stream that breaks a guarantee", "err", err)
		default:
			s.log.Info("waiting for the JetStream cluster", "err", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jsstore: ensure streams: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(jitter(backoff)):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

// LearnPartitions reads the cluster's partition count, as EnsureStreams
// does, without asking each stream: for a tool (the admin CLI) that must
// act while some stream elects a leader, when EnsureStreams would wait
// for it. It reads by direct get, which any current replica of the cluster
// bucket answers: after a fire the bucket may itself be electing (a
// CI run saw it leaderless for over 15 s after a site was killed while
// another had just caught up), and the leader-answered stream info that
// opening a bucket takes would wait for that too.
func (s *Store) LearnPartitions(ctx context.Context) error {
	subject := "$JS.API.DIRECT.GET.KV_" + clusterBucket
	req := []byte(`{"last_by_subj":"$KV.` + clusterBucket + "." + partitionsKey + `"}`)
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, time.Second)
		msg, err := s.nc.RequestWithContext(actx, subject, req)
		cancel()
		if err == nil {
			status := msg.Header.Get("Status")
			switch op := msg.Header.Get("KV-Operation"); {
			case status == "404" || op != "":
				// No count, or one deleted: not a cluster this tool can act on.
				return fmt.Errorf("read partition count: %s: no partition count in %s", cmp.Or(op, "not found"), clusterBucket)
			case status != "":
				err = fmt.Errorf("read partition count: status %s %s", status, msg.Header.Get("Description"))
			default:
				n, err := parsePartitions(msg.Data)
				if err != nil {
					return err
				}
				s.partitions.Store(int32(n))
				return nil
			}
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster bucket: %w (last error: %v)", ctx.Err(), last)
		case <-time.After(jitter(200 * time.Millisecond)):
		}
	}
}

// readPartitions reads the partition count the cluster was created with.
func readPartitions(ctx context.Context, kv jetstream.KeyValue) (int, error) {
	e, err := kv.Get(ctx, partitionsKey)
	if err != nil {
		return 0, fmt.Errorf("read partition count: %w", err)
	}
	return parsePartitions(e.Value())
}

// parsePartitions checks a partition count as the cluster bucket holds it.
func parsePartitions(value []byte) (int, error) {
	n, err := strconv.Atoi(string(value))
	if err != nil || n < 1 || n > 1024 {
		return 0, fmt.Errorf("bad partition count %q in %s", value, clusterBucket)
	}
	return n, nil
}

// clusterBucketConfig is the stream of the cluster bucket, a key-value
// bucket whose values are written once. Every gateway may publish to it
// (the first site of a new cluster creates it), so the server itself
// refuses a second value for a key (one record per key, a new one
// discarded: an overwrite, a delete marker) and a rollup or purge that
// would wipe it: a stolen gateway credential cannot give the sites that
// start next another partition count (each room's records would go to
// another stream) or another cluster id (every site would refuse its own
// data).
func clusterBucketConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 "KV_" + clusterBucket,
		Description:          "Salamander cluster-wide settings, fixed at creation",
		Subjects:             []string{"$KV." + clusterBucket + ".>"},
		Storage:              jetstream.FileStorage,
		Replicas:             replicas,
		Retention:            jetstream.LimitsPolicy,
		MaxMsgs:              -1,
		MaxBytes:             -1,
		MaxMsgSize:           -1,
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		Duplicates:           2 * time.Minute,
		AllowDirect:          true,
		DenyDelete:           true,
		DenyPurge:            true,
	}
}

// writtenOnce reports whether a cluster bucket's stream refuses what
// clusterBucketConfig says it must.
func writtenOnce(cfg jetstream.StreamConfig) bool {
	return cfg.MaxMsgsPerSubject == 1 && cfg.Discard == jetstream.DiscardNew && cfg.DiscardNewPerSubject &&
		!cfg.AllowRollup && cfg.DenyPurge && cfg.DenyDelete
}

// ClusterBucketWrittenOnce returns cfg, the settings of a cluster bucket's
// stream, changed to refuse what clusterBucketConfig refuses, and whether
// they did not already: the update that makes a bucket an older version
// created (or a backup taken before 2026-12-02 restored) written-once.
func ClusterBucketWrittenOnce(cfg jetstream.StreamConfig) (jetstream.StreamConfig, bool) {
	if writtenOnce(cfg) {
		return cfg, false
	}
	cfg.MaxMsgsPerSubject, cfg.Discard, cfg.DiscardNewPerSubject = 1, jetstream.DiscardNew, true
	cfg.AllowRollup, cfg.DenyPurge, cfg.DenyDelete = false, true, true
	return cfg, true
}

// fixClusterBucket makes a cluster bucket that an older version created
// (a plain key-value bucket: any value overwritten, rolled up or purged by
// any gateway) written-once. Only the admin credential may change a
// stream, so the admin CLI (create unset) does, and a site says what to
// run instead.
func (s *Store) fixClusterBucket(ctx context.Context, create bool) error {
	st, err := s.js.Stream(ctx, "KV_"+clusterBucket)
	if err != nil {
		return fmt.Errorf("cluster bucket: %w", err)
	}
	cfg, changed := ClusterBucketWrittenOnce(st.CachedInfo().Config)
	if !changed {
		return nil
	}
	if create {
		s.log.Error("the cluster bucket " + clusterBucket + " lets any gateway credential rewrite the partition count " +
			"and the cluster id; run any `salamander admin` command once to make its values fixed (an update only " +
			"the admin credential may make)")
		return nil
	}
	if _, err := s.js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("cluster bucket: make its values fixed: %w", err)
	}
	return nil
}

// ErrNoCluster: UpgradeStreams found no Salamander cluster (no cluster
// bucket, or no partition count or id in it).
var ErrNoCluster = errors.New("no Salamander cluster here")

func (s *Store) ensureStreams(ctx context.Context, create bool) error {
	cctx, cancel := context.WithTimeout(ctx, ensureAttemptTimeout)
	defer cancel()
	kv, err := s.js.KeyValue(cctx, clusterBucket)
	if !create && errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("%w: no %s bucket (restore the cluster from a backup, or start its sites)", ErrNoCluster, clusterBucket)
	}
	if err != nil && create {
		if _, err = s.js.CreateStream(cctx, clusterBucketConfig(s.cfg.Replicas)); err == nil ||
			errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			kv, err = s.js.KeyValue(cctx, clusterBucket)
		}
	}
	if err != nil {
		return fmt.Errorf("cluster bucket: %w", err)
	}
	if err := s.fixClusterBucket(cctx, create); err != nil {
		return err
	}
	if create {
		want := strconv.Itoa(s.cfg.Partitions)
		if _, err := kv.Create(cctx, partitionsKey, []byte(want)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record partition count: %w", err)
		}
		if _, err := kv.Create(cctx, clusterIDKey, []byte(newClusterID())); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("record the cluster id: %w", err)
		}
	}
	id, err := kv.Get(cctx, clusterIDKey)
	if !create && errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: no cluster id in %s", ErrNoCluster, clusterBucket)
	}
	if err != nil {
		return fmt.Errorf("read the cluster id: %w", err)
	}
	_, err = kv.Get(cctx, setUpKey)
	setUp := err == nil
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("read the set-up mark: %w", err)
	}
	n, err := readPartitions(cctx, kv)
	if !create && errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: no partition count in %s", ErrNoCluster, clusterBucket)
	}
	if err != nil {
		return err
	}
	// A site's gateways may append to, create and step down the streams of
	// its configured partition count only (GatewayPermissions).
	if create && n > s.cfg.Partitions {
		return fmt.Errorf("%w: the cluster has %d room partitions, this site is configured for %d; start it with "+
			"--partitions %d (its gateways' NATS permissions name the streams of as many partitions: it could not "+
			"append to the others)", ErrPartitions, n, s.cfg.Partitions, n)
	}
	if create && n < s.cfg.Partitions {
		s.log.Warn("cluster was created with fewer partitions; using the cluster's. Start this site with --partitions "+
			"set to the cluster's: its gateways' NATS permissions name streams the cluster does not have, which a "+
			"stolen gateway credential could create", "configured", s.cfg.Partitions, "cluster", n)
	}
	// The standbys came after the partitions: a cluster set up before them
	// gets them once (and records it), and from then on they are the log's
	// like any stream.
	_, err = kv.Get(cctx, standbysKey)
	standbysSetUp := err == nil
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("read the standbys mark: %w", err)
	}
	for _, name := range append(streamNames(n), standbyNames(n)...) {
		setUp := setUp
		if IsStandby(name) {
			setUp = standbysSetUp
		}
		st, err := s.js.Stream(cctx, natsName(name))
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		if err == nil {
			if err := s.checkStream(name, st.CachedInfo()); err != nil {
				return err
			}
			cfg := st.CachedInfo().Config
			if cfg.RePublish != nil {
				continue // exists; its config is fixed at creation
			}
			// Created by a version that polled for commits: announce them.
			cfg.RePublish = republish(name)
			if _, err := s.js.UpdateStream(cctx, cfg); err != nil {
				return fmt.Errorf("stream %s: announce commits (an update, which only the admin credential may make: "+
					"run any `salamander admin` command once): %w", name, err)
			}
			continue
		}
		if setUp {
			return fmt.Errorf("%w: %s (%s) is gone; restore it from a backup (salamander restore) — it is never "+
				"re-created empty", ErrStreamMissing, name, natsName(name))
		}
		if !create {
			return fmt.Errorf("%w: %s (%s) does not exist yet; the sites create it", ErrStreamMissing, name, natsName(name))
		}
		// Create, never update: a gateway may not reconfigure a stream.
		_, err = s.js.CreateStream(cctx, jetstream.StreamConfig{
			Name:        natsName(name),
			Subjects:    []string{subjectRoot(name) + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    s.cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			MaxMsgSize:  maxRecordSize,
			Duplicates:  s.cfg.DuplicateWindow,
			AllowDirect: true,
			RePublish:   republish(name),
		})
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jsErrSubjectOverlap {
			// For good, unlike what a forming cluster answers: the
			// account holds another stream on the log's subjects.
			other, _ := s.js.StreamNameBySubject(cctx, subjectRoot(name)+".>")
			return fmt.Errorf("%w: stream %s (%s): its subjects %s.> are another stream's (%s) in this NATS "+
				"account, which holds other data; give Salamander an account of its own (or remove that stream)",
				ErrStreamConfig, name, natsName(name), subjectRoot(name), cmp.Or(other, "unknown"))
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	for key, done := range map[string]bool{setUpKey: setUp, standbysKey: standbysSetUp} {
		if done || !create {
			continue
		}
		if _, err := kv.Create(cctx, key, []byte(time.Now().UTC().Format(time.RFC3339))); err != nil &&
			!errors.Is(err, jetstream.ErrKeyExists) {
			return fmt.Errorf("mark the cluster set up (%s): %w", key, err)
		}
	}
	s.clusterID.Store(string(id.Value()))
	s.partitions.Store(int32(n))
	return nil
}

// jsErrSubjectOverlap is JetStream's error code for a stream whose
// subjects another stream of the account already takes.
const jsErrSubjectOverlap jetstream.ErrorCode = 10065

// ErrStreamConfig is returned when a stream exists with settings that
// break a promise: fewer replicas than configured (an acknowledged write
// would not survive the loss of a site), replicas not on distinct
// servers, or no direct gets (a site's reads would need the leader).
var ErrStreamConfig = errors.New("jsstore: a stream's settings break Salamander's guarantees")

// ErrPartitions is returned when the cluster has more room partitions
// than a site is configured for (Config.Partitions).
var ErrPartitions = errors.New("jsstore: more partitions than configured")

// checkStream refuses a stream whose settings break a promise. Streams
// Salamander creates always pass; this catches ones an operator made or
// changed by hand on an external cluster.
func (s *Store) checkStream(name string, info *jetstream.StreamInfo) error {
	cfg := info.Config
	var problems []string
	if cfg.Replicas < s.cfg.Replicas {
		problems = append(problems, fmt.Sprintf("it has %d replica(s), Salamander needs %d (one per site)", cfg.Replicas, s.cfg.Replicas))
	}
	if !cfg.AllowDirect {
		problems = append(problems, "direct gets are off (allow_direct)")
	}
	if cfg.Storage != jetstream.FileStorage {
		problems = append(problems, "it is not on file storage")
	}
	if cfg.Retention != jetstream.LimitsPolicy || cfg.MaxMsgs > 0 || cfg.MaxBytes > 0 || cfg.MaxAge > 0 {
		problems = append(problems, "it may drop records (retention other than limits, or a max msgs/bytes/age)")
	}
	// What else makes the server drop records, or lets a writer make it:
	// every batch record has one subject, so a per-subject limit keeps the
	// newest alone; a rollup is one publish by any credential that may
	// append (a stolen gateway's) purging the stream; a record given a
	// TTL expires into a hole no site applies past.
	if cfg.MaxMsgsPerSubject > 0 {
		problems = append(problems, "it keeps a limited number of records per subject (max_msgs_per_subject)")
	}
	if cfg.AllowRollup {
		problems = append(problems, "rollups are allowed (allow_rollup_hdrs): any writer could purge it")
	}
	if cfg.AllowMsgTTL || cfg.SubjectDeleteMarkerTTL > 0 {
		problems = append(problems, "records may be given a TTL (allow_msg_ttl)")
	}
	// Records only the sites append, in the order they append them.
	if cfg.Mirror != nil || len(cfg.Sources) > 0 || cfg.Sealed {
		problems = append(problems, "it is a mirror, takes sources, or is sealed")
	}
	if c := info.Cluster; c != nil && s.cfg.Replicas > 1 {
		peers := map[string]bool{c.Leader: c.Leader != ""}
		for _, r := range c.Replicas {
			peers[r.Name] = true
		}
		if len(peers) < s.cfg.Replicas && c.Leader != "" {
			problems = append(problems, fmt.Sprintf("its replicas are on %d distinct servers, not %d", len(peers), s.cfg.Replicas))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: stream %s (%s): %s; fix it on the NATS cluster (e.g. `nats stream edit %s`)",
			ErrStreamConfig, name, natsName(name), strings.Join(problems, "; "), natsName(name))
	}
	return nil
}

func newClusterID() string {
	b := make([]byte, 16)
	_, _ = crand.Read(b)
	return fmt.Sprintf("%x", b)
}

// StreamIdentity is what tells one stream from another of the same name:
// when it was created, and how far it reaches.
type StreamIdentity struct {
	Created time.Time
	LastSeq uint64
	// Led says the answer came with a leader: without one, a replica may
	// answer from its own state, which can be behind.
	Led bool
}

// Identity returns the cluster's id and each stream's identity, for a
// site to check that the log is still the one it has applied. A missing
// stream is ErrStreamMissing.
func (s *Store) Identity(ctx context.Context) (clusterID string, streams map[string]StreamIdentity, err error) {
	if err := s.apiAllowed(); err != nil {
		return "", nil, err
	}
	streams = map[string]StreamIdentity{}
	for _, name := range append(s.Streams(), s.Standbys()...) {
		info, err := s.streamInfo(ctx, name, false)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return "", nil, fmt.Errorf("%w: %s (%s) is gone", ErrStreamMissing, name, natsName(name))
		}
		if err != nil {
			return "", nil, fmt.Errorf("jsstore: stream %s: %w", name, err)
		}
		streams[name] = StreamIdentity{Created: info.Created.UTC(), LastSeq: info.State.LastSeq,
			Led: info.Cluster == nil || info.Cluster.Leader != ""}
	}
	return s.clusterID.Load().(string), streams, nil
}

// Ready reports whether EnsureStreams has completed: until then the
// partition count, and so the stream of any room, is unknown, and nothing
// may be appended to a room.
func (s *Store) Ready() bool { return s.partitions.Load() > 0 }

// Streams lists the logical stream names: accounts, then partitions. Before
// EnsureStreams has completed it lists only the accounts stream.
func (s *Store) Streams() []string { return streamNames(int(s.partitions.Load())) }

func streamNames(partitions int) []string {
	out := []string{AccountsStream}
	for i := 0; i < partitions; i++ {
		out = append(out, "p"+strconv.Itoa(i))
	}
	return out
}

// RoomStream is the partition stream that holds a room's records. It must
// not be called before Ready: the count is the cluster's, not this site's
// configuration, and a record in the wrong stream would be ordered
// differently at different sites.
func (s *Store) RoomStream(roomID string) string {
	n := int(s.partitions.Load())
	if n == 0 {
		panic("jsstore: RoomStream before EnsureStreams")
	}
	return RoomPartition(roomID, n)
}

// RoomPartition is the partition stream that holds a room's records in a
// cluster of the given number of partitions (at least 1): FNV-32a of the
// room id, modulo the count. The read models check room records against
// it (view: a room's records count only in its own partition).
func RoomPartition(roomID string, partitions int) string {
	h := fnv.New32a()
	h.Write([]byte(roomID))
	return "p" + strconv.Itoa(int(h.Sum32()%uint32(partitions)))
}

// AppendOptions modify an append.
type AppendOptions struct {
	// MsgID deduplicates: a second append with the same id within the
	// duplicate window returns the first one's position. Appends are retried
	// across leader elections, so every append should carry an id unique to
	// its request.
	MsgID string
	// ExpectNew makes the append fail with ErrExists unless the subject has
	// no record yet (optimistic concurrency; the basis of uniqueness).
	ExpectNew bool
	// Batch lets the append share one replicated record with other
	// concurrent batchable appends to the stream (see appender.go). MsgID then
	// deduplicates only when the append travels alone: the read model must
	// recognize a repeat by its content (messages by client id). Ignored
	// with ExpectNew.
	Batch bool
}

// Append appends rec to stream under subject key (a user name or room id)
// and returns its position once a quorum of replicas holds it, and whether
// it was a duplicate of an earlier append with the same MsgID (the position
// is then the earlier one's). A site that cannot reach a quorum gets a
// CodeUnavailable error.
func (s *Store) Append(ctx context.Context, stream, key string, rec salamander.Record, opt AppendOptions) (salamander.Position, bool, error) {
	if opt.Batch && !opt.ExpectNew {
		return s.appender(stream).append(ctx, key, rec, opt.MsgID)
	}
	body, err := salamander.EncodeRecord(&rec)
	if err != nil {
		return salamander.Position{}, false, fmt.Errorf("jsstore: encode %s: %w", rec.Type, err)
	}
	if isPartition(stream) {
		// Messages held in the standby that this site knows of are placed
		// first: a room change must not overtake them (a member's held
		// message, then their leaving).
		if err := s.waitPlaced(ctx, stream); err != nil {
			return salamander.Position{}, false, errNoQuorum
		}
	}
	seq, dup, err := s.publish(ctx, stream, subjectRoot(stream)+"."+key, body, opt)
	if err != nil {
		return salamander.Position{}, false, err
	}
	return PositionOf(stream, seq, 0), dup, nil
}

// publish publishes one record and returns its stream sequence once a
// quorum holds it, retrying across a leader election until AppendTimeout.
func (s *Store) publish(ctx context.Context, stream, subject string, body []byte, opt AppendOptions) (uint64, bool, error) {
	var popts []jetstream.PublishOpt
	if opt.MsgID != "" {
		popts = append(popts, jetstream.WithMsgID(opt.MsgID))
	}
	if opt.ExpectNew {
		popts = append(popts, jetstream.WithExpectLastSequencePerSubject(0))
	}
	popts = append(popts, jetstream.WithExpectStream(natsName(stream)))
	cctx, cancel := context.WithTimeout(ctx, s.cfg.AppendTimeout)
	defer cancel()
	// While a stream elects a leader (4-9 s after its leader's site burns)
	// publishes go unanswered at every site alike, so failing over would not
	// help: the append is retried here until the timeout. Retries are safe:
	// a record that did land is recognized by its msg id (JetStream checks
	// duplicates before expected sequences), which callers always set.
	for attempt := 1; ; attempt++ {
		if attempt > 1 && isPartition(stream) {
			// Messages held in the standby while this append went
			// unanswered are placed first: the partition's silence that
			// failed the attempt is what held them, and an append that
			// lands at the new leader ahead of their merge would overtake
			// them (a leave, then its sender's held message, which every
			// read model then drops; or a sender's later message). Its
			// caller waited for the held records known before the first
			// attempt; an attempt that failed stored nothing that the
			// merge could overtake, unless its leader's quorum had it,
			// which is as if it had been answered.
			if err := s.waitPlaced(cctx, stream); err != nil {
				if ctx.Err() != nil {
					return 0, false, ctx.Err()
				}
				s.log.Warn("append failed: held messages not placed in time", "stream", stream, "attempts", attempt-1)
				return 0, false, errNoQuorum
			}
		}
		actx, acancel := context.WithTimeout(cctx, appendAttemptTimeout)
		ack, err := s.js.Publish(actx, subject, body, popts...)
		acancel()
		if err == nil {
			return ack.Sequence, ack.Duplicate, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
				return 0, false, ErrExists
			}
			// "Message id in process": an earlier attempt of this very
			// append is still being proposed; retrying yields its outcome.
			if apiErr.ErrorCode != errCodeMsgIDInProcess && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
				return 0, false, fmt.Errorf("jsstore: append to %s: %w", stream, err)
			}
		}
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
		if cctx.Err() != nil {
			s.log.Warn("append failed", "stream", stream, "attempts", attempt, "err", err)
			return 0, false, errNoQuorum
		}
		select {
		case <-cctx.Done():
		case <-time.After(jitter(100 * time.Millisecond)):
		}
	}
}

var errNoQuorum = salamander.Errorf(salamander.CodeUnavailable,
	"this site cannot reach a quorum of sites right now; try another site")

// Tail delivers every record of stream from sequence from (1 = the start)
// in order to deliver, until ctx ends or deliver returns false.
//
// Commits are announced, not polled for: every stream republishes each
// record once it is committed (RePublish, sent by the stream's leader after
// a quorum holds it) with its sequence, so the tail applies records as they
// arrive, body included. Direct gets are used only to catch up from a
// position and to fill a gap in the announcements (a leader change, a
// dropped message); they are sent with a short timeout and retried, so a
// dead server costs a tail a fraction of a second, never a stall. A record
// missing from the log itself (a gap in the stream's sequence) stops the
// tail: the site reports it (Stalled) instead of skipping it.
//
// With a CopyDir, the tail also keeps the stream's own copy: every record
// it delivers is added to it, and a copy that ends before from is filled
// from the log first (without delivering those records again). A tail from
// the start (a reader that has applied nothing) empties the copy and
// rebuilds it with the reader. A copy that stopped growing on a write
// error is resumed by the tail's keeper (copykeeper.go).
func (s *Store) Tail(ctx context.Context, stream string, from uint64, deliver func(Entry) bool) {
	t := &tailer{s: s, stream: stream, next: max(RecordSeq(from), 1), from: from, deliver: deliver,
		standby: IsStandby(stream), partition: isPartition(stream)}
	if c := s.copyOf(stream); c != nil {
		if from <= PositionOf(stream, 1, 0).Seq {
			// A reader that has applied nothing (a read model rebuilt
			// from scratch) rebuilds from the log as it is now — after a
			// restore, say, it may not be the log the copy was made of —
			// and so does the copy.
			if err := c.reset(); err != nil {
				s.log.Error("cannot empty this site's own copy of the log; reading from the replicas instead",
					"stream", stream, "err", err)
				c = nil
			}
		}
		if c != nil {
			// A copy behind the caller (its buffered end lost in a crash)
			// is filled from the log first; those records are not
			// delivered again.
			t.next = min(t.next, c.next())
			t.copy = newCopyKeeper(ctx, s, stream, c)
			defer t.copy.stop()
		}
	}
	announced := make(chan *nats.Msg, tailAnnounceBuffer)
	sub, err := s.nc.ChanSubscribe(commitRoot(stream)+".>", announced)
	if err != nil {
		s.log.Error("tail cannot subscribe to commits", "stream", stream, "err", err)
		return
	}
	defer sub.Unsubscribe()
	replies := make(chan *nats.Msg, 2*tailBatch+8)
	t.inbox = s.nc.NewRespInbox()
	rsub, err := s.nc.ChanSubscribe(t.inbox+".*", replies)
	if err != nil {
		s.log.Error("tail cannot subscribe", "stream", stream, "err", err)
		return
	}
	defer rsub.Unsubscribe()
	t.replies = replies
	// Catch up with what was committed before the subscription, then
	// follow the announcements; probe now and then in case the last ones
	// were lost with a leader.
	catchUp := true
	probe := time.NewTimer(tailProbe)
	defer probe.Stop()
	for ctx.Err() == nil {
		if catchUp {
			if err := t.fill(ctx, 0); err != nil {
				if t.failed(ctx, err) {
					return
				}
				continue
			}
			catchUp = false
		}
		select {
		case <-ctx.Done():
			return
		case <-probe.C:
			catchUp = true
			probe.Reset(tailProbe)
			if t.copy != nil {
				t.copy.check()
			}
		case msg := <-announced:
			if err := t.announced(ctx, msg); err != nil {
				if t.failed(ctx, err) {
					return
				}
				catchUp = true
				continue
			}
			if !probe.Stop() {
				select {
				case <-probe.C:
				default:
				}
			}
			probe.Reset(tailProbe)
		}
	}
}

const (
	// tailBatch is how many records one direct get returns at most.
	tailBatch = 256
	// tailAnnounceBuffer holds announcements while the receiver is busy;
	// beyond it they are dropped and the gap is filled by direct gets.
	tailAnnounceBuffer = 8192
	// tailProbe is how long a quiet tail waits before it asks the log
	// whether it missed the last announcements.
	tailProbe = 500 * time.Millisecond
	// tailReplyTimeout bounds the wait for one direct-get reply; a request
	// that went to a dead server is retried, at another replica.
	tailReplyTimeout = 250 * time.Millisecond
	// tailFillTimeout bounds filling one gap before the tail reports
	// itself stalled and starts over.
	tailFillTimeout = 10 * time.Second
)

var errStop = errors.New("stopped by receiver")

// ErrLogGap is reported by a tail that found a sequence missing from the
// log itself: it refuses to apply past it.
var ErrLogGap = errors.New("jsstore: record missing from the log")

// tailer reads one stream for Tail.
type tailer struct {
	s       *Store
	stream  string
	next    uint64 // the stream sequence of the next record due
	from    uint64 // entries before this position are not delivered
	deliver func(Entry) bool
	inbox   string
	replies chan *nats.Msg
	reqID   int
	copy    *copyKeeper // the stream's own copy (nil: none)
	// standby and partition say what the stream is (standby.go).
	standby, partition bool
	// entries is emit's buffer, kept between records: deliver takes each
	// Entry by value, so nothing holds on to it (a record of 30 messages
	// would otherwise allocate ~14 KB for it, at each site).
	entries []Entry
}

// failed handles a failed read: it reports whether the tail must stop
// (stopped by its receiver or its context, or a record missing from the
// log, which is never skipped); other failures are retried after a pause.
func (t *tailer) failed(ctx context.Context, err error) bool {
	switch {
	case errors.Is(err, errStop) || ctx.Err() != nil:
		return true
	case errors.Is(err, ErrLogGap):
		t.s.stall(t.stream, t.next, err)
		return true
	}
	t.s.log.Warn("tail cannot read the log; retrying", "stream", t.stream, "at", t.next, "err", err)
	sleepCtx(ctx, jitter(500*time.Millisecond))
	return false
}

// announced handles one commit announcement.
func (t *tailer) announced(ctx context.Context, msg *nats.Msg) error {
	seq, err := strconv.ParseUint(serverHeader(msg.Header, "Nats-Sequence"), 10, 64)
	if err != nil || serverHeader(msg.Header, "Nats-Stream") != natsName(t.stream) {
		return nil // not an announcement of ours
	}
	switch {
	case seq < t.next:
		return nil // already delivered
	case seq > t.next:
		// Announcements were missed: read them from the log first.
		t.s.gapFills.Add(1)
		if err := t.fill(ctx, seq-1); err != nil {
			return err
		}
		if seq < t.next {
			return nil
		}
	}
	return t.emit(ctx, seq, msg.Data)
}

// emit decodes and delivers the record at seq, which must be t.next.
func (t *tailer) emit(ctx context.Context, seq uint64, data []byte) error {
	if seq != t.next {
		return fmt.Errorf("%w: %s has %d where %d was due", ErrLogGap, t.stream, seq, t.next)
	}
	if t.copy != nil {
		t.copy.add(seq, data)
	}
	entries := t.entries[:0]
	if rec, err := salamander.DecodeRecord(data); err != nil {
		entries = append(entries, Entry{Err: fmt.Errorf("decode record %s:%d: %w", t.stream, seq, err)})
	} else {
		// A merge record's messages come from the standby: it waits
		// until this site can read them (they are held by a quorum).
		recs, err := t.s.entriesOf(ctx, t.stream, rec)
		if err != nil {
			return fmt.Errorf("read the messages merge record %s:%d places: %w", t.stream, seq, err)
		}
		for _, r := range recs {
			entries = append(entries, Entry{Record: r})
		}
		switch {
		case t.standby:
			t.s.noteHeld(t.stream, seq)
		case t.partition && recs[len(recs)-1].Type == salamander.RecMerge && recs[len(recs)-1].Merge != nil:
			t.s.noteMerged(recs[len(recs)-1].Merge.Standby, recs[len(recs)-1].Merge.To)
		}
	}
	defer func() {
		if cap(entries) <= maxBatchEntries { // a catch-up's large record is not kept
			clear(entries) // the records' strings are not held either
			t.entries = entries[:0]
		}
	}()
	for i := range entries {
		e := &entries[i]
		e.Pos = PositionOf(t.stream, seq, i)
		e.Last = i == len(entries)-1
		if e.Pos.Seq < t.from {
			continue // applied before: a restart in the middle of a record
		}
		if !t.deliver(*e) {
			return errStop
		}
	}
	t.next++
	return nil
}

// fill delivers records from the log by direct get from t.next up to upTo
// (0: up to whatever the log holds now).
func (t *tailer) fill(ctx context.Context, upTo uint64) error {
	fctx, cancel := context.WithTimeout(ctx, tailFillTimeout)
	defer cancel()
	backoff := 20 * time.Millisecond
	for upTo == 0 || t.next <= upTo {
		n, end, err := t.batch(fctx)
		switch {
		case errors.Is(err, errStop), errors.Is(err, ErrLogGap):
			return err
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if fctx.Err() != nil {
				return fmt.Errorf("fill %s from %d: %w", t.stream, t.next, err)
			}
			t.s.log.Debug("tail read failed; retrying", "stream", t.stream, "at", t.next, "err", err)
		case n > 0:
			backoff = 20 * time.Millisecond
			continue
		case end && upTo == 0:
			return nil // caught up with the log
		}
		// The replica asked has not got the records yet, or did not answer.
		sleepCtx(fctx, jitter(backoff))
		backoff = min(backoff*2, 200*time.Millisecond)
	}
	return nil
}

// batch asks for up to tailBatch records from t.next on and delivers them.
// It returns how many it delivered and whether the log had nothing more.
func (t *tailer) batch(ctx context.Context) (int, bool, error) {
	return t.s.directBatch(ctx, t.stream, t.inbox, t.replies, &t.reqID, t.next, func(seq uint64, data []byte) error {
		return t.emit(ctx, seq, data)
	})
}

// directBatch asks stream's replicas for up to tailBatch records from
// sequence from on (a direct get, answered to inbox.N with N the next
// *reqID, on replies) and hands each to take, in order. It returns how
// many it handed and whether the log had nothing more.
func (s *Store) directBatch(ctx context.Context, stream, inbox string, replies <-chan *nats.Msg, reqID *int, from uint64,
	take func(seq uint64, data []byte) error) (int, bool, error) {
	*reqID++
	reply := inbox + "." + strconv.Itoa(*reqID)
	req, _ := json.Marshal(map[string]any{"seq": from, "batch": tailBatch})
	if err := s.nc.PublishRequest("$JS.API.DIRECT.GET."+natsName(stream), reply, req); err != nil {
		return 0, false, err
	}
	timer := time.NewTimer(tailReplyTimeout)
	defer timer.Stop()
	n, next := 0, from
	for {
		var msg *nats.Msg
		select {
		case <-ctx.Done():
			return n, false, ctx.Err()
		case <-timer.C:
			return n, false, fmt.Errorf("no direct-get reply for %s from %d", stream, next)
		case msg = <-replies:
		}
		if msg.Subject != reply {
			continue // a late answer to an earlier, abandoned request
		}
		status := ""
		if isStatus(msg, stream) {
			status = msg.Header.Get("Status")
		}
		switch status {
		case "":
		case "404":
			return n, true, nil // nothing at or after next here yet
		case "204":
			return n, false, nil // end of batch
		default:
			return n, false, fmt.Errorf("direct get %s: status %s %s", stream, status, msg.Header.Get("Description"))
		}
		got, err := strconv.ParseUint(serverHeader(msg.Header, "Nats-Sequence"), 10, 64)
		if err != nil {
			return n, false, fmt.Errorf("direct get %s: bad sequence header: %w", stream, err)
		}
		if got < next {
			continue
		}
		if err := take(got, msg.Data); err != nil {
			return n, false, err
		}
		next = got + 1
		n++
	}
}

// serverHeader is the value the server gave a header it sets on a stored
// record it sends (an announcement, a direct get's answer: Nats-Stream,
// Nats-Sequence): the last one. The server appends its own after the
// record's headers, which are whatever its writer set — any NATS user
// that may append (a stolen gateway credential among them) can store a
// record with a Nats-Sequence of its choosing, and the first value would
// then stop every site's tail at that record, for good.
func serverHeader(h nats.Header, key string) string {
	v := h.Values(key)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// isStatus reports whether a direct get's answer from stream is a status
// (not found, end of batch, …) rather than a record. A record always
// comes with the server's Nats-Stream header and a status never does: a
// Status header next to it is the record's own (see serverHeader).
func isStatus(msg *nats.Msg, stream string) bool {
	return msg.Header.Get("Status") != "" && serverHeader(msg.Header, "Nats-Stream") != natsName(stream)
}

// stall records that stream's tail stopped at seq, and why.
func (s *Store) stall(stream string, seq uint64, err error) {
	s.log.Error("tail stopped: this site applies nothing more of the stream until it is repaired",
		"stream", stream, "at", seq, "err", err)
	s.stalledMu.Lock()
	defer s.stalledMu.Unlock()
	if s.stalled == nil {
		s.stalled = map[string]string{}
	}
	s.stalled[stream] = fmt.Sprintf("stopped before %s:%d: %v", stream, seq, err)
}

// GapFills counts the times a tail found announcements missing and read
// the records in between from the log by direct get. In steady state it
// stays still: records arrive with their announcements, and no read waits
// on a replica at another site.
func (s *Store) GapFills() int64 { return s.gapFills.Load() }

// Stalled lists the streams whose tail stopped, with the reason: a record
// missing from the log (never skipped) or a read that kept failing.
func (s *Store) Stalled() map[string]string {
	s.stalledMu.Lock()
	defer s.stalledMu.Unlock()
	return maps.Clone(s.stalled)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// LastPosition asks the stream's leader for the stream's last record and
// returns the position of its end: everything acknowledged so far is at or
// before it.
func (s *Store) LastPosition(ctx context.Context, stream string) (salamander.Position, error) {
	if err := s.apiAllowed(); err != nil {
		return salamander.Position{}, err
	}
	info, err := s.streamInfo(ctx, stream, true)
	if err != nil {
		return salamander.Position{}, salamander.Errorf(salamander.CodeUnavailable,
			"this site cannot reach a quorum of sites right now; try another site")
	}
	last := info.State.LastSeq
	if last == 0 {
		return salamander.Position{Stream: stream}, nil
	}
	return End(PositionOf(stream, last, 0)), nil
}

// StreamStatus is one stream's state as the cluster reports it.
type StreamStatus struct {
	Stream string `json:"stream"`
	Leader string `json:"leader"`
	// LeaderSince is when the leader took over, by its own clock (nil
	// while there is none, or from a server that does not say).
	LeaderSince *time.Time `json:"leader_since,omitempty"`
	Replicas    []string   `json:"replicas"`
	// Unhealthy lists replicas that are offline or not caught up.
	Unhealthy []string `json:"unhealthy,omitempty"`
	// Lag is how many operations each replica but the leader is behind it.
	Lag      map[string]uint64 `json:"replica_lag,omitempty"`
	LastSeq  uint64            `json:"last_seq"`
	Messages uint64            `json:"messages"`
	// Peers are the leader and every replica: whether it is current, how
	// far behind and when the leader last heard it.
	Peers []ReplicaStatus `json:"peers,omitempty"`
	// Error says why the stream could not be read (its other fields are
	// then empty): most often, it has no leader right now.
	Error string `json:"error,omitempty"`
	// StandbyOf names the partition a standby stream holds sends for
	// while that partition elects a leader (standby.go); empty for every
	// other stream.
	StandbyOf string `json:"standby_of,omitempty"`
}

// ReplicaStatus is one replica of a stream as its leader sees it.
type ReplicaStatus struct {
	Server  string `json:"server"`
	Leader  bool   `json:"leader,omitempty"`
	Current bool   `json:"current"`
	Offline bool   `json:"offline,omitempty"`
	// Lag is how many operations the replica is behind the leader.
	Lag uint64 `json:"lag"`
	// ActiveMS is how long ago the leader last heard from it.
	ActiveMS int64 `json:"active_ms"`
}

// Status asks the cluster for every stream's leader and last sequence. It
// needs the stream leaders to answer, so it is for the status page and the
// drill, not the request path.
func (s *Store) Status(ctx context.Context) ([]StreamStatus, error) {
	return s.statusOfAll(ctx, s.Streams())
}

// StandbyStatus is Status for the partitions' standbys. Their leaders are
// kept at another site than their partitions' (PlaceStandbys), and where
// they are matters in a fire: a standby is where a partition's sends are
// held while it elects.
func (s *Store) StandbyStatus(ctx context.Context) ([]StreamStatus, error) {
	return s.statusOfAll(ctx, s.Standbys())
}

// statusOfAll is StatusOf for each of names, in order, asked side by side:
// in a fire the streams whose leaders burned do not answer until they
// have elected, and the others must still be listed (one that waits must
// not take the whole reading's time from the rest). A stream that could
// not be read is listed with its Error and no leader; the error returned
// then names every such stream.
func (s *Store) statusOfAll(ctx context.Context, names []string) ([]StreamStatus, error) {
	out := make([]StreamStatus, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			out[i], errs[i] = s.StatusOf(ctx, name)
			if errs[i] != nil {
				out[i] = StreamStatus{Stream: name, Error: errs[i].Error()}
				if IsStandby(name) {
					out[i].StandbyOf = PartitionOf(name)
				}
			}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// StatusOf asks the cluster for one stream's leader, replicas and last
// sequence, as Status does for every stream.
func (s *Store) StatusOf(ctx context.Context, name string) (StreamStatus, error) {
	if err := s.apiAllowed(); err != nil {
		return StreamStatus{}, err
	}
	info, err := s.streamInfo(ctx, name, false)
	if err != nil {
		return StreamStatus{}, fmt.Errorf("jsstore: stream %s: %w", name, err)
	}
	ss := StreamStatus{Stream: name, LastSeq: info.State.LastSeq, Messages: info.State.Msgs}
	if info.Cluster != nil {
		s.noteLeader(name, info.Cluster.Leader)
	}
	if IsStandby(name) {
		ss.StandbyOf = PartitionOf(name)
	}
	if info.Cluster != nil {
		ss.Leader = info.Cluster.Leader
		ss.LeaderSince = info.Cluster.LeaderSince
		if ss.Leader != "" {
			ss.Peers = append(ss.Peers, ReplicaStatus{Server: ss.Leader, Leader: true, Current: true})
		}
		for _, r := range info.Cluster.Replicas {
			ss.Replicas = append(ss.Replicas, r.Name)
			ss.Peers = append(ss.Peers, ReplicaStatus{Server: r.Name, Current: r.Current, Offline: r.Offline,
				Lag: r.Lag, ActiveMS: r.Active.Milliseconds()})
			if r.Offline || !r.Current {
				ss.Unhealthy = append(ss.Unhealthy, r.Name)
			}
			if ss.Lag == nil {
				ss.Lag = map[string]uint64{}
			}
			ss.Lag[r.Name] = r.Lag
		}
	}
	return ss, nil
}

func natsName(stream string) string { return natsPrefix + strings.ToUpper(stream) }

// GatewayPermissions are the subjects the NATS user of site's gateway
// needs in a cluster of partitions room partitions: it appends records
// and reads them (direct gets, stream info), follows commit
// announcements, uses the ephemeral subjects (typing, presence,
// heartbeats), takes the batches forwarded to its site, creates the
// streams and the cluster bucket of a new cluster, and moves the leaders
// of those streams (balancing). Everything else — deleting, purging,
// updating, snapshotting or restoring a stream, deleting its records — is
// refused.
//
// What is addressed to another site's gateways is not its to read: replies
// come to the user's own inboxes only (InboxPrefix), it answers a request
// only as the reply to one it was sent (the server's allow_responses,
// which the caller grants with these), and it takes forwarded batches of
// its own site only. With _INBOX.> and sal.eph.> open to every gateway,
// one stolen gateway credential read every other connection's replies and
// answered their requests before the server did (a tail's direct gets are
// numbered in order: a site applied a record no one appended), and took a
// share of another site's forwarded batches and answered them as stored
// (their senders told "sent" of messages the log never held).
//
// Nor does it speak for another site: it sends its own site's heartbeats
// and presence only (on subjects that name the site, which receivers
// check), and answers the presence resyncs of its own site's processes
// only. It creates and steps down Salamander's streams only, by name:
// with any name, one stolen credential made a stream capturing another
// gateway's replies (read back with direct gets) or the ephemeral
// subjects, and moved the leaders of any stream of the account.
func GatewayPermissions(site string, partitions int) (publish, subscribe []string) {
	logStreams := append(streamNames(partitions), standbyNames(partitions)...)
	publish = make([]string, 0, 3*len(logStreams)+16)
	for _, name := range logStreams {
		publish = append(publish, subjectRoot(name)+".>")
	}
	publish = append(publish,
		"$KV."+clusterBucket+".>",
		// The gateway's typing and presence (internal/gateway), its
		// site's heartbeats (internal/site) and the batches it forwards
		// to another site's gatherers.
		"sal.eph.typing",
		SubjPresenceAt+site,
		SubjPresenceSync+"*.*",
		// Resyncs asked of a process of a version before 2026-12-02
		// during a rolling upgrade (it answers to this gateway's inbox).
		"sal.eph.presence.v2.sync.*",
		SubjPresenceRoll,
		SubjHeartbeat+site,
		subjGather+"*",
		"$JS.API.INFO",
		"$JS.API.STREAM.NAMES",
		"$JS.API.STREAM.LIST",
		"$JS.API.STREAM.INFO.*",
		"$JS.API.DIRECT.GET.>",
		"$JS.API.STREAM.MSG.GET.*",
	)
	publish = append(publish, "$JS.API.STREAM.CREATE.KV_"+clusterBucket)
	for _, name := range logStreams {
		publish = append(publish, "$JS.API.STREAM.CREATE."+natsName(name))
	}
	for _, name := range logStreams {
		publish = append(publish, "$JS.API.STREAM.LEADER.STEPDOWN."+natsName(name))
	}
	subscribe = []string{
		InboxPrefix(secrets.GatewayUser(site)) + ".>",
		"salc.>",
		"sal.eph.typing",
		SubjPresenceAt + "*",
		SubjPresenceSync + site + ".*",
		SubjPresenceRoll,
		SubjHeartbeat + "*",
		subjGather + site,
		// What processes of versions before 2026-12-02 send, heard during
		// a rolling upgrade: presence on the subjects that carry no site
		// (no gateway of this version may publish there).
		"sal.eph.presence",
		"sal.eph.presence.v2",
	}
	return publish, subscribe
}

// The ephemeral subjects that name a site, which GatewayPermissions
// grants to that site's gateway only; internal/gateway and internal/site
// use them.
const (
	// SubjPresenceAt + site carries the presence of the site's gateway
	// processes.
	SubjPresenceAt = "sal.eph.presence.at."
	// SubjPresenceSync + site + "." + instance asks a gateway process of
	// the site for its presence (a resync).
	SubjPresenceSync = "sal.eph.presence.sync."
	// SubjPresenceRoll is the roll call a starting gateway process sends
	// once (every process of every site answers which processes it
	// mirrors). It claims no site: a forged call gets answers, and a
	// forged answer can hold a starting process's presence settling up to
	// its 5 s bound, no more.
	SubjPresenceRoll = "sal.eph.presence.roll"
	// SubjHeartbeat + site carries the site's heartbeats.
	SubjHeartbeat = "sal.eph.hb."
)

// InboxPrefix is where the replies to user's connections come: its own
// subjects, which no other gateway may read (see GatewayPermissions).
func InboxPrefix(user string) string { return "_INBOX." + user }

func subjectRoot(stream string) string { return "sal." + stream }

// republish makes a stream announce every committed record, with its
// sequence and body, on its commit subject (see Tail).
func republish(stream string) *jetstream.RePublish {
	return &jetstream.RePublish{Source: subjectRoot(stream) + ".>", Destination: commitRoot(stream) + ".>"}
}

// commitRoot is where a stream announces its committed records.
func commitRoot(stream string) string { return "salc." + stream }

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}

// errAPIPaused answers an API request while the site's JetStream is paused.
var errAPIPaused = salamander.Errorf(salamander.CodeUnavailable,
	"this site's JetStream is paused while it is cut off from the other sites")

// PauseAPI stops (or lets go again) this store's JetStream API requests —
// stream info, step-downs, message gets; not appends or direct gets —
// while its site pauses and resumes its embedded server's JetStream:
// nats-server 2.15 replaces its API request queues when JetStream is
// enabled again without a lock against requests being dispatched (a data
// race the race detector reports), and a cut-off site has nothing to ask.
func (s *Store) PauseAPI(paused bool) { s.apiPaused.Store(paused) }

func (s *Store) apiAllowed() error {
	if s.apiPaused.Load() {
		return errAPIPaused
	}
	return nil
}
