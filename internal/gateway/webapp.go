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
// own script and style, and API calls and WebSockets to this site and to
// every other site of the deployment (the page moves there when this site
// fails).
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
	return "default-src 'self'; connect-src " + strings.Join(connect, " ") +
		"; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
}
