package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/salamander-chat/salamander"
	"github.com/salamander-chat/salamander/web"
)

// handleWebApp serves the web messenger (package web): its page at / and
// its style and scripts at /app/{file…}. Like the console, the page holds
// no data; everything comes from the API with the user's token.
func (g *Gateway) handleWebApp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(web.Files(), name) // (an embed.FS refuses "..", "./" and "/")
	if err != nil {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeNotFound, "no web app file %q", name))
		return
	}
	g.serveWebFile(w, r, name, b)
}

// handleServiceWorker serves the web app's service worker, which keeps
// the app shell for opening the page while this site is down. It is at
// the root so that its scope is the whole origin; its script names the
// release's shell version, so a new release replaces the cached shell.
func (g *Gateway) handleServiceWorker(w http.ResponseWriter, r *http.Request) {
	g.serveWebFile(w, r, "sw.js", g.serviceWorker)
}

// serveWebFile serves one file of the web app, revalidated on every use
// (Cache-Control: no-cache with an ETag of its content).
func (g *Gateway) serveWebFile(w http.ResponseWriter, r *http.Request, name string, b []byte) {
	sum := sha256.Sum256(b)
	h := w.Header()
	h.Set("Content-Security-Policy", g.webAppCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", `"`+hex.EncodeToString(sum[:12])+`"`)
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}

// webAppCSP is the web app's Content-Security-Policy: only this site's
// own script, style and service worker, and API calls and WebSockets to
// this site and to every other site of the deployment (the page moves
// there when this site fails).
func webAppCSP(sites []SiteInfo) string {
	connect := []string{"'self'"}
	for _, s := range sites {
		u, err := url.Parse(s.URL)
		if err != nil || u.Host == "" {
			continue
		}
		ws := "ws"
		if u.Scheme == "https" {
			ws = "wss"
		}
		connect = append(connect, u.Scheme+"://"+u.Host, ws+"://"+u.Host)
	}
	return "default-src 'self'; worker-src 'self'; connect-src " + strings.Join(connect, " ") +
		"; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}
