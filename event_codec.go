package salamander

import (
	"encoding/json"
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
	size := 128
	if ev.Message != nil {
		size += 192 + len(ev.Message.Text)
	}
	b := make([]byte, 0, size)
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

func appendPosition(b []byte, p *Position) []byte {
	b = append(b, `{"stream":`...)
	b = appendJSONString(b, p.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, p.Seq, 10)
	return append(b, '}')
}
