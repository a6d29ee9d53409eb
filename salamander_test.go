package salamander

import (
	"strings"
	"testing"
)

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{"p1": 7, "acct": 3, "p0": 0}
	s := c.String()
	if s != "acct:3,p0:0,p1:7" {
		t.Fatalf("encoded %q", s)
	}
	d, err := ParseCursor(s)
	if err != nil || d.String() != s {
		t.Fatalf("parsed %v %v", d, err)
	}
	d.Advance(Position{Stream: "p1", Seq: 5})
	if d["p1"] != 7 {
		t.Fatal("cursor moved backwards")
	}
	d.Advance(Position{Stream: "p2", Seq: 1})
	if !d.Seen(Position{Stream: "p2", Seq: 1}) || d.Seen(Position{Stream: "p2", Seq: 2}) {
		t.Fatal("Seen wrong")
	}
}

func TestParseCursorRejectsGarbage(t *testing.T) {
	for _, s := range []string{"p0", "p0:", ":3", "p0:-1", "p0:1,,", "p0:x", strings.Repeat("a", 65) + ":1",
		"p0:99999999999999999999999"} {
		if _, err := ParseCursor(s); ErrorCode(err) != CodeInvalid {
			t.Errorf("%q: got %v, want invalid", s, err)
		}
	}
	if _, err := ParseCursor(strings.Repeat("p:1,", 20000)); ErrorCode(err) != CodeTooLarge {
		t.Errorf("huge cursor accepted")
	}
}

func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"", "acct:1,p0:2", "p0:x", "a:1,a:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		again, err := ParseCursor(c.String())
		if err != nil || again.String() != c.String() {
			t.Fatalf("round trip of %q: %q %v", s, again.String(), err)
		}
	})
}

func TestValidation(t *testing.T) {
	good := []error{
		ValidateUserName("alice"), ValidateUserName("a.b-c_9"), ValidatePassword("12345678"),
		ValidateDisplayName("Ålice 🦎"), ValidateStatus(""), ValidateRoomName("team"),
		ValidateMessageText("hello\nworld\t!"), ValidateMessageText(strings.Repeat("가", MaxMessageBytes/3)),
		ValidateClientID("0b3f-uuid:1.2_x"),
		ValidateDisplayName("👨‍👩‍👧 family"), ValidateDisplayName("שלום‏ 2"),
		ValidateMessageText("‮right to left‬"), ValidateMessageText("aㅤb"),
	}
	for i, err := range good {
		if err != nil {
			t.Errorf("good input %d rejected: %v", i, err)
		}
	}
	bad := map[string]struct {
		err  error
		code Code
	}{
		"short name":      {ValidateUserName("ab"), CodeInvalid},
		"upper name":      {ValidateUserName("Alice"), CodeInvalid},
		"long name":       {ValidateUserName(strings.Repeat("a", 33)), CodeInvalid},
		"subject name":    {ValidateUserName("a.>"), CodeInvalid},
		"short password":  {ValidatePassword("1234567"), CodeInvalid},
		"long password":   {ValidatePassword(strings.Repeat("x", 73)), CodeInvalid},
		"blank display":   {ValidateDisplayName("  "), CodeInvalid},
		"long display":    {ValidateDisplayName(strings.Repeat("é", 65)), CodeTooLarge},
		"newline display": {ValidateDisplayName("a\nb"), CodeInvalid},
		"long text":       {ValidateMessageText(strings.Repeat("x", MaxMessageBytes+1)), CodeTooLarge},
		"bad utf8":        {ValidateMessageText("\xff"), CodeInvalid},
		"nul text":        {ValidateMessageText("a\x00"), CodeInvalid},
		"blank text":      {ValidateMessageText(" \n "), CodeInvalid},
		"filler display":  {ValidateDisplayName("\u3164"), CodeInvalid},
		"zero-width name": {ValidateDisplayName("\u200b\u200b"), CodeInvalid},
		"filler room":     {ValidateRoomName(" \u3164\ufeff "), CodeInvalid},
		"reversed name":   {ValidateDisplayName("\u202enimda"), CodeInvalid},
		"isolate status":  {ValidateStatus("away \u2067x"), CodeInvalid},
		"two-line status": {ValidateStatus("away\u2028back soon"), CodeInvalid},
		"invisible text":  {ValidateMessageText("\u200b"), CodeInvalid},
		"filler text":     {ValidateMessageText("\u3164 \u115f"), CodeInvalid},
		"empty id":        {ValidateClientID(""), CodeInvalid},
		"spacey id":       {ValidateClientID("a b"), CodeInvalid},
	}
	for name, tc := range bad {
		if ErrorCode(tc.err) != tc.code {
			t.Errorf("%s: got %v, want %s", name, tc.err, tc.code)
		}
	}
}

// A user name is part of NATS subjects (sal.acct.user.NAME): one that would
// make an empty token, a wildcard or white space in a subject must be
// refused, or its sign-up hangs until the append times out.
func TestUserNamesAreSubjectSafe(t *testing.T) {
	for _, name := range []string{"abc.", "a..b", "abc..", ".abc", "ab c", "ab*c", "ab>c", "a\tb", "abc\n", "ab.*", "ab.>"} {
		if ErrorCode(ValidateUserName(name)) != CodeInvalid {
			t.Errorf("%q accepted", name)
		}
	}
	for _, name := range []string{"a.b", "a.b.c", "mina", "x-1_2.y"} {
		if err := ValidateUserName(name); err != nil {
			t.Errorf("%q rejected: %v", name, err)
		}
		for _, tok := range strings.Split("sal.acct.user."+name, ".") {
			if tok == "" || tok == "*" || tok == ">" || strings.ContainsAny(tok, " \t\r\n") {
				t.Errorf("%q makes subject token %q", name, tok)
			}
		}
	}
}

func FuzzValidateMessageText(f *testing.F) {
	f.Add("hello")
	f.Add("\xff\xfe")
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidateMessageText(s)
		if err == nil && (len(s) > MaxMessageBytes || strings.TrimSpace(s) == "") {
			t.Fatalf("accepted %q", s)
		}
		if err != nil && ErrorCode(err) == CodeInternal {
			t.Fatalf("uncoded error %v", err)
		}
	})
}

func TestEveryCodeHasAStatus(t *testing.T) {
	for _, c := range Codes() {
		if c.HTTPStatus() < 400 || c.HTTPStatus() > 599 {
			t.Errorf("%s maps to %d", c, c.HTTPStatus())
		}
		if c != CodeInternal && c.HTTPStatus() == 500 {
			t.Errorf("%s is unmapped", c)
		}
	}
}
