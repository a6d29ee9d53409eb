package webtest

import (
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
)

// A chat someone else starts reaches the page as a message event of a room
// it does not know; the page asks the site for the room, and when that
// fails for want of an answer (a site whose HTTP fails while its WebSocket
// delivers) it asks again until it has the room — the message is shown,
// not lost until a reload.
func TestWebShowsANewChatWhenItsRoomIsFetchedLate(t *testing.T) {
	site, mina := minaAtFakeSite(t, fakesite.Config{User: salamander.User{Name: "mina", DisplayName: "미나"}}, "en-US")

	const roomID = "d_fedcba9876543210fedcba9876543210"
	site.Receive(salamander.Room{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}},
		salamander.Message{Sender: "joon", ClientID: "c-joon-1", Text: "are you there?", SentAt: time.Now().UTC()},
		12) // more failures than one request's tries (the browser tries a dropped GET twice)
	mina.wait("the new chat, with its message", `(() => {
		const item = document.querySelector('.room-item[data-room="`+roomID+`"]');
		return !!item && item.textContent.includes("are you there?");
	})()`, 30*time.Second)
}
