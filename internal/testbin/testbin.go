// Package testbin builds, once per test package, the executables that
// tests run as real processes: the salamander binary (drills, the ops
// plane after a fire, the web client, the CLI) and nats-server from the
// module Salamander embeds. It is for tests only.
package testbin

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Packages that Build knows by name.
const (
	Salamander = "github.com/salamander-chat/salamander/cmd/salamander"
	NATSServer = "github.com/nats-io/nats-server/v2"
)

// Build builds each package into a new temporary directory (named after
// purpose) and returns the executables' paths, in order, and a function
// that removes the directory.
func Build(purpose string, pkgs ...string) (paths []string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "salamander-"+purpose+"-bin-")
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", purpose, err)
	}
	remove = func() { os.RemoveAll(dir) }
	for _, pkg := range pkgs {
		path := filepath.Join(dir, filepath.Base(pkg))
		if pkg == NATSServer {
			path = filepath.Join(dir, "nats-server")
		}
		if out, err := exec.Command("go", "build", "-o", path, pkg).CombinedOutput(); err != nil {
			remove()
			return nil, nil, fmt.Errorf("%s: building %s: %v\n%s", purpose, pkg, err, out)
		}
		paths = append(paths, path)
	}
	return paths, remove, nil
}

// Main is a TestMain body for a package whose every test runs the
// salamander binary and skips under -short: it builds the binary into
// *bin (nothing under -short), runs the tests and removes it.
func Main(m *testing.M, purpose string, bin *string) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every test skips; build nothing
	}
	bins, remove, err := Build(purpose, Salamander)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	*bin = bins[0]
	return m.Run()
}
