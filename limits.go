package salamander

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits on every input. They are part of the API contract (see
// api/openapi.yaml) and are checked before anything is written.
const (
	MaxBodyBytes       = 64 << 10 // any JSON request body
	MaxMessageBytes    = 4000     // a message's text, in UTF-8 bytes
	MaxDisplayNameRune = 64
	MaxStatusRune      = 140
	MaxRoomNameRune    = 100
	MinPasswordBytes   = 8
	MaxPasswordBytes   = 72 // bcrypt reads no further
	MaxClientIDBytes   = 64
	MaxGroupMembers    = 256
	MaxPageSize        = 200
	DefaultPageSize    = 50
	MaxSyncEvents      = 1000
	// MaxRoomsPage is how many rooms one GET /v1/rooms lists (its
	// default too): each carries its members and their read markers.
	MaxRoomsPage = 500
	// MaxPresenceQuery is how many users one GET /v1/presence asks about.
	MaxPresenceQuery = 100
	// MaxSocketsPerAccount bounds one account's WebSockets at one gateway
	// process: the next closes the oldest, with CloseTooManySockets.
	MaxSocketsPerAccount = 256
)

// CloseTooManySockets is the WebSocket close status with which a site
// closes an account's oldest socket at a gateway process once the account
// has more than MaxSocketsPerAccount there. The device must not reconnect
// by itself: it would close the next oldest, whose device would do the
// same, round and round. It tells its user instead (the SDK ends the
// Subscription with client.ErrTooManySockets; the web client offers to
// reconnect).
const CloseTooManySockets = 4008

var userNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{2,31}$`)

// ValidateUserName checks a user name: 3–32 characters of lower-case ASCII
// letters, digits, '_', '.', '-', starting with a letter or digit, not
// ending with '.', with no two dots in a row. A name becomes part of NATS subjects
// (sal.acct.user.NAME), where '.' separates tokens: a trailing dot or ".."
// would make an empty token, an invalid subject that JetStream never
// answers, and a wildcard or space would not be one subject at all. The
// character set already excludes '*', '>' and white space.
func ValidateUserName(name string) error {
	if !userNameRE.MatchString(name) {
		return Errorf(CodeInvalid, "user name must be 3-32 characters of a-z, 0-9, '_', '.', '-', starting with a letter or digit")
	}
	if strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return Errorf(CodeInvalid, "user name must not end with '.' or contain '..'")
	}
	return nil
}

// ValidatePassword checks a password's length.
func ValidatePassword(pw string) error {
	if len(pw) < MinPasswordBytes || len(pw) > MaxPasswordBytes {
		return Errorf(CodeInvalid, "password must be %d-%d bytes", MinPasswordBytes, MaxPasswordBytes)
	}
	return nil
}

// ValidateDisplayName checks a display name: UTF-8 text of at most
// MaxDisplayNameRune characters that shows something (see blank), on one
// line, without control characters or text-direction overrides.
func ValidateDisplayName(s string) error {
	return validateLine("display name", s, MaxDisplayNameRune, false)
}

// ValidateStatus checks a status message (may be empty).
func ValidateStatus(s string) error {
	return validateLine("status", s, MaxStatusRune, true)
}

// ValidateRoomName checks a group room's name.
func ValidateRoomName(s string) error {
	return validateLine("room name", s, MaxRoomNameRune, false)
}

// ValidateMessageText checks a message: valid UTF-8 of at most
// MaxMessageBytes bytes that shows something (see blank). Newlines and tabs are allowed, other control
// characters (C0, DEL and C1: a terminal takes U+009B for an escape
// sequence's start) are not.
func ValidateMessageText(s string) error {
	if len(s) > MaxMessageBytes {
		return Errorf(CodeTooLarge, "message text is %d bytes; the limit is %d", len(s), MaxMessageBytes)
	}
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalid, "message text must be valid UTF-8")
	}
	if blank(s) {
		return Errorf(CodeInvalid, "message text must not be blank")
	}
	for _, r := range s {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return Errorf(CodeInvalid, "message text must not contain control characters")
		}
	}
	return nil
}

// ValidateClientID checks a client message id: 1–64 characters of
// [A-Za-z0-9_.:-]. Clients usually send a UUID.
func ValidateClientID(id string) error {
	if !validClientID(id) {
		return Errorf(CodeInvalid, "client_id must be 1-%d characters of A-Z, a-z, 0-9, '_', '.', ':', '-'", MaxClientIDBytes)
	}
	return nil
}

// ValidRoomID reports whether id has the shape of a room id. A well-formed id
// of a room that does not exist is still "not found", not "invalid".
func ValidRoomID(id string) bool {
	if len(id) < 2+16 || len(id) > 2+32 || id[0] != 'd' && id[0] != 'g' || id[1] != '_' {
		return false
	}
	for i := 2; i < len(id); i++ {
		if c := id[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// validClientID reports whether id is 1–MaxClientIDBytes characters of
// [A-Za-z0-9_.:-]. It and ValidRoomID run on every send, so they are
// plain loops rather than regular expressions (a test holds them to the
// expressions).
func validClientID(id string) bool {
	if len(id) < 1 || len(id) > MaxClientIDBytes {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

func validateLine(what, s string, maxRunes int, allowEmpty bool) error {
	if !utf8.ValidString(s) {
		return Errorf(CodeInvalid, "%s must be valid UTF-8", what)
	}
	if n := utf8.RuneCountInString(s); n > maxRunes {
		return Errorf(CodeTooLarge, "%s is %d characters; the limit is %d", what, n, maxRunes)
	}
	if !allowEmpty && blank(s) {
		return Errorf(CodeInvalid, "%s must not be blank (white space and invisible characters alone)", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return Errorf(CodeInvalid, "%s must not contain control characters", what)
		}
		if directionControl(r) || unicode.In(r, unicode.Zl, unicode.Zp) {
			return Errorf(CodeInvalid, "%s must be one line, without text-direction overrides (U+202A-202E, U+2066-2069)", what)
		}
	}
	return nil
}

// blank reports whether s shows nothing: white space, format characters
// (zero-width spaces and joiners, direction marks, a byte-order mark), the
// Hangul fillers (U+115F, U+1160, U+3164, U+FFA0: the classic blank
// display name) and the blank Braille pattern (U+2800) alone.
func blank(s string) bool {
	for _, r := range s {
		switch {
		case unicode.IsSpace(r), unicode.Is(unicode.Cf, r):
		case r == 0x115F, r == 0x1160, r == 0x3164, r == 0xFFA0, r == 0x2800:
		default:
			return false
		}
	}
	return true
}

// directionControl reports whether r is a bidirectional embedding,
// override or isolate (U+202A-U+202E, U+2066-U+2069): it reorders the text
// after it, so a display name "\u202Enimda" shows as "admin". The marks
// U+200E and U+200F, which right-to-left names need, are not.
func directionControl(r rune) bool {
	return r >= 0x202A && r <= 0x202E || r >= 0x2066 && r <= 0x2069
}
