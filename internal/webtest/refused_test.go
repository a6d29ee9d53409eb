package webtest

import (
	"strings"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// What a site refuses is not lost: a message too long to send stays in the
// composer (the page counts UTF-8 bytes, as the sites do), and one a site
// refuses for good goes back to its room's composer, its bubble and the
// "unsent" bar gone. A suspended account is signed out with the reason
// said.
func TestWebKeepsWhatASiteRefuses(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}}}, "en-US")
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the room", `!document.getElementById("room").hidden && document.getElementById("conn").dataset.state === "live"`)

	// 1,400 Hangul syllables: 4,200 bytes, over the 4,000 a message holds.
	long := strings.Repeat("가", 1400)
	mina.js(`document.getElementById("input").value = ` + jsString(long))
	mina.say("")
	mina.wait("the notice, with the text kept", `document.getElementById("toast").textContent.includes("4200 bytes") &&
		document.getElementById("input").value.length === 1400 && `+outboxOf(`"mina"`)+`.length === 0`)
	if n := site.Sends(); n != 0 {
		t.Fatalf("the site got %d sends of a message over the limit", n)
	}

	site.RefuseSendsAs(salamander.CodeForbidden)
	mina.js(`document.getElementById("input").value = ""`)
	mina.say("are you still there?")
	mina.wait("the refusal said, the text back, nothing left unsent", `document.getElementById("toast").textContent.includes("Not sent") &&
		document.getElementById("input").value === "are you still there?" && !document.querySelector("#messages .msg.pending") &&
		`+outboxOf(`"mina"`)+`.length === 0`)

	site.RefuseSendsAs("")
	site.Suspend()
	mina.wait("the sign-in screen, saying why", `!document.getElementById("auth").hidden &&
		document.getElementById("auth-error").textContent.includes("suspended")`, 30*time.Second)
}

// Signing out leaves nothing of the account's messages in the browser:
// the reload that follows used to write the page's snapshot back. (And a
// malformed room link does not stop the page.)
func TestWebSignOutLeavesNoMessages(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}}}, "en-US")
	site.Receive(salamander.Room{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}},
		salamander.Message{Sender: "joon", ClientID: "c-joon-1", Text: "a secret", SentAt: time.Now().UTC()}, 0)
	// A malformed room link, opened with the page: the chat list, live
	// (its decoding threw, and the page never connected).
	mina.js(`location.hash = "#/room/%E0%A4%A"; location.reload()`)
	mina.wait("the chat list, live", `location.hash === "#/chats" && document.getElementById("conn")?.dataset.state === "live"`)
	mina.wait("the message kept in the browser", `(localStorage.getItem("salamander.snapshot.mina") || "").includes("a secret")`, 30*time.Second)
	mina.js(`location.hash = "#/settings"`)
	mina.click("#logout")
	mina.wait("the sign-in screen", `!document.getElementById("auth").hidden`)
	var left []string
	mina.eval(`Object.keys(localStorage).filter((k) => k.endsWith(".mina") && !k.startsWith("salamander.device."))`, &left)
	if len(left) != 0 {
		t.Fatalf("after signing out the browser keeps %v", left)
	}
}

// The chat list and the rail are redrawn with every message: the one of
// their elements that had the keyboard's focus has it again after.
func TestWebKeepsTheFocusWhenAMessageArrives(t *testing.T) {
	const first, second = "d_0123456789abcdef0123456789abcdef", "d_fedcba9876543210fedcba9876543210"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: first, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}}}, "en-US")
	mina.wait("the chat list", `!!document.querySelector('.room-item[data-room="`+first+`"]')`)
	mina.js(`document.querySelector('.room-item[data-room="` + first + `"]').focus()`)
	site.Receive(salamander.Room{ID: second, Kind: salamander.RoomDirect, Members: []string{"sora", "mina"}},
		salamander.Message{Sender: "sora", ClientID: "c-sora-1", Text: "hello", SentAt: time.Now().UTC()}, 0)
	mina.wait("the new chat listed, the focus where it was", `!!document.querySelector('.room-item[data-room="`+second+`"]') &&
		document.activeElement?.dataset.room === "`+first+`"`)
	mina.js(`document.getElementById("tab-chats").focus()`)
	site.Receive(salamander.Room{ID: second, Kind: salamander.RoomDirect, Members: []string{"sora", "mina"}},
		salamander.Message{Sender: "sora", ClientID: "c-sora-2", Text: "again", SentAt: time.Now().UTC()}, 0)
	mina.wait("the message listed, the focus on the tab", `document.querySelector('.room-item[data-room="`+second+`"]')?.textContent.includes("again") &&
		document.activeElement?.id === "tab-chats"`)
}

// A read marker the site refuses on the WebSocket goes over HTTP: the
// other member does not go on seeing their message unread.
func TestWebSaysAReadMarkerARefusedFrameDidNot(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"}}, "en-US")
	site.RefuseSocketReads(true)
	site.Receive(salamander.Room{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}},
		salamander.Message{Sender: "joon", ClientID: "c-joon-1", Text: "read me", SentAt: time.Now().UTC()}, 0)
	mina.wait("the chat", `!!document.querySelector('.room-item[data-room="`+roomID+`"]')`)
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the message", `[...document.querySelectorAll("#messages .msg .text")].some((e) => e.textContent === "read me")`)
	deadline := time.Now().Add(20 * time.Second)
	for site.ReadMarker(roomID) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the site's read marker is %d, want 1: the refused read frame was not said again", site.ReadMarker(roomID))
		}
		time.Sleep(20 * time.Millisecond) // polling the fake site
	}
}

// Signing out forgets the messages no site has taken yet: the page asks
// first, and a "no" keeps the session and the messages.
func TestWebAsksBeforeSigningOutWithUnsentMessages(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}}}, "en-US")
	site.RefuseSends(true)
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the room", `!document.getElementById("room").hidden`)
	mina.say("not yet taken")
	mina.wait("the message waiting", outboxOf(`"mina"`)+`.length === 1`)
	mina.js(`window.asked = ""; window.confirm = (q) => { window.asked = q; return false; }`)
	mina.js(`location.hash = "#/settings"`)
	mina.click("#logout")
	mina.wait("the question, answered no", `window.asked.includes("1 message")`)
	var kept bool
	mina.eval(`document.getElementById("auth").hidden && `+outboxOf(`"mina"`)+`.length === 1`, &kept)
	if !kept {
		t.Fatal("the page signed out, or dropped the message, when told not to")
	}
	mina.js(`window.confirm = () => true`)
	mina.click("#logout")
	mina.wait("the sign-in screen", `!document.getElementById("auth").hidden`)
}

// A socket the site closes because the account has too many open there
// (salamander.CloseTooManySockets: this one was the oldest) is not
// reconnected by the page: it would close the next oldest, whose device
// would reconnect in turn, round and round. The page says so, still sends
// over HTTP, and reconnects when its user asks.
func TestWebStopsWhenClosedForTooManySockets(t *testing.T) {
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}}}, "en-US")
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the room", `!document.getElementById("room").hidden && document.getElementById("conn").dataset.state === "live"`)
	if n := site.Sockets(); n != 1 {
		t.Fatalf("%d sockets before the close, want 1", n)
	}

	site.CloseSockets(salamander.CloseTooManySockets, "more than 256 sockets of this account here: the oldest is closed")
	mina.wait("the page says why, and offers to reconnect", `document.getElementById("conn").dataset.state === "replaced" &&
		document.getElementById("conn").textContent.includes("too many devices") && !!document.querySelector("#conn .conn-retry")`)
	mina.say("sent without a socket")
	mina.wait("the message sent over HTTP", `document.querySelectorAll("#messages .msg[data-seq]").length === 1 &&
		!document.querySelector("#messages .msg.pending")`)
	if n := site.Sockets(); n != 1 {
		t.Fatalf("the page reconnected by itself: %d sockets", n)
	}

	mina.click("#conn .conn-retry")
	mina.wait("live again once asked", `document.getElementById("conn").dataset.state === "live" && !document.querySelector("#conn .conn-retry")`)
	if n := site.Sockets(); n != 2 {
		t.Fatalf("%d sockets after reconnecting, want 2", n)
	}
}
