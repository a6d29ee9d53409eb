package client

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/salamander-chat/salamander"
)

// PendingMessage is a message whose send has not been acknowledged yet.
type PendingMessage struct {
	// ClientID is the client message id every retry is sent with.
	ClientID string
	// RoomID is the room the message is sent to.
	RoomID string
	// Text is the message text.
	Text string
	// Queued is when the first send of this client id began.
	Queued time.Time

	order uint64
}

// NewClientID returns a fresh random client message id: 16 bytes from
// crypto/rand, hex-encoded.
func NewClientID() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // never fails (crypto/rand documents it)
	return hex.EncodeToString(b[:])
}

// Send sends a message to a room under a fresh client id (see SendWithID).
func (c *Client) Send(ctx context.Context, roomID, text string) (salamander.SendResult, error) {
	return c.SendWithID(ctx, roomID, NewClientID(), text)
}

// SendWithID sends a message to a room and returns once a quorum of sites
// holds it. It retries with the same client id at every site until it is
// acknowledged or ctx ends, so the message is stored at most once: when the
// id was already used by this user in this room, the result is the original
// message with Duplicate set — also when the id's first use was an attempt
// of this same call that landed but whose answer was lost (a site that
// failed with the message in flight, a socket whose answers could not be
// read in time).
//
// The acknowledged message normally has its place in the room (its Seq).
// While the room's log partition elects a leader after a site was lost,
// it is acknowledged held instead (HTTP 202, or an ack whose message is
// held): the result's Message.Held is set and its Seq is 0. That is a
// success like any other — the message is sent, survives the loss of any
// one site and has left the outbox — and it is placed moments later, in
// the order this sender sent, when it arrives on a Subscription as a
// message event with the same ClientID and its Seq (once, like every
// message). Until then History's newest page and Sync list it under Held.
//
// While a Subscription has a WebSocket open, the message goes over it (many
// sends may be in flight on it at once, from many goroutines); otherwise,
// or when that socket fails, over HTTP with failover as for every call.
// A room's messages are committed in the order their sends were handed
// over, also across a failure: the room's unacknowledged sends then go
// again one at a time in that order, and a later send waits behind them;
// without a socket, a room's sends go over HTTP one at a time (see the
// package documentation for exactly what is promised). Sends to different
// rooms do not wait for one another.
//
// Until it is acknowledged the message is listed by Pending. A message that
// the server refuses (a coded error) leaves the outbox; one still unacknowledged
// when ctx ends stays there, to be sent again with the same client id or
// dropped with Forget. Codes: not_found, forbidden, invalid_request,
// too_large, too_many_requests (over the account's or address's send
// budget: the error's RetryAfter says when to try again), unauthorized (the
// token is revoked or expired). When an earlier attempt may have been
// committed unseen (its site failed with the message in flight) and a
// later site refused the retry, the error wraps ErrMaybeSent as well as the
// refusal, and the message stays in the outbox: sending it again with the
// same client id answers the original if it was committed.
func (c *Client) SendWithID(ctx context.Context, roomID, clientID, text string) (salamander.SendResult, error) {
	if err := salamander.ValidateClientID(clientID); err != nil {
		return salamander.SendResult{}, err
	}
	if err := salamander.ValidateMessageText(text); err != nil {
		return salamander.SendResult{}, err
	}
	c.queue(roomID, clientID, text)
	r, err := c.send(ctx, roomID, clientID, text)
	if err != nil {
		var coded *salamander.Error
		if ctx.Err() == nil && errors.As(err, &coded) && !errors.Is(err, ErrMaybeSent) {
			c.forget(roomID, clientID)
		}
		return salamander.SendResult{}, err
	}
	c.forget(roomID, clientID)
	return r, nil
}

// ErrMaybeSent is wrapped, together with the site's refusal, by the error of
// a send whose earlier attempt may have been committed unseen (its site
// failed with the message in flight) when a later site refused it before
// acting on it — over its send budget (a site that has not applied the
// first attempt yet does not know it for a retry), or because the session
// expired meanwhile. Whether the message was sent is not known: it stays in
// the outbox, and sending it again with the same client id answers the
// original, with Duplicate set, if it was.
var ErrMaybeSent = errors.New("client: the message may have been sent")

// send tries the open WebSocket — and, after a nack or no answer from its
// site, the Subscription's next one if it has moved already — then HTTP
// with failover (at once when the socket closed or cannot read answers),
// each attempt when the room's line lets it go (see sendOrder).
func (c *Client) send(ctx context.Context, roomID, clientID, text string) (salamander.SendResult, error) {
	frame := salamander.ClientFrame{Type: salamander.FrameSend, RoomID: roomID, ClientID: clientID, Text: text}
	q := &lineSend{room: roomID}
	defer c.order.leave(q)
	// maybe: an attempt may have been committed without its answer.
	maybe := false
	refused := func(err error) error {
		if maybe {
			return fmt.Errorf("%w; a site refused a retry: %w", ErrMaybeSent, err)
		}
		return err
	}
	waited := func(err error) (salamander.SendResult, error) {
		return salamander.SendResult{}, fmt.Errorf("client: send to room %s: waiting for the earlier sends to it: %w", roomID, err)
	}
	var tried []*sendSocket
	for len(tried) < len(c.sites) {
		s, err := c.order.turn(ctx, q, c.socket)
		if err != nil {
			return waited(err)
		}
		if s == nil || slices.Contains(tried, s) {
			break
		}
		ev, out, err := s.send(ctx, frame, &c.order, q)
		c.order.land(q)
		if errors.Is(err, errNotYourTurn) {
			continue // it waits in line
		}
		tried = append(tried, s)
		var fe *failoverError
		switch {
		case err == nil && ev.Type == salamander.EventAck && ev.Message != nil:
			return salamander.SendResult{Message: *ev.Message, Duplicate: ev.Duplicate}, nil
		case err == nil:
			e := ev.Error
			if ev.Type != salamander.EventNack || e == nil {
				e = salamander.Errorf(salamander.CodeInternal, "unexpected answer %q to a send", ev.Type)
			}
			switch e.Code {
			case salamander.CodeUnavailable, salamander.CodeInternal:
				// The site may have failed after appending it.
				maybe = true
				c.siteBad(s.site, fmt.Errorf("send over the WebSocket: %w", e))
				continue
			case salamander.CodeTooManyRequests:
			default:
				return salamander.SendResult{}, refused(e)
			}
		case ctx.Err() != nil:
			return salamander.SendResult{}, fmt.Errorf("client: send to room %s: %w", roomID, err)
		case errors.As(err, &fe):
			maybe = maybe || out
			c.siteBad(s.site, fmt.Errorf("send over the WebSocket: %w", err))
			continue
		default:
			maybe = maybe || out
		}
		break // the socket is gone or busy: HTTP
	}
	// Requests in progress at once have no order: one room's go one at a
	// time.
	if err := c.order.first(ctx, q); err != nil {
		return waited(err)
	}
	var r salamander.SendResult
	reached, err := c.call(ctx, http.MethodPost, roomPath(roomID, "/messages"), salamander.SendRequest{ClientID: clientID, Text: text}, &r)
	maybe = maybe || reached
	if err != nil && ctx.Err() == nil {
		return r, refused(err)
	}
	return r, err
}

// Pending returns the messages not acknowledged yet, oldest first.
func (c *Client) Pending() []PendingMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]PendingMessage, 0, len(c.outbox))
	for _, m := range c.outbox {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].order < out[j].order })
	return out
}

// Forget removes the messages of a client id from the outbox (in every
// room, for ids an application numbers per room) without sending them. A
// send of one still in progress goes on.
func (c *Client) Forget(clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, m := range c.outbox {
		if m.ClientID == clientID {
			delete(c.outbox, key)
		}
	}
}

// forget removes one message from the outbox: the server deduplicates a
// client id per room and sender, and so does the outbox.
func (c *Client) forget(roomID, clientID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.outbox, answerKey(roomID, clientID))
}

func (c *Client) queue(roomID, clientID, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := answerKey(roomID, clientID)
	if _, ok := c.outbox[key]; ok {
		return
	}
	c.outSeq++
	c.outbox[key] = &PendingMessage{ClientID: clientID, RoomID: roomID, Text: text, Queued: time.Now(), order: c.outSeq}
}

// acked removes a message seen committed (e.g. on the event stream) from
// the outbox, if it is the signed-in user's.
func (c *Client) acked(m *salamander.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if m.Sender == c.user {
		delete(c.outbox, answerKey(m.Room, m.ClientID))
	}
}
