package backup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// JetStream's snapshot and restore API, which nats.go does not wrap (the
// request and response types are nats-server's JSApiStreamSnapshotRequest,
// JSApiStreamSnapshotResponse, JSApiStreamRestoreRequest,
// JSApiStreamRestoreResponse and JSApiStreamCreateResponse).
//
// Snapshot: the stream's leader answers the request with the stream's
// configuration and state, then sends the snapshot in chunks to the deliver
// subject, over core NATS (at most once: nothing resends a chunk lost on
// the way). Each full chunk carries a reply subject the receiver
// acknowledges on, $JS.SNAPSHOT.ACK.<stream>.<id>.<bytes>.<n>, numbering
// the chunks from 1 (flow control: the leader keeps at most its window in
// flight, and gives up after 5 s without an acknowledgement); the last,
// short chunk carries none. An empty message ends it: status 204 (or none)
// when complete, another status (408, 500) when the snapshot failed.
//
// Restore: the request carries the configuration and state; the server that
// will hold the restored stream answers with a subject to send the chunks
// to, as requests, each answered empty when taken or with an error. An
// empty chunk ends the upload, and its answer is the created stream's info,
// or an error.
const (
	apiSnapshot = "$JS.API.STREAM.SNAPSHOT."
	apiRestore  = "$JS.API.STREAM.RESTORE."
	apiCreate   = "$JS.API.STREAM.CREATE."
	apiDelete   = "$JS.API.STREAM.DELETE."
	// chunkSize is the size of the chunks asked for and sent; the server
	// clamps what it sends to 1 KiB–1 MiB.
	chunkSize = 128 << 10
	// maxChunk bounds a chunk the backup accepts.
	maxChunk = 1 << 20
	// apiTimeout bounds one API request, and idleTimeout the wait for the
	// next chunk of a snapshot (the server gives up on an unacknowledged
	// window after 5 s).
	apiTimeout  = 10 * time.Second
	idleTimeout = 15 * time.Second
	// finishTimeout bounds the wait for a restored stream once every chunk
	// has been sent: the server finishes writing it first.
	finishTimeout = 2 * time.Minute
)

// errNoAnswer is returned (wrapped) when a request went unanswered: the
// stream or the cluster had no leader, or the credential may not make it.
var errNoAnswer = errors.New("no answer")

// apiError is a JetStream API error.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s (status %d, JetStream error %d)", e.Description, e.Code, e.ErrCode)
}

type snapshotRequest struct {
	DeliverSubject string `json:"deliver_subject"`
	NoConsumers    bool   `json:"no_consumers,omitempty"`
	ChunkSize      int    `json:"chunk_size,omitempty"`
}

type snapshotResponse struct {
	Error  *apiError       `json:"error,omitempty"`
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

type restoreRequest struct {
	Config json.RawMessage `json:"config"`
	State  json.RawMessage `json:"state"`
}

type restoreResponse struct {
	Error          *apiError `json:"error,omitempty"`
	DeliverSubject string    `json:"deliver_subject"`
}

// createResponse is the answer to the last (empty) chunk of a restore.
type createResponse struct {
	Error *apiError   `json:"error,omitempty"`
	State streamState `json:"state"`
}

// snapshot writes stream's snapshot to w, chunk by chunk, and returns the
// configuration and state the server reported for it.
func snapshot(ctx context.Context, nc *nats.Conn, stream string, w io.Writer) (snapshotResponse, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return snapshotResponse{}, err
	}
	defer sub.Unsubscribe()
	// The leader waits for interest in the deliver subject before it sends.
	if err := nc.FlushWithContext(ctx); err != nil {
		return snapshotResponse{}, err
	}
	var resp snapshotResponse
	req := snapshotRequest{DeliverSubject: inbox, NoConsumers: true, ChunkSize: chunkSize}
	if err := request(ctx, nc, apiSnapshot+stream, req, &resp); err != nil {
		return resp, fmt.Errorf("snapshot request: %w", err)
	}
	if resp.Error != nil {
		return resp, fmt.Errorf("snapshot refused: %w", resp.Error)
	}
	// A chunk lost on the way (a route or a connection that drops and
	// comes back while the leader keeps sending, the leader noticing no
	// loss of interest in time) would leave a hole in the file, and the
	// checksum taken as it is written would vouch for the hole. So the
	// chunks' numbers must follow each other, and the bytes must decode
	// whole up to the archive's end marker, which is what a snapshot that
	// lost its last chunks (they are numbered by nothing after them)
	// lacks.
	check := newArchiveCheck()
	defer check.abort()
	var order chunkOrder
	for {
		mctx, cancel := context.WithTimeout(ctx, idleTimeout)
		m, err := sub.NextMsgWithContext(mctx)
		cancel()
		if err != nil {
			return resp, fmt.Errorf("receive the snapshot: %w", err)
		}
		if len(m.Data) == 0 {
			if st := m.Header.Get("Status"); st != "" && st != "204" {
				return resp, fmt.Errorf("the server failed the snapshot: %s %s", st, m.Header.Get("Description"))
			}
			if err := check.finish(); err != nil {
				return resp, fmt.Errorf("%w (%d numbered chunks arrived, in order)", err, order.next-1)
			}
			return resp, nil
		}
		if len(m.Data) > maxChunk {
			return resp, fmt.Errorf("a snapshot chunk of %d bytes (at most %d)", len(m.Data), maxChunk)
		}
		if err := order.take(m); err != nil {
			return resp, err
		}
		if _, err := check.Write(m.Data); err != nil {
			return resp, err
		}
		if _, err := w.Write(m.Data); err != nil {
			return resp, err
		}
		if m.Reply != "" {
			if err := m.Respond(nil); err != nil {
				return resp, fmt.Errorf("acknowledge a snapshot chunk: %w", err)
			}
		}
	}
}

// chunkOrder checks that a snapshot's chunks arrive in order, none lost:
// the leader numbers each full chunk in its acknowledgement subject
// (…<bytes>.<n>) and sends a last, short one with none.
type chunkOrder struct {
	next  int  // the number the next full chunk must carry, from 1
	short bool // the short last chunk has arrived: only the end may follow
}

func (c *chunkOrder) take(m *nats.Msg) error {
	if c.next == 0 {
		c.next = 1
	}
	if c.short {
		return fmt.Errorf("%w: a chunk arrived after the last, short one", errNotWhole)
	}
	if m.Reply == "" {
		c.short = true
		return nil
	}
	n, size, ok := chunkNumber(m.Reply)
	if !ok {
		// Not the layout nats-server has used (…<bytes>.<n>): the chunk
		// is taken, and the archive's decoding is then the only check.
		return nil
	}
	if size != len(m.Data) {
		return fmt.Errorf("%w: chunk %d holds %d bytes, its leader sent %d", errNotWhole, n, len(m.Data), size)
	}
	if n != c.next {
		return fmt.Errorf("%w: chunk %d arrived where chunk %d was due (lost on the way)", errNotWhole, n, c.next)
	}
	c.next++
	return nil
}

// chunkNumber reads a chunk's size and number from its acknowledgement
// subject, $JS.SNAPSHOT.ACK.<stream>.<id>.<bytes>.<n>.
func chunkNumber(reply string) (n, size int, ok bool) {
	t := strings.Split(reply, ".")
	if len(t) != 7 || t[0] != "$JS" || t[1] != "SNAPSHOT" || t[2] != "ACK" {
		return 0, 0, false
	}
	size, err1 := strconv.Atoi(t[5])
	n, err2 := strconv.Atoi(t[6])
	return n, size, err1 == nil && err2 == nil && n > 0
}

// startRestore asks for s.Name to be created from its snapshot and returns
// the subject to upload it to. Once it has, the cluster holds the stream's
// name until the upload is finished or the stream deleted (nats-server
// 2.15 leaves a failed restore for the client to delete).
func startRestore(ctx context.Context, nc *nats.Conn, s Stream) (string, error) {
	var rr restoreResponse
	b, err := json.Marshal(restoreRequest{Config: s.Config, State: s.State})
	if err != nil {
		return "", err
	}
	msg := nats.NewMsg(apiRestore + s.Name)
	msg.Data = b
	setRequiredLevel(msg, s)
	if err := requestMsg(ctx, nc, msg, apiTimeout, &rr); err != nil {
		return "", fmt.Errorf("restore request: %w", err)
	}
	if rr.Error != nil {
		return "", fmt.Errorf("restore refused: %w", rr.Error)
	}
	if rr.DeliverSubject == "" {
		return "", errors.New("restore refused: the server named no subject to send the snapshot to")
	}
	return rr.DeliverSubject, nil
}

// upload sends the snapshot in r to the subject startRestore named and
// returns the restored stream's state. Before it finishes the upload (the
// empty chunk that commits it), sent must say that what was sent is what
// was checked.
func upload(ctx context.Context, nc *nats.Conn, subject string, r io.Reader, sent func() error) (streamState, error) {
	buf := make([]byte, chunkSize)
	for {
		n, err := io.ReadFull(r, buf)
		if n > 0 {
			var ack createResponse
			if rerr := requestRaw(ctx, nc, subject, buf[:n], apiTimeout, &ack); rerr != nil {
				return streamState{}, fmt.Errorf("send the snapshot: %w", rerr)
			}
			if ack.Error != nil {
				return streamState{}, fmt.Errorf("the server refused the snapshot: %w", ack.Error)
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return streamState{}, fmt.Errorf("read the snapshot file: %w", err)
		}
	}
	if err := sent(); err != nil {
		return streamState{}, fmt.Errorf("%w (the upload was not finished)", err)
	}
	var done createResponse
	if err := requestRaw(ctx, nc, subject, nil, finishTimeout, &done); err != nil {
		return streamState{}, fmt.Errorf("finish the restore: %w", err)
	}
	if done.Error != nil {
		return streamState{}, fmt.Errorf("the server failed the restore: %w", done.Error)
	}
	return done.State, nil
}

// request sends a JSON API request and decodes its JSON answer into out.
func request(ctx context.Context, nc *nats.Conn, subject string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return requestRaw(ctx, nc, subject, b, apiTimeout, out)
}

// requestRaw sends data and decodes the answer, if it is not empty, into
// out.
func requestRaw(ctx context.Context, nc *nats.Conn, subject string, data []byte, timeout time.Duration, out any) error {
	msg := nats.NewMsg(subject)
	msg.Data = data
	return requestMsg(ctx, nc, msg, timeout, out)
}

// requestMsg sends msg and decodes the answer, if it is not empty, into
// out.
func requestMsg(ctx context.Context, nc *nats.Conn, msg *nats.Msg, timeout time.Duration, out any) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := nc.RequestMsgWithContext(rctx, msg)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w within %s (no leader, or the credential may not do this)", errNoAnswer, timeout)
		}
		return err
	}
	if len(m.Data) == 0 {
		return nil
	}
	if len(m.Data) > maxChunk {
		return fmt.Errorf("an answer of %d bytes", len(m.Data))
	}
	if err := json.Unmarshal(m.Data, out); err != nil {
		return fmt.Errorf("decode the answer: %w", err)
	}
	return nil
}
