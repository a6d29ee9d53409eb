package jsstore

import "github.com/salamander-chat/salamander"

// Positions. A JetStream record may carry a batch of up to MaxBatch log
// entries (see Appender), so a log position is not a stream sequence: it
// is seq<<posBits | i, the i-th entry of the record at stream sequence seq.
// Positions order entries exactly as the log does, fit a cursor's 63 bits
// for 2^53 records, and every site computes the same ones. A record's last
// entry is applied as its End, so that "everything up to record seq" and
// "up to the last entry of record seq" are the same position.
const (
	posBits = 10
	// MaxBatch is the most entries one record carries.
	MaxBatch = 1 << posBits
	idxMask  = MaxBatch - 1
)

// PositionOf is the position of the i-th entry of the record at seq.
func PositionOf(stream string, seq uint64, i int) salamander.Position {
	return salamander.Position{Stream: stream, Seq: seq<<posBits | uint64(i)}
}

// End is the position of the last entry that the record holding pos can
// carry: a site that has applied a record's last entry has applied End.
func End(pos salamander.Position) salamander.Position {
	return salamander.Position{Stream: pos.Stream, Seq: pos.Seq | idxMask}
}

// RecordSeq is the stream sequence of the record holding the entry at a
// position.
func RecordSeq(pos uint64) uint64 { return pos >> posBits }

// RecordsApplied is the number of whole records (the stream sequence up
// to which every record is applied) at an applied position.
func RecordsApplied(pos uint64) uint64 {
	if pos&idxMask == idxMask {
		return pos >> posBits
	}
	return max(pos>>posBits, 1) - 1
}
