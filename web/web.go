package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"path"
	"slices"
)

//go:embed static
var static embed.FS

//go:embed sw.js
var serviceWorker []byte

// Files returns the app's files: index.html at the root, the style and the
// script modules under it. They never change while the process runs.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is embedded above: it always exists
	}
	return sub
}

// Shell is the app shell a browser keeps for starting without its site:
// the URL of every file as the gateway serves it (the page at "/", the
// others under "/app/"), sorted, and Version, a hash of their names and
// contents that changes with any of them.
type Shell struct {
	Version string   `json:"version"`
	Files   []string `json:"files"`
}

// AppShell lists the app's files and hashes them.
func AppShell() Shell {
	h := sha256.New()
	var urls []string
	err := fs.WalkDir(Files(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(Files(), name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.Write([]byte(name + "\x00"))
		h.Write(sum[:])
		if name == "index.html" {
			urls = append(urls, "/")
		} else {
			urls = append(urls, path.Join("/app", name))
		}
		return nil
	})
	if err != nil {
		panic(err) // the files are embedded: reading them cannot fail
	}
	slices.Sort(urls)
	return Shell{Version: hex.EncodeToString(h.Sum(nil)[:8]), Files: urls}
}

// ServiceWorker returns the service worker's script (sw.js), which keeps
// the shell s in a cache named for s.Version, so that a page opens while
// its site is down and a new release replaces the old shell. The gateway
// serves it at /sw.js, so that it may control the whole origin.
func ServiceWorker(s Shell) []byte {
	head, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Shell always encodes
	}
	out := append([]byte("const SHELL = "), head...)
	out = append(out, ";\n"...)
	return append(out, serviceWorker...)
}
