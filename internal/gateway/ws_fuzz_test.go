package gateway

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/salamander-chat/salamander"
)

// FuzzClientFrame runs a WebSocket text frame through what the socket's
// reader does with it: cut to the reader's wsMaxFrameBytes (as wsock hands
// it to Message), then decodeFrame and checkFrame, or frameIDs and a nack. A frame is "over"
// exactly when it is longer than wsMaxFrameBytes; a frame that is accepted
// is valid UTF-8, one JSON object, of a known type, with a room and a
// valid client id where one is needed, and holds no U+FFFD the client did
// not send; a refused frame is refused with a
// coded error, and its nack echoes ids of at most MaxClientIDBytes and
// encodes as JSON. pad appends spaces, which JSON
// ignores, to reach the size limits.
func FuzzClientFrame(f *testing.F) {
	// The longest message, every byte of it escaped, with the longest ids
	// still fits a frame.
	longest := `{"type":"send","room_id":"g_` + strings.Repeat("f", 32) + `","client_id":"` +
		strings.Repeat("c", salamander.MaxClientIDBytes) + `","text":"` + strings.Repeat(`\u003c`, salamander.MaxMessageBytes) + `"}`
	if len(longest) > wsMaxFrameBytes {
		f.Fatalf("a send of the longest message (%d bytes) is over the frame limit %d", len(longest), wsMaxFrameBytes)
	}
	var fr salamander.ClientFrame
	if err := decodeFrame([]byte(longest), false, &fr); err != nil || checkFrame(&fr) != nil ||
		salamander.ValidateMessageText(fr.Text) != nil {
		f.Fatalf("the longest message does not decode: %v", err)
	}
	f.Fuzz(func(t *testing.T, data []byte, pad uint16) {
		frame := append(bytes.Clone(data), bytes.Repeat([]byte{' '}, int(pad)%(wsMaxFrameBytes+64))...)
		got, over := cutFrame(frame)
		var fr salamander.ClientFrame
		err := decodeFrame(got, over, &fr)
		if err == nil {
			err = checkFrame(&fr)
			if err == nil {
				if !utf8.Valid(got) || !json.Valid(got) || over {
					t.Fatalf("frame %q accepted", got)
				}
				switch fr.Type {
				case salamander.FrameSend, salamander.FrameTyping, salamander.FrameRead:
				default:
					t.Fatalf("frame of type %q accepted", fr.Type)
				}
				if fr.RoomID == "" || (fr.ClientID != "" || fr.Type == salamander.FrameSend) &&
					salamander.ValidateClientID(fr.ClientID) != nil {
					t.Fatalf("frame %+v accepted", fr)
				}
				if fuzzInventedFFFD(got, []string{string(fr.Type), fr.RoomID, fr.ClientID, fr.Text}) {
					t.Fatalf("frame %q decoded as %+v: U+FFFD the client did not send", got, fr)
				}
				return
			}
		} else {
			// As handleFrame does: the nack's ids come from frameIDs.
			fr.RoomID, fr.ClientID = frameIDs(got)
			if len(fr.RoomID) > salamander.MaxClientIDBytes || len(fr.ClientID) > salamander.MaxClientIDBytes {
				t.Fatalf("nack of frame %q echoes ids over %d bytes: %q %q", got, salamander.MaxClientIDBytes, fr.RoomID, fr.ClientID)
			}
		}
		code := salamander.ErrorCode(err)
		if code != salamander.CodeInvalid && code != salamander.CodeTooLarge {
			t.Fatalf("frame %q refused with %v, want invalid_request or too_large", got, err)
		}
		if over && code != salamander.CodeTooLarge {
			t.Fatalf("frame of %d bytes refused with %v, want too_large", len(frame), err)
		}
		ev := nack(fr.RoomID, fr.ClientID, err)
		if ev.Type != salamander.EventNack || ev.Error == nil || ev.Error.Code != code {
			t.Fatalf("nack for %v: %+v", err, ev)
		}
		if _, err := json.Marshal(ev); err != nil {
			t.Fatalf("nack does not encode: %v", err)
		}
	})
}
