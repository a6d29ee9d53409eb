package view

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
)

// A room's member list answers as a map of members to read markers does,
// through random joins, leaves and reads, and every audience it handed out
// stays the members it named when it was handed out.
func TestMemberListFollowsAMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var l memberList
	ref := map[string]uint64{}
	type handedOut struct{ got, want []string }
	var audiences []handedOut
	for step := range 20000 {
		user := fmt.Sprintf("u%02d", rng.IntN(40))
		switch op := rng.IntN(10); {
		case op < 3:
			seq := rng.Uint64N(1000)
			_, was := ref[user]
			if isNew := l.add(user, seq); isNew == was {
				t.Fatalf("step %d: add(%s) said new=%v, member before: %v", step, user, isNew, was)
			}
			ref[user] = seq
		case op < 5:
			_, was := ref[user]
			if l.remove(user) != was {
				t.Fatalf("step %d: remove(%s) disagrees with a member before: %v", step, user, was)
			}
			delete(ref, user)
		case op < 7:
			seq := rng.Uint64N(1000)
			l.setRead(user, seq)
			if _, ok := ref[user]; ok {
				ref[user] = seq
			}
		case op < 8:
			a := l.audience()
			audiences = append(audiences, handedOut{a, slices.Clone(a)})
		}
		read, ok := l.read(user)
		if want, wantOK := ref[user]; ok != wantOK || read != want || l.has(user) != wantOK {
			t.Fatalf("step %d: read(%s) = %d, %v; has %v; want %d, %v", step, user, read, ok, l.has(user), want, wantOK)
		}
		if want := slices.Sorted(maps.Keys(ref)); !slices.Equal(l.names, want) || l.len() != len(want) || len(l.reads) != len(want) {
			t.Fatalf("step %d: names %v (%d reads), want %v", step, l.names, len(l.reads), want)
		}
	}
	for i, a := range audiences {
		if !slices.Equal(a.got, a.want) {
			t.Fatalf("audience %d changed after it was handed out: %v, was %v", i, a.got, a.want)
		}
	}
	if len(audiences) < 1000 {
		t.Fatalf("only %d audiences handed out", len(audiences))
	}
}

// Before anything is handed out, the list grows in place (a room loaded
// at start-up with hundreds of members does not copy its names per
// member); after, the first change copies once and the next grow in place
// again.
func TestMemberListCopiesOnlyWhatWasHandedOut(t *testing.T) {
	var l memberList
	for i := range 200 {
		l.add(fmt.Sprintf("m%03d", i), 0)
	}
	spare := memberList{names: make([]string, 0, 8), reads: make([]uint64, 0, 8)}
	if allocs := testing.AllocsPerRun(1, func() {
		spare.names, spare.reads = spare.names[:0], spare.reads[:0]
		for _, u := range []string{"d", "b", "c", "a"} {
			spare.add(u, 0)
		}
	}); allocs != 0 {
		t.Fatalf("adds into room to spare allocated %v times", allocs)
	}
	a := l.audience()
	l.add("m999", 0)
	if &a[0] == &l.names[0] {
		t.Fatal("a join after the audience was handed out changed it in place")
	}
	b := l.names
	l.remove("m000")
	if &b[0] != &l.names[0] {
		t.Fatal("a leave with nothing handed out copied the names")
	}
	if !l.has("m999") || l.has("m000") || l.len() != 200 {
		t.Fatalf("after a join and a leave: %d members", l.len())
	}
}
