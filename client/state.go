package client

import (
	"maps"

	"github.com/salamander-chat/salamander"
)

// eventState is what a Client has delivered: the cursor over stored events
// and, per room, the newest message seq. Guarded by Client.mu.
type eventState struct {
	cursor  salamander.Cursor
	roomSeq map[string]uint64
}

func newEventState() *eventState {
	return &eventState{cursor: salamander.Cursor{}, roomSeq: map[string]uint64{}}
}

// fresh reports whether ev has not been delivered yet. Events without a
// position (typing, presence, ready) are always fresh.
func (s *eventState) fresh(ev *salamander.Event) bool {
	if ev.Pos != nil && s.cursor.Seen(*ev.Pos) {
		return false
	}
	if m := ev.Message; ev.Type == salamander.EventMessage && m != nil && m.Seq <= s.roomSeq[m.Room] {
		return false
	}
	return true
}

// delivered records that ev has been delivered.
func (s *eventState) delivered(ev *salamander.Event) {
	if ev.Pos != nil {
		s.cursor.Advance(*ev.Pos)
	}
	if m := ev.Message; ev.Type == salamander.EventMessage && m != nil && m.Seq > s.roomSeq[m.Room] {
		s.roomSeq[m.Room] = m.Seq
	}
}

// Cursor returns the client's place in the event log: every stored event at
// or before it has been delivered by a Subscription. Save it to resume later
// with SetCursor.
func (c *Client) Cursor() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state.cursor.String()
}

// SetCursor sets where the next Subscription resumes ("" for the beginning)
// and forgets which messages were delivered. Call it before Subscribe.
func (c *Client) SetCursor(cursor string) error {
	cur, err := salamander.ParseCursor(cursor)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.state = newEventState()
	c.state.cursor = cur
	return nil
}

// mergeCursor advances the client's cursor to every position in cursor
// (as the server's ready frame reports it).
func (c *Client) mergeCursor(cursor string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	advanceCursor(c.state.cursor, cursor)
}

// advanceCursor moves cur forward to every position in the cursor string
// s; a malformed s moves nothing.
func advanceCursor(cur salamander.Cursor, s string) {
	to, err := salamander.ParseCursor(s)
	if err != nil {
		return
	}
	for stream, seq := range to {
		cur.Advance(salamander.Position{Stream: stream, Seq: seq})
	}
}

// ReadMarkers returns, for a room, each member's read marker as far as the
// client knows it (from Rooms, Room and friends, read events, and messages:
// a message's sender counts as having read it).
func (c *Client) ReadMarkers(roomID string) map[string]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return maps.Clone(c.markers[roomID])
}

// Unread returns how many of a room's members members have not read message
// seq yet, from the read markers the client knows (see ReadMarkers). It is
// the count shown next to a message, and falls as read events arrive.
func (c *Client) Unread(roomID string, seq uint64, members int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	read := 0
	for _, s := range c.markers[roomID] {
		if s >= seq {
			read++
		}
	}
	return max(members-read, 0)
}

// observeRoom learns a room's read markers and forgets those of users no
// longer in it.
func (c *Client) observeRoom(r *salamander.Room) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.markers[r.ID]
	if m == nil {
		m = map[string]uint64{}
		c.markers[r.ID] = m
	}
	for u, s := range r.ReadMarkers {
		m[u] = max(m[u], s)
	}
	if len(r.Members) > 0 {
		in := make(map[string]bool, len(r.Members))
		for _, u := range r.Members {
			in[u] = true
		}
		for u := range m {
			if !in[u] {
				delete(m, u)
			}
		}
	}
}

// observeRead moves a member's read marker forward.
func (c *Client) observeRead(roomID, user string, seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.markers[roomID]
	if m == nil {
		m = map[string]uint64{}
		c.markers[roomID] = m
	}
	m[user] = max(m[user], seq)
}

// observe updates what the client knows from a delivered event.
func (c *Client) observe(ev *salamander.Event) {
	switch ev.Type {
	case salamander.EventMessage:
		if m := ev.Message; m != nil {
			c.observeRead(m.Room, m.Sender, m.Seq)
			c.acked(m)
		}
	case salamander.EventRead:
		if ev.RoomID != "" && ev.User != "" {
			c.observeRead(ev.RoomID, ev.User, ev.Seq)
		}
	case salamander.EventRoom:
		if ev.Room != nil {
			c.observeRoom(ev.Room)
		}
	}
}
