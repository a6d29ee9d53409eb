package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/salamander-chat/salamander"
)

// Standby partitions: no send waits for an election.
//
// When a partition's leader burns, JetStream takes 4–9 s to elect another,
// and every append to the partition waits. Each partition pK therefore has
// a standby stream sK (R3 like it, its leader kept at another site; see
// the leader balancing in internal/site). An append of messages that has
// gone holdAfter without an answer from pK is appended to sK instead —
// quorum-held, so an acknowledged message survives the loss of any site —
// and acknowledged as held. Held messages are not ordered yet: a merge
// record appended to pK once it has a leader again (RecMerge: "sK's records
// after From, up to To") places them, and every site applies their
// messages at the merge record's place in pK, in sK's order, as if they had
// been appended there: the tails expand a merge record into those entries,
// at positions of the merge record (see entriesOf), like a batch. So every
// room keeps one order, the same at every site, and a message gets its
// room seq (once) where it is placed.
//
// What keeps it exact:
//   - Merges are unique and gap-free: the merger reads pK's last merge
//     record from the leader and appends the next one expecting that one
//     to be the subject's last (optimistic concurrency), From = its To.
//   - Exactly once per client id: a send held in sK whose append to pK did
//     land after all (the old leader's quorum had it) is placed twice; the
//     read models' rule that a (sender, client id) already among the room's
//     newest messages has no effect keeps only the first.
//   - Each sender's order: an appender does not append to pK again while
//     records held in sK that its process knows of (its own holds, a
//     gatherer's holds of batches it forwarded, what its tail of sK
//     announced) are unmerged: it waits for the merge (or, if pK still
//     does not answer, holds the next batch too), so a sender's later
//     message is not placed before its held one; nor does it forward
//     the batch meanwhile (mayForward). Appends that cannot be held (room
//     changes) wait for the merge. An append that is retrying through
//     the election when its process learns of a held record waits for
//     its merge before the next attempt (publish), so that it does not
//     land at the new leader ahead of it.
//   - Only messages are held: read markers and room changes in a batch that
//     pK did not answer fail as unavailable, and the client retries.

const (
	// holdAfter is how long an append of messages waits for its partition
	// before it is held in the standby: about one failure detection,
	// against an election's 4–9 s.
	holdAfter = time.Second
	// mergeAttemptTimeout bounds one round of the merger (reading the last
	// merge record from the leader, appending the next): a leader answers
	// in milliseconds, and while the partition elects, a short round lets
	// the next one start soon after the new leader is there.
	mergeAttemptTimeout = 300 * time.Millisecond
	// placeGrace is how long an append waits for held records it knows of
	// to be placed before it is held too.
	placeGrace = 200 * time.Millisecond
	// mergeStallWarn is how long a partition's merge may keep failing
	// before its merger warns (and again every as long while it does):
	// longer than an election.
	mergeStallWarn = 10 * time.Second
	// mergeSubject is the subject of a partition's merge records, under the
	// partition's root.
	mergeSubject = "merge"
)

// StandbyOf names a partition's standby stream ("p3" → "s3").
func StandbyOf(partition string) string { return "s" + strings.TrimPrefix(partition, "p") }

// PartitionOf names a standby stream's partition ("s3" → "p3").
func PartitionOf(standby string) string { return "p" + strings.TrimPrefix(standby, "s") }

// IsStandby says whether stream is a standby stream.
func IsStandby(stream string) bool { return numbered(stream, 's') }

// isPartition says whether stream is a room partition.
func isPartition(stream string) bool { return numbered(stream, 'p') }

// numbered says whether stream is prefix followed by a decimal number,
// as partitions ("p3") and standbys ("s3") are named. It is asked on every
// send and applied record, so it does not parse: strconv.Atoi allocated an
// error for every name that is not a number ("acct", and "p3" asked as a
// standby).
func numbered(stream string, prefix byte) bool {
	if len(stream) < 2 || stream[0] != prefix {
		return false
	}
	for i := 1; i < len(stream); i++ {
		if stream[i] < '0' || stream[i] > '9' {
			return false
		}
	}
	return true
}

func standbyNames(partitions int) []string {
	out := make([]string, 0, partitions)
	for i := 0; i < partitions; i++ {
		out = append(out, "s"+strconv.Itoa(i))
	}
	return out
}

// Standbys lists the partitions' standby streams (empty before
// EnsureStreams).
func (s *Store) Standbys() []string { return standbyNames(int(s.partitions.Load())) }

// standbyState is what this site knows of one partition's standby.
type standbyState struct {
	// end is the last standby record known to exist: held by this
	// process, or announced.
	end uint64
	// merged is the last standby record known to be placed: a merge
	// record up to it is committed in the partition.
	merged uint64
	// suspect is set when the partition failed to answer an append in
	// time, and cleared once its leader answers (an append to it, a merge
	// landing, or the last merge record read from it): until then,
	// batches with messages are held at once rather than waiting
	// holdAfter each. A batch with nothing to hold (read markers only)
	// tries the partition again. The merger runs while it is set, also
	// with nothing held, so that it ends when the partition answers.
	suspect bool
	// merging is set while a merger runs for the partition.
	merging bool
	// answered is when the partition's leader last answered this process
	// (an append, its last merge record read, a merge landing), and
	// heldAt when this process last learned of a standby record beyond
	// end (see placeWait).
	answered, heldAt time.Time
	// moved is closed (and replaced) whenever merged moves.
	moved chan struct{}
}

// standby calls fn with the state of partition's standby, under sbMu.
func (s *Store) standby(partition string, fn func(st *standbyState)) {
	s.sbMu.Lock()
	defer s.sbMu.Unlock()
	if s.sb == nil {
		s.sb = map[string]*standbyState{}
	}
	st := s.sb[partition]
	if st == nil {
		st = &standbyState{moved: make(chan struct{})}
		s.sb[partition] = st
	}
	fn(st)
}

// noteHeld records that the standby holds records up to seq, and starts a
// merger if they are not all placed.
func (s *Store) noteHeld(standby string, seq uint64) {
	p := PartitionOf(standby)
	s.standby(p, func(st *standbyState) {
		if seq > st.end {
			st.end, st.heldAt = seq, time.Now()
		}
		s.startMergerLocked(p, st)
	})
}

// noteMerged records that the standby's records up to seq are placed.
func (s *Store) noteMerged(standby string, seq uint64) {
	s.standby(PartitionOf(standby), func(st *standbyState) {
		if seq > st.merged {
			st.merged = seq
			st.end = max(st.end, seq)
			st.suspect = false // a merge landed: the partition has a leader
			st.answered = time.Now()
			close(st.moved)
			st.moved = make(chan struct{})
		}
	})
}

// setSuspect says whether the partition is suspected of not answering. A
// suspect partition's merger runs until the partition answers, also when
// nothing is held: an append of read markers alone that found it silent
// holds nothing, and its suspicion, which holds every message at once,
// would otherwise outlive the silence — until this process's next append
// of anything but messages happened to find the partition answering.
func (s *Store) setSuspect(partition string, suspect bool) {
	s.standby(partition, func(st *standbyState) {
		st.suspect = suspect
		if !suspect {
			st.answered = time.Now()
			return
		}
		s.startMergerLocked(partition, st)
	})
}

// startMergerLocked starts partition's merger unless one runs, or nothing
// waits to be placed and the partition is not suspect. The caller holds
// sbMu.
func (s *Store) startMergerLocked(partition string, st *standbyState) {
	if st.merging || (st.end <= st.merged && !st.suspect) || s.appCtx.Err() != nil {
		return
	}
	st.merging = true
	s.appWG.Add(1)
	go func() {
		defer s.appWG.Done()
		s.runMerger(s.appCtx, partition, st)
	}()
}

// unplaced reports the last record of partition's standby that this site
// knows of but not yet as placed (0: none), whether the partition is
// suspected down, and how long an append should wait for those records'
// merge before it is held too (placeWait).
func (s *Store) unplaced(partition string, hold time.Duration) (upTo uint64, suspect bool, wait time.Duration) {
	s.standby(partition, func(st *standbyState) {
		if st.end > st.merged {
			upTo = st.end
		}
		suspect = st.suspect
		wait = placeWait(st, hold)
	})
	return upTo, suspect, wait
}

// placeWait is how long an append waits for the merge of the held records
// this process knows of before it holds its own messages too (the caller
// holds sbMu). If the partition has answered since the newest of them was
// held, its leader is there and their merge lands within a merger's round:
// the append waits up to hold for it, as it would for the partition
// itself, since holding it as well would only put it behind another
// merge, and a partition whose merges take longer than placeGrace (a
// loaded machine) would stay in that mode, every send held, for as long as
// sends keep coming (a fire drill under CI load held 190 sends after their
// partitions had new leaders). Otherwise someone found the partition
// silent a moment ago, and it has not answered this process since: it is
// most likely still electing, and the append is held after placeGrace.
func placeWait(st *standbyState, hold time.Duration) time.Duration {
	if !st.answered.IsZero() && st.answered.After(st.heldAt) {
		return hold
	}
	return min(hold, placeGrace)
}

// waitPlaced waits until every standby record of partition this site knew
// of when called is placed, or ctx ends.
func (s *Store) waitPlaced(ctx context.Context, partition string) error {
	upTo, _, _ := s.unplaced(partition, 0)
	for upTo > 0 {
		var done bool
		var moved chan struct{}
		s.standby(partition, func(st *standbyState) { done, moved = st.merged >= upTo, st.moved })
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-moved:
		}
	}
	return nil
}

// runMerger appends merge records to partition until every standby record
// this site knows of is placed and the partition is not suspect (each
// round reads the partition's last merge record from its leader, which
// ends the suspicion). Any number of sites may run one at once: each
// merge expects the previous one to be the subject's last, so exactly one
// of them lands per step, and the others learn of it.
func (s *Store) runMerger(ctx context.Context, partition string, st *standbyState) {
	standby := StandbyOf(partition)
	backoff := 50 * time.Millisecond
	var failingSince, warned time.Time // the first failure in a row; the last warning
	for ctx.Err() == nil {
		s.sbMu.Lock()
		end, merged := st.end, st.merged
		if end <= merged && !st.suspect {
			st.merging = false
			s.sbMu.Unlock()
			return
		}
		s.sbMu.Unlock()
		err := s.mergeOnce(ctx, partition, standby, end)
		if err == nil {
			if !warned.IsZero() {
				s.log.Warn("held messages placed again", "partition", partition, "standby", standby,
					"after", time.Since(failingSince).Round(time.Millisecond))
				warned = time.Time{}
			}
			backoff = 50 * time.Millisecond
			failingSince = time.Time{}
			continue
		}
		if failingSince.IsZero() {
			failingSince = time.Now()
		}
		// An election takes 4-9 s and a merge lands within milliseconds of
		// it: a merge failing for longer than mergeStallWarn in a row
		// keeps acknowledged messages from their members. Say so, with
		// the reason, where operators (and a drill's report) look.
		if failing := time.Since(failingSince); failing >= mergeStallWarn && time.Since(warned) >= mergeStallWarn && end > merged {
			warned = time.Now()
			s.log.Warn("held messages still not placed: their merge keeps failing", "partition", partition,
				"standby", standby, "held_to", end, "placed_to", merged, "failing_for", failing.Round(time.Millisecond), "err", err)
		} else {
			s.log.Debug("merge of held messages not placed yet; retrying", "partition", partition, "err", err)
		}
		sleepCtx(ctx, jitter(backoff))
		backoff = min(backoff*2, 100*time.Millisecond)
	}
	s.sbMu.Lock()
	st.merging = false
	s.sbMu.Unlock()
}

// mergeOnce reads the partition's last merge record from its leader and,
// if the standby holds records after it (up to end), appends the next.
func (s *Store) mergeOnce(ctx context.Context, partition, standby string, end uint64) error {
	ctx, cancel := context.WithTimeout(ctx, mergeAttemptTimeout)
	defer cancel()
	lastSeq, last, err := s.LastMerge(ctx, partition)
	if err != nil {
		return err
	}
	// The partition's leader answered: appends need not be held at once.
	s.setSuspect(partition, false)
	if lastSeq > 0 {
		// What it placed, as every tail expands it (our mergers never name
		// more than fits, but the log is what counts).
		placed, err := s.entriesOf(ctx, partition, salamander.Record{Type: salamander.RecMerge, Merge: &last})
		if err != nil {
			return err
		}
		m := placed[len(placed)-1].Merge
		if m == nil {
			// Another standby's range, or To <= From: it places nothing,
			// alike everywhere, and does not say where the chain is. Our
			// mergers never append one; the next merge waits for a repair.
			return fmt.Errorf("the last merge record of %s (%d) is malformed (%s %d..%d): it places nothing",
				partition, lastSeq, last.Standby, last.From, last.To)
		}
		last.To = m.To
	}
	s.noteMerged(standby, last.To)
	if last.To >= end {
		return nil
	}
	recs, err := s.readStandby(ctx, standby, last.To, min(end, last.To+MaxBatch-1))
	if err != nil {
		return err
	}
	_, to := splice(recs, last.To)
	if to == last.To {
		return fmt.Errorf("standby %s record %d cannot be placed", standby, last.To+1)
	}
	rec := salamander.Record{Type: salamander.RecMerge, At: time.Now().UTC(),
		Merge: &salamander.MergeRange{Standby: standby, From: last.To, To: to}}
	body, err := salamander.EncodeRecord(&rec)
	if err != nil {
		return err
	}
	_, err = s.js.Publish(ctx, subjectRoot(partition)+"."+mergeSubject, body,
		jetstream.WithExpectStream(natsName(partition)), jetstream.WithExpectLastSequencePerSubject(lastSeq),
		jetstream.WithMsgID(fmt.Sprintf("merge:%s:%d:%d", standby, last.To, to)))
	if err != nil {
		return fmt.Errorf("append merge record: %w", err)
	}
	s.noteMerged(standby, to)
	return nil
}

// LastMerge asks partition's leader for its last merge record: its stream
// sequence (0: none yet) and range. It needs the partition's leader, so
// while the partition elects one it fails (when ctx ends). The mergers
// read it to append the next merge; the fire drill reads it to see how far
// a partition's held messages are placed.
func (s *Store) LastMerge(ctx context.Context, partition string) (uint64, salamander.MergeRange, error) {
	seq, rec, found, err := s.LastRecord(ctx, partition, mergeSubject)
	switch {
	case err != nil:
		return 0, salamander.MergeRange{}, fmt.Errorf("last merge of %s: %w", partition, err)
	case !found:
		return 0, salamander.MergeRange{}, nil // no merge yet
	case rec.Merge == nil:
		return 0, salamander.MergeRange{}, fmt.Errorf("last merge of %s: not a merge record", partition)
	}
	return seq, *rec.Merge, nil
}

// LastRecord returns the newest record appended to stream under key (its
// sequence and the record; found is false when there is none), as the
// stream's leader has it, so it is never older than an acknowledged
// append. While the stream elects a leader it fails (when ctx ends).
func (s *Store) LastRecord(ctx context.Context, stream, key string) (seq uint64, rec salamander.Record, found bool, err error) {
	if err := s.apiAllowed(); err != nil {
		return 0, rec, false, err
	}
	req, _ := json.Marshal(map[string]string{"last_by_subj": subjectRoot(stream) + "." + key})
	data, err := s.apiRequest(ctx, "$JS.API.STREAM.MSG.GET."+natsName(stream), req, true, nil)
	if err != nil {
		return 0, rec, false, err
	}
	var res struct {
		Message *struct {
			Seq  uint64 `json:"seq"`
			Data []byte `json:"data"`
		} `json:"message"`
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return 0, rec, false, err
	}
	switch {
	case res.Error != nil && res.Error.ErrCode == errCodeNoMessageFound:
		return 0, rec, false, nil
	case res.Error != nil:
		return 0, rec, false, res.Error
	case res.Message == nil:
		return 0, rec, false, errors.New("empty answer")
	}
	if rec, err = salamander.DecodeRecord(res.Message.Data); err != nil {
		return 0, rec, false, err
	}
	return res.Message.Seq, rec, true, nil
}

// splice lists the messages a merge places, given the standby's records
// from after (recs[i] is record after+1+i): the messages of whole records,
// in order, as long as they fit in one record's positions with the merge
// record itself (MaxBatch-1 entries); and the last record placed. Only
// messages are placed; anything else in a standby is skipped alike
// everywhere. Every site computes the same from the same log.
func splice(recs []salamander.Record, after uint64) ([]salamander.Record, uint64) {
	var out []salamander.Record
	to := after
	for i, rec := range recs {
		var msgs []salamander.Record
		for _, e := range recordEntries(rec) {
			if e.Type == salamander.RecMessageSent {
				msgs = append(msgs, e)
			}
		}
		if len(out)+len(msgs) > MaxBatch-1 {
			break
		}
		out = append(out, msgs...)
		to = after + 1 + uint64(i)
	}
	return out, to
}

// errNotInLog is a standby record that no replica has (yet).
var errNotInLog = errors.New("not in the log")

// readStandby reads the standby's records after from, up to to, in order:
// from this site's own copy, else by direct get.
func (s *Store) readStandby(ctx context.Context, standby string, from, to uint64) ([]salamander.Record, error) {
	if to <= from {
		return nil, nil
	}
	seqs := make([]uint64, 0, to-from)
	for seq := from + 1; seq <= to; seq++ {
		seqs = append(seqs, seq)
	}
	got, err := s.readRecords(ctx, standby, seqs)
	if err != nil {
		return nil, err
	}
	out := make([]salamander.Record, 0, len(seqs))
	for _, seq := range seqs {
		rec, ok := got[seq]
		if !ok {
			return nil, fmt.Errorf("standby %s record %d: %w", standby, seq, errNotInLog)
		}
		out = append(out, rec)
	}
	return out, nil
}

// entriesOf lists the log entries of the record at seq of stream (the
// i-th at PositionOf(stream, seq, i)): a batch's records, or for a merge
// record in a partition the messages it places followed by the merge
// record itself (its To set to the last standby record it placed), or the
// record itself. Tails and Fetch both read records through here, so they
// always agree on positions.
func (s *Store) entriesOf(ctx context.Context, stream string, rec salamander.Record) ([]salamander.Record, error) {
	if rec.Type != salamander.RecMerge || !isPartition(stream) {
		return recordEntries(rec), nil
	}
	m := rec.Merge
	if m == nil || m.Standby != StandbyOf(stream) || m.To <= m.From {
		return []salamander.Record{{}}, nil // places nothing, alike everywhere
	}
	recs, err := s.readStandby(ctx, m.Standby, m.From, min(m.To, m.From+MaxBatch-1))
	if err != nil {
		return nil, err
	}
	msgs, to := splice(recs, m.From)
	placed := rec
	placed.Merge = &salamander.MergeRange{Standby: m.Standby, From: m.From, To: to}
	return append(msgs, placed), nil
}

// commitPartition appends a partition's batch, or holds its messages in
// the standby when the partition does not answer within HoldAfter (or is
// known not to answer). waited is how long the batch already waited for
// a forward's answer (forward.go), which counts towards HoldAfter.
func (a *appender) commitPartition(ctx context.Context, batch []*appendRequest, waited time.Duration) {
	p, hold := a.stream, a.s.cfg.HoldAfter
	hold = max(hold-waited, hold-forwardWait(hold))
	upTo, suspect, wait := a.s.unplaced(p, hold)
	if suspect && (upTo > 0 || holdsMessages(batch)) {
		// The partition did not answer a moment ago, and has not since:
		// hold at once. Also when nothing is held yet, as when the append
		// that found it silent carried only read markers (which are never
		// held): its messages would otherwise wait HoldAfter a second time.
		a.hold(ctx, batch)
		return
	}
	if upTo > 0 {
		// Held messages this site knows of go first: wait for their merge
		// (see placeWait for how long).
		wctx, cancel := context.WithTimeout(ctx, wait)
		err := a.s.waitPlaced(wctx, p)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.s.setSuspect(p, true)
			a.hold(ctx, batch)
			return
		}
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan []appendResult, 1)
	go func() { done <- a.publishBatch(pctx, p, batch) }()
	timer := time.NewTimer(hold)
	defer timer.Stop()
	select {
	case res := <-done:
		if res[0].err == nil {
			a.s.setSuspect(p, false) // it answers
		}
		answerAll(batch, res)
		return
	case <-timer.C:
	}
	cancel()
	if res := <-done; res[0].err == nil || ctx.Err() != nil {
		answerAll(batch, res) // it landed after all (or the store closes)
		return
	}
	// The abandoned append may still land (the old leader's quorum may
	// have it): its messages are then placed twice, and the read models
	// keep the first (one client id, one message).
	a.s.setSuspect(p, true)
	a.hold(ctx, batch)
}

// holdsMessages reports whether batch has a message, which hold can hold.
func holdsMessages(batch []*appendRequest) bool {
	return slices.ContainsFunc(batch, func(r *appendRequest) bool { return r.typ == salamander.RecMessageSent })
}

// hold appends batch's messages to the standby as one record and answers
// them held (at standby positions); anything else in batch is answered
// unavailable, for its client to retry, and so is a forwarded message
// whose site has stopped waiting for the answer (it holds the message
// itself).
func (a *appender) hold(ctx context.Context, batch []*appendRequest) {
	standby := StandbyOf(a.stream)
	results := make([]appendResult, len(batch))
	var msgs []*appendRequest
	var at []int
	now := time.Now()
	for i, r := range batch {
		if r.typ == salamander.RecMessageSent && !r.expired(now) {
			msgs, at = append(msgs, r), append(at, i)
		} else {
			results[i] = appendResult{err: errNoQuorum}
		}
	}
	if len(msgs) > 0 {
		var last uint64
		for j, r := range a.publishBatch(ctx, standby, msgs) {
			results[at[j]] = r
			if r.err == nil {
				last = RecordSeq(r.pos.Seq)
			}
		}
		if last > 0 {
			a.s.noteHeld(standby, last)
		}
	}
	answerAll(batch, results)
}
