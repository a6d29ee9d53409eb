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
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
)

// AccountsStream is the logical name of the accounts stream; room partitions
// are "p0", "p1", …. Logical names appear in client cursors.
const AccountsStream = "acct"

const (
	natsPrefix    = "SAL_"
	clusterBucket = "SAL_CLUSTER"
	partitionsKey = "partitions"
	maxRecordSize = 256 << 10
	// appendAttemptTimeout bounds one publish; a healthy quorum answers in
	// milliseconds even with fsync on every write.
	appendAttemptTimeout = time.Second
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
	Logger        *slog.Logger
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
		Logger:          slog.New(slog.DiscardHandler),
	}
}

// Store is a connection to the replicated log.
type Store struct {
	cfg Config
	log *slog.Logger
	nc  *nats.Conn
	js  jetstream.JetStream
	// partitions is the cluster's partition count, known once
	// EnsureStreams has read it; 0 until then.
	partitions atomic.Int32

	wakeMu sync.Mutex
	wakers map[string]chan struct{} // per stream: wakes its Tail
}

// Entry is one record read from the log with its position.
type Entry struct {
	Pos    salamander.Position
	Record salamander.Record
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
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info("nats reconnected", "url", c.ConnectedUrl()) }),
	}
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("jsstore: connect %v: %w", cfg.URLs, err)
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(cfg.AppendTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("jsstore: jetstream context: %w", err)
	}
	return &Store{cfg: cfg, log: log, nc: nc, js: js}, nil
}

// Close closes the connection.
func (s *Store) Close() { s.nc.Close() }

// Conn is the NATS connection, for ephemeral (never stored) subjects such as
// typing and presence.
func (s *Store) Conn() *nats.Conn { return s.nc }

// EnsureStreams creates the cluster's streams if they do not exist and
// learns the partition count. It retries until ctx ends: on a fresh cluster
// the meta leader takes seconds to be elected.
func (s *Store) EnsureStreams(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	for {
		err := s.ensureStreams(ctx)
		if err == nil {
			return nil
		}
		s.log.Info("waiting for the JetStream cluster", "err", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("jsstore: ensure streams: %w (last error: %v)", ctx.Err(), err)
		case <-time.After(jitter(backoff)):
		}
		backoff = min(backoff*2, 500*time.Millisecond)
	}
}

func (s *Store) ensureStreams(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, ensureAttemptTimeout)
	defer cancel()
	kv, err := s.js.KeyValue(cctx, clusterBucket)
	if err != nil {
		kv, err = s.js.CreateOrUpdateKeyValue(cctx, jetstream.KeyValueConfig{
			Bucket:      clusterBucket,
			Description: "Salamander cluster-wide settings, fixed at creation",
			Replicas:    s.cfg.Replicas,
			Storage:     jetstream.FileStorage,
		})
	}
	if err != nil {
		return fmt.Errorf("cluster bucket: %w", err)
	}
	want := strconv.Itoa(s.cfg.Partitions)
	if _, err := kv.Create(cctx, partitionsKey, []byte(want)); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("record partition count: %w", err)
	}
	e, err := kv.Get(cctx, partitionsKey)
	if err != nil {
		return fmt.Errorf("read partition count: %w", err)
	}
	n, err := strconv.Atoi(string(e.Value()))
	if err != nil || n < 1 || n > 1024 {
		return fmt.Errorf("bad partition count %q in %s", e.Value(), clusterBucket)
	}
	if n != s.cfg.Partitions {
		s.log.Warn("cluster was created with a different partition count; using the cluster's", "configured", s.cfg.Partitions, "cluster", n)
	}
	for _, name := range streamNames(n) {
		if _, err := s.js.Stream(cctx, natsName(name)); err == nil {
			continue // exists; its config is fixed at creation
		}
		_, err := s.js.CreateOrUpdateStream(cctx, jetstream.StreamConfig{
			Name:        natsName(name),
			Subjects:    []string{subjectRoot(name) + ".>"},
			Storage:     jetstream.FileStorage,
			Replicas:    s.cfg.Replicas,
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardNew,
			MaxMsgSize:  maxRecordSize,
			Duplicates:  s.cfg.DuplicateWindow,
			AllowDirect: true,
		})
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
	}
	s.partitions.Store(int32(n))
	return nil
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
	n := uint32(s.partitions.Load())
	if n == 0 {
		panic("jsstore: RoomStream before EnsureStreams")
	}
	h := fnv.New32a()
	h.Write([]byte(roomID))
	return "p" + strconv.Itoa(int(h.Sum32()%n))
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
}

// Append appends rec to stream under subject key (a user name or room id)
// and returns its position once a quorum of replicas holds it, and whether
// it was a duplicate of an earlier append with the same MsgID (the position
// is then the earlier one's). A site that cannot reach a quorum gets a
// CodeUnavailable error.
func (s *Store) Append(ctx context.Context, stream, key string, rec salamander.Record, opt AppendOptions) (salamander.Position, bool, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return salamander.Position{}, false, fmt.Errorf("jsstore: encode %s: %w", rec.Type, err)
	}
	subject := subjectRoot(stream) + "." + key
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
		actx, acancel := context.WithTimeout(cctx, appendAttemptTimeout)
		ack, err := s.js.Publish(actx, subject, body, popts...)
		acancel()
		if err == nil {
			s.wake(stream) // committed: this site's tail can read it now
			return salamander.Position{Stream: stream, Seq: ack.Sequence}, ack.Duplicate, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) {
			switch apiErr.ErrorCode {
			case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant:
				return salamander.Position{}, false, ErrExists
			}
			// "Message id in process": an earlier attempt of this very
			// append is still being proposed; retrying yields its outcome.
			if apiErr.ErrorCode != errCodeMsgIDInProcess && apiErr.Code >= 400 && apiErr.Code < 500 && apiErr.Code != 408 {
				return salamander.Position{}, false, fmt.Errorf("jsstore: append %s to %s: %w", rec.Type, stream, err)
			}
		}
		if ctx.Err() != nil {
			return salamander.Position{}, false, ctx.Err()
		}
		if cctx.Err() != nil {
			s.log.Warn("append failed", "stream", stream, "type", rec.Type, "attempts", attempt, "err", err)
			return salamander.Position{}, false, salamander.Errorf(salamander.CodeUnavailable,
				"this site cannot reach a quorum of sites right now; try another site")
		}
		select {
		case <-cctx.Done():
		case <-time.After(jitter(100 * time.Millisecond)):
		}
	}
}

// Tail delivers every record of stream from sequence from (1 = the start)
// in order to deliver, until ctx ends or deliver returns false.
//
// It reads with batched direct gets, which the stream's replicas answer as
// a queue group, and NATS prefers the member on the asking client's own
// server: each site reads its own replica. So a tail depends on no other
// site and no JetStream leader — unlike a consumer, which JetStream places
// on a random replica's server and re-creates only through the meta
// leader, both of which may be in the site that just burned. A core
// subscription on the stream's subjects wakes the tail when something is
// published; a slow poll covers a missed wake.
func (s *Store) Tail(ctx context.Context, stream string, from uint64, deliver func(Entry) bool) {
	next := max(from, 1)
	wake := s.waker(stream)
	sub, err := s.nc.Subscribe(subjectRoot(stream)+".>", func(*nats.Msg) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err == nil {
		defer sub.Unsubscribe()
	}
	replies := make(chan *nats.Msg, 2*tailBatch+8)
	inbox := s.nc.NewRespInbox()
	rsub, err := s.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		s.log.Error("tail cannot subscribe", "stream", stream, "err", err)
		return
	}
	defer rsub.Unsubscribe()
	t := &tailer{s: s, stream: stream, inbox: inbox, replies: replies}
	backoff := 50 * time.Millisecond
	var hotUntil time.Time // after a wake: poll quickly until the record is committed here
	for ctx.Err() == nil {
		n, after, err := t.batch(ctx, next, deliver)
		next = after
		switch {
		case errors.Is(err, errStop):
			return
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			s.log.Debug("tail read failed; retrying", "stream", stream, "at", next, "err", err)
			sleepCtx(ctx, jitter(backoff))
			backoff = min(backoff*2, 2*time.Second)
			continue
		case n > 0:
			backoff = 50 * time.Millisecond
			continue
		}
		backoff = 50 * time.Millisecond
		if time.Now().Before(hotUntil) {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			case <-time.After(tailHotPoll):
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
			hotUntil = time.Now().Add(tailHotFor)
		case <-time.After(tailIdlePoll):
		}
	}
}

const (
	// tailBatch is how many records one direct get returns at most.
	tailBatch = 256
	// tailIdlePoll bounds how long a missed wake-up can delay a record.
	tailIdlePoll = 500 * time.Millisecond
	// After a wake-up (a publish seen, before its commit) the tail polls
	// every tailHotPoll for tailHotFor: a commit with fsync on every
	// replica takes a few milliseconds.
	tailHotPoll = 2 * time.Millisecond
	tailHotFor  = 300 * time.Millisecond
	// tailReplyTimeout bounds the wait for one direct-get reply.
	tailReplyTimeout = 2 * time.Second
)

var errStop = errors.New("stopped by receiver")

// tailer reads batches of one stream for Tail.
type tailer struct {
	s       *Store
	stream  string
	inbox   string
	replies chan *nats.Msg
	reqID   int
}

// batch asks for up to tailBatch records from seq on and delivers them. It
// returns how many it delivered and the sequence to ask for next.
func (t *tailer) batch(ctx context.Context, seq uint64, deliver func(Entry) bool) (int, uint64, error) {
	t.reqID++
	reply := t.inbox + "." + strconv.Itoa(t.reqID)
	req, _ := json.Marshal(map[string]any{"seq": seq, "batch": tailBatch})
	if err := t.s.nc.PublishRequest("$JS.API.DIRECT.GET."+natsName(t.stream), reply, req); err != nil {
		return 0, seq, err
	}
	timer := time.NewTimer(tailReplyTimeout)
	defer timer.Stop()
	n := 0
	for {
		var msg *nats.Msg
		select {
		case <-ctx.Done():
			return n, seq, ctx.Err()
		case <-timer.C:
			return n, seq, fmt.Errorf("no direct-get reply for %s from %d", t.stream, seq)
		case msg = <-t.replies:
		}
		if msg.Subject != reply {
			continue // a late answer to an earlier, abandoned request
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
		case "404":
			return n, seq, nil // nothing at or after seq here yet
		case "204":
			return n, seq, nil // end of batch
		default:
			return n, seq, fmt.Errorf("direct get %s: status %s %s", t.stream, status, msg.Header.Get("Description"))
		}
		got, err := strconv.ParseUint(msg.Header.Get("Nats-Sequence"), 10, 64)
		if err != nil {
			return n, seq, fmt.Errorf("direct get %s: bad sequence header: %w", t.stream, err)
		}
		if got < seq {
			continue
		}
		e := Entry{Pos: salamander.Position{Stream: t.stream, Seq: got}}
		if err := json.Unmarshal(msg.Data, &e.Record); err != nil {
			e.Err = fmt.Errorf("decode record %s:%d: %w", t.stream, got, err)
		}
		if !deliver(e) {
			return n, seq, errStop
		}
		seq = got + 1
		n++
	}
}

// waker returns the channel that wakes stream's tail.
func (s *Store) waker(stream string) chan struct{} {
	s.wakeMu.Lock()
	defer s.wakeMu.Unlock()
	if s.wakers == nil {
		s.wakers = map[string]chan struct{}{}
	}
	ch, ok := s.wakers[stream]
	if !ok {
		ch = make(chan struct{}, 1)
		s.wakers[stream] = ch
	}
	return ch
}

func (s *Store) wake(stream string) {
	select {
	case s.waker(stream) <- struct{}{}:
	default:
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// LastPosition asks the stream's leader for the stream's last sequence:
// everything acknowledged so far is at or before it.
func (s *Store) LastPosition(ctx context.Context, stream string) (salamander.Position, error) {
	st, err := s.js.Stream(ctx, natsName(stream))
	if err != nil {
		return salamander.Position{}, salamander.Errorf(salamander.CodeUnavailable,
			"this site cannot reach a quorum of sites right now; try another site")
	}
	return salamander.Position{Stream: stream, Seq: st.CachedInfo().State.LastSeq}, nil
}

// StreamStatus is one stream's state as the cluster reports it.
type StreamStatus struct {
	Stream   string   `json:"stream"`
	Leader   string   `json:"leader"`
	Replicas []string `json:"replicas"`
	// Unhealthy lists replicas that are offline or not caught up.
	Unhealthy []string `json:"unhealthy,omitempty"`
	LastSeq   uint64   `json:"last_seq"`
	Messages  uint64   `json:"messages"`
}

// Status asks the cluster for every stream's leader and last sequence. It
// needs the stream leaders to answer, so it is for the status page and the
// drill, not the request path.
func (s *Store) Status(ctx context.Context) ([]StreamStatus, error) {
	var out []StreamStatus
	for _, name := range s.Streams() {
		st, err := s.js.Stream(ctx, natsName(name))
		if err != nil {
			return out, fmt.Errorf("jsstore: stream %s: %w", name, err)
		}
		info := st.CachedInfo()
		ss := StreamStatus{Stream: name, LastSeq: info.State.LastSeq, Messages: info.State.Msgs}
		if info.Cluster != nil {
			ss.Leader = info.Cluster.Leader
			for _, r := range info.Cluster.Replicas {
				ss.Replicas = append(ss.Replicas, r.Name)
				if r.Offline || !r.Current {
					ss.Unhealthy = append(ss.Unhealthy, r.Name)
				}
			}
		}
		out = append(out, ss)
	}
	return out, nil
}

// StepDown asks a stream's leader to hand leadership to the replica on
// server preferred ("" lets the cluster choose).
func (s *Store) StepDown(ctx context.Context, stream, preferred string) error {
	var body []byte
	if preferred != "" {
		body, _ = json.Marshal(map[string]any{"placement": map[string]string{"preferred": preferred}})
	}
	msg, err := s.nc.RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+natsName(stream), body)
	if err != nil {
		return fmt.Errorf("jsstore: step down %s: %w", stream, err)
	}
	var resp struct {
		Error *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err == nil && resp.Error != nil {
		return fmt.Errorf("jsstore: step down %s: %s", stream, resp.Error.Description)
	}
	return nil
}

// BalanceLeaders moves leaderships away from server self while self leads
// more than its fair share of the room partitions, each to the healthy
// replica whose server leads the fewest. Each site runs it for its own
// server only, so sites never issue conflicting moves. Spreading leaders
// evenly means a fire stalls only the partitions whose leader burned
// (4-9 s election), never all of them. It returns the streams it moved.
func (s *Store) BalanceLeaders(ctx context.Context, self string) (moved []string, err error) {
	all, err := s.Status(ctx)
	if err != nil {
		return nil, err
	}
	// Only room partitions carry messages; the accounts stream is left
	// where it is so it does not skew the partitions' fair share.
	var st []StreamStatus
	for _, ss := range all {
		if ss.Stream != AccountsStream {
			st = append(st, ss)
		}
	}
	count := map[string]int{}
	for _, ss := range st {
		for _, r := range ss.Replicas {
			count[r] += 0
		}
		if ss.Leader == "" {
			return nil, nil // an election is under way; decide later
		}
		count[ss.Leader]++
	}
	if len(count) == 0 {
		return nil, nil
	}
	fair := (len(st) + len(count) - 1) / len(count)
	for _, ss := range st {
		if count[self] <= fair {
			break
		}
		if ss.Leader != self {
			continue
		}
		best := ""
		for _, r := range ss.Replicas {
			if slices.Contains(ss.Unhealthy, r) {
				continue
			}
			if best == "" || count[r] < count[best] {
				best = r
			}
		}
		if best == "" || count[best]+1 >= count[self] {
			continue
		}
		if err := s.StepDown(ctx, ss.Stream, best); err != nil {
			return moved, err
		}
		count[self]--
		count[best]++
		moved = append(moved, ss.Stream)
	}
	return moved, nil
}

func natsName(stream string) string { return natsPrefix + strings.ToUpper(stream) }

func subjectRoot(stream string) string { return "sal." + stream }

func jitter(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(d)/2+1))
}
