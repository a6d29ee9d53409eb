package view

import (
	"math/rand/v2"
	"testing"
)

// refWindow is the dedupe window's rule written plainly: the newest
// DedupeWindow messages, a key's seq the newest message's with it.
type refWindow struct{ keys, seqs []uint64 }

func (r *refWindow) add(k, seq uint64) {
	r.keys, r.seqs = append(r.keys, k), append(r.seqs, seq)
	if len(r.keys) > DedupeWindow {
		r.keys, r.seqs = r.keys[1:], r.seqs[1:]
	}
}

func (r *refWindow) seqOf(k uint64) (uint64, bool) {
	for i := len(r.keys) - 1; i >= 0; i-- {
		if r.keys[i] == k {
			return r.seqs[i], true
		}
	}
	return 0, false
}

// The window answers as the rule does while it grows, fills and slides,
// with keys that share their low bits (long probe runs, deletions moving
// entries back) and keys that repeat.
func TestClientWindowFollowsTheRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		key  func(r *rand.Rand) uint64
	}{
		{"random keys", func(r *rand.Rand) uint64 { return r.Uint64() }},
		// Low bits from a few values: runs of colliding homes.
		{"clustered keys", func(r *rand.Rand) uint64 { return r.Uint64()<<20 | uint64(r.IntN(16)) }},
		// A small key space: keys come back within the window.
		{"repeating keys", func(r *rand.Rand) uint64 { return uint64(r.IntN(6000)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(len(tc.name))))
			var w clientWindow
			var ref refWindow
			var probes []uint64
			seq := uint64(100)
			for i := range 3*DedupeWindow + 500 {
				k := tc.key(rng)
				w.add(k, seq)
				ref.add(k, seq)
				seq++
				probes = append(probes, k, tc.key(rng))
				if i%499 == 0 || i > 3*DedupeWindow+450 {
					// The newest keys, and some from anywhere: within the
					// window, gone from it, or never added.
					check := probes[max(0, len(probes)-300):]
					for range 100 {
						check = append(check, probes[rng.IntN(len(probes))])
					}
					for _, p := range check {
						got, gok := w.seqOf(p)
						want, wok := ref.seqOf(p)
						if got != want || gok != wok {
							t.Fatalf("after %d adds: seqOf(%#x) = %d, %v; the rule says %d, %v", i+1, p, got, gok, want, wok)
						}
					}
				}
				if w.len() != len(ref.keys) {
					t.Fatalf("after %d adds: holds %d, want %d", i+1, w.len(), len(ref.keys))
				}
			}
		})
	}
}

// A full window is 48 KiB, and a room with few messages holds a small one.
func TestClientWindowSize(t *testing.T) {
	var w clientWindow
	for seq := uint64(1); seq <= 5; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	if got := w.bytes(); got != 8*minWindowRing+2*2*minWindowRing {
		t.Fatalf("five messages take %d B", got)
	}
	for seq := uint64(6); seq <= 3*DedupeWindow; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	if got, want := w.bytes(), 8*DedupeWindow+2*2*DedupeWindow; got != want || want != 48<<10 {
		t.Fatalf("a full window takes %d B, want %d (48 KiB)", got, want)
	}
}

// A seq that does not follow the window's newest starts the window over:
// a key is never given a seq it was not sent at.
func TestClientWindowStartsOverAtAGap(t *testing.T) {
	var w clientWindow
	w.add(1, 10)
	w.add(2, 11)
	w.add(3, 20)
	if _, ok := w.seqOf(1); ok || w.len() != 1 {
		t.Fatalf("after a gap the window holds %d keys, 1 found: %v", w.len(), ok)
	}
	if seq, ok := w.seqOf(3); !ok || seq != 20 {
		t.Fatalf("seqOf(3) = %d, %v", seq, ok)
	}
}

// forge gives the message at seq, in the window, the key k instead of its
// own: what a collision of two client keys would do.
func (w *clientWindow) forge(k, seq uint64) {
	p := (w.head + int(seq-w.first)) & (len(w.keys) - 1)
	w.unindex(p)
	w.keys[p] = k
	w.index(p)
}

func BenchmarkClientWindow(b *testing.B) {
	var w clientWindow
	seq := uint64(1)
	for ; seq <= DedupeWindow; seq++ {
		w.add(seq*0x9e3779b97f4a7c15, seq)
	}
	b.ReportAllocs()
	for b.Loop() {
		k := seq * 0x9e3779b97f4a7c15
		if _, dup := w.seqOf(k); !dup {
			w.add(k, seq)
		}
		seq++
	}
}
