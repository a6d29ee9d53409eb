package jsstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// One gatherer per partition. Each site's appender gathers its own
// concurrent sends into records (appender.go); with three sites, a
// partition then receives three streams of records, each a third as
// large as it could be, and every record costs the same fixed work on
// every server (a Raft entry, three fsyncs, three commit announcements,
// three tails' and store batches' work). So a site that does not lead a
// partition hands its gathered batch to the site whose server leads it,
// whose appender puts it into its next record with its own sends (and
// whatever the third site forwarded): measured here, records grew from
// ~21 to ~40 entries at capacity (see BENCHMARKS.md).
//
// The forward is an optimization, never a dependency: the batch goes to
// the leader's site as one NATS request, and if that site does not
// answer within forwardTimeout (or nobody serves it, or it says no) the
// forwarding site appends the batch itself, as it would have anyway, and
// leaves that site alone for forwardShun. A batch forwarded but also
// appended by its site after a lost answer is then in the log twice:
// its messages keep their client ids, and every read model keeps the
// first (as for any append retried after a lost acknowledgment); read
// markers only ever move forward.
//
// Only a site's own sends are forwarded: a batch that holds forwarded
// entries is appended where it is, so that two sites with different ideas
// of who leads never pass a batch back and forth. Only batches of
// forwardMinBatch or more are: below capacity forwarding pays nothing.

const (
	subjGather = "sal.eph.gather." // + site: the site's gatherers
	// gatherQueue: with several gateway processes at a site, one of them
	// takes each forwarded batch.
	gatherQueue = "gather"
	// forwardTimeout bounds how long a site waits for the leader's site to
	// answer a forwarded batch before appending it itself (forwardWait:
	// at most half of HoldAfter). At capacity a record takes 20–160 ms
	// from gathering to its answer here. The gatherer holds nothing
	// forwarded once this has passed since it took the batch.
	forwardTimeout = 500 * time.Millisecond
	// forwardShun is how long a site that did not answer a forward is
	// left alone.
	forwardShun = 5 * time.Second
	// maxForwardBytes bounds a forwarded batch as the gatherer reads it:
	// a batch record's bytes plus each entry's key, id and type.
	maxForwardBytes = maxBatchBytes + maxBatchEntries*512
)

// forwardMinBatch: smaller batches are appended where they were
// gathered. Below capacity the leader's appender gathers no more for a
// forward (its next record takes what arrived during its last round
// trip, whoever gathered it), and a forward costs two NATS messages
// more: measured here at 200 msg/s, forwarding every batch (of 1) cost
// 1–15 % more CPU per message for nothing. A batch of several means this
// site's appender is queueing, which happens near capacity: 1:1 traffic
// there gathers ~20 per batch, and forwarding pays. Group traffic near
// capacity gathers ~5 (its cost is the fan-out, not the records), and
// forwarding those cost 4–20 % of the deliveries per second in three
// pairs of runs with a threshold of 4; with 8 they stay where they are.
var forwardMinBatch = 8 // a variable for tests

// gatherSites is what a store knows of where to forward: each stream's
// leader's site (from the stream statuses it read last) and the sites
// that did not answer a forward lately.
type gatherSites struct {
	mu      sync.Mutex
	leader  map[string]string    // stream -> site of its leader's server
	shunned map[string]time.Time // site -> until when
}

// noteLeader records the site of stream's leader, from a status read.
func (s *Store) noteLeader(stream, server string) {
	if s.cfg.Site == "" || !isPartition(stream) {
		return
	}
	site := ""
	if server != "" {
		site = s.siteOf(server)
	}
	g := &s.gather
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.leader == nil {
		g.leader = map[string]string{}
	}
	g.leader[stream] = site
}

// siteOf is the site of a NATS server.
func (s *Store) siteOf(server string) string {
	if s.cfg.SiteOf != nil {
		return s.cfg.SiteOf(server)
	}
	return ServerSite(server)
}

// forwardTo is the site a batch for stream should be forwarded to, or ""
// to append it here: this site leads it, or no leader is known, or the
// leader's site did not answer lately.
func (s *Store) forwardTo(stream string) string {
	if s.cfg.Site == "" || !s.gathering.Load() {
		return ""
	}
	g := &s.gather
	g.mu.Lock()
	defer g.mu.Unlock()
	site := g.leader[stream]
	if site == "" || site == s.cfg.Site {
		return ""
	}
	if until, ok := g.shunned[site]; ok {
		if time.Now().Before(until) {
			return ""
		}
		delete(g.shunned, site)
	}
	return site
}

// shun leaves site alone for forwardShun.
func (s *Store) shun(site string) {
	g := &s.gather
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shunned == nil {
		g.shunned = map[string]time.Time{}
	}
	g.shunned[site] = time.Now().Add(forwardShun)
}

// Gather starts or stops this store taking other sites' batches (and
// forwarding its own). A site stops while it is cut off: it could append
// nothing, and forwarders then find no one to ask instead of waiting.
func (s *Store) Gather(on bool) error {
	if s.cfg.Site == "" {
		return nil
	}
	s.gatherMu.Lock()
	defer s.gatherMu.Unlock()
	s.gathering.Store(on)
	if !on {
		if s.gatherSub != nil {
			err := s.gatherSub.Unsubscribe()
			s.gatherSub = nil
			return err
		}
		return nil
	}
	if s.gatherSub != nil {
		return nil
	}
	sub, err := s.nc.QueueSubscribe(subjGather+s.cfg.Site, gatherQueue, func(m *nats.Msg) { go s.gathered(m) })
	if err != nil {
		return fmt.Errorf("jsstore: take forwarded batches: %w", err)
	}
	s.gatherSub = sub
	return nil
}

// Forwarded counts the batches this store forwarded, and of those, the
// ones it then appended itself (no answer in time, or a refusal).
func (s *Store) Forwarded() (forwarded, fellBack int64) {
	return s.forwarded.Load(), s.forwardFallbacks.Load()
}

// forwardWait is how long a site waits for a forwarded batch's answer:
// forwardTimeout, but at most half of a partition's HoldAfter (hold), as
// what is left of it after a forward not answered is the time the site's
// own append has before the batch is held (commitPartition), and a send
// caught in a leader handover needs a retry (appendAttemptTimeout) to be
// answered rather than held.
//
// A leader's site that does not answer in time (cut off silently, or its
// partition silent: the gatherer holds only after HoldAfter) most often
// means the partition is silent, and a batch not forwarded is held
// HoldAfter after it was first tried; the forwarding site's own append
// therefore gets what is left of HoldAfter, not all of it again (the
// send waited forwardTimeout + HoldAfter, ~1.5 s, before). The gatherer,
// for its part, holds no forwarded entry once forwardTimeout has passed
// since it took it: by then its site has stopped waiting and holds (or
// appends) the batch itself, and a second hold would only be dropped at
// the merge.
func forwardWait(hold time.Duration) time.Duration {
	if hold <= 0 {
		return forwardTimeout
	}
	return min(forwardTimeout, hold/2)
}

// forward hands batch to site's gatherer and returns each request's
// answer; ok is false if site did not answer, and the batch is then
// still to be appended.
func (a *appender) forward(ctx context.Context, site string, batch []*appendRequest) (res []appendResult, ok bool) {
	s := a.s
	s.forwarded.Add(1)
	wait := forwardTimeout
	if a.holds {
		wait = forwardWait(s.cfg.HoldAfter)
	}
	fctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	reply, err := s.nc.RequestWithContext(fctx, subjGather+site, encodeForward(a.stream, batch))
	if err == nil {
		res, err = decodeForwardReply(reply.Data, len(batch))
	}
	if err != nil {
		s.forwardFallbacks.Add(1)
		if ctx.Err() == nil {
			s.shun(site)
			s.log.Debug("forward not answered; appending here", "stream", a.stream, "site", site, "err", err)
		}
		return nil, false
	}
	return res, true
}

// mayForward reports whether the appender's batches may go to another
// site's gatherer now. Not while this process knows of held messages of
// the partition that are not yet placed, or finds the partition silent:
// a sender's later message must not be placed before its held one
// (standby.go), and the gatherer decides that from what it knows itself,
// which may not yet include what this process held a moment ago. Such a
// batch stays here, where commitPartition waits for the merge or holds it
// behind the others.
func (a *appender) mayForward() bool {
	if !a.holds {
		return true
	}
	upTo, suspect, _ := a.s.unplaced(a.stream, 0)
	return upTo == 0 && !suspect
}

// noteForwardHeld records what the gatherer held of a forwarded batch in
// the standby, as this process's own hold would have: until their merge,
// this process's next batches of the partition are held behind them
// rather than appended (or forwarded) ahead.
func (a *appender) noteForwardHeld(res []appendResult) {
	var standby string
	var last uint64
	for _, r := range res {
		if r.err == nil && IsStandby(r.pos.Stream) {
			standby, last = r.pos.Stream, max(last, RecordSeq(r.pos.Seq))
		}
	}
	if last == 0 || standby != StandbyOf(a.stream) {
		return
	}
	a.s.setSuspect(a.stream, true) // it did not answer the gatherer
	a.s.noteHeld(standby, last)
}

// gathered takes a batch another site forwarded: its entries go to this
// store's appender for the stream, with this site's own, and the answer
// goes back once every entry has one.
func (s *Store) gathered(m *nats.Msg) {
	stream, batch, err := decodeForward(m.Data)
	if err == nil && (!isPartition(stream) || !slices.Contains(s.Streams(), stream)) {
		err = fmt.Errorf("not a partition of this cluster: %q", stream)
	}
	if err == nil {
		err = s.checkForwarded(stream, batch)
	}
	if err == nil && s.appCtx.Err() != nil {
		err = errors.New("closing")
	}
	if err != nil {
		s.log.Warn("refused a forwarded batch", "err", err)
		_ = m.Respond(encodeForwardRefusal(err))
		return
	}
	// Its site waits forwardWait at most (the sites share HoldAfter: 500
	// ms at the default, half of a HoldAfter under 1 s), counted from
	// before this site took the batch: once that has passed here, it no
	// longer waits, and none of the batch is held here (hold).
	expires := time.Now().Add(forwardWait(s.cfg.HoldAfter))
	for _, r := range batch {
		r.expires = expires
	}
	a := s.appender(stream)
	ctx, cancel := context.WithTimeout(s.appCtx, forwardTimeout)
	defer cancel()
	queued := 0
enqueue:
	for _, r := range batch {
		select {
		case a.in <- r:
			queued++
		case <-ctx.Done():
			break enqueue
		}
	}
	if queued < len(batch) {
		// Too busy to take it all in time: the forwarding site appends
		// everything itself. What was queued may land too (see above).
		_ = m.Respond(encodeForwardRefusal(errors.New("gatherer busy")))
		return
	}
	results := make([]appendResult, len(batch))
	for i, r := range batch {
		results[i] = a.await(context.Background(), r) // answered, also when the store closes
	}
	_ = m.Respond(encodeForwardReply(results))
}

// checkForwarded refuses a forwarded batch any entry of which does not
// decode, is not a message or a read marker, or is not for a room of
// stream. A batch record is decoded whole at every site: one bad entry in
// it (a bug, or a version the gatherer does not speak) would make every
// site skip the record, and with it the good entries of this site and the
// third — their senders answered as if their sends had been refused. The
// forwarding site then appends its batch itself.
func (s *Store) checkForwarded(stream string, batch []*appendRequest) error {
	for i, r := range batch {
		rec, err := salamander.DecodeRecord(r.body)
		switch {
		case err != nil:
			return fmt.Errorf("forwarded entry %d: %w", i, err)
		case rec.Type != salamander.RecMessageSent && rec.Type != salamander.RecMessageRead:
			return fmt.Errorf("forwarded entry %d: a %s record is not gathered", i, rec.Type)
		case rec.Type != r.typ || rec.Room != r.key || s.RoomStream(rec.Room) != stream:
			return fmt.Errorf("forwarded entry %d: a %s record for room %q, forwarded as %s for %q to %s", i, rec.Type, rec.Room, r.typ, r.key, stream)
		}
	}
	return nil
}

// The forward's wire format, binary and compact (a batch is sent once per
// record, its bytes are the record's): uvarint-prefixed strings.
//
//	request: stream, count, then per entry: type, key, msg id, body
//	reply:   0, count, then per entry: stream, seq, dup (0/1), code, message
//	         ("" code: no error), or 1, message (the batch was refused)

// appendField appends p, prefixed by its length.
func appendField[T string | []byte](b []byte, p T) []byte {
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

func encodeForward(stream string, batch []*appendRequest) []byte {
	size := len(stream) + 8
	for _, r := range batch {
		size += len(r.typ) + len(r.key) + len(r.msgID) + len(r.body) + 12
	}
	b := make([]byte, 0, size)
	b = appendField(b, stream)
	b = binary.AppendUvarint(b, uint64(len(batch)))
	for _, r := range batch {
		b = appendField(b, string(r.typ))
		b = appendField(b, r.key)
		b = appendField(b, r.msgID)
		b = appendField(b, r.body)
	}
	return b
}

// wireReader reads the forward's wire format; the first error sticks.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated number")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *wireReader) bytes(limit int) []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("field of %d bytes (limit %d, %d left)", n, limit, len(r.b))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *wireReader) str(limit int) string { return string(r.bytes(limit)) }

// decodeForward reads a forwarded batch into requests for an appender.
func decodeForward(data []byte) (string, []*appendRequest, error) {
	if len(data) > maxForwardBytes {
		return "", nil, fmt.Errorf("forwarded batch of %d bytes (limit %d)", len(data), maxForwardBytes)
	}
	r := &wireReader{b: data}
	stream := r.str(64)
	n := r.uvarint()
	if r.err == nil && (n == 0 || n > maxBatchEntries) {
		r.err = fmt.Errorf("forwarded batch of %d entries (1..%d)", n, maxBatchEntries)
	}
	if r.err != nil {
		return "", nil, r.err
	}
	batch := make([]*appendRequest, 0, n)
	for range n {
		req := &appendRequest{forwarded: true, done: make(chan appendResult, 1)}
		req.typ = salamander.RecordType(r.str(64))
		req.key = r.str(256)
		req.msgID = r.str(256)
		req.body = r.bytes(maxBatchBytes)
		if r.err != nil {
			return "", nil, r.err
		}
		if len(req.body) == 0 {
			return "", nil, errors.New("forwarded entry without a body")
		}
		batch = append(batch, req)
	}
	if len(r.b) != 0 {
		return "", nil, fmt.Errorf("%d bytes after the forwarded batch", len(r.b))
	}
	return stream, batch, nil
}

func encodeForwardReply(results []appendResult) []byte {
	b := make([]byte, 0, 8+len(results)*24)
	b = append(b, 0)
	b = binary.AppendUvarint(b, uint64(len(results)))
	for _, res := range results {
		b = appendField(b, res.pos.Stream)
		b = binary.AppendUvarint(b, res.pos.Seq)
		dup := byte(0)
		if res.dup {
			dup = 1
		}
		b = append(b, dup)
		code, msg := "", ""
		if res.err != nil {
			code, msg = string(salamander.ErrorCode(res.err)), salamander.ErrorMessage(res.err)
			if salamander.ErrorCode(res.err) == salamander.CodeInternal {
				msg = res.err.Error() // its details, for the forwarding site's log
			}
		}
		b = appendField(b, code)
		b = appendField(b, msg)
	}
	return b
}

func encodeForwardRefusal(err error) []byte {
	return appendField([]byte{1}, err.Error())
}

// decodeForwardReply reads the gatherer's answers to a batch of n
// entries; a refusal or a malformed answer is an error (the batch is then
// appended by its own site).
func decodeForwardReply(data []byte, n int) ([]appendResult, error) {
	if len(data) == 0 {
		return nil, errors.New("empty answer")
	}
	r := &wireReader{b: data[1:]}
	if data[0] == 1 {
		return nil, fmt.Errorf("refused: %s", r.str(1024))
	}
	if got := r.uvarint(); r.err == nil && got != uint64(n) {
		return nil, fmt.Errorf("%d answers for %d entries", got, n)
	}
	out := make([]appendResult, n)
	for i := range out {
		stream := r.str(64)
		seq := r.uvarint()
		if r.err == nil && len(r.b) == 0 {
			r.err = errors.New("truncated answer")
		}
		if r.err != nil {
			return nil, r.err
		}
		dup := r.b[0] == 1
		r.b = r.b[1:]
		code, msg := r.str(64), r.str(1024)
		if r.err != nil {
			return nil, r.err
		}
		out[i] = appendResult{pos: salamander.Position{Stream: stream, Seq: seq}, dup: dup}
		switch salamander.Code(code) {
		case "":
		case salamander.CodeInternal:
			out[i].err = fmt.Errorf("jsstore: forwarded append: %s", msg)
		default:
			out[i].err = salamander.Errorf(salamander.Code(code), "%s", msg)
		}
	}
	return out, nil
}
