package view

import "slices"

// memberList is a room's members, sorted by name, with each one's read
// marker beside it. Most rooms are direct rooms of two: a Go map of two
// members and their markers costs ~250 B, these two slices ~50 B, and a
// room's members are at most salamander.MaxGroupMembers, so a binary
// search finds one in at most nine comparisons.
//
// Each message applied hands the room's names to the hub as its audience.
// Once handed out (shared), names is never changed in place: a join or a
// leave makes a new slice, so an audience already handed out stays what it
// was at its message (and no message copies the names). Before anything
// is handed out — a room being created or loaded — names grows in place.
type memberList struct {
	names  []string // sorted
	reads  []uint64 // reads[i] is names[i]'s read marker
	shared bool     // names has been handed out
}

func (l *memberList) len() int { return len(l.names) }

// has reports whether user is a member.
func (l *memberList) has(user string) bool {
	_, ok := slices.BinarySearch(l.names, user)
	return ok
}

// read is user's read marker, if a member.
func (l *memberList) read(user string) (uint64, bool) {
	if i, ok := slices.BinarySearch(l.names, user); ok {
		return l.reads[i], true
	}
	return 0, false
}

// setRead sets a member's read marker; it does nothing for anyone else.
func (l *memberList) setRead(user string, seq uint64) {
	if i, ok := slices.BinarySearch(l.names, user); ok {
		l.reads[i] = seq
	}
}

// add makes user a member with read marker seq, or sets the marker of a
// member; it reports whether user is new.
func (l *memberList) add(user string, seq uint64) bool {
	i, ok := slices.BinarySearch(l.names, user)
	if ok {
		l.reads[i] = seq
		return false
	}
	if l.shared {
		names := make([]string, len(l.names)+1)
		copy(names, l.names[:i])
		names[i] = user
		copy(names[i+1:], l.names[i:])
		l.names, l.shared = names, false
	} else {
		l.names = slices.Insert(l.names, i, user)
	}
	l.reads = slices.Insert(l.reads, i, seq)
	return true
}

// remove ends user's membership; it reports whether user was a member.
func (l *memberList) remove(user string) bool {
	i, ok := slices.BinarySearch(l.names, user)
	if !ok {
		return false
	}
	if l.shared {
		names := make([]string, 0, len(l.names)-1)
		l.names = append(append(names, l.names[:i]...), l.names[i+1:]...)
		l.shared = false
	} else {
		l.names = slices.Delete(l.names, i, i+1)
	}
	l.reads = slices.Delete(l.reads, i, i+1)
	return true
}

// audience returns the members' names, sorted, to be kept by the caller
// but never changed: a join or leave after this makes a new slice.
func (l *memberList) audience() []string {
	l.shared = true
	return l.names
}
