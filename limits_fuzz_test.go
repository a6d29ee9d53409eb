package salamander

import (
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzValidators: what the validators accept is within the documented
// limits, checked here independently of how limits.go checks it (a user
// name also makes valid NATS subject tokens), and what they refuse is
// refused with a coded error.
func FuzzValidators(f *testing.F) {
	f.Add("csi \u009b2J") // a C1 control: a terminal's escape sequence
	f.Fuzz(func(t *testing.T, s string) {
		coded := func(what string, err error) {
			if err == nil {
				return
			}
			if code := ErrorCode(err); code != CodeInvalid && code != CodeTooLarge {
				t.Fatalf("%s(%q): error %v has code %s", what, s, err, code)
			}
		}
		if err := ValidateUserName(s); err == nil {
			if len(s) < 3 || len(s) > 32 || !isAlnum(s[0]) {
				t.Fatalf("user name %q accepted: want 3-32 characters starting with a-z or 0-9", s)
			}
			for i := 0; i < len(s); i++ {
				if c := s[i]; !isAlnum(c) && c != '_' && c != '.' && c != '-' {
					t.Fatalf("user name %q accepted with %q", s, c)
				}
			}
			// A name is part of NATS subjects (sal.acct.user.NAME): each of
			// its '.'-separated tokens must be one a subject can hold.
			for _, tok := range strings.Split(s, ".") {
				if tok == "" || tok == "*" || tok == ">" {
					t.Fatalf("user name %q accepted: subject token %q", s, tok)
				}
			}
		} else {
			coded("ValidateUserName", err)
		}
		if err := ValidateClientID(s); err == nil {
			if len(s) < 1 || len(s) > MaxClientIDBytes {
				t.Fatalf("client id %q accepted: %d bytes", s, len(s))
			}
			for i := 0; i < len(s); i++ {
				if c := s[i]; !isAlnum(c) && !(c >= 'A' && c <= 'Z') && !strings.ContainsRune("_.:-", rune(c)) {
					t.Fatalf("client id %q accepted with %q", s, c)
				}
			}
		} else {
			coded("ValidateClientID", err)
		}
		if err := ValidateMessageText(s); err == nil {
			if len(s) > MaxMessageBytes || !utf8.ValidString(s) || strings.TrimFunc(s, invisibleForTest) == "" {
				t.Fatalf("message text %q accepted", s)
			}
			for _, r := range s {
				if r < 0x20 && r != '\n' && r != '\t' || r >= 0x7f && r <= 0x9f {
					t.Fatalf("message text %q accepted with control character %U", s, r)
				}
			}
		} else {
			coded("ValidateMessageText", err)
		}
		for _, v := range []struct {
			name  string
			fn    func(string) error
			max   int
			empty bool
		}{
			{"ValidateDisplayName", ValidateDisplayName, MaxDisplayNameRune, false},
			{"ValidateStatus", ValidateStatus, MaxStatusRune, true},
			{"ValidateRoomName", ValidateRoomName, MaxRoomNameRune, false},
		} {
			err := v.fn(s)
			if err != nil {
				coded(v.name, err)
				continue
			}
			if !utf8.ValidString(s) || utf8.RuneCountInString(s) > v.max || !v.empty && strings.TrimFunc(s, invisibleForTest) == "" {
				t.Fatalf("%s accepted %q", v.name, s)
			}
			for _, r := range s {
				if r < 0x20 || r >= 0x7f && r <= 0x9f || r >= 0x202a && r <= 0x202e || r >= 0x2066 && r <= 0x2069 ||
					r == 0x2028 || r == 0x2029 {
					t.Fatalf("%s accepted %q with control, override or line separator %U", v.name, s, r)
				}
			}
		}
		if err := ValidatePassword(s); err == nil && (len(s) < MinPasswordBytes || len(s) > MaxPasswordBytes) {
			t.Fatalf("password of %d bytes accepted", len(s))
		}
		if ValidRoomID(s) && (len(s) < 18 || len(s) > 34 || s[0] != 'd' && s[0] != 'g' || s[1] != '_') {
			t.Fatalf("room id %q accepted", s)
		}
		checkIDShapes(t, s)
	})
}

// The documented shapes of room and client ids, as regular expressions:
// the validators are loops, held to these.
var (
	roomIDShape   = regexp.MustCompile(`^[dg]_[0-9a-f]{16,32}$`)
	clientIDShape = regexp.MustCompile(`^[A-Za-z0-9_.:-]{1,64}$`)
)

func checkIDShapes(t *testing.T, s string) {
	t.Helper()
	if got, want := ValidRoomID(s), roomIDShape.MatchString(s); got != want {
		t.Fatalf("ValidRoomID(%q) = %v, the shape says %v", s, got, want)
	}
	if got, want := ValidateClientID(s) == nil, clientIDShape.MatchString(s); got != want {
		t.Fatalf("ValidateClientID(%q) accepts: %v, the shape says %v", s, got, want)
	}
}

// Room and client ids at and around every bound of their shapes, and with
// every byte in every place, are judged as the shapes judge them.
func TestIDValidatorsFollowTheirShapes(t *testing.T) {
	hex := func(n int) string { return strings.Repeat("a1", n)[:n] }
	cases := []string{"", "d", "d_", "g_", "x_" + hex(16), "d-" + hex(16), "D_" + hex(16), "d_" + hex(15),
		"d_" + hex(16), "g_" + hex(32), "d_" + hex(33), "d_" + strings.Repeat("f", 20), "d_" + strings.Repeat("g", 20),
		"d_" + strings.Repeat("A", 20), strings.Repeat("a", 64), strings.Repeat("a", 65), "a", "uuid-1:2.3_X", "a b",
		"a/b", "é", "a\x00"}
	for c := range 256 {
		b := byte(c)
		cases = append(cases, string([]byte{b}), "d_"+hex(8)+string([]byte{b})+hex(8), "ab"+string([]byte{b})+"cd",
			string([]byte{b})+"_"+hex(16))
	}
	for _, s := range cases {
		checkIDShapes(t, s)
	}
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// invisibleForTest is what shows nothing, written apart from blank: white
// space, format characters and the Hangul fillers.
func invisibleForTest(r rune) bool {
	return unicode.IsSpace(r) || unicode.In(r, unicode.Cf) || strings.ContainsRune("\u115f\u1160\u3164\uffa0\u2800", r)
}
