package gateway

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/salamander-chat/salamander"
)

// FuzzTypingMessage hands any payload of sal.eph.typing to onTyping, as
// NATS would, against a read model with one room of three members. It
// never panics; an oversized or undecodable message, or one for a
// malformed room id, or from someone not in the room, reaches no one; a
// good one reaches exactly the room's other members, once, as the typing
// event it says; and the room's member list is left as it was.
func FuzzTypingMessage(f *testing.F) {
	fx := newFuzzView(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := &fuzzDevices{}
		e := &ephemeral{view: fx.v, hub: d}
		e.onTyping(&nats.Msg{Subject: subjTyping, Data: data})
		var m typingMsg
		decoded := len(data) <= maxEphemeralMsg && json.Unmarshal(data, &m) == nil
		members, _ := fx.v.Members(context.Background(), m.Room)
		if !decoded || !salamander.ValidRoomID(m.Room) || !slices.Contains(members, m.User) {
			if len(d.sent) > 0 {
				t.Fatalf("typing message %q passed on: %+v", data, d.sent)
			}
			return
		}
		var want []string
		for _, u := range members {
			if u != m.User {
				want = append(want, u)
			}
		}
		if len(want) == 0 {
			if len(d.sent) > 1 || len(d.sent) == 1 && len(d.sent[0].to) > 0 {
				t.Fatalf("typing in %s (members %v) sent to %+v", m.Room, members, d.sent)
			}
			return
		}
		if len(d.sent) != 1 {
			t.Fatalf("typing message %q sent %d times", data, len(d.sent))
		}
		s := d.sent[0]
		slices.Sort(s.to)
		if !slices.Equal(s.to, want) {
			t.Fatalf("typing of %q in %s sent to %v, want the other members %v", m.User, m.Room, s.to, want)
		}
		if s.ev.Type != salamander.EventTyping || s.ev.RoomID != m.Room || s.ev.User != m.User || s.ev.Typing != m.Typing {
			t.Fatalf("typing message %q became event %+v", data, s.ev)
		}
		if after, _ := fx.v.Members(context.Background(), fuzzRoom); len(after) != len(fuzzUsers) {
			t.Fatalf("the room's members changed to %v", after)
		}
	})
}
