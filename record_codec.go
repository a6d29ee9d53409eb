package salamander

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"time"
	"unicode/utf8"
)

// The log's records are JSON (the format every site and every backup
// since the first holds). Encoding and decoding them with encoding/json's
// reflection cost ~8 % of a site's CPU under load, so the records take a
// direct path here: EncodeRecord writes byte for byte what json.Marshal
// writes, and DecodeRecord reads the shape json.Marshal writes directly and
// hands anything else (whitespace, unknown or differently cased keys,
// surrogate escapes, the ops plane's nested objects, …) to
// json.Unmarshal. Either way a record means what encoding/json says it
// means; record_codec_test.go checks both paths against it.

// EncodeRecord returns rec's encoding in the log: what json.Marshal(rec)
// returns.
func EncodeRecord(rec *Record) ([]byte, error) {
	return appendRecord(make([]byte, 0, 192+len(rec.Text)), rec)
}

// AppendBatchRecord appends to b the encoding of a RecBatch record whose
// entries are already encoded (by EncodeRecord): what json.Marshal gives
// for Record{Type: RecBatch, Batch: the entries}.
func AppendBatchRecord(b []byte, entries [][]byte) []byte {
	b = append(b, `{"t":"batch","b":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, "]}"...)
}

func appendRecord(b []byte, r *Record) ([]byte, error) {
	b = append(b, `{"t":`...)
	b = appendJSONString(b, string(r.Type))
	b, err := appendTimeField(b, `,"at":`, r.At)
	if err != nil {
		return nil, err
	}
	str := func(key, v string) { b = appendStringField(b, key, v) }
	str(`,"u":`, r.User)
	if r.DisplayName != nil {
		b = append(b, `,"dn":`...)
		b = appendJSONString(b, *r.DisplayName)
	}
	if r.Status != nil {
		b = append(b, `,"st":`...)
		b = appendJSONString(b, *r.Status)
	}
	str(`,"ph":`, r.PasswordHash)
	str(`,"sid":`, r.Session)
	str(`,"f":`, r.Friend)
	if len(r.Key) > 0 {
		b = append(b, `,"k":"`...)
		b = base64.StdEncoding.AppendEncode(b, r.Key)
		b = append(b, '"')
	}
	str(`,"role":`, r.Role)
	str(`,"site":`, r.Site)
	str(`,"kid":`, r.KeyID)
	if r.Rotate {
		b = append(b, `,"rotate":true`...)
	}
	str(`,"r":`, r.Room)
	str(`,"kind":`, string(r.Kind))
	str(`,"n":`, r.Name)
	b = appendStringsField(b, `,"m":`, r.Members)
	str(`,"by":`, r.By)
	str(`,"cid":`, r.ClientID)
	str(`,"x":`, r.Text)
	if r.Seq != 0 {
		b = append(b, `,"seq":`...)
		b = strconv.AppendUint(b, r.Seq, 10)
	}
	if len(r.Batch) > 0 {
		b = append(b, `,"b":[`...)
		for i := range r.Batch {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendRecord(b, &r.Batch[i]); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	str(`,"tgt":`, r.Target)
	for _, o := range []struct {
		key string
		v   any
		set bool
	}{
		{`,"inc":`, r.Incident, r.Incident != nil},
		{`,"rep":`, r.Report, r.Report != nil},
		{`,"drill":`, r.Drill, r.Drill != nil},
		{`,"mg":`, r.Merge, r.Merge != nil},
	} {
		if o.set { // rare records: encoding/json's own encoding
			enc, err := json.Marshal(o.v)
			if err != nil {
				return nil, err
			}
			b = append(b, o.key...)
			b = append(b, enc...)
		}
	}
	return append(b, '}'), nil
}

// appendStringField appends `key"v"` for a string field with omitempty:
// nothing when v is empty.
func appendStringField(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendJSONString(append(b, key...), v)
}

// appendStringsField appends `key["a","b"]` for a []string field with
// omitempty: nothing when vs is empty.
func appendStringsField(b []byte, key string, vs []string) []byte {
	if len(vs) == 0 {
		return b
	}
	b = append(append(b, key...), '[')
	for i, v := range vs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, v)
	}
	return append(b, ']')
}

// appendTimeField appends `key"time"` as encoding/json writes a
// time.Time, and its error for a time it cannot write.
func appendTimeField(b []byte, key string, t time.Time) ([]byte, error) {
	b = append(b, key...)
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		_, err = json.Marshal(t) // what json.Marshal says of such a time
		return nil, err
	}
	return append(b, '"'), nil
}

// appendJSONString appends s as encoding/json writes a string: quoted,
// with ", \ and control characters escaped, <, > and & as \u003c, \u003e
// and \u0026, U+2028 and U+2029 escaped, and each byte of invalid UTF-8 as
// \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// DecodeRecord decodes a record as the log stores it; it means what
// json.Unmarshal makes of the bytes.
func DecodeRecord(data []byte) (Record, error) {
	var r Record
	d := newRecordDecoder(data)
	if d.record(&r, 0) && d.i == len(data) {
		return r, nil
	}
	r = Record{}
	err := json.Unmarshal(data, &r)
	return r, err
}

// recordDecoder reads the compact JSON that EncodeRecord writes. Each
// method returns false where the input leaves that shape; the caller then
// decodes with encoding/json instead.
type recordDecoder struct {
	data []byte
	// text is data as one string: a string without escapes is a part of
	// it, so a record's fields cost one allocation, not one each.
	text string
	i    int
}

func newRecordDecoder(data []byte) recordDecoder {
	return recordDecoder{data: data, text: string(data)}
}

// batchEntryStart is how each record EncodeRecord writes begins.
var batchEntryStart = []byte(`{"t":`)

// maxBatchPrealloc bounds the entries a decoded record's batch makes room
// for up front (a batch within it makes room for none): the log's
// positions tell at most 1,024 entries of one record apart
// (jsstore.MaxBatch).
const maxBatchPrealloc = 1024

// maxDirectDepth bounds batches within batches on the direct path.
const maxDirectDepth = 2

// The keys of the direct path, each with its bit in the set of keys seen
// (a key seen twice leaves the direct path: encoding/json merges some
// repeats into what it decoded before).
const (
	kType = iota
	kAt
	kUser
	kDisplayName
	kStatus
	kPasswordHash
	kSession
	kFriend
	kKey
	kRole
	kSite
	kKeyID
	kRotate
	kRoom
	kKind
	kName
	kMembers
	kBy
	kClientID
	kText
	kSeq
	kBatch
	kTarget
)

var recordKeys = map[string]int{
	"t": kType, "at": kAt, "u": kUser, "dn": kDisplayName, "st": kStatus, "ph": kPasswordHash, "sid": kSession,
	"f": kFriend, "k": kKey, "role": kRole, "site": kSite, "kid": kKeyID, "rotate": kRotate, "r": kRoom,
	"kind": kKind, "n": kName, "m": kMembers, "by": kBy, "cid": kClientID, "x": kText, "seq": kSeq,
	"b": kBatch, "tgt": kTarget,
}

func (d *recordDecoder) record(r *Record, depth int) bool {
	return d.object(recordKeys, func(key int) bool { return d.field(r, key, depth) })
}

// object reads a JSON object whose keys are all in keys, each at most
// once, reading each value with value (given the key's number, its bit in
// the set of keys seen).
func (d *recordDecoder) object(keys map[string]int, value func(key int) bool) bool {
	if !d.byte('{') {
		return false
	}
	if d.byte('}') {
		return true
	}
	var seen uint64
	for {
		name, ok := d.plainKey()
		if !ok || !d.byte(':') {
			return false
		}
		key, known := keys[string(name)]
		if !known || seen&(1<<key) != 0 {
			return false
		}
		seen |= 1 << key
		if !value(key) {
			return false
		}
		if d.byte('}') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

func (d *recordDecoder) field(r *Record, key, depth int) bool {
	switch key {
	case kAt:
		return d.time(&r.At)
	case kRotate:
		return d.boolean(&r.Rotate)
	case kSeq:
		return d.number(&r.Seq)
	case kMembers:
		return d.stringList(&r.Members)
	case kBatch:
		if depth >= maxDirectDepth {
			return false
		}
		// The log's batch is sized up front: a record of a busy partition
		// carries ~20, and growing a slice of 400-byte records by doubling
		// copied them twice over. Every record EncodeRecord writes starts
		// with `{"t":`, which no string can hold unescaped; counting past
		// the batch's end only over-sizes it, and never beyond what a
		// record's positions can tell apart. Only the top level's: a batch
		// within a batch (which readers skip) counting the same openings
		// would make room for up to 1,024 records each, gigabytes for one
		// record of a few hundred kilobytes. (Empty, not nil, as
		// encoding/json decodes `[]`; it allocates nothing.)
		r.Batch = []Record{}
		if depth == 0 {
			r.Batch = make([]Record, 0, min(bytes.Count(d.data[d.i:], batchEntryStart), maxBatchPrealloc))
		}
		return d.array(func() bool {
			r.Batch = append(r.Batch, Record{})
			return d.record(&r.Batch[len(r.Batch)-1], depth+1)
		})
	}
	s, ok := d.str()
	if !ok {
		return false
	}
	switch key {
	case kType:
		r.Type = RecordType(s)
	case kUser:
		r.User = s
	case kDisplayName:
		r.DisplayName = &s
	case kStatus:
		r.Status = &s
	case kPasswordHash:
		r.PasswordHash = s
	case kSession:
		r.Session = s
	case kFriend:
		r.Friend = s
	case kKey:
		k := make([]byte, base64.StdEncoding.DecodedLen(len(s)))
		n, err := base64.StdEncoding.Decode(k, []byte(s))
		if err != nil {
			return false
		}
		r.Key = k[:n]
	case kRole:
		r.Role = s
	case kSite:
		r.Site = s
	case kKeyID:
		r.KeyID = s
	case kRoom:
		r.Room = s
	case kKind:
		r.Kind = RoomKind(s)
	case kName:
		r.Name = s
	case kBy:
		r.By = s
	case kClientID:
		r.ClientID = s
	case kText:
		r.Text = s
	case kTarget:
		r.Target = s
	default:
		return false
	}
	return true
}

// array reads a JSON array whose elements elem reads.
func (d *recordDecoder) array(elem func() bool) bool {
	if !d.byte('[') {
		return false
	}
	if d.byte(']') {
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.byte(']') {
			return true
		}
		if !d.byte(',') {
			return false
		}
	}
}

func (d *recordDecoder) byte(c byte) bool {
	if d.i < len(d.data) && d.data[d.i] == c {
		d.i++
		return true
	}
	return false
}

// number reads a uint64 (see uint) into v.
func (d *recordDecoder) number(v *uint64) bool {
	n, ok := d.uint()
	*v = n
	return ok
}

// stringList reads an array of strings into v (an empty array as an empty,
// non-nil slice, as encoding/json does).
func (d *recordDecoder) stringList(v *[]string) bool {
	*v = []string{}
	return d.array(func() bool {
		s, ok := d.str()
		*v = append(*v, s)
		return ok
	})
}

// boolean reads true or false into v.
func (d *recordDecoder) boolean(v *bool) bool {
	switch {
	case d.literal("true"):
		*v = true
	case d.literal("false"):
		*v = false
	default:
		return false
	}
	return true
}

// time reads a time as encoding/json writes one (a quoted RFC 3339 string)
// into t.
func (d *recordDecoder) time(t *time.Time) bool {
	start := d.i
	if _, ok := d.str(); !ok {
		return false
	}
	return t.UnmarshalJSON(d.data[start:d.i]) == nil
}

// literal reads lit (true or false) if it comes next.
func (d *recordDecoder) literal(lit string) bool {
	if !bytes.HasPrefix(d.data[d.i:], []byte(lit)) {
		return false
	}
	d.i += len(lit)
	return true
}

// uint reads a JSON number that is a uint64: digits, no leading zero.
func (d *recordDecoder) uint() (uint64, bool) {
	start := d.i
	for d.i < len(d.data) && d.data[d.i] >= '0' && d.data[d.i] <= '9' {
		d.i++
	}
	digits := d.data[start:d.i]
	if len(digits) == 0 || len(digits) > 1 && digits[0] == '0' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(digits), 10, 64)
	return n, err == nil
}

// plainKey reads an object key of lower-case ASCII letters and
// underscores.
func (d *recordDecoder) plainKey() ([]byte, bool) {
	if !d.byte('"') {
		return nil, false
	}
	start := d.i
	for d.i < len(d.data) && (d.data[d.i] >= 'a' && d.data[d.i] <= 'z' || d.data[d.i] == '_') {
		d.i++
	}
	key := d.data[start:d.i]
	if !d.byte('"') {
		return nil, false
	}
	return key, true
}

// str reads a JSON string: valid UTF-8 without control characters, with
// any escape but \u of a surrogate (those take encoding/json's path).
func (d *recordDecoder) str() (string, bool) {
	if !d.byte('"') {
		return "", false
	}
	start := d.i
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			s := d.text[start:d.i]
			d.i++
			if !utf8.ValidString(s) {
				return "", false
			}
			return s, true
		case c == '\\':
			return d.escaped(start)
		case c < 0x20:
			return "", false
		}
		d.i++
	}
	return "", false
}

// escaped finishes reading a string that has escapes, from its first
// backslash at d.i; start is where its text began.
func (d *recordDecoder) escaped(start int) (string, bool) {
	out := append(make([]byte, 0, d.i-start+16), d.data[start:d.i]...)
	for d.i < len(d.data) {
		c := d.data[d.i]
		switch {
		case c == '"':
			d.i++
			if !utf8.Valid(out) {
				return "", false
			}
			return string(out), true
		case c < 0x20:
			return "", false
		case c != '\\':
			out = append(out, c)
			d.i++
			continue
		}
		if d.i+1 >= len(d.data) {
			return "", false
		}
		e := d.data[d.i+1]
		d.i += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			if d.i+4 > len(d.data) {
				return "", false
			}
			v, err := strconv.ParseUint(string(d.data[d.i:d.i+4]), 16, 32)
			if err != nil || v >= 0xD800 && v < 0xE000 {
				return "", false
			}
			d.i += 4
			out = utf8.AppendRune(out, rune(v))
		default:
			return "", false
		}
	}
	return "", false
}
