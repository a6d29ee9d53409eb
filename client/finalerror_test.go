package client

import (
	"net/http"
	"testing"

	"github.com/salamander-chat/salamander"
)

// A 4xx is a working site's final answer: the call ends with it and no
// other site is asked. Asking every site again (and hashing a password at
// each) would only repeat the answer, and for 429 spend the other sites'
// share of the budget.
func TestClientErrorsEndTheCall(t *testing.T) {
	for _, code := range []salamander.Code{salamander.CodeInvalid, salamander.CodeUnauthorized, salamander.CodeForbidden,
		salamander.CodeNotFound, salamander.CodeTooLarge, salamander.CodeUnsupportedMT, salamander.CodeTooManyRequests} {
		down := newSite(t, unavailable)
		answering := newSite(t, func(w http.ResponseWriter, r *http.Request) {
			if code == salamander.CodeTooManyRequests {
				w.Header().Set("Retry-After", "30")
			}
			writeJSON(w, code.HTTPStatus(), salamander.Errorf(code, "no"))
		})
		spare := newSite(t, unavailable)
		cl := newTestClient(t, down, answering, spare)
		_, err := cl.SignUp(t.Context(), "ann", "Ann", "password1")
		if salamander.ErrorCode(err) != code {
			t.Errorf("%s: err = %v", code, err)
		}
		if n := answering.calls.Load(); n != 1 {
			t.Errorf("%s: the answering site was asked %d times", code, n)
		}
		if n := spare.calls.Load(); n != 0 {
			t.Errorf("%s: the site after the answer was asked %d times", code, n)
		}
	}
}

// A name that would make a bad NATS subject is refused before any site is
// asked: older sites hung on it for seconds and answered 503, and the SDK
// then tried every site again, hashing the password at each.
func TestSignUpRefusesABadNameLocally(t *testing.T) {
	s := newSite(t, unavailable)
	cl := newTestClient(t, s)
	for _, name := range []string{"mina.", "mi..na", "mi na", "mi*"} {
		if _, err := cl.SignUp(t.Context(), name, "", "password1"); salamander.ErrorCode(err) != salamander.CodeInvalid {
			t.Errorf("%q: %v", name, err)
		}
	}
	if s.calls.Load() != 0 {
		t.Fatalf("a site was asked %d times", s.calls.Load())
	}
}
