package view_test

import (
	"maps"
	"slices"
	"strings"

	"github.com/salamander-chat/salamander"
)

// mergeRef is the reference TestMergeModel checks the read models
// against: the merge rules written down as plainly as possible, over the
// log as the generator appended it, with none of the read model's or the
// tail's machinery. Each partition is walked in order: a batch is its
// entries, a merge is the messages of its standby's records From+1…To
// (whole records, at most 1,023 messages in all; nothing at all if it
// names another standby or To <= From), and a message counts only if its
// sender is a member then and its (sender, client id) is new in the room.
// Room seqs are 1, 2, 3… in that order.
type mergeRef struct {
	// standby holds each standby stream's records: [i] is sequence i+1.
	standby map[string][]salamander.Record
	// placed is the last standby record a merge placed.
	placed map[string]uint64
	rooms  map[string]*refRoom
	stats  *mergeStats
}

// mergeStats counts what the generated logs covered, over all cases.
type mergeStats struct {
	Merges     int // valid merge records
	Partial    int // … that named more than fits, and placed only part
	FullBudget int // … that placed 1,023 messages
	NothingNew int // … whose messages were all placed before
	Malformed  int // merge records that must place nothing
	Duplicates int // messages without effect: (sender, client id) placed before
	NonMembers int // messages without effect: not a member
	HeldShown  int // held messages a check found listed (View.HeldBy)
	// MidRecordStops counts the crash site stopped between two entries
	// of one record (a batch's or a merge's).
	MidRecordStops int
}

// refRoom is a room as the reference sees it.
type refRoom struct {
	stream  string // the partition it was created in
	members map[string]bool
	msgs    []refMsg // msgs[i] has seq i+1
	ids     map[string]bool
}

// refMsg is a placed message with the members it went to.
type refMsg struct {
	room, sender, clientID, text string
	seq                          uint64
	audience                     []string // sorted
}

// mergeBudget is how many messages one merge record places at most (the
// merge record itself takes the last of a record's 1,024 positions).
const mergeBudget = 1023

func newMergeRef(stats *mergeStats) *mergeRef {
	return &mergeRef{standby: map[string][]salamander.Record{}, placed: map[string]uint64{}, rooms: map[string]*refRoom{},
		stats: stats}
}

// add takes the next record of stream.
func (r *mergeRef) add(stream string, rec salamander.Record) {
	if strings.HasPrefix(stream, "s") {
		r.standby[stream] = append(r.standby[stream], rec)
		return
	}
	switch rec.Type {
	case salamander.RecBatch:
		for _, e := range rec.Batch {
			r.entry(stream, e)
		}
	case salamander.RecMerge:
		msgs, to := r.expand(stream, rec.Merge)
		if to == 0 {
			r.stats.Malformed++
			return
		}
		placed := r.count()
		for _, e := range msgs {
			r.entry(stream, e)
		}
		r.placed[rec.Merge.Standby] = max(r.placed[rec.Merge.Standby], to)
		r.stats.Merges++
		if to < rec.Merge.To {
			r.stats.Partial++
		}
		if len(msgs) == mergeBudget {
			r.stats.FullBudget++
		}
		if len(msgs) > 0 && r.count() == placed {
			r.stats.NothingNew++
		}
	default:
		r.entry(stream, rec)
	}
}

// expand lists the messages a merge record in partition places, and the
// last standby record it places (m.From when it places none; 0 when it is
// malformed).
func (r *mergeRef) expand(partition string, m *salamander.MergeRange) ([]salamander.Record, uint64) {
	if m == nil || m.Standby != "s"+strings.TrimPrefix(partition, "p") || m.To <= m.From {
		return nil, 0
	}
	var out []salamander.Record
	to := m.From
	for seq := m.From + 1; seq <= m.To && seq <= m.From+mergeBudget; seq++ {
		msgs := messagesOf(r.standby[m.Standby][seq-1])
		if len(out)+len(msgs) > mergeBudget {
			break
		}
		out, to = append(out, msgs...), seq
	}
	return out, to
}

// entry applies one entry of a partition.
func (r *mergeRef) entry(stream string, e salamander.Record) {
	room := r.rooms[e.Room]
	switch e.Type {
	case salamander.RecRoomCreated:
		if room == nil && len(e.Members) > 0 {
			room = &refRoom{stream: stream, members: map[string]bool{}, ids: map[string]bool{}}
			for _, u := range e.Members {
				room.members[u] = true
			}
			r.rooms[e.Room] = room
		}
	case salamander.RecRoomJoined:
		if room != nil && room.members[e.By] {
			for _, u := range e.Members {
				room.members[u] = true
			}
		}
	case salamander.RecRoomLeft:
		if room != nil {
			delete(room.members, e.User)
		}
	case salamander.RecMessageSent:
		key := e.User + "\x00" + e.ClientID
		switch {
		case room == nil || !room.members[e.User]:
			r.stats.NonMembers++
			return
		case room.ids[key]:
			r.stats.Duplicates++
			return
		}
		room.ids[key] = true
		room.msgs = append(room.msgs, refMsg{room: e.Room, sender: e.User, clientID: e.ClientID, text: e.Text,
			seq: uint64(len(room.msgs) + 1), audience: slices.Sorted(maps.Keys(room.members))})
	}
}

// held lists the messages held in the standbys and not placed, in each
// standby's order (standbys by name), that keep satisfies: those whose
// (sender, client id) is not among their room's messages yet, each
// (room, sender, client id) once — a resend held again is placed once.
func (r *mergeRef) held(keep func(salamander.Record) bool) []salamander.Record {
	var out []salamander.Record
	listed := map[string]bool{}
	for _, s := range slices.Sorted(maps.Keys(r.standby)) {
		for _, rec := range r.standby[s][r.placed[s]:] {
			for _, m := range messagesOf(rec) {
				key := m.Room + "\x00" + m.User + "\x00" + m.ClientID
				if room := r.rooms[m.Room]; (room == nil || !room.ids[m.User+"\x00"+m.ClientID]) && !listed[key] && keep(m) {
					listed[key] = true
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// count is how many messages are placed in all.
func (r *mergeRef) count() int {
	n := 0
	for _, room := range r.rooms {
		n += len(room.msgs)
	}
	return n
}

// unplaced says whether standby holds records no merge has placed.
func (r *mergeRef) unplaced(standby string) bool {
	return uint64(len(r.standby[standby])) > r.placed[standby]
}

// messagesOf lists the messages a standby record holds.
func messagesOf(rec salamander.Record) []salamander.Record {
	entries := []salamander.Record{rec}
	if rec.Type == salamander.RecBatch {
		entries = rec.Batch
	}
	var out []salamander.Record
	for _, e := range entries {
		if e.Type == salamander.RecMessageSent {
			out = append(out, e)
		}
	}
	return out
}
