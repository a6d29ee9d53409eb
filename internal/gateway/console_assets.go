package gateway

import (
	"bytes"
	"embed"
	"io/fs"
	"net/http"
	"path"
	"time"

	"github.com/salamander-chat/salamander"
)

// consoleFiles are the ops console's page, style and script: plain HTML,
// CSS and JavaScript, no build step and nothing fetched from elsewhere
// (production networks reach no CDN).
//
//go:embed console
var consoleFiles embed.FS

// handleConsole serves the ops console at /ops and its assets at
// /ops/{file}. The page is public (it holds no data); everything it shows
// comes from the /v1/ops/ API, which needs an operator's session.
func (g *Gateway) handleConsole(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(consoleFiles, path.Join("console", name))
	if err != nil {
		writeError(w, g.log, r, salamander.Errorf(salamander.CodeNotFound, "no console file %q", name))
		return
	}
	h := w.Header()
	// Only this site's own script, style and API: no inline script, no
	// framing by another page.
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
}
