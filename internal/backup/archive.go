package backup

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats-server/v2/server/archive"
)

// A snapshot is an s2-compressed archive of the stream's store, in one of
// the two layouts nats-server writes: its own in 2.15.2, the version
// Salamander embeds (entries after the magic bytes NATSARC1, the last an
// empty "end of backup" entry), a tar in older ones an external cluster may
// run (ended by two zero blocks). The backup decodes every snapshot
// as it arrives and takes it only if it decodes whole up to its end marker:
// s2 checks a CRC-32C per block, each archive entry declares its size, and
// the end marker is what a snapshot cut short lacks — its last chunks lost
// on the way leave a file that ends cleanly on a block and on an entry.

// errNotWhole is returned (wrapped) when a snapshot, as received, does not
// decode whole: part of it was lost on the way, or it is damaged.
var errNotWhole = errors.New("the snapshot is not whole")

// archiveCheck decodes a snapshot written to it, in a goroutine of its own
// that finish or abort stops.
type archiveCheck struct {
	pw   *io.PipeWriter
	done chan error
	err  error // the decoder's verdict, once finished
	over bool
}

func newArchiveCheck() *archiveCheck {
	pr, pw := io.Pipe()
	c := &archiveCheck{pw: pw, done: make(chan error, 1)}
	go func() {
		err := checkArchive(pr)
		// A decoder that stopped early (damaged data) fails the next
		// write, and one that found the end takes (and checks) the rest.
		if err != nil {
			pr.CloseWithError(err)
		} else {
			pr.Close()
		}
		c.done <- err
	}()
	return c
}

// Write passes snapshot bytes to the decoder.
func (c *archiveCheck) Write(p []byte) (int, error) {
	n, err := c.pw.Write(p)
	if err != nil {
		return n, fmt.Errorf("%w: %v", errNotWhole, err)
	}
	return n, nil
}

// finish ends the input and returns the decoder's verdict.
func (c *archiveCheck) finish() error {
	if !c.over {
		c.over = true
		c.pw.Close()
		c.err = <-c.done
	}
	if c.err != nil {
		return fmt.Errorf("%w: %v", errNotWhole, c.err)
	}
	return nil
}

// abort stops the decoder (if finish has not), discarding its verdict.
func (c *archiveCheck) abort() {
	if !c.over {
		c.over = true
		c.pw.CloseWithError(errors.New("aborted"))
		c.err = <-c.done
	}
}

// checkArchive reads a snapshot to its end and returns why it is not whole,
// or nil.
func checkArchive(r io.Reader) error {
	br := bufio.NewReaderSize(s2.NewReader(r), 64<<10)
	magic, err := br.Peek(len(archive.MagicBytes))
	if err != nil {
		return fmt.Errorf("decode: %v", noEOF(err))
	}
	if string(magic) == archive.MagicBytes {
		return checkNATSArchive(br)
	}
	return checkTar(br)
}

// checkNATSArchive reads nats-server's own archive up to its "end of
// backup" entry, which nothing may follow.
func checkNATSArchive(r io.Reader) error {
	ar := archive.NewReader(r)
	for entries := 0; ; entries++ {
		h, err := ar.Next() // reads the previous entry's bytes past
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("the archive ends after %d entries without its end-of-backup entry", entries)
		}
		if err != nil {
			return fmt.Errorf("entry %d: %v", entries+1, err)
		}
		if h.Name == "" && h.Sequence == 0 && h.Timestamp == 0 && h.HeaderSize == 0 && h.PayloadSize == 0 {
			if _, err := ar.Next(); !errors.Is(err, io.EOF) {
				return fmt.Errorf("data after the end-of-backup entry (%v)", err)
			}
			return nil
		}
	}
}

// checkTar reads a tar snapshot (older servers) up to its end marker, two
// zero blocks, which only zeros may follow. Go's tar reader ends quietly
// at an input that stops between two entries, so the marker is looked for
// here: the zeros last read.
func checkTar(r io.Reader) error {
	zr := &zeroTail{r: r}
	tr := tar.NewReader(zr)
	for entries := 0; ; entries++ {
		_, err := tr.Next() // reads the previous entry's bytes past
		if errors.Is(err, io.EOF) {
			if zr.run < 2*512 {
				return fmt.Errorf("the tar ends after %d entries without its end marker", entries)
			}
			break
		}
		if err != nil {
			return fmt.Errorf("tar entry %d: %v", entries+1, err)
		}
	}
	n, run := zr.n, zr.run
	if _, err := io.Copy(io.Discard, zr); err != nil {
		return fmt.Errorf("decode: %v", err)
	}
	if zr.run-run != zr.n-n {
		return errors.New("data after the end of the tar")
	}
	return nil
}

// zeroTail counts the bytes read through it and how many of the last are
// zeros.
type zeroTail struct {
	r      io.Reader
	n, run int64
}

func (z *zeroTail) Read(p []byte) (int, error) {
	n, err := z.r.Read(p)
	for _, b := range p[:n] {
		if b == 0 {
			z.run++
		} else {
			z.run = 0
		}
	}
	z.n += int64(n)
	return n, err
}

// noEOF says that an input which ends where more is due ends too soon.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
