package webtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/fakesite"
	"github.com/salamander-chat/salamander/internal/testbrowser"
)

// Messages sent while their room's site fails over are acknowledged held:
// the page shows them sent at once — a check with the words for it, no
// clock, no seq, nothing left in the outbox, nothing retried — and each
// takes its place, once, when its message event arrives. Reloaded before
// that, the page shows them again as sent but unplaced, from the room's
// history, and sends nothing again.
//
// A real cluster acknowledges held only while a partition elects a leader
// after the site leading it is SIGKILLed, seconds at a moment no test
// chooses; so the app is served here by a fake site (internal/fakesite)
// that holds every send until the test places them.
func TestWebShowsHeldSendAsSent(t *testing.T) {
	chromium := testbrowser.Chromium(t, "the web client's browser test")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const roomID = "d_0123456789abcdef0123456789abcdef"
	site := fakesite.New(fakesite.Config{
		User:  salamander.User{Name: "mina", DisplayName: "미나"},
		Rooms: []salamander.Room{{ID: roomID, Kind: salamander.RoomDirect, Members: []string{"joon", "mina"}}},
		Hold:  true,
	})
	url := serveWithFakeSite(t, site)

	mina := newPage(t, ctx, chromium, "mina", "ko-KR")
	mina.phone()
	mina.do("open the app", chromedpNavigate(url))
	logIn(mina, "mina")
	mina.js(`location.hash = "#/room/` + roomID + `"`)
	mina.wait("the room", `!document.getElementById("room").hidden`)

	want := []string{"불 꺼졌어요?", "held, then placed"}
	for _, text := range want {
		mina.say(text)
	}
	sentHeld := `document.querySelectorAll("#messages .msg.mine.held:not([data-seq])").length === 2 &&
		[...document.querySelectorAll("#messages .msg.held .state")].every(e => e.textContent === "✓" && e.title === "전송됨 · 순서를 기다리는 중 (사이트 전환 중)") &&
		!document.querySelector("#messages .msg.pending, #messages .msg[data-seq]") &&
		!document.querySelector("#conn .conn-waiting")`
	mina.wait("both shown sent, waiting for their place", sentHeld+` &&
		`+outboxOf(`"mina"`)+`.length === 0`)
	mina.shoot("held-ko-phone")

	mina.do("reload", chromedp.Reload())
	mina.wait("both still sent and waiting, from the history", `!document.getElementById("app").hidden && `+sentHeld)
	if n := site.Sends(); n != len(want) {
		t.Fatalf("the site got %d sends, want %d (one each)", n, len(want))
	}

	placed := site.Place()
	mina.wait("both in their places", `document.querySelectorAll("#messages .msg[data-seq]").length === 2 &&
		!document.querySelector("#messages .msg.held, #messages .msg.pending")`)
	if got := mina.messages(); !slices.Equal(got, want) {
		t.Fatalf("placed, the room shows %q; want %q once each", got, want)
	}
	var seqs []uint64
	mina.eval(`[...document.querySelectorAll("#messages .msg[data-seq]")].map(e => +e.dataset.seq)`, &seqs)
	for i, m := range placed {
		if seqs[i] != m.Seq {
			t.Fatalf("bubbles at seqs %v, want the placed %d and %d", seqs, placed[0].Seq, placed[1].Seq)
		}
	}
}
