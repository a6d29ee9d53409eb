package salamander

// ClientFrame's keys, each with its bit in the set of keys seen.
const (
	fType = iota
	fRoomID
	fClientID
	fText
	fTyping
	fSeq
)

var frameKeys = map[string]int{"type": fType, "room_id": fRoomID, "client_id": fClientID, "text": fText,
	"typing": fTyping, "seq": fSeq}

// ReadClientFrame decodes a client frame in the shape clients write it —
// one compact JSON object, each of ClientFrame's keys at most once, spelled
// as json.Marshal spells them — into f, without encoding/json's reflection
// (every message sent over a WebSocket is one). It reports false, leaving f
// unspecified, for anything else; the caller then decodes the frame with
// encoding/json, which also says what is wrong with it. What it accepts
// decodes as encoding/json (unknown fields disallowed) decodes it
// (frame_codec_test.go).
func ReadClientFrame(data []byte, f *ClientFrame) bool {
	*f = ClientFrame{}
	d := newRecordDecoder(data)
	return d.object(frameKeys, func(key int) bool {
		switch key {
		case fTyping:
			return d.boolean(&f.Typing)
		case fSeq:
			return d.number(&f.Seq)
		}
		s, ok := d.str()
		switch key {
		case fType:
			f.Type = FrameType(s)
		case fRoomID:
			f.RoomID = s
		case fClientID:
			f.ClientID = s
		case fText:
			f.Text = s
		}
		return ok
	}) && d.i == len(data)
}
