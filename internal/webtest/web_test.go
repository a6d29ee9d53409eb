package webtest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/salamander-chat/salamander/internal/drill"
	"github.com/salamander-chat/salamander/internal/testbrowser"
)

// Two people chat in the web messenger, each in their own browser, served
// by different sites of three real processes: they sign up, become
// friends, open a 1:1 chat and talk; the "1" beside a message falls away
// when the other reads it, and one sees the other typing. The site one
// browser is connected to hangs (SIGSTOP): that page notices by pinging
// and moves on. Then the site the other browser is connected to, which
// served it the app, is SIGKILLed: that page moves to another site by
// itself and the conversation goes on within 10 s with nothing lost or
// doubled in either browser; reloaded while its site is still down, the
// page opens from the service worker's cache and sends what was unsent
// once. Messages typed while every request fails wait in the outbox,
// survive reloads, and are sent exactly once when the network is back.
// Hangul typed with an IME is not sent by the Enter that ends its
// composition. A third user is invited to a group, 60 messages are read
// back by scrolling into history, and a member leaves. Screenshots of the
// main screens (phone and desktop, Korean and English) are kept.
func TestWebMessengerRidesThroughAFire(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three server processes and two browsers, and burns a site")
	}
	chromium := testbrowser.Chromium(t, "the web client's browser test")
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 240*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl, err := drill.StartCluster(ctx, drill.ClusterConfig{Binary: binary, Dir: t.TempDir(), Logger: log,
		ServeArgs: []string{"--bcrypt-cost", "4"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cl.Close()
		if t.Failed() {
			for i := range cl.N() {
				b, _ := os.ReadFile(cl.LogPath(i))
				if len(b) > 3000 {
					b = b[len(b)-3000:]
				}
				t.Logf("site %s's log:\n%s", cl.Name(i), b)
			}
		}
	})
	t.Logf("cluster up in %s", time.Since(start).Round(time.Millisecond))

	// Mina's browser prefers Korean and loads the app from site a; Joon's
	// prefers English and uses site b.
	mina := newPage(t, ctx, chromium, "mina", "ko-KR")
	joon := newPage(t, ctx, chromium, "joon", "en-US")
	suffix := fmt.Sprint(time.Now().UnixNano() % 1e6)
	minaName, joonName := "mina"+suffix, "joon"+suffix

	mina.phone()
	mina.do("open site a", chromedpNavigate(cl.URL(0)))
	mina.wait("the Korean log-in form", `document.getElementById("auth-form") && document.documentElement.lang === "ko"`)
	mina.shoot("login-ko-phone")
	signUp(mina, minaName, "미나")
	joon.desktop()
	joon.do("open site b", chromedpNavigate(cl.URL(1)))
	joon.wait("the English log-in form", `document.getElementById("auth-form") && document.documentElement.lang === "en"`)
	joon.shoot("login-en-desktop")
	signUp(joon, joonName, "Joon")

	// Mina adds Joon as a friend and opens their chat from his profile.
	mina.click("#tab-friends")
	mina.click("#add-friend")
	mina.fill("#friend-name", joonName)
	mina.click(`#dialog-form button[type="submit"]`)
	mina.wait("Joon among the friends", `!!document.querySelector('.person[data-user=`+jsString(joonName)+`]')`)
	mina.click(`.person[data-user=` + jsString(joonName) + `]`)
	mina.click("#profile-chat")
	mina.wait("the room with Joon", `!document.getElementById("room").hidden && document.getElementById("room-title").textContent.includes("Joon")`)

	// Mina's first message shows "1" (Joon has not read it) until he does.
	mina.say("안녕하세요 Joon!")
	first := `document.querySelector('#messages .msg.mine[data-seq="1"]')`
	mina.wait("the first message with 1 unread", first+` && `+first+`.querySelector(".unread")?.textContent === "1"`)
	joon.wait("the chat in Joon's list with a badge", `!!document.querySelector('#chat-list .room-item .unread-badge')`)
	joon.shoot("chats-en-desktop")
	joon.click("#chat-list .room-item")
	joon.wait("Mina's message", `[...document.querySelectorAll("#messages .msg .text")].some(e => e.textContent === "안녕하세요 Joon!")`)
	mina.wait("the 1 gone", first+` && !`+first+`.querySelector(".unread")`)

	chat := &conversation{t: t, ctx: ctx, sent: []string{"안녕하세요 Joon!"}, pages: []*page{mina, joon}}
	chat.talk(joon, "Hi Mina, how are you?")
	chat.whole(10 * time.Second)
	// Joon selects the text of Mina's first message; a message arriving
	// leaves its element, and so his selection, alone.
	joon.js(`window.keptMsg = [...document.querySelectorAll("#messages .msg")].find(e => e.querySelector(".text")?.textContent === "안녕하세요 Joon!");
		const r = document.createRange(); r.selectNodeContents(window.keptMsg.querySelector(".text"));
		getSelection().removeAllRanges(); getSelection().addRange(r)`)
	chat.talk(mina, "잘 지내요 😊 you?")
	chat.whole(10 * time.Second)
	joon.wait("the selected message kept, still selected",
		`window.keptMsg.isConnected && getSelection().toString() === "안녕하세요 Joon!"`)
	joon.js(`getSelection().removeAllRanges()`)
	chat.talk(joon, "Great. Did the fire reach you?")
	chat.whole(10 * time.Second)
	mina.shoot("room-ko-phone")
	joon.shoot("room-en-desktop")

	// While Joon types, Mina sees it; his message ends it.
	joon.do("type", chromedp.SendKeys(chromedp.ID("input"), "Typing where you"))
	mina.wait("Joon is typing", `document.getElementById("typing").textContent.includes("Joon")`)
	joon.say(" can see it")
	chat.sent = append(chat.sent, "Typing where you can see it")
	chat.whole(10 * time.Second)
	mina.wait("no one typing", `document.getElementById("typing").textContent === ""`)

	// Joon's site hangs (its process stopped, its sockets open): his page
	// finds out by pinging and moves on.
	hangSite(t, ctx, cl, chat, joon, mina)

	// The site Mina's page is connected to — the one that served her the
	// app — burns.
	mina.wait("the app shell kept by the service worker", `!!navigator.serviceWorker.controller`)
	var siteName string
	mina.eval(`document.getElementById("conn").dataset.site`, &siteName)
	burned := cl.Index(siteName)
	if burned != 0 {
		t.Fatalf("mina's page is connected to %q, not to site %s, which served it", siteName, cl.Name(0))
	}
	t.Logf("SIGKILL site %s (mina's)", siteName)
	fire := time.Now()
	if err := cl.Kill(burned); err != nil {
		t.Fatal(err)
	}
	chat.talk(mina, "불이야! still here?")
	chat.talk(joon, "Still here.")
	chat.talk(mina, "다른 사이트로 옮겨졌어요")
	chat.whole(10 * time.Second)
	mina.wait("mina live at another site", `document.getElementById("conn").dataset.state === "live" &&
		document.getElementById("conn").dataset.site !== `+jsString(siteName))
	t.Logf("conversation whole in both browsers %s after the fire", time.Since(fire).Round(time.Millisecond))
	mina.shoot("room-after-fire-ko-phone")

	// Hangul through an IME: the Enter that ends the composition sends
	// nothing; the Enter after it sends "안녕".
	mina.ime("안녕")
	mina.say("") // Enter, now that the composition is committed
	chat.sent = append(chat.sent, "안녕")
	chat.whole(10 * time.Second)

	// Mina reloads while her page's own site is still burned: the app
	// comes from the service worker's cache, and what she typed just
	// before, unsent, goes out once through another site.
	reloadWithoutItsSite(t, chat, mina, siteName)

	// An incident opened by an operator is a banner in both browsers, each
	// in its user's language, until it is resolved.
	incident := openIncident(t, ctx, cl)
	mina.wait("the Korean banner", `document.querySelector("#banners .banner")?.textContent.includes("메시지 지연")`)
	joon.wait("the English banner", `document.querySelector("#banners .banner")?.textContent.includes("Messages delayed")`)
	mina.shoot("incident-ko-phone")
	admin(t, ctx, cl, "incident", "update", incident, "--state", "resolved", "--message", "Resolved.", "--message-ko", "해결되었습니다.")
	mina.wait("the banner gone", `!document.querySelector("#banners .banner")`)
	joon.wait("the banner gone", `!document.querySelector("#banners .banner")`)

	// Mina makes a group with Joon (its creation carries a client id) and
	// renames it; it comes first in both chat lists.
	mina.js(`location.hash = "#/chats"`) // (its site is gone: the page stays)
	mina.wait("the chat list", `!!document.querySelector("#chat-list .room-item")`)
	mina.click("#new-group")
	mina.fill("#group-name", "불꽃 대피조")
	mina.click(`#dialog-form input[value=` + jsString(joonName) + `]`)
	mina.click(`#dialog-form button[type="submit"]`)
	mina.wait("the group", `document.getElementById("room-title")?.textContent.includes("불꽃 대피조")`)
	mina.say("모두 무사해요?")
	joon.wait("the group first in Joon's list", `document.querySelector("#chat-list .room-item .room-title")?.textContent === "불꽃 대피조"`)
	mina.click("#room-settings")
	mina.fill("#rename-form input", "Fire team")
	mina.click(`#rename-form button[type="submit"]`)
	joon.wait("the new name in Joon's list", `document.querySelector("#chat-list .room-item .room-title")?.textContent === "Fire team"`)
	mina.js(`location.hash = "#/chats"`)
	mina.wait("both chats", `document.querySelectorAll("#chat-list .room-item").length === 2`)
	mina.shoot("chats-ko-phone")
	mina.click("#tab-friends")
	mina.wait("the friends", `!!document.querySelector('.person[data-user=`+jsString(joonName)+`] .presence.on')`)
	mina.shoot("friends-ko-phone")
	mina.desktop()
	mina.js(`location.hash = "#/chats"`)
	mina.click(`#chat-list .room-item[data-room^="d_"]`)
	mina.wait("the 1:1 room", `!!document.querySelector("#messages .msg[data-seq]")`)
	mina.shoot("room-ko-desktop")
	joon.phone()
	joon.js(`location.hash = "#/chats"`)
	joon.click(`#chat-list .room-item[data-room^="g_"]`)
	joon.wait("the group's message", `[...document.querySelectorAll("#messages .msg .text")].some(e => e.textContent === "모두 무사해요?")`)
	joon.js(`document.documentElement.dataset.theme = "dark"`)
	joon.shoot("group-en-phone-dark")
	joon.js(`delete document.documentElement.dataset.theme`)
	joon.desktop()
	joon.click(`#chat-list .room-item[data-room^="d_"]`)

	// Joon's network fails: the page reloads without any site, messages
	// typed meanwhile wait in the outbox, survive another reload, and are
	// sent exactly once when the network is back.
	joon.offline(true)
	joon.do("reload", chromedp.Reload())
	joon.wait("the room from the browser's storage", `[...document.querySelectorAll("#messages .msg .text")].some(e => e.textContent === "안녕")`)
	joon.wait("no site", `document.getElementById("conn").dataset.state !== "live"`)
	chat.talk(joon, "typed offline, one")
	chat.talk(joon, "typed offline, two")
	joon.wait("two messages waiting", `document.querySelectorAll("#messages .msg.pending").length === 2`)
	joon.do("reload", chromedp.Reload())
	joon.wait("the two still waiting after a reload", `document.querySelectorAll("#messages .msg.pending").length === 2 &&
		document.getElementById("conn").textContent.includes("2 unsent")`)
	joon.shoot("offline-en-desktop")
	// A long outbox (more than the page keeps in flight on its socket, 64)
	// goes out in order, each message once. It is kept as versions before
	// one entry per message kept it, one list under one key, which the
	// page takes over.
	const queued = 80
	joon.js(`{
		const items = ` + outboxOf(sessionUser) + `;
		for (let i = 0; i < ` + fmt.Sprint(queued) + `; i++) items.push({client_id: crypto.randomUUID().replaceAll("-", ""),
			room_id: items[0].room_id, text: "queued " + i, queued_at: new Date().toISOString()});
		for (const m of items) localStorage.removeItem("salamander.outbox." + ` + sessionUser + ` + ":" + m.client_id);
		localStorage.setItem("salamander.outbox." + ` + sessionUser + `, JSON.stringify(items));
	}`)
	for i := range queued {
		chat.sent = append(chat.sent, fmt.Sprint("queued ", i))
	}
	joon.do("reload", chromedp.Reload())
	joon.wait("the long outbox after a reload", `document.getElementById("conn").textContent.includes("`+fmt.Sprint(queued+2)+` unsent")`)
	joon.offline(false)
	chat.whole(30 * time.Second)
	joon.wait("nothing waiting", `document.querySelectorAll("#messages .msg.pending").length === 0`)

	// Sora, a third user, joins the group at Mina's invitation and fills it
	// with 60 messages; Joon, after a reload, scrolls back through them all
	// and leaves the group.
	inviteScrollLeave(t, ctx, cl, mina, joon, minaName, joonName)
}

// conversation is the 1:1 chat of two browsers: what was said, in order.
type conversation struct {
	t     *testing.T
	ctx   context.Context
	sent  []string
	pages []*page
}

// talk says text in p's room.
func (c *conversation) talk(p *page, text string) {
	c.t.Helper()
	p.say(text)
	c.sent = append(c.sent, text)
}

// whole waits until every page shows everything said, once.
func (c *conversation) whole(within time.Duration) {
	c.t.Helper()
	sameMessages(c.t, c.ctx, c.sent, within, c.pages...)
}

// admin runs `salamander admin` against the cluster's living sites.
func admin(t *testing.T, ctx context.Context, cl *drill.Cluster, args ...string) string {
	t.Helper()
	var nats []string
	for i := range cl.N() {
		if cl.Alive(i) {
			nats = append(nats, cl.NATSURL(i))
		}
	}
	full := append([]string{"admin", "--nats", strings.Join(nats, ","), "--creds", cl.AdminFile()}, args...)
	out, err := exec.CommandContext(ctx, binary, full...).CombinedOutput()
	if err != nil {
		t.Fatalf("salamander %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// openIncident announces an incident, in English and Korean, as an
// operator would; it returns the incident's id.
func openIncident(t *testing.T, ctx context.Context, cl *drill.Cluster) string {
	t.Helper()
	out := admin(t, ctx, cl, "incident", "announce", "--impact", "major", "--services", "messaging",
		"--title", "Messages delayed", "--title-ko", "메시지 지연",
		"--message", "Some messages arrive late; we are on it.", "--message-ko", "일부 메시지가 늦게 도착합니다. 조치 중입니다.")
	// The output may begin with a note on stderr (a stream still electing
	// after the fire): the id is on the line the command prints.
	for _, line := range strings.Split(out, "\n") {
		var id string
		if _, err := fmt.Sscanf(line, "incident %s", &id); err == nil {
			return strings.TrimSuffix(id, ":")
		}
	}
	t.Fatalf("no incident id in %q", out)
	return ""
}

// signUp creates an account in the app's sign-up form.
func signUp(p *page, name, display string) {
	p.t.Helper()
	p.click("#auth-switch")
	p.fill("#auth-name", name)
	p.fill("#auth-display_name", display)
	p.fill("#auth-password", password)
	p.click("#auth-submit")
	p.wait("the app, live", `!document.getElementById("app").hidden && document.getElementById("conn").dataset.state === "live"`)
}

// sameMessages waits until every page shows exactly want, in an order
// that keeps each sender's order, and the same order in every page.
func sameMessages(t *testing.T, ctx context.Context, want []string, within time.Duration, pages ...*page) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var got [][]string
		ok := true
		for _, p := range pages {
			m := p.messages()
			got = append(got, m)
			if !sameSet(m, want) || !slices.Equal(m, got[0]) {
				ok = false
			}
		}
		if ok {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for i, p := range pages {
				t.Logf("%s shows %q", p.name, got[i])
			}
			pages[0].fail(fmt.Sprintf("within %s, every browser should show exactly %q", within, want))
		}
		time.Sleep(50 * time.Millisecond) // polling the pages' DOM
	}
}

// sameSet reports whether got holds each of want exactly once, and nothing else.
func sameSet(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	count := map[string]int{}
	for _, w := range want {
		count[w]++
	}
	for _, g := range got {
		count[g]--
		if count[g] < 0 {
			return false
		}
	}
	return true
}
