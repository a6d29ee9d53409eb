package view

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

// len is how many messages the window holds.
func (w *clientWindow) len() int { return w.n }

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
