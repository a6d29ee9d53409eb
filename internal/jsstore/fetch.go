package jsstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// fetchRound bounds one round of direct gets in Fetch; a record that a
// lagging replica does not hold yet is asked for again, fetchAttempts
// times at most.
const (
	fetchRound    = 500 * time.Millisecond
	fetchAttempts = 6
)

// Fetch returns the log entries at positions of one stream: the record of
// each position once. The read models keep message bodies here, in the log
// every site already holds durably, rather than copying them into their
// own store. Records come from this site's own copy of the log when it
// holds them (CopyDir), so no other site's loss can stall the read; the
// rest by direct get from the replicas, all requests in flight together.
// Callers ask only for positions they have applied, so every one exists; a
// replica that has not stored one yet answers "not found" and is asked
// again.
func (s *Store) Fetch(ctx context.Context, stream string, positions []uint64) (map[uint64]salamander.Record, error) {
	want := map[uint64][]uint64{} // record seq -> positions in it
	for _, p := range positions {
		want[RecordSeq(p)] = append(want[RecordSeq(p)], p)
	}
	seqs := make([]uint64, 0, len(want))
	for seq := range want {
		seqs = append(seqs, seq)
	}
	recs, err := s.readRecords(ctx, stream, seqs)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]salamander.Record, len(positions))
	for seq, rec := range recs {
		entries, err := s.entriesOf(ctx, stream, rec)
		if err != nil {
			return nil, salamander.Errorf(salamander.CodeUnavailable,
				"this site cannot read the log right now (%v); try again", err)
		}
		for _, p := range want[seq] {
			if i := int(p & idxMask); i < len(entries) {
				out[p] = entries[i]
			}
		}
	}
	return out, nil
}

// readRecords returns the records of stream at seqs: from this site's own
// copy of the log when it holds them, the rest by direct get, all in
// flight together, asked again while a replica answers "not found". A
// record that does not decode is returned as an empty record: every tail
// skips it (its one entry is empty), and a merge places nothing of it;
// failing here stopped every merge, and every tail of the partition, at
// a standby record that does not decode, for good.
func (s *Store) readRecords(ctx context.Context, stream string, seqs []uint64) (map[uint64]salamander.Record, error) {
	out := make(map[uint64]salamander.Record, len(seqs))
	want := make(map[uint64]bool, len(seqs))
	for _, seq := range seqs {
		want[seq] = true
	}
	take := func(seq uint64, data []byte) {
		rec, err := salamander.DecodeRecord(data)
		if err != nil {
			s.log.Warn("a record of the log does not decode: it is taken as empty", "stream", stream, "seq", seq, "err", err)
			rec = salamander.Record{}
		}
		out[seq] = rec
		delete(want, seq)
	}
	if c := s.copyOf(stream); c != nil {
		for seq := range want {
			if data, ok := c.read(seq); ok {
				take(seq, data)
				s.ownReads.Add(1)
			}
		}
		if len(want) == 0 {
			return out, nil
		}
	}
	replies := make(chan *nats.Msg, len(want)+8)
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.ChanSubscribe(inbox+".*", replies)
	if err != nil {
		return nil, fmt.Errorf("jsstore: fetch from %s: %w", stream, err)
	}
	defer sub.Unsubscribe()
	subject := "$JS.API.DIRECT.GET." + natsName(stream)
	for attempt := 1; len(want) > 0; attempt++ {
		for seq := range want {
			req := []byte(`{"seq":` + strconv.FormatUint(seq, 10) + `}`)
			if err := s.nc.PublishRequest(subject, inbox+"."+strconv.FormatUint(seq, 10), req); err != nil {
				return nil, fmt.Errorf("jsstore: fetch from %s: %w", stream, err)
			}
		}
		round := time.NewTimer(fetchRound)
		pending := len(want)
	collect:
		for pending > 0 {
			select {
			case <-ctx.Done():
				round.Stop()
				return nil, ctx.Err()
			case <-round.C:
				break collect
			case msg := <-replies:
				seq, err := strconv.ParseUint(msg.Subject[len(inbox)+1:], 10, 64)
				if err != nil || !want[seq] {
					continue // a late answer to an earlier round
				}
				if isStatus(msg, stream) {
					pending--
					continue // not stored at that replica yet: next round
				}
				take(seq, msg.Data)
				s.replicaReads.Add(1)
				pending--
			}
		}
		round.Stop()
		if len(want) > 0 {
			if attempt >= fetchAttempts {
				return nil, salamander.Errorf(salamander.CodeUnavailable,
					"this site cannot read %d records of the log right now; try again", len(want))
			}
			sleepCtx(ctx, time.Duration(attempt)*20*time.Millisecond)
		}
	}
	return out, nil
}
