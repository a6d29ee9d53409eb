package jsstore

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// A site's own copy of the log.
//
// JetStream answers a direct get from whichever replica's queue
// subscription it picks at random among every server in the cluster, local
// or not: a site that reads the log by direct get waits on other sites, and
// a site that is lost silently (a cut, a hung server) stalls a share of
// those reads until they time out. So each site keeps the records its tails
// have applied in a file of its own, one per stream, and reads message
// texts from there: no other site's loss can stall them.
//
// The copy is a cache of the replicated log, not a second source of truth.
// It is written behind the tail without fsync; on open a torn or damaged
// end is cut off, and the tail reads what is missing from the log again
// (Tail starts at the copy's end when it is behind the caller's position).
// It holds only records the tail verified to be the next in sequence, so it
// is always a contiguous run of the stream from its first record. Its directory is named by the
// cluster's id: a site attached to a different log starts a new copy.

// copyHeader is the size of a record's header in the file: its stream
// sequence, its length and a CRC-32C of its bytes.
const copyHeader = 16

// copyIndexEvery is how many records share one entry of the index; a
// read scans at most this many headers forward from it.
const copyIndexEvery = 32

// copyIndexEntry is the size of an index entry: a record's offset.
const copyIndexEntry = 8

// copyIndexNear is how many of the newest index entries are kept in
// memory too (at most twice as many): reads of the newer records, the
// most frequent, read no index entry from the file.
var copyIndexNear = 1 << 14 // a variable for tests

// copyFlushBytes is how much the copy buffers before it writes; a read of
// a buffered record flushes first.
const copyFlushBytes = 256 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ownCopy is one stream's copy. Appends come from that stream's tail;
// reads from any goroutine.
//
// Its index is a file of its own beside it (path + ".idx"): the offset of
// every copyIndexEvery-th record, read where a read needs it. Held in
// memory, it grew by a quarter byte per record for as long as the site
// ran (~21 MB a day at 1,000 records a second), and rebuilding it meant
// reading the whole copy at every start; now a start checks only the
// records after the last index entry it can trust. A record's own header
// and checksum are checked whenever it is read, so a damaged record
// anywhere is read from the log instead.
type ownCopy struct {
	path string

	mu       sync.Mutex
	f        *os.File
	w        *bufio.Writer
	ix       *os.File      // the index
	iw       *bufio.Writer // the index's writes
	first    uint64        // sequence of the first record held (0: none yet)
	end      uint64        // sequence of the last record held (first-1 when empty)
	size     int64         // bytes held, buffered ones included
	flushed  int64         // bytes written to the file
	indexed  uint64        // index entries, buffered ones included
	near     []int64       // entries nearFrom.. (the newest) in memory
	nearFrom uint64
	broken   error // set after a failed write: the copy stops growing until resume
}

// openCopy opens (or creates) the copy at path and its index, and cuts
// off a torn or damaged end.
func openCopy(path string) (*ownCopy, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	ix, err := os.OpenFile(path+".idx", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &ownCopy{path: path, f: f, ix: ix}
	c.iw = bufio.NewWriterSize(ix, 4<<10)
	if err := c.load(); err != nil {
		f.Close()
		ix.Close()
		return nil, fmt.Errorf("own copy %s: %w", path, err)
	}
	return c, nil
}

// load finds what the copy's files hold (recover), cuts off what follows
// it and makes the copy grow from there; c.mu is held, or not yet shared.
func (c *ownCopy) load() error {
	c.first, c.end = 0, 0
	good, err := c.recover()
	if err != nil {
		return err
	}
	if err := c.iw.Flush(); err != nil {
		return err
	}
	if err := c.f.Truncate(good); err != nil {
		return err
	}
	if _, err := c.f.Seek(good, io.SeekStart); err != nil {
		return err
	}
	c.size, c.flushed = good, good
	if c.w == nil {
		c.w = bufio.NewWriterSize(c.f, copyFlushBytes)
	} else {
		c.w.Reset(c.f)
	}
	return nil
}

// recover finds what the copy holds: from the last index entry that names
// a record where it says, it reads forward and returns the length of the
// valid prefix (records whose header, bytes and checksum are whole, in
// consecutive sequence), adding the index entries of what it read. The
// index is cut back to the entries before; an index that names nothing
// valid (none yet, as for a copy made before it had one) is rebuilt from
// the file's start.
func (c *ownCopy) recover() (int64, error) {
	var hdr [copyHeader]byte
	if _, err := c.f.ReadAt(hdr[:], 0); err != nil {
		return 0, c.cutIndex(0) // empty, or a torn first header
	}
	// A copy starts at the stream's first record, 1 (add), and every
	// later header's sequence is checked against the one before it; the
	// first header has none, and its checksum covers the record's bytes,
	// not the header. So one that claims another sequence is damage: taken
	// at its word, record 1's bytes were read back as that record's.
	if first := binary.LittleEndian.Uint64(hdr[0:]); first != 1 {
		return 0, c.cutIndex(0)
	}
	const first = 1
	st, err := c.ix.Stat()
	if err != nil {
		return 0, err
	}
	k, off := uint64(0), int64(0) // the entry to read from, and its offset
	for n := uint64(st.Size() / copyIndexEntry); n > 0; n-- {
		o, err := c.indexEntry(n - 1)
		if err != nil {
			return 0, err
		}
		if o >= 0 && o < 1<<62 && c.headerSeq(o) == first+(n-1)*copyIndexEvery {
			k, off = n-1, o
			break
		}
	}
	c.first, c.end = first, first+k*copyIndexEvery-1
	if err := c.cutIndex(k); err != nil {
		return 0, err
	}
	if _, err := c.f.Seek(off, io.SeekStart); err != nil {
		return 0, err
	}
	r := bufio.NewReaderSize(c.f, 1<<20)
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			break // the end, or a torn header
		}
		seq, n, sum := binary.LittleEndian.Uint64(hdr[0:]), binary.LittleEndian.Uint32(hdr[8:]), binary.LittleEndian.Uint32(hdr[12:])
		if n > maxRecordSize || seq != c.end+1 {
			break
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil || crc32.Checksum(buf, crcTable) != sum {
			break
		}
		if err := c.note(seq, off); err != nil {
			return 0, err
		}
		off += copyHeader + int64(n)
	}
	if c.end < c.first { // not even the first record is whole
		c.first, c.end = 0, 0
		return 0, c.cutIndex(0)
	}
	return off, nil
}

// headerSeq is the sequence in the record header at off (0 if none can
// be read there).
func (c *ownCopy) headerSeq(off int64) uint64 {
	var hdr [copyHeader]byte
	if _, err := c.f.ReadAt(hdr[:], off); err != nil {
		return 0
	}
	return binary.LittleEndian.Uint64(hdr[0:])
}

// indexEntry reads the index's entry i from its file.
func (c *ownCopy) indexEntry(i uint64) (int64, error) {
	var b [copyIndexEntry]byte
	if _, err := c.ix.ReadAt(b[:], int64(i)*copyIndexEntry); err != nil {
		return 0, err
	}
	return int64(binary.LittleEndian.Uint64(b[:])), nil
}

// cutIndex keeps the index's first n entries and writes after them.
func (c *ownCopy) cutIndex(n uint64) error {
	c.iw.Reset(c.ix)
	c.indexed, c.near = n, nil
	if err := c.ix.Truncate(int64(n) * copyIndexEntry); err != nil {
		return err
	}
	_, err := c.ix.Seek(int64(n)*copyIndexEntry, io.SeekStart)
	return err
}

// note records that the record seq starts at off.
func (c *ownCopy) note(seq uint64, off int64) error {
	if c.first == 0 {
		c.first, c.end = seq, seq-1
	}
	if (seq-c.first)%copyIndexEvery == 0 {
		var b [copyIndexEntry]byte
		binary.LittleEndian.PutUint64(b[:], uint64(off))
		if _, err := c.iw.Write(b[:]); err != nil {
			return err
		}
		if len(c.near) == 0 {
			c.nearFrom = c.indexed
		}
		c.near = append(c.near, off)
		if len(c.near) > 2*copyIndexNear {
			drop := len(c.near) - copyIndexNear
			c.near, c.nearFrom = slices.Clone(c.near[drop:]), c.nearFrom+uint64(drop)
		}
		c.indexed++
	}
	c.end = seq
	return nil
}

// next is the sequence the copy needs next (1 when it is empty).
func (c *ownCopy) next() uint64 {
	next, _ := c.state()
	return next
}

// add appends the record at seq if it is the one the copy needs next (1
// when it is empty: a copy is always the stream from its start, which is
// what lets a start check its first header); any other is left out (the
// copy stays a contiguous run of the stream). A copy that stopped growing
// takes nothing and says why.
func (c *ownCopy) add(seq uint64, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil {
		return c.broken
	}
	if seq != c.end+1 || len(data) > maxRecordSize {
		return nil
	}
	var hdr [copyHeader]byte
	binary.LittleEndian.PutUint64(hdr[0:], seq)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(data)))
	binary.LittleEndian.PutUint32(hdr[12:], crc32.Checksum(data, crcTable))
	if _, err := c.w.Write(hdr[:]); err != nil {
		return c.fail(err)
	}
	if _, err := c.w.Write(data); err != nil {
		return c.fail(err)
	}
	if err := c.note(seq, c.size); err != nil {
		return c.fail(err)
	}
	c.size += copyHeader + int64(len(data))
	c.flushed = c.size - int64(c.w.Buffered()) // a full buffer writes itself out
	return nil
}

// fail stops the copy from growing after a write error (a full disk):
// what it holds stays readable, later records are read from the log,
// until resume.
func (c *ownCopy) fail(err error) error {
	c.broken = fmt.Errorf("own copy %s: %w", c.path, err)
	return c.broken
}

// state is the sequence the copy needs next, and why it does not grow
// (nil: it does; errCopyClosed: it never will again).
func (c *ownCopy) state() (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == 0 {
		return 1, c.broken
	}
	return c.end + 1, c.broken
}

// resume lets a copy that stopped growing after a write error grow again:
// it drops what it buffered and cuts its file back to the whole records
// it holds (what a start after a crash does), from where the records it
// missed can be added again. It fails, the copy still stopped, while the
// disk refuses what that takes. Nothing to do for a copy that grows.
func (c *ownCopy) resume() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken == nil || errors.Is(c.broken, errCopyClosed) {
		return c.broken
	}
	if err := c.load(); err != nil {
		return c.fail(err)
	}
	c.broken = nil
	return nil
}

// flush writes what is buffered (see flushLocked).
func (c *ownCopy) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

// flushLocked writes what is buffered, of the copy and of its index.
func (c *ownCopy) flushLocked() error {
	if c.broken != nil || c.w.Buffered() == 0 && c.iw.Buffered() == 0 {
		return c.broken
	}
	if err := c.w.Flush(); err != nil {
		return c.fail(err)
	}
	if err := c.iw.Flush(); err != nil {
		return c.fail(err)
	}
	c.flushed = c.size
	return nil
}

// read returns the record at seq, or false when the copy does not hold it
// (or it cannot be read back whole: then the log is asked instead).
func (c *ownCopy) read(seq uint64) ([]byte, bool) {
	c.mu.Lock()
	if c.first == 0 || seq < c.first || seq > c.end {
		c.mu.Unlock()
		return nil, false
	}
	i := (seq - c.first) / copyIndexEvery
	at := c.first + i*copyIndexEvery
	// What is read lies between entry i and the next, which may still be
	// buffered (the records, and the entry itself if it is not among those
	// kept here): flush only then, not for every read of what is written.
	off, near := int64(0), i >= c.nearFrom && i-c.nearFrom < uint64(len(c.near))
	var nextOff int64 = -1 // the next entry's offset, when known
	if near {
		off = c.near[i-c.nearFrom]
		if j := i - c.nearFrom + 1; j < uint64(len(c.near)) {
			nextOff = c.near[j]
		}
	} else if len(c.near) > 0 {
		nextOff = c.near[0] // an entry before those kept here: its records end before it
	}
	entryWritten := near || i < c.indexed-uint64(c.iw.Buffered()/copyIndexEntry)
	recordsWritten := c.flushed == c.size || nextOff >= 0 && nextOff <= c.flushed
	if !entryWritten || !recordsWritten {
		if err := c.flushLocked(); err != nil {
			c.mu.Unlock()
			return nil, false
		}
	}
	c.mu.Unlock()
	if !near {
		var err error
		if off, err = c.indexEntry(i); err != nil {
			return nil, false
		}
	}
	var hdr [copyHeader]byte
	for ; at <= seq; at++ {
		if _, err := c.f.ReadAt(hdr[:], off); err != nil {
			return nil, false
		}
		got, n := binary.LittleEndian.Uint64(hdr[0:]), binary.LittleEndian.Uint32(hdr[8:])
		if got != at || n > maxRecordSize {
			return nil, false
		}
		if at < seq {
			off += copyHeader + int64(n)
			continue
		}
		data := make([]byte, n)
		if _, err := c.f.ReadAt(data, off+copyHeader); err != nil ||
			crc32.Checksum(data, crcTable) != binary.LittleEndian.Uint32(hdr[12:]) {
			return nil, false
		}
		return data, true
	}
	return nil, false
}

// reset empties the copy: its reader starts over from the log's start
// (a read model rebuilt from scratch, as after a restore, must not be
// served records of the log it replaced).
func (c *ownCopy) reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.w.Reset(c.f)
	c.first, c.end, c.size, c.flushed = 0, 0, 0, 0
	if err := c.f.Truncate(0); err != nil {
		return c.fail(err)
	}
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return c.fail(err)
	}
	if err := c.cutIndex(0); err != nil {
		return c.fail(err)
	}
	return nil
}

// errCopyClosed stops a copy from growing once its store is closed.
var errCopyClosed = errors.New("closed")

// close writes what is buffered and closes the file; what the tail hands
// it afterwards is left out (and read from the log after a restart). A
// copy stopped by a write error is closed too: its keeper no longer tries
// to resume it.
func (c *ownCopy) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	c.broken = errCopyClosed
	return errors.Join(err, c.f.Close(), c.ix.Close())
}
