package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/internal/testbrowser"
)

// The ops console in a real browser (Debian's chromium, headless): a user
// is turned away with the message that the console needs the operator
// role; an operator sees the three sites, the NATS servers and the
// streams filled in live, moves between the tabs, and sees a site that
// burns go unreachable and come back. Screenshots at a
// laptop's 1366×850 go to $SALAMANDER_ARTIFACTS (a temporary directory
// when unset), and to docs/screenshots/ for the README when
// SALAMANDER_UPDATE_SCREENSHOTS=1.
func TestOpsConsoleInABrowser(t *testing.T) {
	chromium := testbrowser.Chromium(t, "the ops console's browser test")
	ctx := testCtx(t, 90*time.Second)
	op, opName := operator(t, ctx, 0, "cbop")
	_, userName := signedUp(t, 1, "cbuser")

	// Some traffic, so the message rates move while the console looks.
	friend, friendName := signedUp(t, 2, "cbfriend")
	room, err := op.DirectRoom(ctx, friendName)
	if err != nil {
		t.Fatal(err)
	}
	trafficCtx, stopTraffic := context.WithCancel(ctx)
	var traffic sync.WaitGroup
	traffic.Add(1)
	go func() {
		defer traffic.Done()
		for i := 0; trafficCtx.Err() == nil; i++ {
			_, _ = friend.Send(trafficCtx, room.ID, fmt.Sprintf("message %d", i))
			select {
			case <-trafficCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() {
		stopTraffic()
		traffic.Wait()
	}()

	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1366, 850),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("hide-scrollbars", true))...)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	shots := testbrowser.ScreenshotDirs(t)
	// shoot saves what a laptop's screen shows, or the whole page.
	shoot := func(name string, whole ...bool) {
		t.Helper()
		capture := chromedp.CaptureScreenshot()
		if len(whole) > 0 && whole[0] {
			capture = chromedp.FullScreenshot(100)
		}
		png, err := chromedp.Run(browser, capture)
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		for _, dir := range shots {
			if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// waitJS waits until expr is true in the page, and says what was
	// waited for when it is not.
	waitJS := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(browser, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(20*time.Second),
			chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
			shoot("failed.png")
			page, _ := chromedp.Run(browser, chromedp.Evaluate[string](`document.body.innerText`))
			t.Fatalf("waiting for %s: %v; the page says:\n%s", what, err, page)
		}
	}
	logIn := func(name string) {
		t.Helper()
		if err := chromedp.Do(browser, chromedp.WaitVisible(chromedp.ID("login-form"))); err != nil {
			t.Fatal(err)
		}
		if _, err := chromedp.Run(browser, chromedp.Evaluate[bool](
			`document.getElementById("login-user").value = ""; document.getElementById("login-password").value = ""; true`)); err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(browser,
			chromedp.SendKeys(chromedp.ID("login-user"), name),
			chromedp.SendKeys(chromedp.ID("login-password"), "correct horse battery"),
			chromedp.Click(chromedp.CSS(`#login-form button[type="submit"]`)),
		); err != nil {
			t.Fatalf("log in as %s: %v", name, err)
		}
	}

	// A user is refused, and told why.
	if err := chromedp.Do(browser, chromedp.EmulateViewport(1366, 850), chromedp.Navigate(cluster.URL(1)+"/ops")); err != nil {
		t.Fatal(err)
	}
	logIn(userName)
	waitJS("the operator-role message", `document.getElementById("login-error").textContent.includes("needs the operator role")`)
	shoot("console-login-refused.png")

	// An operator sees every site live, from site b.
	logIn(opName)
	waitJS("three serving sites", `document.querySelectorAll("#sites .site-card.ok").length === 3`)
	waitJS("the operator's device token, kept for the next login", `(localStorage.getItem("salamander.ops.device.`+opName+`") || "").includes(".")`)
	waitJS("the streams", `document.querySelectorAll("#streams tbody tr[data-stream]").length > 0 &&
		[...document.querySelectorAll("#streams tbody tr[data-stream] .replica")].length >= 3`)
	waitJS("the standbys, each led away from its partition's site", `(() => {
		const rows = [...document.querySelectorAll("#standbys tbody tr[data-standby]")];
		return rows.length > 0 && rows.length === document.querySelectorAll("#streams tbody tr[data-stream]").length - 1 &&
			rows.every((r) => r.textContent.includes("another site"));
	})()`)
	waitJS("the NATS servers", `document.querySelectorAll("#servers tbody tr").length === 3`)
	waitJS("the live indicator", `document.getElementById("live").classList.contains("on")`)
	waitJS("a message rate", `[...document.querySelectorAll("#sites .stat")].some(s =>
		s.textContent.includes("messages/s") && !s.querySelector("b").textContent.includes("–"))`)
	here, err := chromedp.Run(browser, chromedp.Text(chromedp.ID("here")))
	if err != nil || here == "" {
		t.Fatalf("header: %q %v", here, err)
	}
	shoot("console-overview.png")
	shoot("console-overview-full.png", true)

	// The tabs: the audit trail has the operator's promotion; the user
	// tab finds an account; tabs whose endpoints a server lacks say so.
	tab := func(name string) {
		t.Helper()
		if err := chromedp.Do(browser, chromedp.Click(chromedp.CSS(`#tabs button[data-tab="`+name+`"]`))); err != nil {
			t.Fatal(err)
		}
		waitJS(name+" tab", `!document.getElementById("view-`+name+`").hidden`)
	}
	tab("audit")
	waitJS("the audit trail", fmt.Sprintf(`document.getElementById("audit").textContent.includes(%q)`, opName))
	shoot("console-audit.png")
	tab("users")
	if err := chromedp.Do(browser, chromedp.SendKeys(chromedp.ID("user-name"), userName),
		chromedp.Click(chromedp.CSS(`#user-form button`))); err != nil {
		t.Fatal(err)
	}
	waitJS("the user card", fmt.Sprintf(`document.getElementById("user-card").textContent.includes(%q)`, userName))
	for _, name := range []string{"incidents", "reports", "drills"} {
		tab(name)
		waitJS(name+" loaded", `!!document.getElementById("view-`+name+`").querySelector(".unavailable, table, .incident, .notice, h3")`)
	}
	shoot("console-drills.png")

	// An incident opened in the console reaches the public status page,
	// in Korean and in English.
	tab("incidents")
	waitJS("the incident form", `!document.getElementById("incident-new").hidden`)
	title := "Messages delayed " + opName
	field := func(name string) string { return `#incident-form [name="` + name + `"]` }
	if err := chromedp.Do(browser,
		chromedp.SendKeys(chromedp.CSS(field("title_en")), title),
		chromedp.SendKeys(chromedp.CSS(field("title_ko")), "메시지 지연 "+opName),
		chromedp.SendKeys(chromedp.CSS(field("message_en")), "Some messages arrive late; we are on it."),
		chromedp.SendKeys(chromedp.CSS(field("message_ko")), "일부 메시지가 늦게 도착합니다. 조치 중입니다."),
		chromedp.SetValue(chromedp.CSS(field("impact")), "major"),
		chromedp.Click(chromedp.CSS(`#incident-form button[type="submit"]`)),
	); err != nil {
		t.Fatal(err)
	}
	waitJS("the incident listed", fmt.Sprintf(`document.getElementById("incidents").textContent.includes(%q)`, title))
	shoot("console-incidents.png")
	t.Cleanup(func() { resolveIncidents(t, op.Token(), title) })
	page, cancelPage := chromedp.NewContext(browser)
	defer cancelPage()
	for _, lang := range []string{"ko", "en"} {
		want := map[string]string{"ko": "메시지 지연 " + opName, "en": title}[lang]
		if err := chromedp.Do(page, chromedp.EmulateViewport(1366, 850), chromedp.Navigate(cluster.URL(0)+"/status?lang="+lang)); err != nil {
			t.Fatal(err)
		}
		text, err := chromedp.Run(page, chromedp.Text(chromedp.CSS("body")))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(text, want) || !strings.Contains(text, map[string]string{"ko": "부분 장애", "en": "Partial outage"}[lang]) {
			t.Fatalf("status page in %s lacks the incident:\n%s", lang, text)
		}
		png, err := chromedp.Run(page, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatal(err)
		}
		for _, dir := range shots {
			if err := os.WriteFile(filepath.Join(dir, "status-"+lang+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	cancelPage()
	tab("overview")
	waitJS("the overview again", `document.querySelectorAll("#sites .site-card").length === 3`)

	// A site burns: the console, still live at site b, shows it
	// unreachable and what the surviving sites logged; it comes back.
	cluster.Kill(2)
	t.Cleanup(func() {
		if cluster.Site(2) == nil {
			_ = cluster.Restart(testCtx(t, 60*time.Second), 2)
		}
	})
	siteC := `document.querySelector('#sites .site-card[data-site="c"]')`
	waitJS("site c unreachable", siteC+`.classList.contains("bad") && `+siteC+`.textContent.includes("unreachable")`)
	waitJS("site c among the recent errors", `document.getElementById("errors").textContent.includes("unreachable")`)
	waitJS("the live indicator", `document.getElementById("live").classList.contains("on")`)
	shoot("console-site-down.png")
	if err := cluster.Restart(ctx, 2); err != nil {
		t.Fatal(err)
	}
	waitJS("site c serving again", `document.querySelectorAll("#sites .site-card.ok, #sites .site-card.warn").length === 3`)
}

// resolveIncidents resolves the open incidents titled title.
func resolveIncidents(t *testing.T, token, title string) {
	code, body := opsCall(t, 0, "GET", "/v1/status/incidents", "", nil)
	if code != http.StatusOK {
		return
	}
	var lists struct{ Open []salamander.Incident }
	_ = json.Unmarshal(body, &lists)
	for _, inc := range lists.Open {
		if inc.Title.EN == title {
			opsCall(t, 0, "POST", "/v1/ops/incidents/"+inc.ID+"/updates", token, salamander.IncidentUpdateRequest{
				State: salamander.IncidentResolved, Message: salamander.Localized{EN: "Resolved."}})
		}
	}
}
