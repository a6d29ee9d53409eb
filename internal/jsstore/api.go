package jsstore

import (
	"context"
	"encoding/json"
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
// that one. It fails with nats.ErrNoResponders when no server answers
// JetStream requests at all.
func (s *Store) apiRequest(ctx context.Context, subject string, body []byte) ([]byte, error) {
	inbox := s.nc.NewRespInbox()
	sub, err := s.nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := s.nc.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	var unavailable []byte
	wait := ctx
	for {
		msg, err := sub.NextMsgWithContext(wait)
		switch {
		case err != nil && unavailable != nil:
			return unavailable, nil
		case err != nil:
			return nil, err
		case len(msg.Data) == 0 && msg.Header.Get("Status") == "503":
			if unavailable != nil {
				continue
			}
			return nil, nats.ErrNoResponders
		}
		var res struct {
			Error *apiError `json:"error"`
		}
		if json.Unmarshal(msg.Data, &res) == nil && res.Error != nil && res.Error.ErrCode == errCodeClusterNotAvailable {
			if unavailable == nil {
				unavailable = msg.Data
				var cancel context.CancelFunc
				wait, cancel = context.WithTimeout(ctx, unavailableGrace)
				defer cancel()
			}
			continue
		}
		return msg.Data, nil
	}
}

// streamInfo asks for a stream's info (its leader answers, see
// apiRequest). A stream that does not exist is jetstream.ErrStreamNotFound.
func (s *Store) streamInfo(ctx context.Context, name string) (*jetstream.StreamInfo, error) {
	data, err := s.apiRequest(ctx, "$JS.API.STREAM.INFO."+natsName(name), nil)
	if err != nil {
		return nil, err
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
