package webtest

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
	"github.com/salamander-chat/salamander/internal/testbrowser"
)

// Presence is not replayed: a change made while the page had no socket
// (its site failed over, drained it, or closed it as too slow to read) is
// never pushed to it. So the page reads its friends' presence again each
// time a socket is ready: a friend who went offline meanwhile is not shown
// online until their next change.
//
// The fake site serves the friend and their presence (no event ever
// says they went offline), and cuts the socket under a send.
func TestWebReadsPresenceAgainAfterReconnecting(t *testing.T) {
	chromium := testbrowser.Chromium(t, "the web client's browser test")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site := fakesite.New(fakesite.Config{
		User:  salamander.User{Name: "mina", DisplayName: "Mina"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
	})
	var mu sync.Mutex
	joonOnline, asked := true, 0
	api := http.NewServeMux()
	api.Handle("/", site)
	api.HandleFunc("GET /v1/friends", func(w http.ResponseWriter, _ *http.Request) {
		writeTestJSON(w, map[string]any{"friends": []salamander.User{{Name: "joon", DisplayName: "Joon"}}})
	})
	api.HandleFunc("GET /v1/presence", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		asked++
		writeTestJSON(w, map[string]any{"presence": []salamander.Presence{{User: "joon", Online: joonOnline}}})
	})
	url := serveWithFakeSite(t, api)

	mina := newPage(t, ctx, chromium, "mina", "en-US")
	mina.do("open the app", chromedpNavigate(url))
	logIn(mina, "mina")
	joonShown := `document.querySelector('.room-item[data-room="` + roomID + `"] .presence.on')`
	mina.wait("joon shown online", `!!`+joonShown)

	mu.Lock()
	joonOnline = false // and the event saying so never reaches the page
	before := asked
	mu.Unlock()
	site.CutSends(1)
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the room", `!document.getElementById("room").hidden`)
	mina.say("still there?")
	mina.wait("the message sent on the next socket", `document.querySelectorAll("#messages .msg[data-seq]").length === 1 &&
		document.getElementById("conn").dataset.state === "live"`)
	mina.js(`location.hash = "#/chats"`)
	mina.wait("joon shown offline, read again once the page was back", `!!document.querySelector('.room-item[data-room="`+roomID+`"]') && !`+joonShown)
	mu.Lock()
	defer mu.Unlock()
	if asked == before {
		t.Fatal("the page never asked for presence again")
	}
}

func writeTestJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
