package jsstore

import (
	"slices"

	"github.com/salamander-chat/salamander"
)

// Positions. A JetStream record may carry a batch of up to MaxBatch log
// entries (see appender.go), so a log position is not a stream sequence: it
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

// recordEntries lists the log entries a stored record carries, the i-th
// at position PositionOf(stream, seq, i): the record itself, or a batch's
// records. A batch never nests, and never holds more than MaxBatch (the
// positions could not tell them apart); an empty batch is one empty entry,
// so that every record is at least one position. Tails and Fetch both read
// records through here, so they always agree on positions. A batch's
// entries are rec.Batch itself (not a copy: a tail decodes ~20 of them per
// record at each site) unless one must be blanked.
func recordEntries(rec salamander.Record) []salamander.Record {
	if rec.Type != salamander.RecBatch {
		return []salamander.Record{rec}
	}
	n := min(len(rec.Batch), MaxBatch)
	if n == 0 {
		return []salamander.Record{{}}
	}
	out := rec.Batch[:n:n]
	if !slices.ContainsFunc(out, func(r salamander.Record) bool { return r.Type == salamander.RecBatch }) {
		return out
	}
	out = slices.Clone(out)
	for i := range out {
		if out[i].Type == salamander.RecBatch {
			out[i] = salamander.Record{} // skipped alike everywhere
		}
	}
	return out
}
