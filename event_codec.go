package salamander

import (
	"encoding/json"
	"math"
	"strconv"
)

// EncodeEvent returns ev as the WebSocket carries it: what json.Marshal(ev)
// returns. Events a socket gets for every message (message, read, ack,
// typing, presence) are written directly, without encoding/json's
// reflection; events that carry a room, an error or incidents are rare and
// take encoding/json's path. event_codec_test.go checks it against
// encoding/json.
func EncodeEvent(ev *Event) ([]byte, error) {
	if ev.Room != nil || ev.Error != nil || ev.Incident != nil || ev.Incidents != nil {
		return json.Marshal(ev)
	}
	b := make([]byte, 0, eventSize(ev))
	b = append(b, `{"type":`...)
	b = appendJSONString(b, string(ev.Type))
	if ev.Pos != nil {
		b = append(b, `,"pos":`...)
		b = appendPosition(b, ev.Pos)
	}
	str := func(key, v string) { b = appendStringField(b, key, v) }
	str(`,"room_id":`, ev.RoomID)
	if m := ev.Message; m != nil {
		b = append(b, `,"message":{"room":`...)
		b = appendJSONString(b, m.Room)
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, m.Seq, 10)
		b = append(b, `,"sender":`...)
		b = appendJSONString(b, m.Sender)
		b = append(b, `,"client_id":`...)
		b = appendJSONString(b, m.ClientID)
		b = append(b, `,"text":`...)
		b = appendJSONString(b, m.Text)
		var err error
		if b, err = appendTimeField(b, `,"sent_at":`, m.SentAt); err != nil {
			return nil, err
		}
		b = append(b, `,"unread":`...)
		b = strconv.AppendInt(b, int64(m.Unread), 10)
		if m.Held {
			b = append(b, `,"held":true`...)
		}
		b = append(b, '}')
	}
	str(`,"action":`, ev.Action)
	str(`,"user":`, ev.User)
	b = appendStringsField(b, `,"users":`, ev.Users)
	if ev.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, ev.Seq, 10)
	}
	if ev.Online {
		b = append(b, `,"online":true`...)
	}
	if ev.Typing {
		b = append(b, `,"typing":true`...)
	}
	str(`,"cursor":`, ev.Cursor)
	b, err := appendTimeField(b, `,"at":`, ev.At)
	if err != nil {
		return nil, err
	}
	str(`,"client_id":`, ev.ClientID)
	if ev.Duplicate {
		b = append(b, `,"duplicate":true`...)
	}
	str(`,"site":`, ev.Site)
	return append(b, '}'), nil
}

// eventSize is what EncodeEvent's output of ev will take, or a little
// more: a key and quotes per field present, numbers at their longest, times
// to the nanosecond with a zone, and room for some escaping in a text.
// Guessing short cost a second, doubled buffer per event; guessing long
// wastes the difference on every event a site sends.
func eventSize(ev *Event) int {
	n := 64 // braces, "type" and "at"
	str := func(v string, key int) {
		if v != "" {
			n += len(v) + key
		}
	}
	str(string(ev.Type), 0)
	str(ev.RoomID, 13)
	str(ev.Action, 12)
	str(ev.User, 10)
	str(ev.Cursor, 12)
	str(ev.ClientID, 15)
	str(ev.Site, 10)
	if len(ev.Users) > 0 {
		n += 12
		for _, u := range ev.Users {
			n += len(u) + 3
		}
	}
	if ev.Seq != 0 {
		n += 27
	}
	if ev.Online || ev.Typing || ev.Duplicate {
		n += 48
	}
	if ev.Pos != nil {
		n += 48 + len(ev.Pos.Stream)
	}
	if m := ev.Message; m != nil {
		n += 168 + len(m.Room) + len(m.Sender) + len(m.ClientID) + len(m.Text) + len(m.Text)/8
	}
	return n
}

func appendPosition(b []byte, p *Position) []byte {
	b = append(b, `{"stream":`...)
	b = appendJSONString(b, p.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '}')
}

// DecodeEvent decodes an event as a site writes it into ev, which it
// resets first: it means what json.Unmarshal makes of the bytes. Events in
// the shape EncodeEvent writes directly (every message, ack, read, typing
// and presence event) are read without encoding/json's reflection, which a
// client pays for every event it gets; anything else — rooms, errors,
// incidents, unknown keys, whitespace — goes to json.Unmarshal.
// event_codec_test.go checks both paths against it.
func DecodeEvent(data []byte, ev *Event) error {
	*ev = Event{}
	d := newRecordDecoder(data)
	if d.event(ev) && d.i == len(data) {
		return nil
	}
	*ev = Event{}
	return json.Unmarshal(data, ev)
}

// The keys of an event on the direct path, each with its bit in the set of
// keys seen.
const (
	eType = iota
	ePos
	eRoomID
	eMessage
	eAction
	eUser
	eUsers
	eSeq
	eOnline
	eTyping
	eCursor
	eAt
	eClientID
	eDuplicate
	eSite
)

var eventKeys = map[string]int{
	"type": eType, "pos": ePos, "room_id": eRoomID, "message": eMessage, "action": eAction, "user": eUser,
	"users": eUsers, "seq": eSeq, "online": eOnline, "typing": eTyping, "cursor": eCursor, "at": eAt, "client_id": eClientID,
	"duplicate": eDuplicate, "site": eSite,
}

// A message's keys.
const (
	mRoom = iota
	mSeq
	mSender
	mClientID
	mText
	mSentAt
	mUnread
	mHeld
)

var messageKeys = map[string]int{
	"room": mRoom, "seq": mSeq, "sender": mSender, "client_id": mClientID, "text": mText, "sent_at": mSentAt,
	"unread": mUnread, "held": mHeld,
}

var positionKeys = map[string]int{"stream": 0, "seq": 1}

func (d *recordDecoder) event(ev *Event) bool {
	return d.object(eventKeys, func(key int) bool {
		switch key {
		case ePos:
			ev.Pos = &Position{}
			return d.position(ev.Pos)
		case eMessage:
			ev.Message = &Message{}
			return d.message(ev.Message)
		case eUsers:
			return d.stringList(&ev.Users)
		case eSeq:
			return d.number(&ev.Seq)
		case eOnline:
			return d.boolean(&ev.Online)
		case eTyping:
			return d.boolean(&ev.Typing)
		case eDuplicate:
			return d.boolean(&ev.Duplicate)
		case eAt:
			return d.time(&ev.At)
		}
		s, ok := d.str()
		switch key {
		case eType:
			ev.Type = EventType(s)
		case eRoomID:
			ev.RoomID = s
		case eAction:
			ev.Action = s
		case eUser:
			ev.User = s
		case eCursor:
			ev.Cursor = s
		case eClientID:
			ev.ClientID = s
		case eSite:
			ev.Site = s
		}
		return ok
	})
}

func (d *recordDecoder) message(m *Message) bool {
	return d.object(messageKeys, func(key int) bool {
		switch key {
		case mSeq:
			return d.number(&m.Seq)
		case mUnread:
			// Never negative; a count that needs a sign or does not fit
			// an int takes encoding/json's path (and its error).
			n, ok := d.uint()
			m.Unread = int(n)
			return ok && n <= math.MaxInt
		case mHeld:
			return d.boolean(&m.Held)
		case mSentAt:
			return d.time(&m.SentAt)
		}
		s, ok := d.str()
		switch key {
		case mRoom:
			m.Room = s
		case mSender:
			m.Sender = s
		case mClientID:
			m.ClientID = s
		case mText:
			m.Text = s
		}
		return ok
	})
}

func (d *recordDecoder) position(p *Position) bool {
	return d.object(positionKeys, func(key int) bool {
		if key == 1 {
			return d.number(&p.Seq)
		}
		var ok bool
		p.Stream, ok = d.str()
		return ok
	})
}
