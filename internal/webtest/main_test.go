package webtest

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binary is the salamander executable built once for the package.
var binary string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run() // every test skips; build nothing
	}
	dir, err := os.MkdirTemp("", "salamander-webtest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "webtest:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "salamander")
	cmd := exec.Command("go", "build", "-o", binary, "github.com/salamander-chat/salamander/cmd/salamander")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "webtest: building salamander: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
