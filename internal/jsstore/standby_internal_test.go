package jsstore

import "testing"

// Partitions and standbys are told by name, without allocating.
func TestStreamKinds(t *testing.T) {
	for _, c := range []struct {
		name               string
		partition, standby bool
	}{
		{"p0", true, false}, {"p1023", true, false}, {"s0", false, true}, {"s17", false, true},
		{"acct", false, false}, {"p", false, false}, {"s", false, false}, {"", false, false},
		{"px", false, false}, {"p1x", false, false}, {"s-1", false, false}, {"ops", false, false},
	} {
		if got := isPartition(c.name); got != c.partition {
			t.Errorf("isPartition(%q) = %v", c.name, got)
		}
		if got := IsStandby(c.name); got != c.standby {
			t.Errorf("IsStandby(%q) = %v", c.name, got)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = IsStandby("p3") || isPartition("acct") }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
