package web

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files returns the app's files: index.html at the root, the style and the
// script modules under it. They never change while the process runs.
func Files() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // "static" is embedded above: it always exists
	}
	return sub
}
