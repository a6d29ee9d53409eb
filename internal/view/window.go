package view

import "time"

// clientWindow is a room's dedupe window: the client keys (clientKeyOf) of
// its newest messages, at most DedupeWindow of them, each with its seq.
//
// A room's messages have consecutive seqs, so the window holds only the
// keys, oldest first, in a ring, and a key's seq is the oldest's plus its
// place in the ring. An open-addressing index of 16-bit ring places finds
// a key: a full window is 48 KiB (32 KiB of keys, 16 KiB of index), where
// a map from key to seq and a FIFO of keys took ~190 KiB. Keys are the
// first 64 bits of a SHA-256, so their low bits are already uniform and
// serve as the hash.
type clientWindow struct {
	keys  []uint64 // the ring; its length is a power of two
	head  int      // the oldest key's place in the ring
	n     int      // keys held
	first uint64   // the oldest key's seq
	// slots is the index: linear probing over a power-of-two table at
	// most half full; 0 is empty, otherwise a ring place plus one.
	slots []uint16
}

// minWindowRing is the ring a window starts with: most rooms have few
// messages, and a window grows by doubling up to DedupeWindow.
const minWindowRing = 8

// seqOf returns the seq of the message with client key k, if it is in the
// window.
func (w *clientWindow) seqOf(k uint64) (uint64, bool) {
	if w.n == 0 {
		return 0, false
	}
	mask := len(w.slots) - 1
	for i := int(k) & mask; ; i = (i + 1) & mask {
		s := w.slots[i]
		if s == 0 {
			return 0, false
		}
		if p := int(s - 1); w.keys[p] == k {
			return w.first + uint64((p-w.head)&(len(w.keys)-1)), true
		}
	}
}

// add records the room's next message, at seq, under client key k; the
// oldest goes once the window holds DedupeWindow. seq follows the newest
// in the window: a room's seqs are consecutive, and a window is loaded
// whole (View.loadIDs). Were it ever not, the window would start over at
// seq rather than give a key a wrong seq.
func (w *clientWindow) add(k, seq uint64) {
	if w.n > 0 && seq != w.first+uint64(w.n) {
		*w = clientWindow{}
	}
	if w.n == 0 {
		w.first, w.head = seq, 0
	}
	switch {
	case w.n == len(w.keys) && w.n < DedupeWindow:
		w.grow()
	case w.n == DedupeWindow:
		w.unindex(w.head)
		w.head = (w.head + 1) & (len(w.keys) - 1)
		w.first++
		w.n--
	}
	p := (w.head + w.n) & (len(w.keys) - 1)
	w.keys[p] = k
	w.n++
	w.index(p)
}

// bytes is what the window's arrays take.
func (w *clientWindow) bytes() int { return 8*cap(w.keys) + 2*cap(w.slots) }

// grow doubles the ring (the oldest first again) and rebuilds the index.
func (w *clientWindow) grow() {
	size := max(minWindowRing, 2*len(w.keys))
	keys := make([]uint64, size)
	for i := range w.n {
		keys[i] = w.keys[(w.head+i)&(len(w.keys)-1)]
	}
	w.keys, w.head = keys, 0
	w.slots = make([]uint16, 2*size)
	for p := range w.n {
		w.index(p)
	}
}

// index enters ring place p under its key. A key already indexed (two
// client ids whose keys collide, ~2^-64) is found at its newer place
// from then on.
func (w *clientWindow) index(p int) {
	mask := len(w.slots) - 1
	k := w.keys[p]
	for i := int(k) & mask; ; i = (i + 1) & mask {
		s := w.slots[i]
		if s == 0 || w.keys[s-1] == k {
			w.slots[i] = uint16(p + 1)
			return
		}
	}
}

// unindex removes ring place p from the index, if the index points there,
// and moves the entries after it back so that no probe ends early
// (deletion from a linear-probing table without tombstones).
func (w *clientWindow) unindex(p int) {
	mask := len(w.slots) - 1
	i := int(w.keys[p]) & mask
	for ; ; i = (i + 1) & mask {
		s := w.slots[i]
		if s == 0 {
			return // not indexed at p (a newer place has its key)
		}
		if int(s-1) == p {
			break
		}
	}
	w.slots[i] = 0
	for j := (i + 1) & mask; w.slots[j] != 0; j = (j + 1) & mask {
		home := int(w.keys[w.slots[j]-1]) & mask
		// The entry at j may move to the hole at i unless its home lies
		// cyclically in (i, j]: then a probe from home never passes i.
		if (j-home)&mask >= (j-i)&mask {
			w.slots[i], w.slots[j] = w.slots[j], 0
			i = j
		}
	}
}

// WindowIdle is how long a room's dedupe window stays in memory after the
// room's last message. A window is up to 48 KiB, and a site applies every
// room's messages: kept for every room used since the site started, the
// windows would grow with the rooms that ever talk. A room that talks
// again after WindowIdle has its window read from the store again
// (up to ~1.8 ms at each site for a full window, outside the model's lock; see
// View.preloadWindows), which a conversation pays once.
const WindowIdle = 30 * time.Minute

// windowSweepEvery is how often the applier looks for idle windows (or
// every idle time, when that is shorter: View.sweepEvery). One
// look visits at most maxWindowVisits rooms (~4 ns each) and drops at most
// maxEvictionsPerSweep windows, so that the model's lock is held for a
// millisecond or so; a room that cannot go yet is passed over, not waited
// for, so the rooms behind it are still looked at.
const (
	windowSweepEvery     = 10 * time.Second
	maxWindowVisits      = 250000
	maxEvictionsPerSweep = 10000
)

// A window's ring holds at most the power of two at or above
// DedupeWindow, and its index holds ring places plus one in 16 bits.
var _ [1<<15 - DedupeWindow]struct{}

// windowSet is the rooms whose dedupe windows are in memory, the least
// recently used first: what evictIdle drops from the front. The applier
// changes it under the model's write lock.
type windowSet struct {
	head, tail *roomState
	count      int
	bytes      int
	// loads counts windows read from the store; evictions windows dropped.
	loads, evictions uint64
}

// windowLinks are a room's place in the windowSet.
type windowLinks struct {
	prev, next *roomState
	usedAt     time.Time // the room's last message applied, or its window loaded
	// lastStream and lastPos are the log position of the room's newest
	// message: its window may leave memory once the store holds it.
	lastStream string
	lastPos    uint64
}

// put enters rs, whose window has just been loaded (fromStore) or
// created with the room, as used at now.
func (s *windowSet) put(rs *roomState, now time.Time, fromStore bool) {
	if fromStore {
		s.loads++
	}
	s.count++
	s.bytes += rs.ids.bytes()
	s.link(rs, now)
}

// used moves rs, whose window changed by grew bytes, to the back as
// used at now.
func (s *windowSet) used(rs *roomState, now time.Time, grew int) {
	s.bytes += grew
	if s.tail == rs {
		rs.win.usedAt = now
		return
	}
	s.unlink(rs)
	s.link(rs, now)
}

func (s *windowSet) link(rs *roomState, now time.Time) {
	rs.win.usedAt = now
	rs.win.prev, rs.win.next = s.tail, nil
	if s.tail != nil {
		s.tail.win.next = rs
	} else {
		s.head = rs
	}
	s.tail = rs
}

func (s *windowSet) unlink(rs *roomState) {
	if rs.win.prev != nil {
		rs.win.prev.win.next = rs.win.next
	} else {
		s.head = rs.win.next
	}
	if rs.win.next != nil {
		rs.win.next.win.prev = rs.win.prev
	} else {
		s.tail = rs.win.prev
	}
	rs.win.prev, rs.win.next = nil, nil
}

// evictIdle drops the windows of rooms used before cutoff whose newest
// message the store holds (stored gives how far it holds a stream): such
// a window is read back exactly as it was. It visits at most visits rooms
// from the front, the least recently used, drops at most drops windows,
// and passes over a room used since cutoff, one the store does not hold
// yet (the writer commits every second; a later sweep gets it) and one
// keep names. Rooms are
// in the order they were used, which is the order of their times except
// while a site catches up (see applier.usedAt): then an old room may sit
// behind recent ones.
func (s *windowSet) evictIdle(cutoff time.Time, stored func(stream string) uint64, keep func(*roomState) bool, visits, drops int) {
	next := s.head
	for ; visits > 0 && drops > 0 && next != nil; visits-- {
		rs := next
		next = rs.win.next
		if !rs.win.usedAt.Before(cutoff) || rs.win.lastPos > stored(rs.win.lastStream) || keep(rs) {
			continue
		}
		s.unlink(rs)
		s.count--
		s.bytes -= rs.ids.bytes()
		s.evictions++
		drops--
		rs.ids, rs.idsLoaded = clientWindow{}, false
	}
}
