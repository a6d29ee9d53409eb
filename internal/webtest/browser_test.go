package webtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/salamander-chat/salamander/internal/fakesite"
	"github.com/salamander-chat/salamander/internal/testbrowser"
	"github.com/salamander-chat/salamander/web"
)

// page is one browser (its own process, so its own storage: one device)
// showing the web app.
type page struct {
	t     *testing.T
	name  string
	ctx   context.Context
	shots []string
}

// newPage starts a headless chromium whose preferred language is lang.
func newPage(t *testing.T, ctx context.Context, chromium, name, lang string) *page {
	t.Helper()
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1366, 850),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", lang))...)
	bctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The browser's languages (navigator.languages) and locale.
	ua, err := chromedp.Run(bctx, chromedp.Evaluate[string]("navigator.userAgent"))
	if err != nil {
		t.Fatalf("%s: start chromium: %v", name, err)
	}
	base, _, _ := strings.Cut(lang, "-")
	if _, err := chromedp.Call(bctx, emulation.SetUserAgentOverride,
		emulation.SetUserAgentOverrideParams{UserAgent: ua, AcceptLanguage: lang + "," + base}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(bctx, emulation.SetLocaleOverride, emulation.SetLocaleOverrideParams{Locale: lang}); err != nil {
		t.Fatal(err)
	}
	return &page{t: t, name: name, ctx: bctx, shots: testbrowser.ScreenshotDirs(t)}
}

// do runs actions, failing the test (with a screenshot) when one fails.
func (p *page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.fail(fmt.Sprintf("%s: %v", what, err))
	}
}

func (p *page) fail(msg string) {
	p.t.Helper()
	png, _ := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if png != nil {
		_ = os.WriteFile(filepath.Join(p.shots[0], "web-failed-"+p.name+".png"), png, 0o644)
	}
	text, _ := chromedp.Run(p.ctx, chromedp.Evaluate[string](`document.body.innerText`))
	p.t.Fatalf("%s: %s; the page says:\n%s", p.name, msg, text)
}

// wait polls until expr is true in the page — also across a reload the
// page makes meanwhile (signing out reloads it).
func (p *page) wait(what, expr string, timeout ...time.Duration) {
	p.t.Helper()
	d := 20 * time.Second
	if len(timeout) > 0 {
		d = timeout[0]
	}
	deadline := time.Now().Add(d)
	for {
		_, err := chromedp.Run(p.ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(max(time.Until(deadline), time.Millisecond)),
			chromedp.WithPollingInterval(50*time.Millisecond)))
		if err == nil {
			return
		}
		if time.Now().Before(deadline) && (strings.Contains(err.Error(), "navigated or closed") ||
			strings.Contains(err.Error(), "Cannot find context")) {
			time.Sleep(50 * time.Millisecond) // polling again in the page that replaced it
			continue
		}
		p.fail(fmt.Sprintf("waiting for %s: %v", what, err))
	}
}

// eval evaluates expr and decodes its (JSON-able) value into out.
func (p *page) eval(expr string, out any) {
	p.t.Helper()
	s, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify(`+expr+`)`))
	if err != nil {
		p.fail(fmt.Sprintf("evaluate %s: %v", expr, err))
	}
	if err := json.Unmarshal([]byte(s), out); err != nil {
		p.fail(fmt.Sprintf("decode %s: %v", s, err))
	}
}

// js runs a statement in the page.
func (p *page) js(stmt string) {
	p.t.Helper()
	var ok bool
	p.eval(`(() => { `+stmt+`; return true; })()`, &ok)
}

// shoot saves what the screen shows as web-NAME.png.
func (p *page) shoot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.CaptureScreenshot())
	if err != nil {
		p.fail("screenshot " + name + ": " + err.Error())
	}
	for _, dir := range p.shots {
		if err := os.WriteFile(filepath.Join(dir, "web-"+name+".png"), png, 0o644); err != nil {
			p.t.Fatal(err)
		}
	}
}

// phone and desktop set the viewport.
func (p *page) phone() {
	p.do("phone viewport", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)))
}
func (p *page) desktop() { p.do("desktop viewport", chromedp.EmulateViewport(1366, 850)) }

// fill types text into the field sel (after clearing it).
func (p *page) fill(sel, text string) {
	p.t.Helper()
	p.do("fill "+sel, chromedp.WaitVisible(chromedp.CSS(sel)))
	p.js(`document.querySelector(` + jsString(sel) + `).value = ""`)
	p.do("fill "+sel, chromedp.SendKeys(chromedp.CSS(sel), text))
}

// click clicks the element sel. The page may redraw it between finding
// it and clicking it (a message arrived and changed what it shows):
// then, as a person would, it clicks the new one.
func (p *page) click(sel string) {
	p.t.Helper()
	for try := 1; ; try++ {
		ctx, cancel := context.WithTimeout(p.ctx, 20*time.Second)
		err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return
		}
		if try < 3 && strings.Contains(err.Error(), "Could not find node with given id") {
			continue
		}
		p.fail(fmt.Sprintf("click %s: %v", sel, err))
	}
}

// say types a message in the composer and presses Enter.
func (p *page) say(text string) {
	p.t.Helper()
	p.do("say "+text, chromedp.WaitVisible(chromedp.ID("input")), chromedp.SendKeys(chromedp.ID("input"), text+kb.Enter))
}

// ime composes text in the composer as an IME does (Hangul), presses
// Enter while it is still composing — which must send nothing — and then
// commits it, leaving it in the composer.
func (p *page) ime(text string) {
	p.t.Helper()
	p.do("focus the composer", chromedp.Focus(chromedp.ID("input")))
	var before []string
	p.eval(outboxOf(sessionUser)+`.map(m => m.text)`, &before)
	n := int64(len([]rune(text)))
	if _, err := chromedp.Call(p.ctx, input.ImeSetComposition, input.ImeSetCompositionParams{Text: text, SelectionStart: n, SelectionEnd: n}); err != nil {
		p.fail("compose: " + err.Error())
	}
	// Enter during the composition, as the browser reports it from an IME.
	for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
		if _, err := chromedp.Call(p.ctx, input.DispatchKeyEvent, input.DispatchKeyEventParams{
			Type: typ, Key: "Enter", Code: "Enter", WindowsVirtualKeyCode: 229, NativeVirtualKeyCode: 229}); err != nil {
			p.fail("Enter while composing: " + err.Error())
		}
	}
	var composing struct {
		Value   string
		Pending int
	}
	p.eval(`({value: document.getElementById("input").value, pending: document.querySelectorAll("#messages .msg.pending").length})`, &composing)
	if composing.Value != text || composing.Pending != 0 {
		p.fail(fmt.Sprintf("Enter while composing %q: composer holds %q, %d messages pending (want it unsent)", text, composing.Value, composing.Pending))
	}
	if _, err := chromedp.Call(p.ctx, input.InsertText, input.InsertTextParams{Text: text}); err != nil {
		p.fail("commit: " + err.Error())
	}
	p.wait("the committed text in the composer", `document.getElementById("input").value === `+jsString(text))
}

// offline makes every request and WebSocket of the page to the API fail,
// or lets them through again. The page itself still loads — from its
// site, or from its service worker's cache, whose requests are not the
// page's.
func (p *page) offline(on bool) {
	p.t.Helper()
	var patterns []*network.BlockPattern
	if on {
		patterns = []*network.BlockPattern{{URLPattern: "*://*:*/v1/*", Block: true}}
	}
	if _, err := chromedp.Call(p.ctx, network.Enable, network.EnableParams{}); err != nil {
		p.fail("network: " + err.Error())
	}
	if _, err := chromedp.Call(p.ctx, network.SetBlockedURLs, network.SetBlockedURLsParams{URLPatterns: patterns}); err != nil {
		p.fail("block: " + err.Error())
	}
	if _, err := chromedp.Call(p.ctx, emulateNetworkConditions, networkConditions{Offline: on, DownloadThroughput: -1, UploadThroughput: -1}); err != nil {
		p.fail("offline: " + err.Error())
	}
}

// emulateNetworkConditions is DevTools' Network.emulateNetworkConditions,
// whose "offline" also fails the page's WebSockets.
var emulateNetworkConditions = cdp.Command[networkConditions, cdp.Empty]{Method: "Network.emulateNetworkConditions"}

type networkConditions struct {
	Offline            bool    `json:"offline"`
	Latency            float64 `json:"latency"`
	DownloadThroughput float64 `json:"downloadThroughput"`
	UploadThroughput   float64 `json:"uploadThroughput"`
}

// messages are the texts of the room's committed messages, top to bottom.
func (p *page) messages() []string {
	var out []string
	p.eval(`[...document.querySelectorAll("#messages .msg[data-seq] .text")].map(e => e.textContent)`, &out)
	return out
}

// sessionUser is a JavaScript expression for the signed-in user's name.
const sessionUser = `JSON.parse(localStorage.getItem("salamander.session")).user.name`

// outboxOf is a JavaScript expression for the outbox (web/static/js/store.js)
// of the user the JavaScript expression user names, as stored: its
// messages, one entry each, oldest first.
func outboxOf(user string) string {
	return `((u) => Object.keys(localStorage).filter((k) => k.startsWith("salamander.outbox." + u + ":"))
		.map((k) => JSON.parse(localStorage.getItem(k))).sort((x, y) => x.at - y.at))(` + user + `)`
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// serveAppFiles serves the web app's files at /app/, as a site does.
func serveAppFiles(mux *http.ServeMux) {
	mux.Handle("GET /app/", http.StripPrefix("/app/", http.FileServerFS(web.Files())))
}

// modulesPage opens, in a new browser, a blank page of an origin that
// serves the app's files at /app/ (and mux's other routes, if mux is not
// nil), for tests that import the app's modules on their own.
func modulesPage(t *testing.T, name string, mux *http.ServeMux) *page {
	t.Helper()
	chromium := testbrowser.Chromium(t, "the web client's browser test")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	if mux == nil {
		mux = http.NewServeMux()
	}
	serveAppFiles(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte("<!doctype html><title>modules</title>"))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	p := newPage(t, ctx, chromium, name, "en-US")
	p.do("open a page of the app's origin", chromedpNavigate(srv.URL))
	return p
}

// logIn logs in as name in the app's login form (any password does at a
// fake site) and waits for the app to be live.
func logIn(p *page, name string) {
	p.t.Helper()
	p.wait("the login form", `!!document.getElementById("auth-submit")`)
	p.fill("#auth-name", name)
	p.fill("#auth-password", password)
	p.click("#auth-submit")
	p.wait("the app, live", `!document.getElementById("app").hidden && document.getElementById("conn").dataset.state === "live"`)
}

// minaAtFakeSite opens the app, served with a fake site of cfg, in a page
// of lang and logs in as cfg.User; the page's context ends with t.
func minaAtFakeSite(t *testing.T, cfg fakesite.Config, lang string) (*fakesite.Site, *page) {
	t.Helper()
	chromium := testbrowser.Chromium(t, "the web client's browser test")
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	t.Cleanup(cancel)
	site := fakesite.New(cfg)
	url := serveWithFakeSite(t, site)
	p := newPage(t, ctx, chromium, cfg.User.Name, lang)
	p.do("open the app", chromedpNavigate(url))
	logIn(p, cfg.User.Name)
	return site, p
}

// serveWithFakeSite serves the app with api (a fake site) under /v1/, until
// t ends, and returns its URL.
func serveWithFakeSite(t *testing.T, api http.Handler) string {
	mux := http.NewServeMux()
	mux.Handle("/v1/", api)
	serveAppFiles(mux)
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.ServeFileFS(w, r, web.Files(), "index.html") })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func chromedpNavigate(url string) chromedp.Action[chromedp.Void] { return chromedp.Navigate(url) }
