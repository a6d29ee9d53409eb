package webtest

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/salamander-chat/salamander/client"
	"github.com/salamander-chat/salamander/internal/drill"
)

const password = "correct horse battery"

// hangSite stops the process of the site p's page is connected to
// (SIGSTOP: its sockets stay open, nothing answers, nothing closes). The
// page sees no WebSocket pings, so only its own ping frames can tell: it
// must move to another site within 20 s, and the conversation go on. The
// site is let go on (SIGCONT), caught up and leading its share of the
// streams again before this returns. The other page, other, must be at
// another site.
func hangSite(t *testing.T, ctx context.Context, cl *drill.Cluster, chat *conversation, p, other *page) {
	t.Helper()
	var name, otherName string
	p.eval(`document.getElementById("conn").dataset.site`, &name)
	other.eval(`document.getElementById("conn").dataset.site`, &otherName)
	i := cl.Index(name)
	if i < 0 || name == otherName {
		t.Fatalf("%s's page is connected to %q and %s's to %q: want two sites", p.name, name, other.name, otherName)
	}
	pid := cl.Pid(i)
	t.Logf("SIGSTOP site %s (%s's, pid %d)", name, p.name, pid)
	hung := time.Now()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	p.wait(p.name+" live at another site", `document.getElementById("conn").dataset.state === "live" &&
		document.getElementById("conn").dataset.site !== `+jsString(name), 20*time.Second)
	t.Logf("%s's page left the hung site after %s", p.name, time.Since(hung).Round(time.Millisecond))

	// The streams the hung site led are led elsewhere once the others have
	// held an election (4–9 s); then the conversation goes on.
	waitLeadersElsewhere(t, ctx, cl, cl.Index(otherName), name)
	chat.talk(other, "Are you frozen?")
	chat.talk(p, "Not any more: I moved.")
	chat.whole(10 * time.Second)
	t.Logf("conversation whole %s after the hang", time.Since(hung).Round(time.Millisecond))

	resume()
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := cl.WaitCaughtUp(cctx, i, true); err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitBalanced(cctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("site %s caught up and leading its share again %s after the hang", name, time.Since(hung).Round(time.Millisecond))
}

// waitLeadersElsewhere polls site i's view of the cluster until every
// stream has a leader other than site gone.
func waitLeadersElsewhere(t *testing.T, ctx context.Context, cl *drill.Cluster, i int, gone string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cl.Status(sctx, i)
		cancel()
		ok := err == nil && st.StreamsError == "" && len(st.Streams) > 0
		for _, s := range st.Streams {
			if s.Leader == "" || s.Leader == "site-"+gone {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams still led by %s (or by none) after 20 s: %+v, %v", gone, st.Streams, err)
		}
		time.Sleep(100 * time.Millisecond) // polling the cluster
	}
}

// reloadWithoutItsSite reloads p while its own site (the one that served
// the page; down is its name) is down, and with every API call failing:
// the page must open from the service worker's cache with its chats. Two
// messages typed then wait unsent through a second reload; when the API
// is reachable again they are sent exactly once, through another site,
// and the chat goes on.
func reloadWithoutItsSite(t *testing.T, chat *conversation, p *page, down string) {
	t.Helper()
	p.offline(true)
	p.do("reload", chromedp.Reload())
	p.wait("the app from the cache, with its chats", `!document.getElementById("app").hidden &&
		document.querySelectorAll("#chat-list .room-item").length > 0 && document.querySelectorAll("#messages .msg[data-seq]").length > 0`)
	chat.talk(p, "끊겼다가 다시 올게요")
	chat.talk(p, "새로고침해도 보내져요?")
	p.wait("two messages waiting", `document.querySelectorAll("#messages .msg.pending").length === 2`)
	p.do("reload", chromedp.Reload())
	p.wait("the two still waiting after a reload", `!document.getElementById("app").hidden &&
		document.querySelectorAll("#messages .msg.pending").length === 2`)
	p.offline(false)
	chat.whole(15 * time.Second)
	p.wait(p.name+" live at another site", `document.getElementById("conn").dataset.state === "live" &&
		document.getElementById("conn").dataset.site !== `+jsString(down))
	chat.talk(p, "다시 왔어요")
	chat.whole(10 * time.Second)
	var shell bool
	p.eval(`!!navigator.serviceWorker.controller`, &shell)
	if !shell {
		t.Fatalf("%s's page runs without its service worker", p.name)
	}
}

// inviteScrollLeave has Sora, a third user signed up with the Go SDK,
// befriended and invited by Mina (in her browser) to her group with Joon;
// Sora posts 60
// messages. Joon's page, reloaded (so it holds only the newest 50 of
// them), scrolls to the top of the room and must show all 61 of the
// group's messages, in order, once each. Then Joon leaves the group: it
// leaves his chat list and Mina's shows two members.
func inviteScrollLeave(t *testing.T, ctx context.Context, cl *drill.Cluster, mina, joon *page, minaName, joonName string) {
	t.Helper()
	sdk := func(name string) *client.Client {
		t.Helper()
		c, err := client.New(client.Config{Sites: cl.URLs(), Prefer: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SignUp(ctx, name, "Sora", password); err != nil {
			t.Fatalf("sign up %s: %v", name, err)
		}
		return c
	}
	soraName := "sora" + strings.TrimPrefix(minaName, "mina")
	sora := sdk(soraName)
	mina.click("#tab-friends")
	mina.click("#add-friend")
	mina.fill("#friend-name", soraName)
	mina.click(`#dialog-form button[type="submit"]`)
	mina.wait("Sora among the friends", `!!document.querySelector('.person[data-user=`+jsString(soraName)+`]')`)

	group := `#chat-list .room-item[data-room^="g_"]`
	mina.js(`location.hash = "#/chats"`)
	mina.click(group)
	mina.click("#room-settings")
	mina.click(`#invite-form input[value=` + jsString(soraName) + `]`)
	mina.click(`#invite-form button[type="submit"]`)
	joon.wait("three in the group", `document.querySelector(`+jsString(group+" .count")+`)?.textContent === "3"`)

	rooms, err := sora.Rooms(ctx)
	if err != nil || len(rooms) != 1 {
		t.Fatalf("sora's rooms: %v, %v", rooms, err)
	}
	want := []string{"모두 무사해요?"}
	for n := 1; n <= 60; n++ {
		text := fmt.Sprintf("history %02d", n)
		if _, err := sora.Send(ctx, rooms[0].ID, text); err != nil {
			t.Fatal(err)
		}
		want = append(want, text)
	}
	joon.wait("the last one in Joon's list", `document.querySelector(`+jsString(group+" .preview")+`)?.textContent === "history 60"`)

	// Reloaded, the page keeps the newest 50 messages of a room and pages
	// back for the rest as the list is scrolled to the top.
	// The group is opened offline, so its first load of the newest page
	// fails; the page must load it once a site answers again. The reloaded
	// page reopens the room it showed before (the 1:1 room, maybe still
	// while the group is clicked), so the group is clicked again until it is
	// the room shown.
	joon.do("reload", chromedp.Reload())
	joon.js(`window.latestFailed = 0;
		{ const f = window.fetch;
		  window.fetch = (u, init) => f(u, init).catch((e) => {
			if (/\/v1\/rooms\/g_[^/]*\/messages\?limit=/.test(String(u))) window.latestFailed++;
			throw e;
		  }); }`)
	joon.offline(true)
	joon.wait("the group's newest 50 kept, its load failed", `(() => {
		if (!location.hash.startsWith("#/room/g_")) document.querySelector(`+jsString(group)+`)?.click();
		return location.hash.startsWith("#/room/g_") && window.latestFailed > 0 &&
			document.querySelectorAll("#messages .msg[data-seq]").length === 50 &&
			document.querySelector("#messages .history-edge.loading")?.textContent === "";
	})()`)
	joon.offline(false)
	joon.wait("the newest 50 loaded, more to load", `location.hash.startsWith("#/room/g_") &&
		document.querySelectorAll("#messages .msg[data-seq]").length === 50 &&
		!!document.querySelector("#messages .history-edge.loading")?.textContent`)
	// Scrolled to the top — again if the page, still placing the list,
	// moved it back down, as a person would.
	joon.wait("the whole history", `(() => {
		const el = document.getElementById("messages");
		if (el.scrollTop > 0 && document.querySelector("#messages .history-edge.loading")) el.scrollTop = 0;
		return document.querySelectorAll("#messages .msg[data-seq]").length >= 61 &&
			!document.querySelector("#messages .history-edge.loading");
	})()`)
	if got := joon.messages(); !slices.Equal(got, want) {
		t.Fatalf("after scrolling back, Joon's page shows %d messages %q; want %d %q", len(got), got, len(want), want)
	}
	var seqs []int
	joon.eval(`[...document.querySelectorAll("#messages .msg[data-seq]")].map(e => +e.dataset.seq)`, &seqs)
	for k, s := range seqs {
		if s != k+1 {
			t.Fatalf("message seqs %v: want 1…%d", seqs, len(want))
		}
	}

	// Joon leaves (he confirms).
	joon.js(`window.confirm = () => true`)
	joon.click("#room-settings")
	joon.click("#leave-room")
	joon.wait("the group gone from Joon's list", `!document.querySelector(`+jsString(group)+`)`)
	mina.wait("two in the group", `document.querySelector(`+jsString(group+" .count")+`)?.textContent === "2"`)
	r, err := sora.Room(ctx, rooms[0].ID)
	if err != nil || slices.Contains(r.Members, joonName) || !slices.Contains(r.Members, soraName) {
		t.Fatalf("the group's members after Joon left: %v, %v", r.Members, err)
	}
}
