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
// is always a contiguous run of the stream. Its directory is named by the
// cluster's id: a site attached to a different log starts a new copy.

// copyHeader is the size of a record's header in the file: its stream
// sequence, its length and a CRC-32C of its bytes.
const copyHeader = 16

// copyIndexEvery is how many records share one entry of the in-memory
// index; a read scans at most this many headers forward from it.
const copyIndexEvery = 32

// copyFlushBytes is how much the copy buffers before it writes; a read of
// a buffered record flushes first.
const copyFlushBytes = 256 << 10

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ownCopy is one stream's copy. Appends come from that stream's tail;
// reads from any goroutine.
type ownCopy struct {
	path string

	mu      sync.Mutex
	f       *os.File
	w       *bufio.Writer
	first   uint64  // sequence of the first record held (0: none yet)
	end     uint64  // sequence of the last record held (first-1 when empty)
	size    int64   // bytes held, buffered ones included
	flushed int64   // bytes written to the file
	index   []int64 // offset of record first + i*copyIndexEvery
	broken  error   // set after a failed write: the copy stops growing
}

// openCopy opens (or creates) the copy at path, checks every record and
// cuts off a torn or damaged end.
func openCopy(path string) (*ownCopy, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	c := &ownCopy{path: path, f: f}
	good, err := c.scan()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	c.size, c.flushed = good, good
	c.w = bufio.NewWriterSize(f, copyFlushBytes)
	return c, nil
}

// scan reads the file from the start, building the index, and returns the
// length of its valid prefix: records whose header, bytes and checksum are
// whole, in consecutive sequence.
func (c *ownCopy) scan() (int64, error) {
	r := bufio.NewReaderSize(c.f, 1<<20)
	var off int64
	var hdr [copyHeader]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return off, nil // the end, or a torn header
		}
		seq, n, sum := binary.LittleEndian.Uint64(hdr[0:]), binary.LittleEndian.Uint32(hdr[8:]), binary.LittleEndian.Uint32(hdr[12:])
		if n > maxRecordSize || (c.first != 0 && seq != c.end+1) || seq == 0 {
			return off, nil
		}
		if cap(buf) < int(n) {
			buf = make([]byte, n)
		}
		buf = buf[:n]
		if _, err := io.ReadFull(r, buf); err != nil || crc32.Checksum(buf, crcTable) != sum {
			return off, nil
		}
		c.note(seq, off)
		off += copyHeader + int64(n)
	}
}

// note records that the record seq starts at off.
func (c *ownCopy) note(seq uint64, off int64) {
	if c.first == 0 {
		c.first, c.end = seq, seq-1
	}
	if (seq-c.first)%copyIndexEvery == 0 {
		c.index = append(c.index, off)
	}
	c.end = seq
}

// next is the sequence the copy needs next (1 when it is empty).
func (c *ownCopy) next() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.first == 0 {
		return 1
	}
	return c.end + 1
}

// add appends the record at seq if it is the one the copy needs next; any
// other is left out (the copy stays a contiguous run of the stream).
func (c *ownCopy) add(seq uint64, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken != nil || (c.first != 0 && seq != c.end+1) || len(data) > maxRecordSize {
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
	c.note(seq, c.size)
	c.size += copyHeader + int64(len(data))
	c.flushed = c.size - int64(c.w.Buffered()) // a full buffer writes itself out
	return nil
}

// fail stops the copy from growing after a write error (a full disk):
// what it holds stays readable, later records are read from the log.
func (c *ownCopy) fail(err error) error {
	c.broken = fmt.Errorf("own copy %s: %w", c.path, err)
	return c.broken
}

// flushLocked writes what is buffered.
func (c *ownCopy) flushLocked() error {
	if c.broken != nil || c.w.Buffered() == 0 {
		return c.broken
	}
	if err := c.w.Flush(); err != nil {
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
	off, at := c.index[i], c.first+i*copyIndexEvery
	if c.flushed < c.size { // what is read may still be buffered
		if err := c.flushLocked(); err != nil {
			c.mu.Unlock()
			return nil, false
		}
	}
	c.mu.Unlock()
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
	c.first, c.end, c.size, c.flushed, c.index = 0, 0, 0, 0, nil
	if err := c.f.Truncate(0); err != nil {
		return c.fail(err)
	}
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return c.fail(err)
	}
	return nil
}

// errCopyClosed stops a copy from growing once its store is closed.
var errCopyClosed = errors.New("closed")

// close writes what is buffered and closes the file; what the tail hands
// it afterwards is left out (and read from the log after a restart).
func (c *ownCopy) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.flushLocked()
	if c.broken == nil {
		c.broken = errCopyClosed
	}
	return errors.Join(err, c.f.Close())
}
