package webtest

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// The settings' "Change password" form, in Korean: two new passwords that
// differ are refused in the form, before any site is asked; a wrong
// current password is said as such (not as the "forbidden" of a room);
// the right one changes it, and the page stays signed in with the new
// session the site answers with — the site ends the old one first, closing
// the socket, and the page reconnects live with the new token rather than
// signing out — and keeps it and the new device token for the next start.
func TestWebChangesThePassword(t *testing.T) {
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "미나"},
		Password: password}, "ko-KR")
	mina.js(`location.hash = "#/settings"`)
	mina.click("#change-password")
	mina.wait("the Korean form", `document.getElementById("dialog-title")?.textContent === "비밀번호 변경"`)
	formError := `document.querySelector("#dialog-form .form-error").textContent`

	mina.fill("#pw-current", password)
	mina.fill("#pw-new", "a brand new password")
	mina.fill("#pw-again", "a brand new passwore")
	mina.click("#dialog-form button[type=submit]")
	mina.wait("the passwords differ", formError+` === "새 비밀번호가 서로 다릅니다."`)
	if n := site.Changes(); n != 0 {
		t.Fatalf("a change with two different new passwords reached the site (%d changes)", n)
	}

	mina.fill("#pw-current", "not the password")
	mina.fill("#pw-again", "a brand new password")
	mina.click("#dialog-form button[type=submit]")
	mina.wait("the current password is wrong", formError+` === "현재 비밀번호가 맞지 않습니다."`)
	mina.shoot("password-wrong-ko-phone")

	mina.fill("#pw-current", password)
	mina.click("#dialog-form button[type=submit]")
	mina.wait("the form closed and the change said", `!document.querySelector("dialog").open &&
		document.getElementById("toast").textContent.includes("비밀번호를 바꿨습니다")`)
	mina.wait("the new session kept", `JSON.parse(localStorage.getItem("salamander.session")).token === "tok-1" &&
		localStorage.getItem("salamander.device.mina") === JSON.stringify("`+fakesite.DeviceToken+`-1")`)
	mina.wait("still signed in and live again", `!document.getElementById("app").hidden && document.getElementById("auth").hidden &&
		document.getElementById("conn").dataset.state === "live"`)
	if n := site.Changes(); n != 1 {
		t.Fatalf("%d changes reached the site, want 1", n)
	}
	// A reload starts with the new session: the site refuses the old.
	mina.js(`location.reload()`)
	mina.wait("live after a reload", `!document.getElementById("app").hidden && document.getElementById("conn").dataset.state === "live"`)

	// A change whose answer is lost (the site failed between taking it
	// and answering): the retry finds the session ended, and the page
	// signs in with the new password instead of signing out.
	site.DropNextChangeAnswer()
	mina.js(`location.hash = "#/settings"`)
	mina.click("#change-password")
	mina.fill("#pw-current", "a brand new password")
	mina.fill("#pw-new", "the third password")
	mina.fill("#pw-again", "the third password")
	mina.click("#dialog-form button[type=submit]")
	mina.wait("the second change said", `!document.querySelector("dialog").open &&
		document.getElementById("toast").textContent.includes("비밀번호를 바꿨습니다")`)
	mina.wait("the session after the lost answer kept", `JSON.parse(localStorage.getItem("salamander.session")).token === "tok-2"`)
	mina.wait("still signed in and live", `!document.getElementById("app").hidden && document.getElementById("auth").hidden &&
		document.getElementById("conn").dataset.state === "live"`)
	if n := site.Changes(); n != 2 {
		t.Fatalf("%d changes reached the site, want 2 (the retry is a login)", n)
	}
}

// A suspended account's change is refused 403, as a wrong current password
// is: the form must not say "the current password is wrong". The page asks
// the site which (GET /v1/me refuses only a suspended account's session)
// and is signed out with the suspension's notice, in the page's language.
// Its socket here stays open, as one at a site that has not applied the
// suspension yet.
func TestWebChangePasswordOfASuspendedAccount(t *testing.T) {
	for _, c := range []struct{ lang, notice string }{
		{"en-US", "This account is suspended"},
		{"ko-KR", "이 계정은 정지되었습니다"},
	} {
		t.Run(c.lang, func(t *testing.T) {
			site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "미나"},
				Password: password}, c.lang)
			mina.js(`location.hash = "#/settings"`)
			mina.click("#change-password")
			mina.fill("#pw-current", password)
			mina.fill("#pw-new", "a brand new password")
			mina.fill("#pw-again", "a brand new password")
			site.SuspendKeepingSockets()
			mina.click("#dialog-form button[type=submit]")
			mina.wait("signed out with the suspension's notice", `!document.getElementById("auth").hidden &&
				document.getElementById("auth-error").textContent.includes("`+c.notice+`")`, 30*time.Second)
			if n := site.Changes(); n != 0 {
				t.Fatalf("%d changes of a suspended account's password", n)
			}
		})
	}
}
