// Package wsock is the server side of WebSocket (RFC 6455) as the gateway
// needs it, built so that an idle socket costs as little as possible: no
// goroutine and no buffer of its own while nothing arrives.
//
// It owns the opening handshake (Server.Upgrade), reading and checking
// client frames, answering pings and closes, and writing frames. A
// socket's messages are read by a goroutine that exists only while data
// comes: once nothing has arrived for Options.ParkAfter (at once after
// control frames alone), the socket is parked in the server's poller
// (epoll on Linux) and the goroutine ends; the poller starts a new one
// when the socket is readable again. Where there is no poller the
// goroutine stays, blocked in a read, as in an ordinary server.
//
// What it leaves out, on purpose: compression extensions and subprotocols
// (never negotiated), the client side (the SDK uses a WebSocket library
// for that), and the UTF-8 check of text messages: RFC 6455 fails the
// connection on invalid UTF-8, the gateway answers such a frame with a
// nack (as it answers a body that is not UTF-8) and keeps the socket.
package wsock

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// StatusCode is a close frame's status (RFC 6455 section 7.4).
type StatusCode int

// The status codes the gateway sends or reads.
const (
	StatusNormalClosure   StatusCode = 1000
	StatusGoingAway       StatusCode = 1001
	StatusProtocolError   StatusCode = 1002
	StatusUnsupportedData StatusCode = 1003
	StatusNoStatus        StatusCode = 1005 // never sent: a close frame without a status
	StatusInvalidPayload  StatusCode = 1007
	StatusPolicyViolation StatusCode = 1008
	StatusMessageTooBig   StatusCode = 1009
	StatusInternalError   StatusCode = 1011
	StatusTryAgainLater   StatusCode = 1013
)

// sendable reports whether a close frame may carry code (RFC 6455 7.4.1,
// 7.4.2: 1005, 1006 and 1015 are never sent, 3000-4999 are for
// applications).
func (code StatusCode) sendable() bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseError is the error a socket's reading ends with when the client
// sent a close frame: the client closed the socket.
type CloseError struct {
	Code   StatusCode // StatusNoStatus when the frame had none
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket closed by the client: status %d %q", e.Code, e.Reason)
}

// CloseStatus returns the status of the client's close frame that err
// reports, or -1 when err is not a client's close.
func CloseStatus(err error) StatusCode {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

// ErrClosing is returned by writes once a close frame has been written.
var ErrClosing = errors.New("websocket: the socket is closing")

// HandshakeError is a request refused before it became a WebSocket; the
// caller answers it with Status.
type HandshakeError struct {
	Status  int // 400, 403, 405 or 426
	Message string
}

func (e *HandshakeError) Error() string { return e.Message }

// Options configure a Server.
type Options struct {
	// OriginHosts are the hosts ("host[:port]", lower case) besides the
	// request's own whose browser pages may open a socket. A request
	// without an Origin header (not from a browser) is not checked.
	OriginHosts []string
	// MaxMessage is the longest message handed whole to the handler
	// (default 64 KiB); a longer one is handed cut to this length.
	MaxMessage int
	// ReadLimit is the longest message read at all (default 1 MiB): a
	// longer one closes the socket with StatusMessageTooBig.
	ReadLimit int64
	// ParkAfter is how long a socket's goroutine waits for the next frame
	// after a message before the socket is parked (default 1 s).
	ParkAfter time.Duration
	// CloseGrace is how long a close waits for the client's close frame
	// before the connection is cut (default 2 s).
	CloseGrace time.Duration
	// MessageTimeout is how long a message may take to arrive once its
	// first bytes have (default 15 s): a message begun and not finished
	// holds a goroutine and a message buffer, where an idle socket holds
	// neither. The socket is then closed with StatusPolicyViolation.
	MessageTimeout time.Duration
	// Log gets the poller's failures; nil discards them.
	Log *slog.Logger
}

// Server upgrades requests to WebSockets and parks their idle sockets. It
// owns the poller's goroutine: Close stops it.
type Server struct {
	opts Options
	log  *slog.Logger
	// msgBufs hold messages while they are read: an idle socket holds none.
	msgBufs sync.Pool
	poll    *poller // nil where sockets cannot be parked
}

// readBufSize is a socket's read buffer while it is being read: a frame
// header and most client frames fit in it.
const readBufSize = 4096

var readBufs = sync.Pool{New: func() any {
	b := make([]byte, readBufSize)
	return &b
}}

// NewServer returns a server with opts' defaults filled in and, on Linux,
// its poller started.
func NewServer(opts Options) *Server {
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = 64 << 10
	}
	if opts.ReadLimit <= 0 {
		opts.ReadLimit = 1 << 20
	}
	if opts.ReadLimit < int64(opts.MaxMessage) {
		opts.ReadLimit = int64(opts.MaxMessage)
	}
	if opts.ParkAfter <= 0 {
		opts.ParkAfter = time.Second
	}
	if opts.CloseGrace <= 0 {
		opts.CloseGrace = 2 * time.Second
	}
	if opts.MessageTimeout <= 0 {
		opts.MessageTimeout = 15 * time.Second
	}
	s := &Server{opts: opts, log: opts.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	size := opts.MaxMessage
	s.msgBufs.New = func() any {
		b := make([]byte, size)
		return &b
	}
	p, err := newPoller(s.log)
	if err != nil {
		s.log.Warn("idle WebSockets cannot be parked; each keeps a goroutine", "err", err)
	} else {
		s.poll = p
	}
	return s
}

// Parks reports whether idle sockets are parked without a goroutine.
func (s *Server) Parks() bool { return s.poll != nil }

// Close stops the poller. Parked sockets are resumed: their reads fail
// if they have been closed, and otherwise go on in a goroutine each.
func (s *Server) Close() {
	if s.poll != nil {
		s.poll.close()
	}
}

// CheckRequest reports whether r is a WebSocket handshake this server
// accepts, as a *HandshakeError when not; it changes nothing.
func (s *Server) CheckRequest(r *http.Request) error {
	refuse := func(status int, format string, args ...any) error {
		return &HandshakeError{Status: status, Message: fmt.Sprintf(format, args...)}
	}
	switch {
	case r.Method != http.MethodGet:
		return refuse(http.StatusMethodNotAllowed, "a WebSocket handshake is a GET, not %s", r.Method)
	case !r.ProtoAtLeast(1, 1):
		return refuse(http.StatusBadRequest, "a WebSocket handshake needs HTTP/1.1, not %s", r.Proto)
	case !hasToken(r.Header, "Connection", "upgrade"), !hasToken(r.Header, "Upgrade", "websocket"):
		return refuse(http.StatusUpgradeRequired, "not a WebSocket handshake: want Connection: Upgrade and Upgrade: websocket")
	case r.Header.Get("Sec-WebSocket-Version") != "13":
		return refuse(http.StatusUpgradeRequired, "unsupported WebSocket version %q; this server speaks 13", r.Header.Get("Sec-WebSocket-Version"))
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return refuse(http.StatusBadRequest, "want exactly one Sec-WebSocket-Key header, got %d", len(keys))
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return refuse(http.StatusBadRequest, "Sec-WebSocket-Key must be 16 bytes in base64")
	}
	if origin := r.Header.Get("Origin"); origin != "" {
		u, err := url.Parse(origin)
		if err != nil || u.Host == "" {
			return refuse(http.StatusForbidden, "Origin %q is not a URL with a host", origin)
		}
		host := strings.ToLower(u.Host)
		if !strings.EqualFold(host, r.Host) && !slices.Contains(s.opts.OriginHosts, host) {
			return refuse(http.StatusForbidden, "pages from %s may not open a WebSocket here", u.Host)
		}
	}
	return nil
}

// hasToken reports whether a comma-separated header holds token (case
// insensitive).
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// Protocols lists the subprotocols a handshake request offers
// (Sec-WebSocket-Protocol, comma-separated, over one or more lines).
func Protocols(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// acceptKey is the Sec-WebSocket-Accept answering key (RFC 6455 4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(strings.TrimSpace(key) + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// Upgrade takes over the connection of a request CheckRequest accepted and
// answers it with 101 Switching Protocols, naming protocol as the
// subprotocol chosen (none when ""; it must be one the request offered in
// Sec-WebSocket-Protocol, or a browser fails the socket). Frames are
// written to out(conn) (conn itself when out is nil), e.g. a writer that
// gathers several frames into one write. The caller starts reading with
// Conn.Serve. On an error the request has been answered or the connection
// closed.
func (s *Server) Upgrade(w http.ResponseWriter, r *http.Request, protocol string, out func(net.Conn) io.Writer) (*Conn, error) {
	if err := s.CheckRequest(r); err != nil {
		return nil, err
	}
	if protocol != "" && !slices.Contains(Protocols(r), protocol) {
		http.Error(w, "the subprotocol chosen was not offered", http.StatusInternalServerError)
		return nil, fmt.Errorf("websocket: subprotocol %q was not offered", protocol)
	}
	nc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "this connection cannot be upgraded to a WebSocket", http.StatusInternalServerError)
		return nil, fmt.Errorf("websocket: taking over the connection: %w", err)
	}
	// net/http leaves any deadline it set to whoever hijacks.
	_ = nc.SetReadDeadline(time.Time{})
	c := &Conn{srv: s, nc: nc, out: io.Writer(nc)}
	if out != nil {
		c.out = out(nc)
	}
	// Bytes the client sent right after its request (its first frames)
	// are already in net/http's buffer.
	if n := brw.Reader.Buffered(); n > 0 {
		c.rb = readBufs.Get().(*[]byte)
		if n > len(*c.rb) {
			b := make([]byte, n)
			c.rb = &b
		}
		c.end, _ = io.ReadFull(brw.Reader, (*c.rb)[:n])
	}
	c.parkable, c.probe = s.parkable(nc)
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
		acceptKey(r.Header.Get("Sec-WebSocket-Key")) + "\r\n"
	if protocol != "" {
		resp += "Sec-WebSocket-Protocol: " + protocol + "\r\n"
	}
	resp += "\r\n"
	_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err = io.WriteString(nc, resp)
	_ = nc.SetWriteDeadline(time.Time{})
	if err != nil {
		c.releaseReadBuf()
		nc.Close()
		return nil, fmt.Errorf("websocket: answering the handshake: %w", err)
	}
	return c, nil
}
