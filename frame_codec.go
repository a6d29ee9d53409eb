package salamander

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
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return d.i == len(data)
	}
	var seen uint8
	for {
		name, ok := d.plainKey()
		if !ok || !d.byte(':') {
			return false
		}
		var bit uint8
		switch string(name) {
		case "type":
			bit = 1
		case "room_id":
			bit = 2
		case "client_id":
			bit = 4
		case "text":
			bit = 8
		case "typing":
			bit = 16
		case "seq":
			bit = 32
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		switch bit {
		case 16:
			switch {
			case d.literal("true"):
				f.Typing = true
			case d.literal("false"):
				f.Typing = false
			default:
				return false
			}
		case 32:
			n, ok := d.uint()
			if !ok {
				return false
			}
			f.Seq = n
		default:
			s, ok := d.str()
			if !ok {
				return false
			}
			switch bit {
			case 1:
				f.Type = FrameType(s)
			case 2:
				f.RoomID = s
			case 4:
				f.ClientID = s
			case 8:
				f.Text = s
			}
		}
		if d.byte('}') {
			return d.i == len(data)
		}
		if !d.byte(',') {
			return false
		}
	}
}
