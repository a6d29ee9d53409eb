package webtest

import (
	"slices"
	"testing"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// The page keeps the device token its session came with, across signing
// out, and brings it back on the next login of that account: strangers
// failing logins for the account then do not lock this browser out (the
// gateway's side is TestKnownDeviceLogsInDuringALockOut). A fake site
// (internal/fakesite) records what each login brought.
func TestWebBringsItsDeviceTokenToLogin(t *testing.T) {
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "미나"}}, "en-US")
	mina.wait("the device token kept", `localStorage.getItem("salamander.device.mina") === JSON.stringify("`+fakesite.DeviceToken+`")`)
	mina.js(`location.hash = "#/settings"`)
	mina.click("#logout")
	logIn(mina, "mina")
	if got, want := site.Logins(), []string{"", fakesite.DeviceToken}; !slices.Equal(got, want) {
		t.Fatalf("the logins brought device tokens %q, want %q", got, want)
	}
}
