package bench

import (
	"fmt"
	"math/bits"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// tracker follows every message of a run by client id, from the send to
// its acknowledgement and its arrival on each member's WebSocket. It
// measures latencies and rates inside the measured window and finds
// messages lost (acknowledged, yet missing at a member) or duplicated
// (delivered twice to one member, or seen under two seqs).
//
// Hundreds of receivers and senders report to it at once, so it is split
// into shards by client id: one lock for all of them made receivers queue
// for it, and the bench measured its own lock instead of the server.
type tracker struct {
	max    int64
	begun  atomic.Int64
	shards [trackerShards]trackerShard
}

const trackerShards = 64

// trackerShard tracks the messages whose client ids hash to it.
type trackerShard struct {
	mu       sync.Mutex
	from, to time.Time // the measured window
	msgs     map[string]*msgState
	send     histogram // intended start → ack, of sends intended in the window
	deliver  histogram // intended start → arrival at another member, same sends
	counts   trackerCounts
}

// trackerCounts are a shard's (or, summed, the tracker's) counters.
type trackerCounts struct {
	sent, acked, failed int64
	ackedIn             int64 // acks inside the window
	deliveredIn         int64 // deliveries to other members inside the window
	deliveries          int64 // every first delivery to another member
	dupDeliveries       int64 // deliveries beyond the first to one member
	unknown             int64 // messages with a client id this run never sent
	owed                int64 // deliveries still due for acknowledged messages
}

func (c *trackerCounts) add(o trackerCounts) {
	c.sent += o.sent
	c.acked += o.acked
	c.failed += o.failed
	c.ackedIn += o.ackedIn
	c.deliveredIn += o.deliveredIn
	c.deliveries += o.deliveries
	c.dupDeliveries += o.dupDeliveries
	c.unknown += o.unknown
	c.owed += o.owed
}

// msgState is one message's progress.
type msgState struct {
	room     *room
	sender   int // position of the sender in room.members
	intended time.Time
	seq      uint64 // from the ack or the first delivery
	acked    bool
	conflict bool    // seen under two different seqs
	otherSeq uint64  // the first seq it was seen under besides seq
	got      []uint8 // deliveries per member position
	gotN     int     // members other than the sender that got it
}

func newTracker(max int) *tracker {
	t := &tracker{max: int64(max)}
	for i := range t.shards {
		t.shards[i].msgs = map[string]*msgState{}
	}
	return t
}

// shard returns the shard of a client id (FNV-1a).
func (t *tracker) shard(id string) *trackerShard {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	return &t.shards[h%trackerShards]
}

// setWindow sets the measured window.
func (t *tracker) setWindow(from, to time.Time) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		sh.from, sh.to = from, to
		sh.mu.Unlock()
	}
}

func (sh *trackerShard) inWindow(at time.Time) bool { return !at.Before(sh.from) && at.Before(sh.to) }

// begin registers a send about to start; false when the run has tracked
// as many messages as it may.
func (t *tracker) begin(id string, r *room, sender int, intended time.Time) bool {
	if t.begun.Add(1) > t.max {
		return false
	}
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.msgs[id] = &msgState{room: r, sender: sender, intended: intended, got: make([]uint8, len(r.members))}
	sh.counts.sent++
	return true
}

// ack records a send's acknowledgement at time at with the message's seq.
func (t *tracker) ack(id string, seq uint64, at time.Time) {
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m := sh.msgs[id]
	if m == nil || m.acked {
		return
	}
	m.acked = true
	sh.counts.acked++
	m.sawSeq(seq)
	sh.counts.owed += int64(len(m.room.members) - 1 - m.gotN)
	if sh.inWindow(at) {
		sh.counts.ackedIn++
	}
	if sh.inWindow(m.intended) {
		sh.send.add(at.Sub(m.intended))
	}
}

// fail records a send that ended without an acknowledgement.
func (t *tracker) fail(id string) {
	sh := t.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.counts.failed++
}

// delivered records message (room, seq, client id) arriving at time at on
// the WebSocket of member u.
func (t *tracker) delivered(u *user, roomID string, seq uint64, clientID string, at time.Time) {
	sh := t.shard(clientID)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	m := sh.msgs[clientID]
	if m == nil || m.room.id != roomID {
		sh.counts.unknown++
		return
	}
	m.sawSeq(seq)
	pos, ok := m.room.pos[u.idx]
	if !ok {
		sh.counts.unknown++ // a member this run did not put in the room
		return
	}
	if m.got[pos] < 255 {
		m.got[pos]++
	}
	if m.got[pos] > 1 {
		sh.counts.dupDeliveries++
		return
	}
	if pos == m.sender {
		return // the sender's own devices: not a delivery to another member
	}
	m.gotN++
	sh.counts.deliveries++
	if m.acked {
		sh.counts.owed--
	}
	if sh.inWindow(at) {
		sh.counts.deliveredIn++
	}
	if sh.inWindow(m.intended) {
		sh.deliver.add(at.Sub(m.intended))
	}
}

// sawSeq checks that a message is seen under one seq only.
func (m *msgState) sawSeq(seq uint64) {
	switch {
	case m.seq == 0:
		m.seq = seq
	case m.seq != seq:
		if !m.conflict {
			m.otherSeq = seq
		}
		m.conflict = true
	}
}

// outstanding returns the deliveries still due for acknowledged messages.
func (t *tracker) outstanding() int64 {
	var n int64
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		n += sh.counts.owed
		sh.mu.Unlock()
	}
	return n
}

// totals sums the shards: counters and both histograms.
func (t *tracker) totals() (c trackerCounts, send, deliver histogram) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		c.add(sh.counts)
		send.merge(&sh.send)
		deliver.merge(&sh.deliver)
		sh.mu.Unlock()
	}
	return c, send, deliver
}

// maxDuplicateSamples bounds the duplicated messages a report describes.
const maxDuplicateSamples = 5

// verdict counts the messages lost and duplicated so far, and describes
// the first few duplicated ones (samples).
func (t *tracker) verdict() (lost, lostDeliveries, duplicated int, samples []string) {
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for id, m := range sh.msgs {
			if m.acked {
				if missing := len(m.room.members) - 1 - m.gotN; missing > 0 {
					lost++
					lostDeliveries += missing
				}
			}
			dup := m.conflict
			for _, n := range m.got {
				dup = dup || n > 1
			}
			if dup {
				duplicated++
				if len(samples) < maxDuplicateSamples {
					samples = append(samples, m.describe(id))
				}
			}
		}
		sh.mu.Unlock()
	}
	return lost, lostDeliveries, duplicated, samples
}

// describe says what was seen of one message (client id): its room, the
// seqs it came under, and how often each member got it.
func (m *msgState) describe(id string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client id %s in room %s: seq %d", id, m.room.id, m.seq)
	if m.conflict {
		fmt.Fprintf(&b, " and %d", m.otherSeq)
	}
	fmt.Fprintf(&b, ", acked %v; deliveries per member:", m.acked)
	for pos, n := range m.got {
		role := ""
		if pos == m.sender {
			role = " (sender)"
		}
		fmt.Fprintf(&b, " %s%s %d", m.room.members[pos].name, role, n)
	}
	return b.String()
}

// histogram counts durations in microseconds in log-linear buckets: exact
// below 64 µs, then 64 buckets per power of two (under 1.6 % error).
type histogram struct {
	counts [64 * 40]uint64
	n      uint64
	max    time.Duration
}

const histSub = 64

// merge adds o's counts to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

func (h *histogram) add(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.n++
	h.max = max(h.max, d)
	h.counts[min(histBucket(uint64(d/time.Microsecond)), len(h.counts)-1)]++
}

// histBucket maps v (µs) to its bucket.
func histBucket(v uint64) int {
	if v < histSub {
		return int(v)
	}
	shift := bits.Len64(v) - 7 // v>>shift is in [64, 128)
	return (shift+1)*histSub + int(v>>shift) - histSub
}

// histValue returns the middle of bucket i, in µs.
func histValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	low := uint64(i%histSub+histSub) << shift
	return float64(low) + float64(uint64(1)<<shift)/2
}

// quantile returns the q-quantile (0 < q ≤ 1) in milliseconds, or 0 when
// empty.
func (h *histogram) quantile(q float64) float64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = max(min(rank, h.n), 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histValue(i)/1000, float64(h.max)/float64(time.Millisecond))
		}
	}
	return float64(h.max) / float64(time.Millisecond)
}
