package jsstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// JetStream API requests that one lagging server must not fail.
//
// Every server of a cluster receives every JetStream API request on a
// stream; the stream's leader answers it. A server that sees no leader —
// for the cluster's metadata or for the stream's group, as one that has
// just started, or resumed after a cut, sees for a while — answers at
// once that JetStream is "temporarily unavailable" (JSClusterNotAvailErr),
// while the leader is still reading. A plain request takes the first
// answer, so one lagging server failed the requests of every site for as
// long as it lagged: measured in fire drills, a site that came back made
// every merger's read of its partition's last merge record fail for 10-11
// s, and held messages waited that long for their place after their
// partition had a leader. apiRequest waits a little longer for another
// answer instead.

const (
	// errCodeClusterNotAvailable is JetStream's JSClusterNotAvailErr: the
	// answering server sees no leader.
	errCodeClusterNotAvailable = 10008
	// errCodeStreamNotFound is JetStream's JSStreamNotFoundErr.
	errCodeStreamNotFound = 10059
	// unavailableGrace is how long apiRequest waits for a real answer after
	// a server said "temporarily unavailable": a leader answers in
	// milliseconds, and when none is there the request fails this much
	// later rather than at once.
	unavailableGrace = 500 * time.Millisecond
)

// apiError is the error part of a JetStream API answer.
type apiError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *apiError) Error() string { return e.Description }

// apiRequest sends a JetStream API request and returns the answer's body:
// the first one that is not "temporarily unavailable", or, if only such
// answers come within unavailableGrace of the first (or before ctx ends),
// the last of them. It fails with nats.ErrNoResponders when no server
// answers JetStream requests at all.
//
// A read (reask) is asked again every reaskEvery while only such answers
// come: during an election every member answers "unavailable" at once,
// and a leader elected a moment later would otherwise not be asked until
// the caller's next attempt. provisional, if set, marks further answers
// that only count when no other comes (see streamInfo).
func (s *Store) apiRequest(ctx context.Context, subject string, body []byte, reask bool, provisional func([]byte) bool) ([]byte, error) {
	inbox := s.nc.NewInbox()
	// A channel of its own, sized for the few answers a request gets: a
	// synchronous subscription's queue is allocated at the connection's
	// full pending length (65,536 slots, 512 KB), and at the few dozen
	// requests a second a busy site sends, those queues were a tenth of
	// all the bytes the process allocated.
	replies := make(chan *nats.Msg, apiReplySlots)
	sub, err := s.nc.ChanSubscribe(inbox, replies)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := s.nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	var fallback []byte    // the last provisional answer
	var graceEnd time.Time // when to settle for it
	for {
		next, stop := ctx, context.CancelFunc(func() {})
		if fallback != nil {
			until := graceEnd
			if soon := time.Now().Add(reaskEvery); reask && soon.Before(until) {
				until = soon
			}
			next, stop = context.WithDeadline(ctx, until)
		}
		var msg *nats.Msg
		var err error
		select {
		case msg = <-replies:
		case <-next.Done():
			err = next.Err()
		}
		stop()
		switch {
		case err != nil && fallback != nil && ctx.Err() == nil && time.Now().Before(graceEnd):
			// Only provisional answers so far, and time is left: ask
			// again (a leader may have been elected meanwhile).
			if err := s.nc.PublishRequest(subject, inbox, body); err != nil {
				return fallback, nil
			}
			continue
		case err != nil && fallback != nil:
			return fallback, nil
		case err != nil:
			return nil, err
		case len(msg.Data) == 0 && msg.Header.Get("Status") == "503":
			if fallback != nil {
				continue
			}
			return nil, nats.ErrNoResponders
		}
		if unavailable(msg.Data) || provisional != nil && provisional(msg.Data) {
			if fallback == nil {
				graceEnd = time.Now().Add(unavailableGrace)
			}
			fallback = msg.Data
			continue
		}
		return msg.Data, nil
	}
}

// apiReplySlots is how many answers to one API request wait to be read:
// each server of the cluster answers at most once per ask, and answers
// beyond the slots are dropped (a slow-consumer note, no harm: a request
// reads only until the first real answer).
const apiReplySlots = 16

// reaskEvery is how often apiRequest asks a read again while only
// provisional answers come.
const reaskEvery = 50 * time.Millisecond

// unavailable reports whether an API answer is "JetStream system
// temporarily unavailable": the server that sent it sees no leader.
func unavailable(data []byte) bool {
	var e *apiError
	return errors.As(errOf(data), &e) && e.ErrCode == errCodeClusterNotAvailable
}

// streamInfo asks for a stream's info (its leader answers, see
// apiRequest). A stream that does not exist is jetstream.ErrStreamNotFound.
// With led, only an answer that names a leader will do: a member that sees
// its group leaderless answers with its own state, which may end before
// records a quorum acknowledged, so such an answer waits for the leader's
// and, if none comes, is errNoQuorum. Callers that need the stream's true
// end set it.
func (s *Store) streamInfo(ctx context.Context, name string, led bool) (*jetstream.StreamInfo, error) {
	var leaderless func([]byte) bool
	if led {
		leaderless = func(data []byte) bool {
			var res struct {
				Cluster *struct {
					Leader string `json:"leader"`
				} `json:"cluster"`
			}
			return json.Unmarshal(data, &res) == nil && res.Cluster != nil && res.Cluster.Leader == ""
		}
	}
	data, err := s.apiRequest(ctx, "$JS.API.STREAM.INFO."+natsName(name), nil, true, leaderless)
	if err != nil {
		return nil, err
	}
	if leaderless != nil && leaderless(data) {
		return nil, errNoQuorum
	}
	var res struct {
		jetstream.StreamInfo
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("stream info of %s: %w", name, err)
	}
	switch {
	case res.Error != nil && res.Error.ErrCode == errCodeStreamNotFound:
		return nil, jetstream.ErrStreamNotFound
	case res.Error != nil:
		return nil, res.Error
	}
	return &res.StreamInfo, nil
}

// errOf is the error in a JetStream API answer, or nil.
func errOf(data []byte) error {
	var res struct {
		Error *apiError `json:"error"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return err
	}
	if res.Error != nil {
		return res.Error
	}
	return nil
}
